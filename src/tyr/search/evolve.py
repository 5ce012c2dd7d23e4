"""Global sparsity-distribution search over the supernet (paper §3.3–3.4, Alg. 2; EvoPress).

Genome. One level index per sublayer, in the order (attn 0, mlp 0, attn 1, mlp 1, ...),
into that sublayer's levels (dense → sparse, as in levels.json / supernet.json). On disk
(best.json) a genome is written as kept-unit counts: layers[l] = {"attn": kept, "mlp": kept}.

Constraint. Every genome keeps the backbone sparsity (`tyr.model.sparsity`, from each level's
`params`) at the target within one unit of granularity. By default attention and MLP
budgets are held separately, each at (1 − target) × its dense parameters, with tolerance
one granule of that kind: the smallest parameter step between adjacent levels of that
kind (one head / one MLP channel group). With `trade_attn_mlp=True` only the total is
held, within the larger of the two granules, and swaps may cross kinds.

Start. The all-centre genome when it is feasible (iterations > 1: the previous best).
Iteration 1's centres are snapped per sublayer and can miss the budget (9 heads at 50%):
then every sublayer takes one of the two levels bracketing the target, the sparser one
where it adds the least reconstruction error (`near_uniform`, `least_damage`).

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
from tyr.core.io import atomic_path, atomic_write_text, read_json, write_json
from tyr.model import sparsity
from tyr.model.spec import SUBLAYERS
from tyr.search import distributed
from tyr.workflow.config import SPLIT_CONFLICT

log = logging.getLogger("tyr.search.evolve")
STATE_VERSION = 1


# ---- search space ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchSpace:
    """Levels of every sublayer (flat order attn 0, mlp 0, attn 1, ...) and the budget."""

    spec: object
    kinds: tuple          # per position: "attn" | "mlp"
    kept: tuple           # per position: kept-unit counts, dense → sparse
    params: tuple         # per position: parameters of each level
    recon: tuple          # per position: each level's relative reconstruction error (0 when not recorded)
    dense: tuple          # per position: parameters of the dense sublayer
    centre: tuple         # per position: index of the centre level
    groups: dict          # budget group -> positions ("attn", "mlp", or "all" when trading)
    budget: dict          # budget group -> target kept parameters
    tolerance: dict       # budget group -> allowed |kept − budget| (one granule)

    @property
    def size(self) -> int:
        return len(self.kinds)

    def group_of(self, position: int) -> str:
        return "all" if "all" in self.groups else self.kinds[position]

    def group_params(self, genome, group: str) -> int:
        return sum(self.params[i][genome[i]] for i in self.groups[group])

    def error(self, genome, group: str) -> int:
        return self.group_params(genome, group) - self.budget[group]

    def feasible(self, genome) -> bool:
        return all(abs(self.error(genome, g)) <= self.tolerance[g] for g in self.groups)

    def kept_params(self, genome) -> int:
        return sum(self.params[i][x] for i, x in enumerate(genome))

    def sparsity(self, genome) -> float:
        return sparsity.backbone_sparsity(self.spec, self.kept_params(genome))

    def kept_units(self, genome) -> tuple:
        return tuple(self.kept[i][x] for i, x in enumerate(genome))

    def to_layers(self, genome) -> list:
        units = self.kept_units(genome)
        return [{"attn": units[2 * l], "mlp": units[2 * l + 1]} for l in range(self.size // 2)]

    def from_layers(self, layers) -> tuple:
        return tuple(self.kept[2 * l + j].index(int(layer[s])) for l, layer in enumerate(layers)
                     for j, s in enumerate(SUBLAYERS))


def load_space(supernet_json, spec_json, target_sparsity: float, *, trade_attn_mlp: bool = False,
               attention_kept: float | None = None, levels_json=None) -> SearchSpace:
    """The search space of a supernet at a target backbone sparsity.

    Centres come from the supernet index when its layer entries carry them
    (`layers[l]["centre"][sublayer]`), else from `levels_json` (default: the iteration's
    levels.json, in the parent folder of the supernet folder), else they are the levels
    closest to the target unit sparsity.
    """
    from tyr.model.spec import ModelSpec

    spec = ModelSpec.from_json(spec_json)
    index = read_json(supernet_json)
    layers = index["layers"]
    if len(layers) != spec.num_layers:
        raise ValueError(f"{supernet_json}: {len(layers)} layers, the model has {spec.num_layers}")
    centres = _centres(supernet_json, layers, levels_json)
    kinds, kept, params, recon, dense_params, centre = [], [], [], [], [], []
    for l, layer in enumerate(layers):
        for s in SUBLAYERS:
            levels = sorted(layer[s], key=lambda lvl: -lvl["kept"])
            kinds.append(s)
            kept.append(tuple(int(lvl["kept"]) for lvl in levels))
            params.append(tuple(int(lvl["params"]) for lvl in levels))
            recon.append(tuple(float(lvl.get("recon_error") or 0.0) for lvl in levels))
            dense_params.append(sparsity.dense_sublayer_params(spec, s, l))
            if centres is None:
                centre.append(closest_level(kept[-1], spec.units(s, l), target_sparsity))
                continue
            if centres[l][s] not in kept[-1]:
                raise ValueError(f"layer {l} {s}: centre {centres[l][s]} is not a level of the supernet")
            centre.append(kept[-1].index(centres[l][s]))
    dense = {s: sum(sparsity.dense_sublayer_params(spec, s, l) for l in range(spec.num_layers)) for s in SUBLAYERS}
    granule = {s: _granule([p for k, p in zip(kinds, params) if k == s]) for s in SUBLAYERS}
    positions = {s: tuple(i for i, k in enumerate(kinds) if k == s) for s in SUBLAYERS}
    if trade_attn_mlp:
        groups = {"all": tuple(range(len(kinds)))}
        budget = {"all": round((1 - target_sparsity) * (dense["attn"] + dense["mlp"]))}
        tolerance = {"all": max(granule.values())}
    else:
        groups = positions
        budget = split_budget(dense, target_sparsity, attention_kept)
        tolerance = granule
    return SearchSpace(spec, tuple(kinds), tuple(kept), tuple(params), tuple(recon), tuple(dense_params),
                       tuple(centre), groups, budget, tolerance)


def _centres(supernet_json, layers, levels_json):
    """Centre kept counts per layer and sublayer: from the index, else levels.json, else None."""
    if all("centre" in layer for layer in layers):
        return [layer["centre"] for layer in layers]
    path = Path(levels_json) if levels_json else Path(supernet_json).parent.parent / "levels.json"
    if levels_json or path.exists():
        return [{s: layer[s]["centre"] for s in SUBLAYERS} for layer in read_json(path)["layers"]]
    return None


def closest_level(kept, units: int, target_sparsity: float) -> int:
    """Index of the level whose unit sparsity is closest to the target.

    Ties go to the sparser level, as `tyr.model.sparsity.snap_units` rounds removals half up
    (9 heads at 50% keep 4), so the uniform genome is the iteration-1 centre.
    """
    goal = target_sparsity * units  # units to remove
    return min(range(len(kept)), key=lambda j: (abs((units - kept[j]) - goal), -j))


def _granule(level_params) -> int:
    """Smallest parameter step between adjacent levels: one unit of the search's granularity."""
    steps = [a - b for p in level_params for a, b in zip(p, p[1:]) if a != b]
    return min(steps) if steps else 0


# ---- genomes: start, mutation, offspring ------------------------------------------------------


def start_genome(space: SearchSpace, rng) -> tuple:
    """The all-centre genome when it meets the budgets (iterations > 1: the previous best).
    Otherwise (iteration 1: centres snapped per sublayer miss the budget, e.g. 9 heads at 50%)
    the near-uniform genome whose sparser sublayers are those that lose least by it (their
    levels' recorded reconstruction error), so the search starts at uniform quality, not
    at a few sublayers cut deep. `repair` then closes any gap left by KV-head steps."""
    genome = tuple(space.centre)
    if not space.feasible(genome):
        genome = near_uniform(space, least_damage(space))
    return repair(space, genome, rng)


def bracket(space: SearchSpace, i: int) -> tuple[int, int | None]:
    """(d, s): the sparsest level of position i keeping at least its share of its group's
    budget, and the next sparser level (None when d meets the share exactly or is the last)."""
    group = space.group_of(i)
    share = space.budget[group] * space.dense[i] / sum(space.dense[j] for j in space.groups[group])
    params = space.params[i]
    d = max((j for j, p in enumerate(params) if p >= share), default=0)
    return d, (d + 1 if d + 1 < len(params) and params[d] != share else None)


def near_uniform(space: SearchSpace, choose) -> tuple:
    """Every sublayer at one of the two levels bracketing its share of the budget.

    Per budget group, `choose(movable, m)` names which m sublayers take the sparser level; m
    is the count that lands the group's parameters closest to its budget.
    """
    brackets = [bracket(space, i) for i in range(space.size)]
    genome = [d for d, _ in brackets]
    for group, positions in space.groups.items():
        movable = [i for i in positions if brackets[i][1] is not None]
        options = []
        for m in range(len(movable) + 1):
            g = list(genome)
            for i in choose(movable, m):
                g[i] = brackets[i][1]
            options.append((abs(space.error(g, group)), m, g))
        genome = min(options, key=lambda o: o[:2])[2]
    return tuple(genome)


def even_spread(movable: list, m: int) -> list:
    """m of the items, evenly spaced (the uniform baseline's deterministic, documented choice)."""
    return [movable[int((j + 0.5) * len(movable) / m)] for j in range(m)]


def least_damage(space: SearchSpace):
    """A `choose` taking the sublayers whose sparser bracketing level adds the least
    reconstruction error (ties: the earlier sublayer)."""
    def damage(i):
        d, s = bracket(space, i)
        return space.recon[i][s] - space.recon[i][d], i

    return lambda movable, m: sorted(movable, key=damage)[:m]


def repair(space: SearchSpace, genome, rng) -> tuple:
    """Bring each budget group within tolerance by the fewest single-level moves (greedy, the
    move that shrinks the error most; ties by the seeded RNG). A feasible genome is returned as is."""
    genome = list(genome)
    for group, positions in space.groups.items():
        while abs(err := space.error(genome, group)) > space.tolerance[group]:
            step = 1 if err > 0 else -1  # too many parameters kept: move a sublayer sparser
            moves = []
            for i in positions:
                j = genome[i] + step
                if 0 <= j < len(space.kept[i]):
                    moves.append((abs(err - space.params[i][genome[i]] + space.params[i][j]), i))
            best = min((m for m in moves if m[0] < abs(err)), default=None)
            if best is None:
                raise ValueError(_unreachable(space, group))
            ties = [i for e, i in moves if e == best[0]]
            genome[ties[int(rng.integers(len(ties)))]] += step
    return tuple(genome)


def _unreachable(space: SearchSpace, group) -> str:
    positions = space.groups[group]
    dense = sum(space.dense[i] for i in positions)
    lo, hi = (sum(space.params[i][k] for i in positions) for k in (-1, 0))
    return (f"{group}: no genome of this supernet keeps {space.budget[group]} of {dense} parameters "
            f"(±{space.tolerance[group]}); its levels span {1 - hi / dense:.1%} to {1 - lo / dense:.1%} "
            f"sparsity. Choose a target in that range or build levels that reach it "
            f"(supernet.levels, supernet.delta)")


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


def generation(parent, space: SearchSpace, evaluator, rng, *, offspring: int, stages, max_swaps: int = 4,
               fixed=None) -> dict:
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
            evaluator.set_tokens(sample_sequences(rng, evaluator.n_seq, evaluator.seq_len, tokens,
                                                  exclude=() if fixed is None else fixed))
        parent_fitness = evaluator.set_parent(space.kept_units(parent))
        if s == len(stages) - 1:
            candidates = [parent] + candidates
        scores = distributed.score(partial(_fitness, evaluator, space, parent, parent_fitness), candidates)
        stage_fitness.append([float(x) for x in scores])
        candidates = [candidates[int(i)] for i in np.argsort(scores, kind="stable")[:keep]]
    return {"parent": candidates[0], "best_fitness": float(min(scores)), "parent_fitness": float(parent_fitness),
            "offspring": n_offspring, "stage_fitness": stage_fitness}


def _fitness(evaluator, space: SearchSpace, parent, parent_fitness: float, genome) -> float:
    """A candidate's fitness on the stage's tokens; the parent's is known from its caching."""
    return parent_fitness if genome == parent else evaluator.fitness(space.kept_units(genome))


def split_budget(dense: dict, target_sparsity: float, attention_kept: float | None) -> dict:
    """Kept parameters per kind. By default each kind keeps (1 − target) of its own; with
    `attention_kept` = a, attention keeps a of its parameters and the MLP the rest of the
    backbone's (1 − target), so the total is the same (`tyr.search.split` chooses a by measurement)."""
    if attention_kept is None:
        return {s: round((1 - target_sparsity) * dense[s]) for s in SUBLAYERS}
    total = (1 - target_sparsity) * (dense["attn"] + dense["mlp"])
    attn = round(attention_kept * dense["attn"])
    if not 0 <= total - attn <= dense["mlp"]:
        lo = max(0.0, (total - dense["mlp"]) / dense["attn"])
        hi = min(1.0, total / dense["attn"])
        raise ValueError(f"search.attention_kept {attention_kept} cannot meet target sparsity {target_sparsity}: "
                         f"the MLP would keep {total - attn:.0f} of {dense['mlp']} parameters; "
                         f"choose attention_kept in [{lo:.3f}, {hi:.3f}]")
    return {"attn": attn, "mlp": round(total) - attn}


# ---- driver with checkpoints ---------------------------------------------------------------------


def run_search(supernet_json, topk_zarr, tokens_zarr, model_dir, spec_json, out_dir, *, target_sparsity: float,
               offspring: int, generations: int, stages, seed: int = 0, max_swaps: int = 4,
               trade_attn_mlp: bool = False, iteration: int = 1, progress: bool = True, levels_json=None,
               batch_size: int = 4, cache_bytes: int = 2 << 30, dtype: str = "float32", device: str = "cpu",
               track_sequences: int = 0, fixed_last_stage: bool = False, attention_kept: float | None = None) -> dict:
    """Evolutionary search; writes best.json, generations.tsv, fitness.zarr and state.json in out_dir.

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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages = [[int(t), int(k)] for t, k in stages]
    if not stages or any(k < 1 for _, k in stages):
        raise ValueError(f"stages must be a non-empty list of [tokens, keep>=1], got {stages}")
    if trade_attn_mlp and attention_kept is not None:
        raise ValueError(SPLIT_CONFLICT)
    space = load_space(supernet_json, spec_json, target_sparsity, trade_attn_mlp=trade_attn_mlp,
                       attention_kept=attention_kept, levels_json=levels_json)
    settings = {"supernet_sha256": _sha256(supernet_json), "target_sparsity": target_sparsity,
                "offspring": offspring, "stages": stages, "seed": seed, "max_swaps": max_swaps,
                "trade_attn_mlp": trade_attn_mlp, "dtype": resolve_compute_dtype(dtype),
                "track_sequences": track_sequences, "fixed_last_stage": fixed_last_stage}
    if attention_kept is not None:  # absent by default, so checkpoints of earlier versions still resume
        settings["attention_kept"] = attention_kept
    evaluator = Evaluator(supernet_json, model_dir, topk_zarr, tokens_zarr, batch_size=batch_size,
                          cache_bytes=cache_bytes, dtype=dtype, device=device)
    state, rng = _open_state(out, settings, space, seed)
    if fixed_last_stage and "fixed" not in state:
        state["fixed"] = sample_sequences(rng, evaluator.n_seq, evaluator.seq_len, stages[-1][0]).tolist()
    fixed = state.get("fixed")
    parent = tuple(state["parent"])
    writer = distributed.is_writer()  # with several processes, rank 0 alone tracks and writes
    tracker = Tracker(evaluator, space, track_sequences if writer else 0)
    state.setdefault("track_start", tracker(parent))
    while state["generation"] < generations:
        t0, evals0 = time.perf_counter(), evaluator.evaluations
        record = generation(parent, space, evaluator, rng, offspring=offspring, stages=stages, max_swaps=max_swaps,
                            fixed=fixed)
        parent = record.pop("parent")
        record.update(generation=state["generation"] + 1, evals=evaluator.evaluations - evals0,
                      sparsity=space.sparsity(parent), track_fitness=tracker(parent),
                      seconds=time.perf_counter() - t0)
        state["history"].append(record)
        state.update(generation=record["generation"], parent=list(parent), fitness=record["best_fitness"],
                     rng=rng.bit_generator.state)
        if writer:
            write_json(out / "state.json", state)  # the checkpoint: atomic, so a kill leaves the old or the new
            _write_tsv(out / "generations.tsv", state["history"])
        if writer:
            _report(record, generations, progress)
    return _finish(out, state, space, supernet_json, iteration, target_sparsity, len(stages), write=writer)


def _report(record: dict, generations: int, progress: bool) -> None:
    """One line per generation in the job's log (and on stderr with `progress`)."""
    track = "–" if record["track_fitness"] is None else f"{record['track_fitness']:.6f}"
    line = (f"gen {record['generation']}/{generations} best {record['best_fitness']:.6f} "
            f"parent {record['parent_fitness']:.6f} track {track} evals {record['evals']} "
            f"sparsity {record['sparsity']:.4f} {record['seconds']:.1f}s")
    log.info(line)
    if progress:
        print(f"[search] {line}", file=sys.stderr, flush=True)


def _open_state(out: Path, settings: dict, space: SearchSpace, seed: int):
    """(state, rng): the checkpoint of this search if there is one, else a fresh start."""
    state = _resume(out / "state.json", settings)
    if state is None:
        rng = np.random.default_rng(seed)
        state = {"version": STATE_VERSION, "settings": settings, "generation": 0,
                 "start": list(start_genome(space, rng)), "history": []}
        state["parent"] = state["start"]
        return state, rng
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = state["rng"]
    for stale in out.glob(".*.tmp") if distributed.is_writer() else ():  # writes a kill interrupted
        shutil.rmtree(stale, ignore_errors=True)
    return state, rng


def _finish(out: Path, state: dict, space: SearchSpace, supernet_json, iteration, target_sparsity, n_stages,
            write: bool = True) -> dict:
    """Write the logs and, last, best.json (its existence means the search is done)."""
    start = tuple(state["start"])
    best = {"iteration": iteration, "supernet": str(supernet_json), "target_sparsity": target_sparsity,
            "sparsity": space.sparsity(state["parent"]), "fitness": state.get("fitness"),
            "generations": state["generation"], "layers": space.to_layers(state["parent"]),
            "start": {"layers": space.to_layers(start), "sparsity": space.sparsity(start),
                      "track_fitness": state.get("track_start")}}
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


TSV_COLUMNS = ("generation", "best_fitness", "parent_fitness", "track_fitness", "offspring", "evals", "sparsity",
               "seconds")


def _write_tsv(path, history) -> None:
    """One row per generation; `evals` counts forward evaluations, the parent's per stage included;
    `track_fitness` is the parent's KL on the fixed tracking sequences (nan when not tracked)."""
    lines = ["\t".join(TSV_COLUMNS)]
    for r in history:
        lines.append("\t".join(_cell(r.get(c)) for c in TSV_COLUMNS))
    atomic_write_text(path, "\n".join(lines) + "\n")


def _cell(value) -> str:
    return "nan" if value is None else repr(value) if isinstance(value, float) else str(value)


def _write_fitness_zarr(path, history, n_stages: int) -> None:
    """Per generation: best/parent fitness, evals, seconds; per stage the scores of all candidates (NaN-padded)."""
    import zarr

    g = len(history)
    width = max([len(f) for r in history for f in r["stage_fitness"]] or [1])
    stage = np.full((g, n_stages, width), np.nan)
    for t, r in enumerate(history):
        for s, f in enumerate(r["stage_fitness"]):
            stage[t, s, :len(f)] = f
    columns = {c: np.asarray([np.nan if r.get(c) is None else r[c] for r in history], dtype=np.float64) for c in
               ("best_fitness", "parent_fitness", "track_fitness", "sparsity", "seconds")}
    columns["evals"] = np.asarray([r["evals"] for r in history], dtype=np.int64)
    columns["stage_fitness"] = stage
    with atomic_path(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        for name, data in columns.items():
            arr = group.create_array(name, shape=data.shape, dtype=data.dtype)
            if data.size:
                arr[...] = data
        group.attrs.update({"columns": list(columns), "stage_fitness": "[generation, stage, candidate]"})


# ---- baseline and benchmark ----------------------------------------------------------------------


def uniform_genome(supernet_json, spec_json, out_json, *, target_sparsity: float, iteration: int | None = None,
                   levels_json=None) -> dict:
    """The "no search" baseline at the target: every sublayer at one of the two levels
    bracketing the target (9 heads at 25% cannot all lose 2.25), the sparser one in an evenly
    spread set of layers sized so that attention and MLP each meet their budget."""
    space = load_space(supernet_json, spec_json, target_sparsity, levels_json=levels_json)
    genome = near_uniform(space, even_spread)
    doc = {"iteration": iteration if iteration is not None else read_json(supernet_json).get("iteration"),
           "supernet": str(supernet_json), "target_sparsity": target_sparsity,
           "sparsity": space.sparsity(genome), "fitness": None, "layers": space.to_layers(genome),
           "rule": "near-uniform: bracketing levels, the sparser one in evenly spread layers"}
    write_json(out_json, doc)
    return doc


def benchmark(supernet_json, topk_zarr, tokens_zarr, model_dir, spec_json, *, target_sparsity: float,
              candidates: int = 8, tokens: int = 512, seed: int = 0, max_swaps: int = 4, batch_size: int = 4,
              repeats: int = 1, levels_json=None, dtype: str = "float32") -> dict:
    """Evaluations/s of incremental vs naive fitness on offspring of the start genome (same tokens)."""
    from tyr.search.fitness import Evaluator, benchmark_evaluator

    rng = np.random.default_rng(seed)
    space = load_space(supernet_json, spec_json, target_sparsity, levels_json=levels_json)
    parent = start_genome(space, rng)
    children = make_offspring(parent, space, rng, candidates, max_swaps)
    evaluator = Evaluator(supernet_json, model_dir, topk_zarr, tokens_zarr, batch_size=batch_size,
                          dtype=dtype)
    seqs = sample_sequences(rng, evaluator.n_seq, evaluator.seq_len, tokens)
    return benchmark_evaluator(evaluator, space.kept_units(parent), [space.kept_units(c) for c in children], seqs,
                               repeats=repeats)
