"""The attention/MLP split chosen by measurement (tyr.search.split, `search.attention_kept: auto`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from helpers.supernet_factory import make_run
from tyr.core.io import read_json, write_json
from tyr.search import budget, fitness
from tyr.search import split as share
from tyr.search.space import kept_of, load_space

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("share"), n_layers=3)


def test_candidates_are_the_even_split_and_distinct_reachable_shares(run):
    space = load_space(run["supernet"], run["spec"], 0.1)
    # 0.9 is the even split at 10% (listed once, first, as None); 0.05 cannot meet 10%.
    assert share.candidate_shares(space, 0.1, [0.95, 0.9, 0.05, 0.95, 1.0]) == [None, 0.95, 1.0]


def test_sequence_nll_is_the_exported_models_loss(run, tmp_path):
    """Perplexity through the supernet's composition equals the exported pruned model's own."""
    from transformers import AutoModelForCausalLM

    from tyr.export.hf import export

    space = load_space(run["supernet"], run["spec"], 0.5, attention_kept=0.75)
    genome = budget.near_uniform(space, budget.even_spread)
    tokens = np.random.default_rng(0).integers(0, 64, size=(3, 16))
    ev = fitness.Evaluator(run["supernet"], run["model"], None, None, split=None)
    ev.use_tokens(tokens)
    ev.set_tokens(range(3))
    nll = ev.sequence_nll(kept_of(space.to_layers(genome)))

    write_json(
        tmp_path / "genome.json",
        {"iteration": 1, "supernet": str(run["supernet"]), "target_sparsity": 0.5, "layers": space.to_layers(genome)},
    )
    export(run["model"], run["spec"], tmp_path / "genome.json", tmp_path / "pruned", method="tyr")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned", trust_remote_code=True).eval()
    ids = torch.as_tensor(tokens)
    with torch.inference_mode():
        logits = model(ids).logits[:, :-1].float()
    ref = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="none")
    np.testing.assert_allclose(nll, ref.view(3, -1).mean(1).numpy(), rtol=1e-5, atol=1e-5)


def test_choice_is_the_lowest_perplexity_and_is_recorded(run, tmp_path, monkeypatch):
    tokens = np.random.default_rng(1).integers(0, 64, size=(4, 16))
    monkeypatch.setattr(share, "share_tokens", lambda model_dir, source, n, seq_len, seed=0: tokens)
    record = share.choose_share(
        run["supernet"],
        run["model"],
        run["spec"],
        tmp_path / "share.json",
        target_sparsity=0.5,
        shares=[0.75, 1.0],
        text="pydoc",
        sequences=4,
        seq_len=16,
    )
    assert read_json(tmp_path / "share.json") == record
    assert [r["attention_kept"] for r in record["candidates"]] == [None, 0.75, 1.0]
    best = min(record["candidates"], key=lambda r: r["perplexity"])
    assert record["chosen"] == best["attention_kept"] and best["nll_se_vs_chosen"] == 0.0
    ev = fitness.Evaluator(run["supernet"], run["model"], None, None, split=None)
    ev.use_tokens(tokens)
    ev.set_tokens(range(4))
    for row in record["candidates"]:
        space = load_space(run["supernet"], run["spec"], 0.5, attention_kept=row["attention_kept"])
        genome = budget.near_uniform(space, budget.even_spread)
        assert row["perplexity"] == pytest.approx(math.exp(ev.sequence_nll(kept_of(space.to_layers(genome))).mean()))
        assert abs(row["sparsity"] - 0.5) < 0.06  # near-uniform at the target (tiny layers: coarse granules)


def test_share_tokens_are_disjoint_windows_of_the_text(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    text = tmp_path / "prose.txt"
    text.write_text(" ".join(f"w{i:04d}" for i in range(400)))  # one document; every 12-character run is unique
    model_dir = tiny_model_dir()
    tokens = share.share_tokens(model_dir, str(text), 5, 12, seed=0)
    assert tokens.shape == (5, 12)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    stream = tokenizer(text.read_text(), add_special_tokens=False)["input_ids"]
    starts = {tuple(stream[i : i + 12]): i for i in range(len(stream) - 11)}
    offsets = sorted(starts[tuple(row)] for row in tokens.tolist())  # every window is a run of the text
    assert all(b - a >= 12 for a, b in zip(offsets, offsets[1:]))  # and no two overlap
