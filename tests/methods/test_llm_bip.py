"""LLM-BIP: a unit's score is how much removing it moves its block's output (checked by removing
each unit and running the block again), and the kept units are the top scores of every layer in
the range, at one ratio."""

from __future__ import annotations

import pytest
import torch

from helpers.baseline_factory import chosen_levels, dense_pass, layer_pieces, prune_tokens, spec_of, top
from tyr.methods.baselines import llm_bip

pytestmark = pytest.mark.usefixtures("single_thread")


def removal_effects(layer, x, pos, head_dim):
    """Mean over tokens of ‖Δ(attention output)‖ per removed head and ‖Δ(block output)‖ per removed channel."""
    base = layer_pieces(layer, x, pos)
    heads, chans = [], []
    o, down = layer.self_attn.o_proj, layer.mlp.down_proj
    for h in range(o.in_features // head_dim):
        z = base["z"].clone()
        z[..., h * head_dim : (h + 1) * head_dim] = 0
        heads.append((o(z) - o(base["z"])).double().norm(dim=-1).mean().item())
    for c in range(down.in_features):
        u = base["u"].clone()
        u[..., c] = 0
        chans.append((base["h"] + down(u) - base["y"]).double().norm(dim=-1).mean().item())
    return heads, chans


def test_scores_are_the_block_output_change_of_removing_each_unit(prepared, tmp_path):
    model_dir, tokens_zarr = prepared(num_hidden_layers=4)
    spec = spec_of(model_dir)
    tokens = prune_tokens(tokens_zarr, 4)
    genome_json = llm_bip.run(model_dir, tokens_zarr, tmp_path / "bip", target_sparsity=0.3, layers=[1, 3], max_seqs=4)
    genome, _, levels = chosen_levels(genome_json)
    _, pos, acts = dense_pass(model_dir, tokens)
    ratio = {(c["attn"], c["mlp"]) for c in genome["layers"][1:3]}
    assert len(ratio) == 1, "one ratio inside the range"
    ((q, m),) = ratio
    for l, (a, (attn, mlp)) in enumerate(zip(acts, levels)):
        with torch.no_grad():
            heads, chans = removal_effects(a["layer"], a["x"], pos, spec.head_dim)
            scores = llm_bip.block_influence(a["layer"], a["x"], pos, spec.head_dim)
        torch.testing.assert_close(scores[0], torch.tensor(heads, dtype=torch.float64), rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(scores[1], torch.tensor(chans, dtype=torch.float64), rtol=1e-4, atol=1e-7)
        if 1 <= l < 3:
            assert attn["kept_heads"].tolist() == top(heads, q)
            assert mlp["kept_channels"].tolist() == top(chans, m)
        else:
            assert len(attn["kept_heads"]) == spec.num_heads and len(mlp["kept_channels"]) == spec.intermediate_size[l]
    assert genome["sparsity"] == pytest.approx(0.3, abs=2 * 3 * 64 / (4 * (64 * 16 * 12 + 3 * 64 * 96)))
