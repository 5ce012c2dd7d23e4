from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.supernet_factory import make_run
from tyr.search import fitness
from tyr.search.budget import start_genome
from tyr.search.evolve import make_offspring
from tyr.search.space import load_space

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("fitness"), n_layers=4)


@pytest.fixture(scope="module")
def space(run):
    return load_space(run["supernet"], run["spec"], 0.5)


def evaluator(run, **kw):
    return fitness.Evaluator(run["supernet"], run["model"], run["topk"], run["tokens"], **kw)


def dense_genome(space):
    return tuple(kept[0] for kept in space.kept)


def random_genomes(space, n, seed):
    rng = np.random.default_rng(seed)
    return [tuple(int(rng.choice(kept)) for kept in space.kept) for _ in range(n)]


def test_kl_zero_for_dense_positive_otherwise(run, space):
    ev = evaluator(run)
    ev.set_tokens(range(ev.n_seq))
    assert abs(ev.fitness(dense_genome(space))) < 1e-6
    assert abs(fitness.fitness_naive(ev, dense_genome(space))) < 1e-6
    for genome in random_genomes(space, 4, seed=1):
        if genome != dense_genome(space):
            assert ev.fitness(genome) > 1e-4


@pytest.mark.parametrize("cache_bytes", [1 << 30, 1])
def test_incremental_equals_naive(run, space, cache_bytes):
    ev = evaluator(run, cache_bytes=cache_bytes, batch_size=3)
    ev.set_tokens([0, 2, 3, 5, 7])
    rng = np.random.default_rng(0)
    parent = start_genome(space, rng)
    children = make_offspring(parent, space, rng, 6) + [parent]
    ev.set_parent(space.kept_units(parent))
    expected_ckpts = 1 if cache_bytes == 1 else space.size
    assert len(ev.parent.at) == expected_ckpts
    # offspring (few sublayers changed) and arbitrary genomes (changed from layer 0)
    genomes = [space.kept_units(c) for c in children] + random_genomes(space, 3, seed=2)
    inc = [ev.fitness(g) for g in genomes]
    naive = [fitness.fitness_naive(ev, g) for g in genomes]
    full = [ev.fitness(g, incremental=False) for g in genomes]
    assert np.allclose(inc, naive, rtol=1e-5, atol=1e-8)
    assert np.allclose(full, naive, rtol=1e-5, atol=1e-8)
    assert len(set(np.round(inc, 8))) > 3  # the candidates really differ


def test_sequence_kl_averages_to_the_fitness(run, space):
    """Per-sequence KL (for paired comparisons) is the fitness split by sequence."""
    ev = evaluator(run, batch_size=3)
    ev.set_tokens(range(ev.n_seq))
    for genome in random_genomes(space, 2, seed=3) + [dense_genome(space)]:
        per_seq = ev.sequence_kl(genome)
        assert per_seq.shape == (ev.n_seq,) and (per_seq >= -1e-7).all()
        assert per_seq.mean() == pytest.approx(ev.fitness(genome, incremental=False), rel=1e-5, abs=1e-8)


def test_fresh_tokens_drop_the_parent_cache(run, space):
    ev = evaluator(run)
    parent = space.kept_units(space.centre)
    ev.set_tokens([0, 1])
    f01 = ev.set_parent(parent)
    ev.set_tokens([4, 5])
    assert ev.parent.fitness is None
    assert ev.fitness(parent) != f01
    assert ev.fitness(parent) == pytest.approx(fitness.fitness_naive(ev, parent), rel=1e-5)


def test_topk_of_other_tokens_is_refused(run, tmp_path):
    from helpers.supernet_factory import write_tokens

    other = write_tokens(tmp_path / "other.zarr", vocab_size=128, seed=5)
    with pytest.raises(ValueError, match="other tokens"):
        fitness.Evaluator(run["supernet"], run["model"], run["topk"], other)


def test_bf16_fitness_tracks_fp32_and_auto_resolves(run, space):
    genomes = random_genomes(space, 6, seed=4)
    values, evs = {}, {}
    for dtype in ("float32", "bfloat16"):
        ev = evs[dtype] = evaluator(run, dtype=dtype)
        ev.set_tokens(range(ev.n_seq))
        values[dtype] = np.array([ev.fitness(g) for g in genomes])
    assert np.allclose(values["bfloat16"], values["float32"], rtol=0.05, atol=1e-3)
    assert not np.array_equal(values["bfloat16"], values["float32"])  # really another precision
    i, kept = next((i, k) for i, k in enumerate(genomes[0]) if k)
    linears = [m for m in evs["bfloat16"].modules.get(i, kept).modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.weight.dtype == torch.bfloat16 for m in linears)
    # the reference path stays float32 whatever the evaluator computes in
    naive = [fitness.fitness_naive(evs["bfloat16"], g) for g in genomes[:2]]
    assert np.allclose(naive, values["float32"][:2], rtol=0, atol=1e-6)
    # auto: bf16 exactly where the hardware multiplies it natively (read here from the CPU's flags)
    native = torch.cuda.is_available() or any(
        f in Path("/proc/cpuinfo").read_text() for f in ("avx512_bf16", "amx_bf16")
    )
    assert fitness.resolve_compute_dtype("auto") == ("bfloat16" if native else "float32")
    with pytest.raises(ValueError, match="search.dtype"):
        fitness.resolve_compute_dtype("float16")


def test_module_cache_is_bounded_in_bytes(run, space):
    genomes = random_genomes(space, 3, seed=5)
    tight, roomy = evaluator(run, module_cache_bytes=1), evaluator(run)
    for ev in (tight, roomy):
        ev.set_tokens([0, 1])
    for g in genomes:
        assert tight.fitness(g, incremental=False) == roomy.fitness(g, incremental=False)
        assert len(tight.modules.cached) == 1  # a 1-byte budget keeps only the latest module
    cache = roomy.modules
    modules = [m for m in map(lambda key: cache.get(*key), cache.cached) if m is not None]  # 0 units: no module
    held = sum(p.numel() * p.element_size() for m in modules for p in m.parameters())
    assert len(cache.cached) > 1 and cache.cached_bytes == held > 0
    # what a 1-byte cache dropped is built again, what the roomy one holds is not
    builds = tight.modules.builds, roomy.modules.builds
    tight.fitness(genomes[0], incremental=False), roomy.fitness(genomes[0], incremental=False)
    assert tight.modules.builds > builds[0] and roomy.modules.builds == builds[1]


def test_a_child_builds_only_the_sublayers_it_changes(run, space):
    """The parent's modules are pinned outside the LRU budget: with room for one module only,
    a child one mutation away builds what it changed, not every sublayer again."""
    ev = evaluator(run, module_cache_bytes=1)
    roomy = evaluator(run)
    for e in (ev, roomy):
        e.set_tokens([0, 1, 2])
    rng = np.random.default_rng(3)
    parent = start_genome(space, rng)
    ev.set_parent(space.kept_units(parent))
    roomy.set_parent(space.kept_units(parent))
    for child in make_offspring(parent, space, rng, 4):
        genome = space.kept_units(child)
        changed = sum(a != b for a, b in zip(genome, space.kept_units(parent)))
        before = ev.modules.builds
        assert ev.fitness(genome) == pytest.approx(roomy.fitness(genome), rel=1e-6)
        assert ev.modules.builds - before <= changed  # a 1-byte LRU alone would rebuild from the change on
    new_parent = space.kept_units(make_offspring(parent, space, rng, 1)[0])
    ev.set_parent(new_parent)  # the old parent's modules leave the pin for the (1-module) LRU
    assert ev.modules.pinned == {(i, k) for i, k in enumerate(new_parent)}
    assert len(ev.modules.cached) <= 1
