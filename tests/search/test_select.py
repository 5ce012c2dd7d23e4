"""The final genome is the lowest held-out KL among the start and every iteration's best."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.supernet_factory import make_run
from tyr.calib import stores
from tyr.core.io import read_json, write_json
from tyr.export.hf import export
from tyr.search import evolve, select
from tyr.search.space import load_space

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("select"), n_layers=3)


def _logits(model_dir, tokens):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(tokens).logits.double()


def _coarse_kl(p_logits, q_logits, k: int) -> np.ndarray:
    """Per sequence, the mean KL between the dense top-k + rest coarsenings, from its definition."""
    logp, logq = p_logits.log_softmax(-1), q_logits.log_softmax(-1)
    top, idx = logp.topk(k, dim=-1)
    q_top = logq.gather(-1, idx)
    p_rest, q_rest = 1 - top.exp().sum(-1), 1 - q_top.exp().sum(-1)
    kl = (top.exp() * (top - q_top)).sum(-1) + p_rest * (p_rest.log() - q_rest.log())
    return kl.mean(-1).numpy()


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

    # The oracle: each candidate exported (tyr.export.hf, a path the fitness does not use) and run
    # by transformers, its coarsened KL to transformers' dense model computed here from logits.
    genomes = {"start": best["start"]["layers"], "iter1": best["layers"], "iter2": space.to_layers(other)}
    tokens = torch.from_numpy(stores.read_tokens(run["tokens"], stores.SELECTION)).long()
    dense = _logits(run["model"], tokens)
    kl = {}
    for name, layers in genomes.items():
        write_json(tmp_path / f"{name}.json", {**best, "layers": layers, "sparsity": None})
        export(run["model"], run["spec"], tmp_path / f"{name}.json", tmp_path / name)
        kl[name] = _coarse_kl(dense, _logits(tmp_path / name, tokens), k=16)
    record = genome["selection"]["candidates"]
    assert set(record) == set(kl)
    for name, values in kl.items():
        assert record[name]["kl"] == pytest.approx(values.mean(), rel=1e-4)
    chosen = min(kl, key=lambda n: kl[n].mean())
    assert (
        genome["chosen"] == chosen
        and genome["layers"]
        == {"start": best["start"]["layers"], "iter1": best["layers"], "iter2": space.to_layers(other)}[chosen]
    )
    assert record[chosen]["se_vs_chosen"] == 0.0
    assert genome["selection"]["margin"] >= 0 and genome["selection"]["sequences"] == len(tokens)
    assert genome["sparsity"] == pytest.approx(space.sparsity(space.from_layers(genome["layers"])))
    assert "start" not in genome and genome["supernet"] == best["supernet"]


def test_paired_standard_error():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.5, 1.5, 2.0, 4.5])
    d = a - b
    assert select.paired_se(a, b) == pytest.approx(d.std(ddof=1) / 2)
    assert np.isnan(select.paired_se(a[:1], b[:1]))
