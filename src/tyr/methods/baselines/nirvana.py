"""NIRVANA (Ai et al., 2025): NTK-guided saliency, attention/MLP-balanced adaptive allocation,
KL-selected calibration data.

Saliency. Under the Neural Tangent Kernel view, what pruning must preserve is the network
*function* (and with it the training dynamics), not the loss on a few tokens: a unit's
saliency is the first-order change of the model output when its weights go,

    S(unit) = Σ_{w ∈ unit} |w · ∂f/∂w|,       f = mean_{b,v} max_t logits[b, t, v],

the output functional and the L1 aggregation of the reference code (`main.py`: the max of
the logits over positions, averaged; `(p.grad * p.data).abs()` summed per row/column).
The L1 sum is the paper's "Adam-style normalisation": under Adam's sign-like updates the
NTK of a unit scales with Σ|w·g| rather than with (Σ w·g)². Units as in the reference:
an attention unit is a KV group (the KV head, its g query heads' q rows and o columns,
and its k/v rows); an MLP unit is a channel (gate and up rows, down column).

Adaptive allocation. The MLP tolerates more pruning: the fraction of attention units
removed is the MLP's divided by γ (reference `--gamma`: 3.36 for Llama-3.1-8B, 3.0 for
Llama-3.2-3B; we take 3.0), the two fractions together meeting the parameter target.
Within each module type one threshold runs across all layers, so layers get different
widths; a layer keeps at least one KV group, and its MLP width is rounded up to a
multiple of 8 (the reference's hardware-friendly widths). The MLP threshold is chosen so
that, after rounding, the backbone is the closest to the target (the reference counts
units, not parameters).

Calibration selection. The result depends on which calibration sequences are used; the
paper prunes with several candidate sets and keeps the one whose pruned model has the
lowest KL(P_dense ‖ Q_pruned) on held-out text (reference `--get_kl`, `compute_influence_loss`).
Candidates here are random sets of `sequences` windows of `seq_len` tokens from the
calibration split; the KL is measured on the first `eval_sequences` sequences of the
fitness split.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from tyr.calib.stores import FITNESS, PRUNE
from tyr.core.device import placed
from tyr.methods.baselines.common import candidate
from tyr.methods.baselines.common.activations import batches, calibration_tokens, dense_model
from tyr.methods.baselines.common.budget import on_host, top_k
from tyr.methods.baselines.common.single_level import DEVICE_KEY, Structure, load_spec, resolve_setting, write
from tyr.methods.baselines.llm_pruner import PROJECTIONS
from tyr.model import sparsity

METHOD = "nirvana"
SETTINGS = {  # sequences × seq_len per candidate; the paper's: 32 × 128 (run.sh), 128 × 64 for the KL
    "cpu": {"candidates": 4, "sequences": 8, "seq_len": 128, "eval_sequences": 4},
    "paper": {"candidates": 16, "sequences": 32, "seq_len": 128, "eval_sequences": 32},
}


def output_gradients(model, tokens: torch.Tensor, batch_size: int = 4) -> None:
    """Leave ∂f/∂w in `.grad` of every projection weight, f = mean over sequences and vocabulary of
    the max over positions of the logits."""
    model.zero_grad(set_to_none=True)
    for layer in model.model.layers:
        for name in PROJECTIONS:
            layer.get_submodule(name).requires_grad_(True)
    for batch in batches(tokens, batch_size):
        f = model(input_ids=batch).logits.max(dim=1).values.mean()
        (f * (len(batch) / len(tokens))).backward()
    model.requires_grad_(False)


def saliency(linear, dim: int) -> torch.Tensor:
    """Σ |w · ∂f/∂w| along `dim` of a weight [out, in] (dim=1: per row, dim=0: per column)."""
    return (linear.weight.detach().double() * linear.weight.grad.double()).abs().sum(dim)


def layer_saliency(layer, spec) -> tuple[torch.Tensor, torch.Tensor]:
    """(saliency of each KV group, saliency of each MLP channel) of one layer."""
    at, mlp, kv = layer.self_attn, layer.mlp, spec.num_kv_heads
    groups = (
        saliency(at.q_proj, 1).reshape(kv, -1).sum(1)
        + saliency(at.o_proj, 0).reshape(kv, -1).sum(1)
        + saliency(at.k_proj, 1).reshape(kv, -1).sum(1)
        + saliency(at.v_proj, 1).reshape(kv, -1).sum(1)
    )
    return groups, saliency(mlp.gate_proj, 1) + saliency(mlp.up_proj, 1) + saliency(mlp.down_proj, 0)


def unit_fractions(spec, target_sparsity: float, gamma: float) -> tuple[float, float]:
    """(attention, MLP) unit fractions to remove: attention = MLP / γ, meeting the parameter target."""
    attn = sum(sparsity.dense_sublayer_params(spec, "attn", l) for l in range(spec.num_layers))
    mlp = sum(sparsity.dense_sublayer_params(spec, "mlp", l) for l in range(spec.num_layers))
    s_mlp = min(target_sparsity * (attn + mlp) / (attn / gamma + mlp), 1.0)
    return s_mlp / gamma, s_mlp


def attention_groups(spec, scores, n_remove: int) -> list[list[int]]:
    """Kept query heads per layer after removing the `n_remove` lowest KV groups (at least one stays per layer)."""
    kept = [set(range(spec.num_kv_heads)) for _ in range(spec.num_layers)]
    order = sorted((float(s), l, j) for l, layer in enumerate(scores) for j, s in enumerate(layer))
    for _, l, j in order:
        if n_remove <= 0:
            break
        if len(kept[l]) > 1:
            kept[l].discard(j)
            n_remove -= 1
    return [[h for h in range(spec.num_heads) if spec.kv_of(h) in kept[l]] for l in range(spec.num_layers)]


def mlp_widths(spec, scores, budget: float, multiple: int) -> list[int]:
    """Per-layer MLP widths: one global threshold, widths rounded up to `multiple`, closest to `budget` params."""
    flat = np.sort(np.concatenate([s.numpy() for s in scores]))

    def widths(k):  # remove the k lowest channels model-wide, then round each layer's width up
        cut = flat[k - 1] if k > 0 else -np.inf
        out = []
        for l, s in enumerate(scores):
            size = spec.intermediate_size[l]
            m = size - int((s.numpy() <= cut).sum())
            out.append(min(size, max(multiple, math.ceil(m / multiple) * multiple)))
        return out

    def kept(k):
        return sum(sparsity.mlp_params(spec, m) for m in widths(k))

    lo, hi = 0, len(flat)  # kept(k) is non-increasing in k: bisect for the first k at or under the budget
    while lo < hi:
        mid = (lo + hi) // 2
        if kept(mid) > budget:
            lo = mid + 1
        else:
            hi = mid
    k = min((c for c in (lo - 1, lo) if 0 <= c <= len(flat)), key=lambda c: abs(kept(c) - budget))
    return widths(k)


def allocate(spec, target_sparsity: float, scores, gamma: float, multiple: int = 8) -> Structure:
    """The kept heads and channels of every layer from the unit saliencies."""
    s_attn, _ = unit_fractions(spec, target_sparsity, gamma)
    heads = attention_groups(spec, [s[0] for s in scores], round(s_attn * spec.num_layers * spec.num_kv_heads))
    attn = sum(sparsity.attention_params(spec, len(h), sparsity.kv_heads_kept(spec, h)) for h in heads)
    budget = (1.0 - target_sparsity) * sparsity.backbone_prunable_params(spec) - attn
    widths = mlp_widths(spec, [s[1] for s in scores], budget, multiple)
    return Structure(heads, [top_k(s[1], m) for s, m in zip(scores, widths)])


def candidate_sets(tokens: torch.Tensor, n: int, sequences: int, seq_len: int, seed: int = 0) -> list[torch.Tensor]:
    """`n` random sets of `sequences` windows of `seq_len` tokens (at most a whole sequence) from the
    calibration split."""
    seq_len = min(seq_len, tokens.shape[1])
    windows = tokens[:, : tokens.shape[1] // seq_len * seq_len].reshape(-1, seq_len)
    rng = np.random.default_rng(seed)  # numpy's: the same seed draws the same windows on every device
    picks = (rng.choice(len(windows), min(sequences, len(windows)), replace=False) for _ in range(n))
    return [windows[torch.as_tensor(p, device=windows.device)] for p in picks]


def run(
    model_dir,
    tokens_zarr,
    out_dir,
    *,
    target_sparsity: float,
    setting: str = "cpu",
    gamma: float = 3.0,
    multiple: int = 8,
    seed: int = 0,
    split: str = PRUNE,
    batch_size: int = 4,
    device: str = "cpu",
    **overrides,
):
    """Prune with each candidate calibration set, keep the structure of lowest KL; returns the genome path."""
    opt = resolve_setting(METHOD, SETTINGS, setting, overrides)
    spec = load_spec(model_dir)
    pool = calibration_tokens(tokens_zarr, split)
    with placed(device, key=DEVICE_KEY) as dev:
        model = dense_model(model_dir, dev)
        evaluation = calibration_tokens(tokens_zarr, FITNESS, opt["eval_sequences"]).to(dev)
        dense_logp = candidate.dense_log_probs(model, evaluation, batch_size)
        states = candidate.dense_layer_states(model)
        best, kls = None, []
        for calib in candidate_sets(pool, opt["candidates"], opt["sequences"], opt["seq_len"], seed):
            output_gradients(model, calib.to(dev), batch_size)
            scores = on_host([layer_saliency(layer, spec) for layer in model.model.layers])
            structure = allocate(spec, target_sparsity, scores, gamma, multiple)
            layers = candidate.pruned_layers(model, spec, states, structure)
            kls.append(candidate.kl_to_dense(model, layers, evaluation, dense_logp, batch_size))
            if kls[-1] == min(kls):
                best = structure
    best.info = {"gamma": gamma, "multiple": multiple, "kl": kls, "chosen": int(np.argmin(kls)), **opt}
    return write(model_dir, out_dir, best, method=METHOD, target_sparsity=target_sparsity)
