"""Global sparsity-distribution search over the supernet (paper §3.3–3.4, Alg. 2; EvoPress).

The genome, its space and its budget: `tyr.search.space`, `tyr.search.budget`.

Start. The all-centre genome when it is feasible (iterations > 1: the previous best).
Iteration 1's centres are snapped per sublayer and can miss the budget (9 heads at 50%):
then every sublayer takes one of the two levels bracketing the target, the sparser one
where it adds the least reconstruction error (`budget.near_uniform`, `budget.least_damage`).

Evolution (per generation). λ offspring by mutation: n = min(U{1..m}, U{1..m}) level swaps,
each moving one sublayer a level denser and another of the same kind a level sparser;
duplicates and infeasible genomes are rejected. Multi-stage selection: stage s scores its
candidates on a fresh sample of `tokens_s` tokens of the fitness split and keeps the best
`keep_s`; the parent joins the last stage (elitism), whose best becomes the next parent.

Determinism and resumption. All randomness comes from one numpy Generator whose state is
checkpointed (atomically) with the parent and the history after every generation, so a
killed search restarted with the same arguments continues the same random stream and ends
with the genome an uninterrupted run finds. `best.json` is written last.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from tyr.calib import stores
from tyr.core import signals
from tyr.core.io import atomic_path, atomic_write_text, read_json, write_json
from tyr.search import distributed
from tyr.search.budget import start_genome
from tyr.search.space import SPLIT_CONFLICT, SearchSpace, load_space

log = logging.getLogger("tyr.search.evolve")
STATE_VERSION = 1


# ---- mutation and offspring -------------------------------------------------------------------


def mutate(genome, space: SearchSpace, rng, max_swaps: int = 4) -> tuple:
    """n = min(U{1..m}, U{1..m}) level swaps: one sublayer a level denser, another of its
    budget group (same kind unless trading) a level sparser."""
    n = min(int(rng.integers(1, max_swaps + 1)), int(rng.integers(1, max_swaps + 1)))
    g = list(genome)
    for _ in range(n):
        denser = [i for i in range(space.size) if g[i] > 0]
        if not denser:
            break
        i = denser[int(rng.integers(len(denser)))]
        sparser = [j for j in space.groups[space.group_of(i)] if j != i and g[j] < len(space.kept[j]) - 1]
        if not sparser:
            continue
        j = sparser[int(rng.integers(len(sparser)))]
        g[i] -= 1
        g[j] += 1
    return tuple(g)


def make_offspring(parent, space: SearchSpace, rng, n: int, max_swaps: int = 4, max_tries: int | None = None) -> list:
    """Up to n distinct feasible children of `parent` (never the parent itself)."""
    max_tries = max_tries or 1000 + 200 * n
    seen, children = {tuple(parent)}, []
    for _ in range(max_tries):
        if len(children) == n:
            break
        child = mutate(parent, space, rng, max_swaps)
        if child in seen or not space.feasible(child):
            continue
        seen.add(child)
        children.append(child)
    return children


def sample_sequences(rng, n_seq: int, seq_len: int, tokens: int, exclude=()) -> np.ndarray:
    """Fresh sequence ids covering at least `tokens` positions (all when the split is smaller),
    none of them in `exclude` (the fixed last stage's sequences)."""
    pool = np.setdiff1d(np.arange(n_seq), np.asarray(exclude, dtype=np.int64))
    n = min(len(pool), max(1, math.ceil(tokens / seq_len)))
    return np.sort(rng.choice(pool, size=n, replace=False))


# ---- one generation -----------------------------------------------------------------------------


def generation(
    parent, space: SearchSpace, evaluator, rng, *, offspring: int, stages, max_swaps: int = 4, fixed=None
) -> dict:
    """One generation of Alg. 2: mutate, then select through the stages; returns its record.

    Each stage draws fresh sequences, caches the parent on them (so offspring are scored
    incrementally) and keeps the best `keep`; in the last stage the parent competes too
    and, listed first under a stable sort, wins ties. With `fixed` sequence ids the last
    stage scores on those every generation (paired with every earlier decision, its parent
    cache kept between generations); the earlier stages draw from the other sequences.
    """
    candidates = make_offspring(parent, space, rng, offspring, max_swaps)
    n_offspring, stage_fitness = len(candidates), []
    for s, (tokens, keep) in enumerate(stages):
        if s == len(stages) - 1 and fixed is not None:
            evaluator.set_tokens(fixed, keep=True)
        else:
            evaluator.set_tokens(
                sample_sequences(
                    rng, evaluator.n_seq, evaluator.seq_len, tokens, exclude=() if fixed is None else fixed
                )
            )
        parent_fitness = evaluator.set_parent(space.kept_units(parent))
        if s == len(stages) - 1:
            candidates = [parent] + candidates
        scores = distributed.score(partial(_fitness, evaluator, space, parent, parent_fitness), candidates)
        stage_fitness.append([float(x) for x in scores])
        candidates = [candidates[int(i)] for i in np.argsort(scores, kind="stable")[:keep]]
    return {
        "parent": candidates[0],
        "best_fitness": float(min(scores)),
        "parent_fitness": float(parent_fitness),
        "offspring": n_offspring,
        "stage_fitness": stage_fitness,
    }


def _fitness(evaluator, space: SearchSpace, parent, parent_fitness: float, genome) -> float:
    """A candidate's fitness on the stage's tokens; the parent's is known from its caching."""
    return parent_fitness if genome == parent else evaluator.fitness(space.kept_units(genome))


# ---- driver with checkpoints ---------------------------------------------------------------------


@dataclass(frozen=True)
class SearchOptions:
    """How one search runs: its iteration's `search:` settings. The defaults are config.yaml's
    (tests/search/test_evolve.py checks), so the library and the workflow agree."""

    offspring: int = 8
    generations: int = 12
    stages: tuple = ((1024, 2), (4096, 1))  # (tokens, kept) per selection stage
    seed: int = 0
    max_swaps: int = 4
    trade_attn_mlp: bool = False
    attention_kept: float | None = None  # None: each kind keeps 1 - target (the paper)
    dtype: str = "auto"
    device: str = "auto"
    track_sequences: int = 8
    fixed_last_stage: bool = True
    batch_size: int = 4  # sequences per fitness forward
    cache_bytes: int = 2 << 30  # the parent's residual stream, at sublayer boundaries

    def __post_init__(self):
        stages = tuple((int(t), int(k)) for t, k in self.stages)
        if not stages or any(k < 1 for _, k in stages):
            raise ValueError(f"stages must be a non-empty list of [tokens, keep>=1], got {self.stages}")
        if self.trade_attn_mlp and self.attention_kept is not None:
            raise ValueError(SPLIT_CONFLICT)
        object.__setattr__(self, "stages", stages)

    def fingerprint(self, supernet_json, target_sparsity: float, dtype: str) -> dict:
        """What a checkpoint must match to be resumed: everything that changes the search's
        decisions (not `generations`: more of them continue the same stream)."""
        return {
            "supernet_sha256": _sha256(supernet_json),
            "target_sparsity": target_sparsity,
            "offspring": self.offspring,
            "stages": [list(s) for s in self.stages],
            "seed": self.seed,
            "max_swaps": self.max_swaps,
            "trade_attn_mlp": self.trade_attn_mlp,
            "dtype": dtype,
            "track_sequences": self.track_sequences,
            "fixed_last_stage": self.fixed_last_stage,
            "attention_kept": self.attention_kept,
        }


def run_search(
    supernet_json,
    topk_zarr,
    tokens_zarr,
    model_dir,
    spec_json,
    out_dir,
    *,
    target_sparsity: float,
    iteration: int = 1,
    progress: bool = True,
    **options,
) -> dict:
    """Evolutionary search (`options`: the fields of SearchOptions); writes best.json,
    generations.tsv, fitness.zarr and state.json in out_dir.

    Resumable: `state.json` (parent, RNG state, history) is replaced atomically after every
    generation; a restart with the same arguments continues from it. More generations than a
    finished checkpoint holds simply continue the same stream. With `track_sequences`, every
    generation's parent is also scored on that many fixed sequences of the `selection` split
    (no search decision uses them): the curve of the report, comparable across generations.
    `fixed_last_stage`: the last selection stage scores on one fixed draw of sequences for the
    whole search instead of a fresh one per generation (`generation`).
    """
    from tyr.core.device import threads_from_env
    from tyr.search.fitness import Evaluator, resolve_compute_dtype

    threads_from_env()
    opts = SearchOptions(**options)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    space = load_space(
        supernet_json,
        spec_json,
        target_sparsity,
        trade_attn_mlp=opts.trade_attn_mlp,
        attention_kept=opts.attention_kept,
    )
    evaluator = Evaluator(
        supernet_json,
        model_dir,
        topk_zarr,
        tokens_zarr,
        batch_size=opts.batch_size,
        cache_bytes=opts.cache_bytes,
        dtype=opts.dtype,
        device=opts.device,
    )
    settings = opts.fingerprint(supernet_json, target_sparsity, resolve_compute_dtype(opts.dtype))
    state, rng = _open_state(out, settings, space, opts.seed)
    if opts.fixed_last_stage and "fixed" not in state:
        state["fixed"] = sample_sequences(rng, evaluator.n_seq, evaluator.seq_len, opts.stages[-1][0]).tolist()
    if opts.fixed_last_stage and len(opts.stages) > 1 and len(state["fixed"]) >= evaluator.n_seq:
        raise ValueError(
            f"search.fixed_last_stage: the last stage's {opts.stages[-1][0]} tokens take all "
            f"{evaluator.n_seq} fitness sequences, leaving none for the earlier stages; give the "
            "fitness split more sequences or set fixed_last_stage: false"
        )
    writer = distributed.is_writer()  # with several processes, rank 0 alone tracks and writes
    tracker = Tracker(evaluator, space, opts.track_sequences if writer else 0)
    state.setdefault("track_start", tracker(tuple(state["parent"])))
    while state["generation"] < opts.generations:
        record = _generation_record(state, space, evaluator, rng, opts, tracker)
        if writer:
            write_json(out / "state.json", state)  # the checkpoint: atomic, so a kill leaves the old or the new
            _write_tsv(out / "generations.tsv", state["history"])
            _report(record, opts.generations, progress)
        signals.check(f"{out / 'state.json'} holds generation {state['generation']}: the rerun continues there")
    return _finish(out, state, space, supernet_json, iteration, target_sparsity, len(opts.stages), write=writer)


def _generation_record(state: dict, space, evaluator, rng, opts: SearchOptions, tracker) -> dict:
    """Run one generation from the state's parent and record it in the state (not yet on disk)."""
    t0, evals0 = time.perf_counter(), evaluator.evaluations
    record = generation(
        tuple(state["parent"]),
        space,
        evaluator,
        rng,
        offspring=opts.offspring,
        stages=opts.stages,
        max_swaps=opts.max_swaps,
        fixed=state.get("fixed"),
    )
    parent = record.pop("parent")
    record.update(
        generation=state["generation"] + 1,
        evals=evaluator.evaluations - evals0,
        sparsity=space.sparsity(parent),
        track_fitness=tracker(parent),
        seconds=time.perf_counter() - t0,
    )
    state["history"].append(record)
    state.update(
        generation=record["generation"],
        parent=list(parent),
        fitness=record["best_fitness"],
        rng=rng.bit_generator.state,
    )
    return record


def _report(record: dict, generations: int, progress: bool) -> None:
    """One line per generation in the job's log (and on stderr with `progress`)."""
    track = "–" if record["track_fitness"] is None else f"{record['track_fitness']:.6f}"
    line = (
        f"gen {record['generation']}/{generations} best {record['best_fitness']:.6f} "
        f"parent {record['parent_fitness']:.6f} track {track} evals {record['evals']} "
        f"sparsity {record['sparsity']:.4f} {record['seconds']:.1f}s"
    )
    log.info(line)
    if progress:
        print(f"[search] {line}", file=sys.stderr, flush=True)


def _open_state(out: Path, settings: dict, space: SearchSpace, seed: int):
    """(state, rng): the checkpoint of this search if there is one, else a fresh start."""
    state = _resume(out / "state.json", settings)
    if state is None:
        rng = np.random.default_rng(seed)
        state = {
            "version": STATE_VERSION,
            "settings": settings,
            "generation": 0,
            "start": list(start_genome(space, rng)),
            "history": [],
        }
        state["parent"] = state["start"]
        return state, rng
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = state["rng"]
    for stale in out.glob(".*.tmp") if distributed.is_writer() else ():  # writes a kill interrupted
        shutil.rmtree(stale, ignore_errors=True)
    return state, rng


def _finish(
    out: Path, state: dict, space: SearchSpace, supernet_json, iteration, target_sparsity, n_stages, write: bool = True
) -> dict:
    """Write the logs and, last, best.json (its existence means the search is done)."""
    start = tuple(state["start"])
    best = {
        "iteration": iteration,
        "supernet": str(supernet_json),
        "target_sparsity": target_sparsity,
        "sparsity": space.sparsity(state["parent"]),
        "fitness": state.get("fitness"),
        "generations": state["generation"],
        "layers": space.to_layers(state["parent"]),
        "start": {
            "layers": space.to_layers(start),
            "sparsity": space.sparsity(start),
            "track_fitness": state.get("track_start"),
        },
    }
    if write:
        _write_tsv(out / "generations.tsv", state["history"])
        _write_fitness_zarr(out / "fitness.zarr", state["history"], n_stages)
        write_json(out / "best.json", best)
    return best


class Tracker:
    """A genome's KL on fixed sequences of the `selection` split (none of the search's samples):
    one curve per search that is comparable across generations, unlike each generation's best
    on its own fresh sample. Recomputed only when the parent changes; None when disabled."""

    def __init__(self, evaluator, space: SearchSpace, n_sequences: int):
        self.evaluator, self.space, self.n = evaluator, space, n_sequences
        self.last = (None, None)

    def __call__(self, genome) -> float:
        genome = tuple(genome)
        if self.n <= 0 or genome == self.last[0]:
            return self.last[1]
        ev, home = self.evaluator, self.evaluator.split
        ev.use_split(stores.SELECTION)
        ev.set_tokens(range(min(self.n, ev.n_seq)))
        value = ev.fitness(self.space.kept_units(genome), incremental=False)
        ev.use_split(home)
        self.last = (genome, value)
        return value


def _resume(path: Path, settings: dict):
    if not path.exists():
        return None
    state = read_json(path)
    if state.get("version") != STATE_VERSION or state.get("settings") != json.loads(json.dumps(settings)):
        # Snakemake reruns a search when its inputs or options changed: the old checkpoint
        # belongs to another search, so start afresh rather than continue it.
        log.warning("%s belongs to a search with other settings or another supernet; starting afresh", path)
        return None
    return state


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


TSV_COLUMNS = (
    "generation",
    "best_fitness",
    "parent_fitness",
    "track_fitness",
    "offspring",
    "evals",
    "sparsity",
    "seconds",
)


def _write_tsv(path, history) -> None:
    """One row per generation; `evals` counts forward evaluations, the parent's per stage included;
    `track_fitness` is the parent's KL on the fixed tracking sequences (nan when not tracked)."""
    lines = ["\t".join(TSV_COLUMNS)]
    for r in history:
        lines.append("\t".join(_tsv_value(r.get(c)) for c in TSV_COLUMNS))
    atomic_write_text(path, "\n".join(lines) + "\n")


def _tsv_value(value) -> str:
    return "nan" if value is None else repr(value) if isinstance(value, float) else str(value)


def _write_fitness_zarr(path, history, n_stages: int) -> None:
    """Per generation: best/parent fitness, evals, seconds; per stage the scores of all candidates (NaN-padded)."""
    import zarr

    g = len(history)
    width = max([len(f) for r in history for f in r["stage_fitness"]] or [1])
    stage = np.full((g, n_stages, width), np.nan)
    for t, r in enumerate(history):
        for s, f in enumerate(r["stage_fitness"]):
            stage[t, s, : len(f)] = f
    columns = {
        c: np.asarray([np.nan if r.get(c) is None else r[c] for r in history], dtype=np.float64)
        for c in ("best_fitness", "parent_fitness", "track_fitness", "sparsity", "seconds")
    }
    columns["evals"] = np.asarray([r["evals"] for r in history], dtype=np.int64)
    columns["stage_fitness"] = stage
    with atomic_path(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        for name, data in columns.items():
            arr = group.create_array(name, shape=data.shape, dtype=data.dtype)
            if data.size:
                arr[...] = data
        group.attrs.update({"columns": list(columns), "stage_fitness": "[generation, stage, candidate]"})
