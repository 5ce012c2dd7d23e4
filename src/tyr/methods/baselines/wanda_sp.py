"""Wanda-sp: Wanda (Sun et al., 2024) made structured, as the FLAP paper's baseline (An et al., 2024).

Wanda scores a weight by |W_ij| · ‖X_j‖₂, X_j being input channel j of its layer over
the calibration tokens. Structured, a unit is a block of input channels of the output
projection (one MLP channel of down_proj; head_dim channels of o_proj for a query head),
scored by the sum of that block's Wanda scores:

    S_j = Σ_i |W_ij| · ‖X_j‖₂          S_head = Σ_{j ∈ head} S_j

Every layer is pruned at the same ratio and the kept weights are left as they are: no
compensation.

Sequential (default), as the reference (FLAP repository, `prune_wanda_sp`): the decoder
is walked layer by layer; a layer's ‖X_j‖ are taken on the outputs of the layers before
it *as pruned*, both projections' statistics in one pass, then the layer is pruned and
run to give the next layer's inputs (`layerwise`). Head counts are uniform; a layer's
MLP width is set once its heads (hence its KV heads) are known (`budget.RunningBudget`),
so widths are uniform up to one KV head's worth. `sequential=False` takes every statistic
from the dense model in one pass (the earlier behaviour, an ablation).
"""

from __future__ import annotations

import torch

from tyr.calib.stores import PRUNE
from tyr.core.device import placed
from tyr.methods.baselines.common import layerwise
from tyr.methods.baselines.common.activations import (
    ChannelStats,
    calibration_tokens,
    dense_model,
    head_sums,
    projection_inputs,
)
from tyr.methods.baselines.common.budget import RunningBudget, on_host, top_k, uniform_structure
from tyr.methods.baselines.common.single_level import DEVICE_KEY, Structure, load_spec, write

METHOD = "wanda_sp"


def channel_scores(weight: torch.Tensor, x_norm: torch.Tensor) -> torch.Tensor:
    """Σ_i |W_ij| · ‖X_j‖₂ for every input channel j of a projection W [out, in]."""
    return weight.double().abs().sum(0) * x_norm


def layer_scores(layer, stats: dict, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(head scores from o_proj, channel scores from down_proj) of one layer."""
    heads = head_sums(channel_scores(layer.self_attn.o_proj.weight, stats["attn"].norm), head_dim)
    return heads, channel_scores(layer.mlp.down_proj.weight, stats["mlp"].norm)


def sequential_structure(model, spec, tokens, target_sparsity: float, batch_size: int = 8, device=None) -> Structure:
    """Walk the layers (on `device`): statistics on the pruned model's outputs, prune, run; the kept units."""
    budget = RunningBudget(spec, target_sparsity)
    heads, channels = [], []
    for l, layer, x, pos in layerwise.layers(model, tokens, batch_size, device):
        stats = {
            "attn": ChannelStats(layer.self_attn.o_proj.in_features),
            "mlp": ChannelStats(layer.mlp.down_proj.in_features),
        }
        for inputs in layerwise.sublayer_inputs(layer, x, pos, batch_size):
            stats["attn"].add(inputs["heads"])
            stats["mlp"].add(inputs["channels"])
        head_scores, chan_scores = layer_scores(layer, stats, spec.head_dim)
        heads.append(top_k(head_scores, budget.head_count(l)))
        channels.append(top_k(chan_scores, budget.mlp_width(l, heads[-1])))
        layerwise.mask_layer(layer, spec.head_dim, heads[-1], channels[-1])
    return Structure(heads, channels)


def run(
    model_dir,
    tokens_zarr,
    out_dir,
    *,
    target_sparsity: float,
    sequential: bool = True,
    split: str = PRUNE,
    max_seqs: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
):
    """Score heads and channels by structured Wanda, prune uniformly; returns the genome path."""
    spec = load_spec(model_dir)
    tokens = calibration_tokens(tokens_zarr, split, max_seqs)
    with placed(device, key=DEVICE_KEY) as dev:
        if sequential:  # the model stays on the host, its layers go to the device one at a time
            structure = sequential_structure(dense_model(model_dir), spec, tokens, target_sparsity, batch_size, dev)
        else:
            model = dense_model(model_dir, dev)
            stats = projection_inputs(model, tokens.to(dev), batch_size)
            scores = on_host([layer_scores(layer, s, spec.head_dim) for layer, s in zip(model.model.layers, stats)])
            structure = uniform_structure(spec, target_sparsity, [s[0] for s in scores], [s[1] for s in scores])
    structure.info = {"sequential": sequential}
    return write(model_dir, out_dir, structure, method=METHOD, target_sparsity=target_sparsity)
