"""LLM-BIP (Wu et al., 2024): a unit's importance is its influence on its transformer block's output,
bounded through Lipschitz continuity and measured in one forward pass.

A decoder block is y = h + F(h), h = x + A(x), with A the attention and F the MLP (each
with its RMSNorm). Removing a unit changes y by:

  MLP channel c        Δy_t = W_down[:, c] · a_{t,c}          (a: the down_proj input)
                       ‖Δy_t‖ = |a_{t,c}| · ‖W_down[:, c]‖₂     exactly: the channel feeds y linearly
  attention head h     Δh_t = W_o[:, h] z_{t,h}                (z_{t,h}: the head's output)
                       ‖Δy_t‖ ≤ (1 + L_F) ‖Δh_t‖                the MLP after it is L_F-Lipschitz

so the block-wise importance of a unit is the calibration mean of that bound,

  I(c) = E_t |a_{t,c}| ‖W_down[:, c]‖₂          I(h) = (1 + L_F) · E_t ‖W_o[:, h] z_{t,h}‖₂,

one dense forward pass, no gradients (the paper's point against Taylor scores: near-zero
gradients of a trained model) and no layer-wise reconstruction (its point against
sequential pruners: accumulated error). The bound is forward only: no Lipschitz constant
of the attention is needed.

What the abstract does not pin down, our choices: units are query heads and MLP channels
(the project's units); the structure is LLM-Pruner's, whose models and evaluation the
paper reuses: every layer of LLM-Pruner's range (scaled to depth, `budget.layer_range`)
pruned at one ratio, the rest dense. Within a layer L_F is a common factor, so it does
not change which heads go and is not estimated.
"""

from __future__ import annotations

import torch

from tyr.calib.stores import PRUNE
from tyr.core.device import placed
from tyr.methods.baselines.common import layerwise
from tyr.methods.baselines.common.activations import calibration_tokens, dense_model
from tyr.methods.baselines.common.budget import layer_range, on_host, range_note, uniform_structure
from tyr.methods.baselines.common.single_level import DEVICE_KEY, load_spec, write

METHOD = "llm_bip"


def block_influence(layer, x, pos, head_dim: int, batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(E_t ‖W_o[:, h] z_{t,h}‖ per head, E_t |a_{t,c}| ‖W_down[:, c]‖ per channel) of one layer."""
    W_o = layer.self_attn.o_proj.weight.double()
    n_heads = W_o.shape[1] // head_dim
    blocks = W_o.reshape(W_o.shape[0], n_heads, head_dim).permute(1, 0, 2)  # [head, hidden, head_dim]
    gram = (
        blocks.transpose(1, 2) @ blocks
    )  # W_hᵀ W_h: ‖W_h z‖² = zᵀ W_hᵀ W_h z, head_dim² per token, not head_dim·hidden
    down_norm = layer.mlp.down_proj.weight.double().norm(dim=0)
    heads = torch.zeros(n_heads, dtype=torch.float64)
    chans = torch.zeros_like(down_norm)
    count = 0
    for inputs in layerwise.sublayer_inputs(layer, x, pos, batch_size):
        z = inputs["heads"].double().reshape(-1, n_heads, head_dim)
        squared = (torch.einsum("thd,hde->the", z, gram) * z).sum(-1)  # ‖W_o[:, h] z_{t,h}‖² per token and head
        heads += squared.clamp_min(0).sqrt().sum(0)
        chans += inputs["channels"].double().abs().sum(0) * down_norm
        count += z.shape[0]
    return heads / count, chans / count


def run(
    model_dir,
    tokens_zarr,
    out_dir,
    *,
    target_sparsity: float,
    layers="scaled",
    split: str = PRUNE,
    max_seqs: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
):
    """Block-output influence of every head and channel, uniform pruning in a layer range; returns the genome path."""
    spec = load_spec(model_dir)
    tokens = calibration_tokens(tokens_zarr, split, max_seqs)
    with placed(device, key=DEVICE_KEY) as dev:  # the model stays on the host; its layers go to `dev` one at a time
        scores = on_host(
            block_influence(layer, x, pos, spec.head_dim, batch_size)
            for _, layer, x, pos in layerwise.layers(dense_model(model_dir), tokens, batch_size, dev)
        )
    pruned = layer_range(spec.num_layers, layers)
    structure = uniform_structure(spec, target_sparsity, [s[0] for s in scores], [s[1] for s in scores], pruned)
    structure.info = {
        "layers": [pruned[0], pruned[-1] + 1],
        "sequences": len(tokens),
        **range_note(spec, target_sparsity, pruned),
    }
    return write(model_dir, out_dir, structure, method=METHOD, target_sparsity=target_sparsity)
