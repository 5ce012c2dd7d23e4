"""NIRVANA: the saliency is |w · ∂f/∂w| of the output functional (checked by autograd through the
Hugging Face model), attention and MLP are pruned in the γ ratio with one threshold each across
layers, and the kept calibration set is the one whose pruned model has the lowest KL to the dense."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers.baseline_factory import chosen_levels, rebuild, spec_of, split_tokens
from tyr.methods.baselines import nirvana
from tyr.model import adapter, sparsity

pytestmark = pytest.mark.usefixtures("single_thread")


def independent_saliency(model_dir, tokens, spec):
    """Per layer: Σ|w g| per KV group (q rows of its query heads, k/v rows, o columns) and per channel."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model(input_ids=tokens).logits.max(dim=1).values.mean().backward()
    d, g = spec.head_dim, spec.group_size

    def s(lin):
        return (lin.weight.detach().double() * lin.weight.grad.double()).abs()

    out = []
    for layer in model.model.layers:
        at, mlp = layer.self_attn, layer.mlp
        groups = []
        for j in range(spec.num_kv_heads):
            q_rows, kv_rows = slice(j * g * d, (j + 1) * g * d), slice(j * d, (j + 1) * d)
            groups.append(
                (
                    s(at.q_proj)[q_rows].sum()
                    + s(at.k_proj)[kv_rows].sum()
                    + s(at.v_proj)[kv_rows].sum()
                    + s(at.o_proj)[:, q_rows].sum()
                ).item()
            )
        out.append((groups, (s(mlp.gate_proj).sum(1) + s(mlp.up_proj).sum(1) + s(mlp.down_proj).sum(0)).tolist()))
    return out


def test_saliency_matches_autograd_of_the_output_functional(prepared):
    model_dir, tokens_zarr = prepared(num_hidden_layers=2)
    spec, tokens = spec_of(model_dir), split_tokens(tokens_zarr, 5)
    expected = independent_saliency(model_dir, tokens, spec)
    model = adapter.load_model(model_dir, dtype=torch.float32)
    nirvana.output_gradients(model, tokens, batch_size=2)  # uneven batches: still the mean over sequences
    for layer, (groups, chans) in zip(model.model.layers, expected):
        got = nirvana.layer_saliency(layer, spec)
        torch.testing.assert_close(got[0], torch.tensor(groups, dtype=torch.float64), rtol=1e-4, atol=1e-10)
        torch.testing.assert_close(got[1], torch.tensor(chans, dtype=torch.float64), rtol=1e-4, atol=1e-10)


def test_allocation_balances_attention_and_mlp_with_one_threshold_each(prepared):
    model_dir, _ = prepared(num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=4)
    spec = spec_of(model_dir)
    torch.manual_seed(0)
    scores = [
        (torch.rand(spec.num_kv_heads).double(), torch.rand(spec.intermediate_size[l]).double())
        for l in range(spec.num_layers)
    ]
    structure = nirvana.allocate(spec, 0.4, scores, gamma=3.0, multiple=8)
    s_attn, s_mlp = nirvana.unit_fractions(spec, 0.4, 3.0)
    assert s_attn == pytest.approx(s_mlp / 3.0)
    removed_groups = sum(spec.num_kv_heads - sparsity.kv_heads_kept(spec, h) for h in structure.heads)
    assert removed_groups == round(s_attn * spec.num_layers * spec.num_kv_heads)
    kept_g, gone_g = [], []
    for l, heads in enumerate(structure.heads):
        kv = {spec.kv_of(h) for h in heads}
        assert kv and heads == [h for h in range(spec.num_heads) if spec.kv_of(h) in kv], "whole KV groups, ≥ 1 kept"
        for j, v in enumerate(scores[l][0].tolist()):
            (kept_g if j in kv else gone_g).append((v, len(kv)))
        assert len(structure.channels[l]) % 8 == 0
    assert max(v for v, _ in gone_g) < min(v for v, n in kept_g if n > 1), (
        "one threshold (the last group of a layer stays)"
    )
    assert abs(structure.sparsity(spec) - 0.4) <= sparsity.mlp_params(spec, 8) / sparsity.backbone_prunable_params(spec)


def test_the_calibration_set_of_lowest_kl_is_kept(prepared, tmp_path):
    model_dir, tokens_zarr = prepared(num_hidden_layers=3)
    genome_json = nirvana.run(
        model_dir,
        tokens_zarr,
        tmp_path / "nv",
        target_sparsity=0.4,
        candidates=3,
        sequences=2,
        seq_len=16,
        eval_sequences=2,
    )
    info = json.loads(Path(genome_json).read_text())["baseline"]
    assert len(info["kl"]) == 3 and info["chosen"] == min(range(3), key=info["kl"].__getitem__)
    tokens = split_tokens(tokens_zarr, 2, split="fitness")
    model = adapter.load_model(model_dir, dtype=torch.float32)
    layers = rebuild(model_dir, chosen_levels(genome_json)[2])
    with torch.no_grad():
        logp = model(input_ids=tokens).logits.log_softmax(-1)
        x = model.model.embed_tokens(tokens)
        pos = model.model.position_embeddings(x)
        for layer in layers:
            x = layer(x, pos)
        logq = model.lm_head(model.model.norm(x)).log_softmax(-1)
    kl = (logp.exp() * (logp - logq)).sum(-1).mean().item()
    assert kl == pytest.approx(info["kl"][info["chosen"]], rel=1e-4)
