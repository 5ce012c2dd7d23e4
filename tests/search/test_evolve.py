import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from helpers.supernet_factory import make_run
from tyr.core.io import read_json
from tyr.model import sparsity
from tyr.search import budget, evolve, fitness, reference
from tyr.search.space import load_space

pytestmark = pytest.mark.usefixtures("single_thread")

STAGES = [[64, 4], [256, 1]]  # the last stage covers the whole fitness split (8 x 32 tokens)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("search"), n_layers=4)


@pytest.fixture(scope="module")
def space(run):
    return load_space(run["supernet"], run["spec"], 0.5)


# float32 on the CPU, no tracking, a fresh last-stage draw per generation: what these tests were
# written for (the defaults are config.yaml's, test_options_default_to_the_configuration).
EXACT = dict(dtype="float32", device="cpu", track_sequences=0, fixed_last_stage=False)


def search_kwargs(run, **kw):
    args = dict(target_sparsity=0.5, offspring=8, generations=6, stages=STAGES, seed=0, progress=False, **EXACT)
    args.update(kw)
    return args


def do_search(run, out, **kw):
    return evolve.run_search(
        run["supernet"], run["topk"], run["tokens"], run["model"], run["spec"], out, **search_kwargs(run, **kw)
    )


def tsv_fitness(path):
    rows = [line.split("\t") for line in Path(path).read_text().splitlines()]
    cols = rows[0]
    return [
        (r[cols.index("generation")], r[cols.index("best_fitness")], r[cols.index("parent_fitness")]) for r in rows[1:]
    ]


def kind_index_sums(space, genome):
    return {k: sum(g for g, kind in zip(genome, space.kinds) if kind == k) for k in ("attn", "mlp")}


# ---- space, start, mutation ---------------------------------------------------------------------


def test_space_reads_levels_and_budgets(run, space):
    levels = read_json(run["levels"])
    assert space.kept[0] == tuple(levels["layers"][0]["attn"]["kept"])
    assert space.kept_units(space.centre)[1] == levels["layers"][0]["mlp"]["centre"]
    assert space.sparsity(tuple(0 for _ in space.kinds)) == pytest.approx(0.0)
    assert space.sparsity(tuple(len(k) - 1 for k in space.kept)) == pytest.approx(1.0)
    # one granule: one head's q/o columns; one MLP level step (24 channels of gate/up/down)
    assert space.tolerance == {"attn": 2 * 64 * 16, "mlp": 3 * 64 * 24}


def test_mutation_keeps_each_kind_budget(space):
    rng = np.random.default_rng(0)
    parent = space.centre
    swaps = set()
    for _ in range(300):
        child = evolve.mutate(parent, space, rng)
        assert kind_index_sums(space, child) == kind_index_sums(space, parent)  # one level up, one down, per kind
        assert all(0 <= g < len(k) for g, k in zip(child, space.kept))
        swaps.add(sum(abs(a - b) for a, b in zip(child, parent)))
    assert max(swaps) > 2  # several swaps happen


def test_offspring_are_distinct_and_feasible(space):
    rng = np.random.default_rng(1)
    parent = budget.start_genome(space, rng)
    children = evolve.make_offspring(parent, space, rng, 32)
    assert len(children) == 32 and len(set(children)) == 32 and parent not in children
    for child in children:
        assert space.feasible(child)
        assert abs(space.sparsity(child) - 0.5) <= sum(space.tolerance.values()) / sparsity.backbone_prunable_params(
            space.spec
        )


def test_trading_moves_budget_across_kinds(run):
    trade = load_space(run["supernet"], run["spec"], 0.5, trade_attn_mlp=True)
    rng = np.random.default_rng(2)
    parent = budget.start_genome(trade, rng)
    children = evolve.make_offspring(parent, trade, rng, 64)
    assert all(trade.feasible(c) for c in children)
    assert any(kind_index_sums(trade, c) != kind_index_sums(trade, parent) for c in children)


@pytest.mark.parametrize("kept", [0.75, 1.0])
def test_attention_kept_moves_the_split_and_keeps_the_total(run, space, kept):
    """search.attention_kept: attention keeps that share of its parameters, the MLP the rest of
    the backbone's (1 - target); the start genome and every offspring meet both budgets."""
    split = load_space(run["supernet"], run["spec"], 0.5, attention_kept=kept)
    dense_attn = sum(p[0] for p, k in zip(split.params, split.kinds) if k == "attn")
    assert split.budget["attn"] == round(kept * dense_attn)
    assert sum(split.budget.values()) == pytest.approx(sum(space.budget.values()), abs=1)
    rng = np.random.default_rng(3)
    start = budget.start_genome(split, rng)
    assert split.feasible(start) and split.group_params(start, "attn") > space.group_params(space.centre, "attn")
    assert all(split.feasible(c) for c in evolve.make_offspring(start, split, rng, 16))
    granules = sum(split.tolerance.values()) / sparsity.backbone_prunable_params(split.spec)
    assert abs(split.sparsity(start) - 0.5) <= granules  # the target, within one granule of each kind


def test_attention_kept_out_of_reach_names_the_range(run):
    with pytest.raises(
        ValueError, match=r"attention_kept 0.05 cannot meet target sparsity 0.1.*choose attention_kept in \["
    ):
        load_space(run["supernet"], run["spec"], 0.1, attention_kept=0.05)


def test_infeasible_centres_start_near_uniform_where_it_costs_least(run):
    # centres were chosen for 50%: at 40% the all-centre genome misses both budgets
    space = load_space(run["supernet"], run["spec"], 0.4)
    assert not space.feasible(space.centre)
    start = budget.start_genome(space, np.random.default_rng(0))
    assert space.feasible(start)
    brackets = [budget.bracket(space, i) for i in range(space.size)]
    near = budget.near_uniform(space, budget.least_damage(space))
    # Never concentrated: every sublayer at one of the two levels around its share of the budget...
    assert all(g in (d, s) for g, (d, s) in zip(near, brackets))
    # ...and, for as many sparser sublayers, the least added reconstruction error of any choice.
    for positions in space.groups.values():
        moved = [i for i in positions if near[i] != brackets[i][0]]
        movable = [i for i in positions if brackets[i][1] is not None]
        damage = {i: space.recon[i][brackets[i][1]] - space.recon[i][brackets[i][0]] for i in movable}
        assert sum(damage[i] for i in moved) == pytest.approx(sum(sorted(damage.values())[: len(moved)]))


def _closest_level(kept, units: int, target: float) -> int:
    """The level whose unit sparsity is closest to the target (ties: the sparser one)."""
    return min(range(len(kept)), key=lambda j: (abs((units - kept[j]) - target * units), -j))


def test_uniform_genome(run, space, tmp_path):
    doc = budget.uniform_genome(run["supernet"], run["spec"], tmp_path / "u.json", target_sparsity=0.5)
    assert read_json(tmp_path / "u.json") == doc
    genome = space.from_layers(doc["layers"])
    brackets = [budget.bracket(space, i) for i in range(space.size)]
    assert all(g in (d, s) for g, (d, s) in zip(genome, brackets))  # near-uniform
    assert doc["sparsity"] == pytest.approx(space.sparsity(genome)) and doc["iteration"] == 1
    # Matched: at least as close to the target as every sublayer at its closest level.
    closest = tuple(
        _closest_level(space.kept[i], space.spec.units(space.kinds[i], i // 2), 0.5) for i in range(space.size)
    )
    assert abs(doc["sparsity"] - 0.5) <= abs(space.sparsity(closest) - 0.5)
    assert all(abs(space.error(genome, g)) <= abs(space.error(closest, g)) for g in space.groups)


def test_even_spread_is_even():
    assert budget.even_spread(list(range(30)), 15) == list(range(1, 30, 2))
    assert budget.even_spread(list(range(30)), 0) == []
    picked = budget.even_spread(list(range(30)), 7)
    assert len(set(picked)) == 7 and max(b - a for a, b in zip(picked, picked[1:])) <= 5


# ---- the search --------------------------------------------------------------------------------


def test_search_outputs_and_elitism(run, space, tmp_path):
    best = do_search(run, tmp_path / "s")
    assert read_json(tmp_path / "s" / "best.json") == best
    genome = space.from_layers(best["layers"])  # every kept count is a level of the supernet
    assert space.feasible(genome) and best["sparsity"] == pytest.approx(space.sparsity(genome))
    history = read_json(tmp_path / "s" / "state.json")["history"]
    # the last stage scores on the whole split, so parent fitness is comparable across generations
    start_fitness = history[0]["parent_fitness"]
    for prev, cur in zip(history, history[1:]):
        assert cur["parent_fitness"] == pytest.approx(prev["best_fitness"], rel=1e-6)
    assert all(r["best_fitness"] <= r["parent_fitness"] for r in history)
    assert best["fitness"] <= start_fitness and best["fitness"] < start_fitness  # it found something better
    ev = fitness.Evaluator(run["supernet"], run["model"], run["topk"], run["tokens"])
    ev.set_tokens(range(8))
    assert fitness.fitness_naive(ev, space.kept_units(genome)) == pytest.approx(best["fitness"], rel=1e-5)
    store = zarr.open_group(str(tmp_path / "s" / "fitness.zarr"), mode="r")
    assert store["best_fitness"].shape == (6,) and store["stage_fitness"].shape == (6, 2, 8)
    assert np.allclose(store["best_fitness"][:], [r["best_fitness"] for r in history])
    assert len(tsv_fitness(tmp_path / "s" / "generations.tsv")) == 6


def test_tracking_scores_each_parent_on_fixed_selection_sequences(run, space, tmp_path):
    best = do_search(run, tmp_path / "t", generations=4, track_sequences=3)
    history = read_json(tmp_path / "t" / "state.json")["history"]
    ev = fitness.Evaluator(run["supernet"], run["model"], run["topk"], run["tokens"], split="selection")
    ev.set_tokens(range(3))
    parents = [space.from_layers(best["start"]["layers"])]
    assert best["start"]["track_fitness"] == pytest.approx(ev.fitness(space.kept_units(parents[0])), rel=1e-6)
    assert best["layers"] == space.to_layers(space.from_layers(best["layers"]))
    # The last generation's parent is the best genome: its tracked value is its selection KL.
    assert history[-1]["track_fitness"] == pytest.approx(
        ev.fitness(space.kept_units(space.from_layers(best["layers"]))), rel=1e-6
    )
    untracked = do_search(run, tmp_path / "u", generations=4)
    assert {k: v for k, v in untracked.items() if k not in ("start", "supernet")} == {
        k: v for k, v in best.items() if k not in ("start", "supernet")
    }  # tracking changes no decision
    assert "track_fitness" in (tmp_path / "t" / "generations.tsv").read_text().splitlines()[0]


def test_same_seed_same_result(run, tmp_path):
    a = do_search(run, tmp_path / "a", generations=3)
    b = do_search(run, tmp_path / "b", generations=3)
    do_search(run, tmp_path / "c", generations=3, seed=1)  # another seed: compared through its TSV
    assert a == {**b, "supernet": a["supernet"]}
    assert tsv_fitness(tmp_path / "a" / "generations.tsv") == tsv_fitness(tmp_path / "b" / "generations.tsv")
    assert tsv_fitness(tmp_path / "a" / "generations.tsv") != tsv_fitness(tmp_path / "c" / "generations.tsv")


def test_checkpoint_of_other_settings_is_not_resumed(run, tmp_path):
    """A rerun with other settings starts afresh: its result equals a run in an empty folder."""
    do_search(run, tmp_path / "s", generations=1)
    rerun = do_search(run, tmp_path / "s", generations=2, seed=3)
    fresh = do_search(run, tmp_path / "fresh", generations=2, seed=3)
    assert rerun == fresh
    assert read_json(tmp_path / "s" / "state.json")["settings"]["seed"] == 3


def test_kill_and_resume_gives_the_uninterrupted_result(run, tmp_path):
    generations = 8
    reference = do_search(run, tmp_path / "ref", generations=generations)

    out = tmp_path / "killed"
    args = {k: str(run[k]) for k in ("supernet", "topk", "tokens", "model", "spec")}
    code = (
        "import json, sys, torch\n"
        f"torch.set_num_threads({torch.get_num_threads()})\n"
        "from tyr.search.evolve import run_search\n"
        "a = json.loads(sys.argv[1])\n"
        "run_search(a['supernet'], a['topk'], a['tokens'], a['model'], a['spec'], a['out'],"
        f" target_sparsity=0.5, offspring=8, generations={generations}, stages={STAGES}, seed=0, progress=False,"
        f" **{EXACT})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps({**args, "out": str(out)})])
    state = out / "state.json"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if state.exists() and read_json(state)["generation"] >= 3:
                break
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = read_json(state)["generation"]
    assert 3 <= killed_at < generations and not (out / "best.json").exists()

    resumed = do_search(run, out, generations=generations)
    assert resumed["layers"] == reference["layers"]
    assert resumed["fitness"] == reference["fitness"]
    assert tsv_fitness(out / "generations.tsv") == tsv_fitness(tmp_path / "ref" / "generations.tsv")


def test_search_on_a_built_supernet(tmp_path, tiny_model_dir):
    """End to end on `tyr.testing.build_supernet`'s output (compensated levels, qk-norm model)."""
    from helpers.supernet_factory import write_spec, write_tokens
    from tyr.supernet.levels import write_levels
    from tyr.testing import build_supernet as build_all

    model_dir = tiny_model_dir("qwen3", num_hidden_layers=3)
    spec_json = write_spec(model_dir)
    tokens = write_tokens(tmp_path / "tokens.zarr", vocab_size=128, n_seq=6, seq_len=24)
    it = tmp_path / "iter1"
    write_levels(spec_json, it / "levels.json", target_sparsity=0.5, delta=0.25, n_levels=5, iteration=1)
    supernet_json = build_all(model_dir, spec_json, it / "levels.json", tokens, it, batch_size=4)
    reference.dense_topk(model_dir, tokens, tmp_path / "topk.zarr", k=8)

    space = load_space(supernet_json, spec_json, 0.5)
    rng = np.random.default_rng(0)
    parent = budget.start_genome(space, rng)
    ev = fitness.Evaluator(supernet_json, model_dir, tmp_path / "topk.zarr", tokens)
    ev.set_tokens([1, 4])
    ev.set_parent(space.kept_units(parent))
    for child in evolve.make_offspring(parent, space, rng, 4):
        assert ev.fitness(space.kept_units(child)) == pytest.approx(
            fitness.fitness_naive(ev, space.kept_units(child)), rel=1e-5
        )

    best = evolve.run_search(
        supernet_json,
        tmp_path / "topk.zarr",
        tokens,
        model_dir,
        spec_json,
        it / "search",
        target_sparsity=0.5,
        offspring=6,
        generations=3,
        stages=[[24, 3], [144, 1]],
        progress=False,
        **EXACT,
    )
    history = read_json(it / "search" / "state.json")["history"]
    assert space.feasible(space.from_layers(best["layers"]))
    assert best["fitness"] <= history[0]["parent_fitness"]
    uniform = budget.uniform_genome(supernet_json, spec_json, tmp_path / "uniform.json", target_sparsity=0.5)
    # Near-uniform around levels.json's centres (the closest level of every sublayer).
    assert all(abs(a - b) <= 1 for a, b in zip(space.from_layers(uniform["layers"]), space.centre))


def test_fixed_last_stage_scores_one_draw_and_keeps_its_parent_cache(run, space, tmp_path):
    best = do_search(run, tmp_path / "f", generations=5, stages=[[64, 3], [96, 1]], fixed_last_stage=True)
    state = read_json(tmp_path / "f" / "state.json")
    fixed, history = state["fixed"], state["history"]
    assert len(fixed) == 3  # 96 tokens of 32-token sequences
    # The last stage is one paired objective: the parent's fitness never rises, and it is the
    # fixed sequences' fitness of the genome, recomputed from scratch.
    parents = [r["parent_fitness"] for r in history] + [best["fitness"]]
    assert all(b <= a + 1e-12 for a, b in zip(parents, parents[1:]))
    ev = fitness.Evaluator(run["supernet"], run["model"], run["topk"], run["tokens"])
    ev.set_tokens(fixed)
    assert ev.fitness(space.kept_units(space.from_layers(best["layers"])), incremental=False) == pytest.approx(
        best["fitness"], rel=1e-6
    )
    # Resumable like any search: the same arguments continue to the same genome.
    again = do_search(run, tmp_path / "f", generations=7, stages=[[64, 3], [96, 1]], fixed_last_stage=True)
    longer = do_search(run, tmp_path / "g", generations=7, stages=[[64, 3], [96, 1]], fixed_last_stage=True)
    assert again["layers"] == longer["layers"]


def test_an_incremental_parent_update_equals_a_fresh_cache(run, space):
    ev = fitness.Evaluator(run["supernet"], run["model"], run["topk"], run["tokens"], cache_bytes=1 << 30)
    rng = np.random.default_rng(4)
    a = budget.start_genome(space, rng)
    b = evolve.make_offspring(a, space, rng, 1)[0]
    ev.set_tokens([0, 3, 5], keep=True)
    ev.set_parent(space.kept_units(a))
    ev.set_tokens([1, 2])  # another stage in between
    ev.set_tokens([0, 3, 5], keep=True)
    assert ev.parent.kept == tuple(space.kept_units(a))  # the kept tokens kept their parent
    incremental = ev.set_parent(space.kept_units(b))
    child = evolve.make_offspring(b, space, rng, 1)[0]
    via_incremental = ev.fitness(space.kept_units(child))
    fresh = fitness.Evaluator(run["supernet"], run["model"], run["topk"], run["tokens"])
    fresh.set_tokens([0, 3, 5])
    assert fresh.set_parent(space.kept_units(b)) == pytest.approx(incremental, rel=1e-6)
    assert fresh.fitness(space.kept_units(child)) == pytest.approx(via_incremental, rel=1e-6)


def test_two_processes_find_the_single_process_genome(run, tmp_path):
    """torch.distributed (2 CPU processes, gloo): each scores half of a stage's candidates; the
    decisions, logs and genome are the single-process search's."""
    from tyr.search import launch

    kwargs = dict(
        supernet_json=str(run["supernet"]),
        topk_zarr=str(run["topk"]),
        tokens_zarr=str(run["tokens"]),
        model_dir=str(run["model"]),
        spec_json=str(run["spec"]),
        target_sparsity=0.5,
        offspring=6,
        generations=3,
        stages=[[64, 3], [96, 1]],
        seed=5,
        progress=False,
        **{**EXACT, "fixed_last_stage": True},
    )
    single = evolve.run_search(out_dir=str(tmp_path / "one"), **kwargs)
    launch.launch({**kwargs, "out_dir": str(tmp_path / "two")}, processes=2, threads=2, workdir=tmp_path)
    assert read_json(tmp_path / "two" / "best.json") == {**single, "supernet": kwargs["supernet_json"]}
    assert (tmp_path / "one" / "generations.tsv").read_text().split("\n")[1].split("\t")[:4] == (
        tmp_path / "two" / "generations.tsv"
    ).read_text().split("\n")[1].split("\t")[:4]


# ---- bad inputs ---------------------------------------------------------------------------------


def _edited_supernet(run, tmp_path, edit) -> Path:
    index = json.loads(Path(run["supernet"]).read_text())
    edit(index)
    path = Path(run["supernet"]).parent / f"edited-{tmp_path.name}.json"  # level files stay reachable
    path.write_text(json.dumps(index))
    return path


def test_a_supernet_of_another_depth_is_refused(run, tmp_path):
    path = _edited_supernet(run, tmp_path, lambda index: index["layers"].pop())
    with pytest.raises(ValueError, match=r"edited-.*\.json: 3 layers, the model has 4"):
        load_space(path, run["spec"], 0.5)


def test_a_target_no_genome_reaches_names_the_reachable_range(run, tmp_path):
    def two_densest_levels(index):
        for layer in index["layers"]:
            for s in ("attn", "mlp"):
                layer[s] = sorted(layer[s], key=lambda lvl: -lvl["kept"])[:2]
            layer["centre"] = {s: layer[s][0]["kept"] for s in ("attn", "mlp")}

    space = load_space(_edited_supernet(run, tmp_path, two_densest_levels), run["spec"], 0.9)
    with pytest.raises(
        ValueError,
        match=r"no genome of this supernet keeps .* levels span 0.0% to 16.7% "
        r"sparsity\. Choose a target in that range",
    ):
        budget.start_genome(space, np.random.default_rng(0))


def test_options_default_to_the_configuration():
    """One home for every default: SearchOptions' are config.yaml's `search:` values."""
    import dataclasses

    import yaml

    from tyr.search.evolve import SearchOptions

    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "config.yaml").read_text())["search"]
    for field in dataclasses.fields(SearchOptions):
        if field.name in config and field.name != "generations":  # per iteration in the config
            want = config[field.name]
            want = None if want == "auto" and field.name == "attention_kept" else want
            got = field.default
            got = [list(s) for s in got] if field.name == "stages" else got
            assert got == want, (field.name, got, want)


def test_a_fixed_last_stage_that_takes_every_sequence_is_refused(run, tmp_path):
    with pytest.raises(ValueError, match="fixed_last_stage: the last stage's 256 tokens take all 8 fitness sequences"):
        do_search(run, tmp_path / "x", stages=[[64, 2], [256, 1]], fixed_last_stage=True, generations=1)


def test_sigterm_stops_the_search_at_a_checkpoint_and_the_rerun_continues(run, tmp_path, monkeypatch):
    """SIGTERM (tyr.core.signals.STOP) during generation 3: the search finishes that generation,
    writes its checkpoint and raises Stopped; the rerun continues there and ends where an
    uninterrupted search ends."""
    from tyr.core import signals

    generations = 6
    reference = do_search(run, tmp_path / "ref", generations=generations)
    real = evolve._generation_record

    def term_during_third(state, *args, **kwargs):
        if state["generation"] == 2:  # generation 3 is running when the signal comes
            signals.STOP.set()
        return real(state, *args, **kwargs)

    monkeypatch.setattr(evolve, "_generation_record", term_during_third)
    try:
        with pytest.raises(signals.Stopped, match=r"state.json holds generation 3: the rerun continues there"):
            do_search(run, tmp_path / "s", generations=generations)
    finally:
        signals.STOP.clear()
    assert read_json(tmp_path / "s" / "state.json")["generation"] == 3
    assert not (tmp_path / "s" / "best.json").exists()
    monkeypatch.setattr(evolve, "_generation_record", real)
    resumed = do_search(run, tmp_path / "s", generations=generations)
    assert resumed["layers"] == reference["layers"] and resumed["fitness"] == reference["fitness"]
