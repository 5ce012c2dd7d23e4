"""Fitness evaluations per second on the same tokens: incremental vs full rerun vs naive
(bench/pipeline.py's "fitness speedup" goal; formerly the product's search `benchmark` and
fitness `benchmark_evaluator`, which only benchmarks used)."""

from __future__ import annotations

import time

import numpy as np


def benchmark_evaluator(evaluator, parent, candidates, seq_ids, repeats: int = 1) -> dict:
    """`parent` and `candidates` as kept-unit tuples (`SearchSpace.kept_units`).

    incremental: parent cache (its cost amortised over the candidates) + reruns from the first
    changed sublayer, with warm module caches as in a running search; full: cached modules,
    every sublayer rerun; naive: rebuild from level files, rerun all (`fitness_naive`). The modes
    alternate `repeats` times and each keeps its fastest round, which damps interference from
    other processes on a shared machine.
    """
    from tyr.search.fitness import fitness_naive

    evaluator.set_tokens(seq_ids)
    evaluator.set_parent(parent)
    for c in candidates:  # warm the module cache (a search reuses modules across generations)
        evaluator.fitness(c)

    def incremental():
        evaluator.set_parent(parent)
        return [evaluator.fitness(c) for c in candidates]

    modes = {
        "incremental": incremental,
        "full": lambda: [evaluator.fitness(c, incremental=False) for c in candidates],
        "naive": lambda: [fitness_naive(evaluator, c) for c in candidates],
    }
    seconds, values = {m: float("inf") for m in modes}, {}
    for _ in range(repeats):
        for mode, run in modes.items():
            t0 = time.perf_counter()
            values[mode] = run()
            seconds[mode] = min(seconds[mode], time.perf_counter() - t0)
    n = len(candidates)
    diff = max(float(np.max(np.abs(np.subtract(values[m], values["naive"])))) for m in ("incremental", "full"))
    return {
        "candidates": n,
        "tokens": evaluator.n_positions,
        "repeats": repeats,
        **{f"{m}_eval_per_s": n / seconds[m] for m in modes},
        "speedup_vs_naive": seconds["naive"] / seconds["incremental"],
        "speedup_vs_full": seconds["full"] / seconds["incremental"],
        "max_abs_diff": diff,
    }


def offspring_speed(
    supernet_json,
    topk_zarr,
    tokens_zarr,
    model_dir,
    spec_json,
    *,
    target_sparsity: float,
    candidates: int = 8,
    tokens: int = 512,
    seed: int = 0,
    max_swaps: int = 4,
    batch_size: int = 4,
    repeats: int = 1,
    dtype: str = "float32",
) -> dict:
    """`benchmark_evaluator` on offspring of the search's start genome, on fresh fitness sequences
    covering `tokens` positions, as the search draws them."""
    from tyr.search.budget import start_genome
    from tyr.search.evolve import make_offspring, sample_sequences
    from tyr.search.fitness import Evaluator
    from tyr.search.space import load_space

    rng = np.random.default_rng(seed)
    space = load_space(supernet_json, spec_json, target_sparsity)
    parent = start_genome(space, rng)
    children = make_offspring(parent, space, rng, candidates, max_swaps)
    if not children:
        raise ValueError(f"{supernet_json}: the start genome has no feasible offspring to time")
    evaluator = Evaluator(supernet_json, model_dir, topk_zarr, tokens_zarr, batch_size=batch_size, dtype=dtype)
    seqs = sample_sequences(rng, evaluator.n_seq, evaluator.seq_len, tokens)
    return benchmark_evaluator(
        evaluator, space.kept_units(parent), [space.kept_units(c) for c in children], seqs, repeats=repeats
    )
