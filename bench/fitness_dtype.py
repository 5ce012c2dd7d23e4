"""Fitness computed in float32 vs bfloat16: speed, value drift and candidate ranking.

    .venv/bin/python bench/fitness_dtype.py results/<run> [--target 50] [--iteration 1]
        [--candidates 24] [--sequences 8]

Scores the same offspring of the iteration's start genome on the same fitness tokens with
both compute dtypes (`search.dtype`: sublayer branches and LM head; the residual stream stays
float32) and reports evaluations per second, the largest absolute difference of the fitness
values, and the Spearman correlation of their rankings (issue 13 asks ≥ 0.98).
Writes bench/results/<date>-<host>-fitness-dtype.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from common import add_run_args, write_result


def ranks(x) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(float)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap, perplexity=False)
    ap.add_argument("--iteration", type=int, default=1)
    ap.add_argument("--candidates", type=int, default=24)
    ap.add_argument("--sequences", type=int, default=8)
    args = ap.parse_args(argv)

    import torch

    from tyr.search.budget import start_genome
    from tyr.search.evolve import make_offspring
    from tyr.search.fitness import Evaluator
    from tyr.search.space import load_space
    from tyr.workflow.config import tag_target

    torch.set_num_threads(2)
    run = Path(args.run_dir)
    supernet = run / f"s{args.target}" / f"iter{args.iteration}" / "supernet" / "supernet.json"
    space = load_space(supernet, run / "model" / "spec.json", tag_target(args.target))
    rng = np.random.default_rng(0)
    parent = start_genome(space, rng)
    children = [space.kept_units(c) for c in make_offspring(parent, space, rng, args.candidates, 4)]
    seqs = list(range(args.sequences))
    values, seconds = {}, {}
    for dtype in ("float32", "bfloat16"):
        ev = Evaluator(supernet, run / "model", run / "dense" / "topk.zarr", run / "calib" / "tokens.zarr",
                       dtype=dtype)
        ev.set_tokens(seqs)
        ev.set_parent(space.kept_units(parent))
        for c in children:  # warm the module cache, as in a running search
            ev.fitness(c)
        t0 = time.perf_counter()
        values[dtype] = np.array([ev.fitness(c) for c in children])
        seconds[dtype] = time.perf_counter() - t0
    f32, bf16 = values["float32"], values["bfloat16"]
    spearman = float(np.corrcoef(ranks(f32), ranks(bf16))[0, 1])
    lines = [f"# Fitness compute dtype: {run} s{args.target} iteration {args.iteration}", "",
             f"`{' '.join(sys.argv)}`", "",
             "| compute dtype | evaluations/s |", "|---|---|"]
    for dtype in values:
        lines.append(f"| {dtype} | {len(children) / seconds[dtype]:.3f} |")
    lines += ["", f"{len(children)} offspring of the start genome, {len(seqs)} fitness sequences "
              f"({len(seqs) * ev.seq_len} tokens). Speed-up {seconds['float32'] / seconds['bfloat16']:.2f}×; "
              f"largest |Δfitness| {np.abs(f32 - bf16).max():.2e} (fitness spread {f32.std():.3f}); "
              f"Spearman rank correlation {spearman:.4f}."]
    write_result("fitness-dtype", lines)


if __name__ == "__main__":
    main()
