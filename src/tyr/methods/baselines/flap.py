"""FLAP (An et al., AAAI 2024): fluctuation-based adaptive structured pruning, retraining-free.

1. Fluctuation metric. Input channel j of an output projection (o_proj, down_proj) is
   scored by how much its activation varies over the calibration tokens, weighted by the
   energy of the weights it feeds:

       S_j = Var_n[X_{n,j}] · ‖W_{:,j}‖²₂        S_head = Σ_{j ∈ head} S_j

   A channel that is nearly constant carries no information: its contribution is
   replaced by a constant (step 3) at little loss, whatever its magnitude. The
   reference code squares the attention channels' score before standardising
   (`prune_flap`: `W_metric = metrics[...](...) ** 2` for o_proj only); so do we
   (`square_attention`, default on). Squaring stretches the heavy upper tail, so after
   standardisation a few heads score far above the rest.
2. Adaptive structure. Scores are standardised, Ŝ = (S − mean) / std, so that the
   magnitudes of different modules become comparable; units are then removed globally,
   lowest Ŝ first, across layers and module types until the parameter budget is met
   (`budget.global_structure`). Layers and modules thus get different widths,
   down to none. Over what the mean and std are taken (`standardise`):
     "layer" (default; as in the authors' released code, to our reading): the channel
             scores of each module of each layer on their own; a head scores the mean
             of its channels' Ŝ. Only the shape of each layer's distribution matters.
     "model": all heads of all layers (a head scoring Σ_{j ∈ head} S_j), and all MLP
             channels of all layers; layers with small fluctuation lose more. On
             SmolLM2-135M this strips the early layers' attention and collapses the
             model (perplexity ×470 at 20% sparsity), so it is offered as an ablation.
3. Bias compensation. The removed channels' mean contribution is folded into the
   output bias, so the sublayer's output keeps its expectation on the calibration set:

       b' = b + W_{:,removed} · E_n[X_{n,removed}]

   When a sublayer loses every unit it has no bias left to hold its constant; the
   residual stream only adds constants between two kept sublayers, so the constant is
   added to the bias of the closest kept sublayer before it (exact for the mean; dropped
   only when no sublayer precedes it). This extends the paper, whose modules never vanish.

With compensation, every kept o_proj / down_proj carries a bias, including in models
whose dense projections have none: the exported config must set `o_bias` / `down_bias`.
"""

from __future__ import annotations

import logging

import torch

from tyr.calib.stores import PRUNE
from tyr.core.device import placed
from tyr.methods.baselines.common.activations import calibration_tokens, dense_model, head_sums, projection_inputs
from tyr.methods.baselines.common.budget import global_structure
from tyr.methods.baselines.common.single_level import DEVICE_KEY, load_spec, write

METHOD = "flap"
log = logging.getLogger("tyr.methods.baselines")


def fluctuation(weight: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Var[X_j] · ‖W_{:,j}‖² for every input channel j of a projection W [out, in]."""
    return variance * weight.double().pow(2).sum(0)


def standardised(scores: list[torch.Tensor]) -> list[torch.Tensor]:
    """(S − mean) / std, the mean and std taken over all the given score vectors together."""
    flat = torch.cat([s.reshape(-1) for s in scores])
    mean, std = flat.mean(), flat.std()
    std = std if std > 0 else torch.ones_like(std)
    return [(s - mean) / std for s in scores]


def unit_scores(model, stats, head_dim: int, over: str = "layer", square_attention: bool = True) -> tuple[list, list]:
    """Standardised fluctuation scores of every query head and MLP channel, per layer."""
    layers = model.model.layers
    attn = [
        fluctuation(layer.self_attn.o_proj.weight, s["attn"].variance) ** (2 if square_attention else 1)
        for layer, s in zip(layers, stats)
    ]
    mlp = [fluctuation(layer.mlp.down_proj.weight, s["mlp"].variance) for layer, s in zip(layers, stats)]
    if over == "layer":
        heads = [standardised([a])[0].reshape(-1, head_dim).mean(1) for a in attn]
        return heads, [standardised([m])[0] for m in mlp]
    if over == "model":
        return standardised([head_sums(a, head_dim) for a in attn]), standardised(mlp)
    raise ValueError(f"standardise must be 'layer' or 'model', not {over!r}")


def compensated_biases(model, stats, structure, spec):
    """Per layer, the o_proj and down_proj biases that restore each sublayer's output mean.

    Returns (o_bias, down_bias, dropped): lists over layers (None where the sublayer is
    gone) and the number of vanished sublayers whose constant had no kept sublayer before it.
    """
    d = spec.head_dim
    sublayers = []  # residual-stream order: (kind, layer, kept channel idx, projection, stats)
    for l, layer in enumerate(model.model.layers):
        heads = structure.heads[l]
        sublayers.append(
            ("attn", l, [h * d + i for h in heads for i in range(d)], layer.self_attn.o_proj, stats[l]["attn"])
        )
        sublayers.append(("mlp", l, list(structure.channels[l]), layer.mlp.down_proj, stats[l]["mlp"]))
    biases = {}
    last_kept, dropped = None, 0
    for kind, l, kept, proj, st in sublayers:
        removed = torch.ones(proj.in_features, dtype=torch.bool)
        removed[kept] = False
        constant = proj.weight.double()[:, removed] @ st.mean[removed]
        dense_bias = proj.bias.double() if proj.bias is not None else torch.zeros_like(constant)
        if kept:
            biases[(kind, l)] = dense_bias + constant
            last_kept = (kind, l)
        elif last_kept is not None:  # a vanished sublayer: its whole mean output moves to the last kept one
            biases[last_kept] += dense_bias + constant
        else:
            dropped += 1
    o_bias = [biases.get(("attn", l)) for l in range(spec.num_layers)]
    down_bias = [biases.get(("mlp", l)) for l in range(spec.num_layers)]
    return o_bias, down_bias, dropped


def run(
    model_dir,
    tokens_zarr,
    out_dir,
    *,
    target_sparsity: float,
    compensate: bool = True,
    standardise: str = "layer",
    square_attention: bool = True,
    split: str = PRUNE,
    max_seqs: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
):
    """Fluctuation scores, global adaptive structure, bias compensation; returns the genome path."""
    spec = load_spec(model_dir)
    with placed(device, key=DEVICE_KEY) as dev:
        model = dense_model(model_dir, dev)
        stats = projection_inputs(model, calibration_tokens(tokens_zarr, split, max_seqs).to(dev), batch_size)
        head_scores, channel_scores = unit_scores(model, stats, spec.head_dim, standardise, square_attention)
        head_scores, channel_scores = [s.cpu() for s in head_scores], [s.cpu() for s in channel_scores]
        structure = global_structure(spec, target_sparsity, head_scores, channel_scores)
        if compensate:  # the biases stay on the device until written
            structure.o_bias, structure.down_bias, dropped = compensated_biases(model, stats, structure, spec)
    structure.info = {"compensate": compensate, "standardise": standardise, "square_attention": square_attention}
    if compensate:
        structure.info["uncompensated_sublayers"] = dropped
        # Biases the dense model lacks are stored beyond tyr.model.sparsity's accounting (hidden each).
        extra = sum(b is not None for b in structure.o_bias) * (not spec.o_bias) + sum(
            b is not None for b in structure.down_bias
        ) * (not spec.mlp_bias)
        structure.info["compensation_bias_params"] = extra * spec.hidden_size
        if dropped:
            log.warning(
                "flap: %d leading sublayer(s) removed entirely; their mean output cannot be compensated", dropped
            )
    return write(model_dir, out_dir, structure, method=METHOD, target_sparsity=target_sparsity)
