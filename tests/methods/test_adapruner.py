"""AdaPruner: the metrics are their definitions (checked on the dense activations), and Bayesian
optimisation returns the evaluated (subset, metric) whose pruned model has the lowest loss (checked
by rebuilding the written model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers.baseline_factory import dense_pass, pruned_loss, spec_of, split_tokens
from tyr.methods.baselines import adapruner
from tyr.model import adapter

pytestmark = pytest.mark.usefixtures("single_thread")


def test_metrics_follow_their_definitions(prepared):
    model_dir, tokens_zarr = prepared(num_hidden_layers=2)
    spec, tokens = spec_of(model_dir), split_tokens(tokens_zarr, 4)
    _, _, acts = dense_pass(model_dir, tokens)
    model = adapter.load_model(model_dir, dtype=torch.float32)
    scores = {m: adapruner.metric_scores(model, spec, tokens, m) for m in ("wanda_sp", "flap", "magnitude")}
    for l, a in enumerate(acts):
        o, down = a["layer"].self_attn.o_proj.weight.double(), a["layer"].mlp.down_proj.weight.double()
        per_head = lambda v: v.reshape(spec.num_heads, -1).sum(1)  # noqa: E731
        expected = {
            "wanda_sp": (per_head(o.abs().sum(0) * a["z"].norm(dim=0)), down.abs().sum(0) * a["u"].norm(dim=0)),
            "flap": (per_head((a["z"].var(0) * (o**2).sum(0)) ** 2), a["u"].var(0) * (down**2).sum(0)),
            "magnitude": (per_head(o.norm(dim=0)), down.norm(dim=0)),
        }
        for metric, (heads, chans) in expected.items():
            torch.testing.assert_close(scores[metric][l][0], heads, rtol=1e-5, atol=1e-9)
            torch.testing.assert_close(scores[metric][l][1], chans, rtol=1e-5, atol=1e-9)


def test_the_best_evaluated_point_is_kept(prepared, tmp_path):
    model_dir, tokens_zarr = prepared(num_hidden_layers=3)
    genome_json = adapruner.run(
        model_dir,
        tokens_zarr,
        tmp_path / "ada",
        target_sparsity=0.4,
        subsets=2,
        sequences=2,
        trials=5,
        eval_sequences=2,
    )
    info = json.loads(Path(genome_json).read_text())["baseline"]
    losses = {(e["subset"], e["metric"]): e["loss"] for e in info["evaluated"]}
    assert 1 <= len(losses) <= 5 and all(m in adapruner.METRICS for _, m in losses)
    assert losses[(info["subset"], info["metric"])] == min(losses.values()) == info["loss"]
    evaluation = split_tokens(tokens_zarr, 2, split="fitness")
    assert pruned_loss(model_dir, genome_json, evaluation) == pytest.approx(info["loss"], rel=1e-4)
