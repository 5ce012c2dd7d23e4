"""Wanda-sp: Wanda (Sun et al., 2024) made structured, as the FLAP paper's baseline (An et al., 2024).

Wanda scores a weight by |W_ij| · ‖X_j‖₂, X_j being input channel j of its layer over
the calibration tokens. Structured, a unit is a block of input channels of the output
projection (one MLP channel of down_proj; head_dim channels of o_proj for a query head),
scored by the sum of that block's Wanda scores:

    S_j = Σ_i |W_ij| · ‖X_j‖₂          S_head = Σ_{j ∈ head} S_j

Every layer is pruned at the same ratio (see `single_level.uniform_structure`) and the
kept weights are left as they are: no compensation.
"""

from __future__ import annotations

import torch

from tyr.baselines.activations import SPLIT, calibration_tokens, dense_model, head_sums, projection_inputs
from tyr.baselines.single_level import load_spec, uniform_structure, write

METHOD = "wanda_sp"


def channel_scores(weight: torch.Tensor, x_norm: torch.Tensor) -> torch.Tensor:
    """Σ_i |W_ij| · ‖X_j‖₂ for every input channel j of a projection W [out, in]."""
    return weight.double().abs().sum(0) * x_norm


def scores(model, stats, head_dim: int) -> tuple[list, list]:
    """Per layer: head scores (o_proj) and channel scores (down_proj)."""
    heads, chans = [], []
    for layer, s in zip(model.model.layers, stats):
        heads.append(head_sums(channel_scores(layer.self_attn.o_proj.weight, s["attn"].norm), head_dim))
        chans.append(channel_scores(layer.mlp.down_proj.weight, s["mlp"].norm))
    return heads, chans


def run(model_dir, tokens_zarr, out_dir, *, target_sparsity: float, split: str = SPLIT,
        max_seqs: int | None = None, batch_size: int = 8):
    """Score heads and channels by structured Wanda, prune uniformly; returns the genome path."""
    spec = load_spec(model_dir)
    model = dense_model(model_dir)
    stats = projection_inputs(model, calibration_tokens(tokens_zarr, split, max_seqs), batch_size)
    head_scores, channel_scores_ = scores(model, stats, spec.head_dim)
    structure = uniform_structure(spec, target_sparsity, head_scores, channel_scores_)
    return write(model_dir, out_dir, structure, method=METHOD, target_sparsity=target_sparsity)
