"""The final genome is the lowest held-out KL among the start and every iteration's best."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.supernet_factory import make_run
from tyr.core.io import read_json, write_json
from tyr.search import evolve, fitness, select
from tyr.search.space import kept_of, load_space

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("select"), n_layers=3)


def test_selection_picks_the_lowest_kl_on_the_selection_split(run, tmp_path):
    best = evolve.run_search(
        run["supernet"],
        run["topk"],
        run["tokens"],
        run["model"],
        run["spec"],
        tmp_path / "s1",
        target_sparsity=0.5,
        offspring=6,
        generations=3,
        stages=[[64, 2], [256, 1]],
        progress=False,
        dtype="float32",
        device="cpu",
        track_sequences=0,
        fixed_last_stage=False,
    )
    space = load_space(run["supernet"], run["spec"], 0.5)
    # A second "iteration" whose best is a worse (but feasible) genome: never chosen over a better one.
    rng = np.random.default_rng(3)
    other = evolve.make_offspring(space.from_layers(best["layers"]), space, rng, 1, max_swaps=4)[0]
    write_json(
        tmp_path / "best2.json",
        {**best, "iteration": 2, "layers": space.to_layers(other), "sparsity": space.sparsity(other), "start": None},
    )
    out = tmp_path / "genome.json"
    genome = select.select_genome(
        [tmp_path / "s1" / "best.json", tmp_path / "best2.json"], run["model"], run["topk"], run["tokens"], out
    )
    assert read_json(out) == genome

    ev = fitness.Evaluator(run["supernet"], run["model"], run["topk"], run["tokens"], split="selection")
    ev.set_tokens(range(ev.n_seq))
    kl = {
        name: ev.sequence_kl(kept_of(layers))
        for name, layers in (
            ("start", best["start"]["layers"]),
            ("iter1", best["layers"]),
            ("iter2", space.to_layers(other)),
        )
    }
    record = genome["selection"]["candidates"]
    assert set(record) == set(kl)
    for name, values in kl.items():
        assert record[name]["kl"] == pytest.approx(values.mean(), rel=1e-6)
    chosen = min(kl, key=lambda n: kl[n].mean())
    assert (
        genome["chosen"] == chosen
        and genome["layers"]
        == {"start": best["start"]["layers"], "iter1": best["layers"], "iter2": space.to_layers(other)}[chosen]
    )
    assert record[chosen]["se_vs_chosen"] == 0.0
    assert genome["selection"]["margin"] >= 0 and genome["selection"]["sequences"] == ev.n_seq
    assert genome["sparsity"] == pytest.approx(space.sparsity(space.from_layers(genome["layers"])))
    assert "start" not in genome and genome["supernet"] == best["supernet"]


def test_paired_standard_error():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.5, 1.5, 2.0, 4.5])
    d = a - b
    assert select.paired_se(a, b) == pytest.approx(d.std(ddof=1) / 2)
    assert np.isnan(select.paired_se(a[:1], b[:1]))
