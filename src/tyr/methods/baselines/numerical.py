"""Numerical Pruning (Shen et al., AAAI 2025): mask scores by Newton's method, one global ranking,
least-squares compensation of the output projections.

Score (paper Sec. 3.2, Algorithm 1). For an output projection Y = X W (the paper's layout:
W [D, D'] with D input channels, i.e. the transpose of a torch weight), relax the mask of
the input channels to real values z and penalise the kept count r = (1 − ρ) D:

    L(z) = ½ Σ_i ‖X W_{:,i} − X (z ∘ W_{:,i})‖² + ½ λ (⟨1, z⟩ − r)²
    g = ((W Wᵀ) ∘ (XᵀX)) (z − 1) + λ (⟨1, z⟩ − r) 1       H = (W Wᵀ) ∘ (XᵀX) + λ 1 1ᵀ
    z ← z − H⁻¹ g      (T Newton steps from z = 1)

A channel's score is its z: the lower, the less the output misses it. L is quadratic, so
the first Newton step is already the minimiser (the paper's T ≈ 50 changes nothing; the
tests check the closed form). Choices the paper leaves open, ours: XᵀX is the mean over
calibration tokens; λ = mean(diag((W Wᵀ) ∘ (XᵀX))), large enough that ⟨1, z⟩ ≈ r; H gets
1% of its mean diagonal added (as its Remark 5 does for the compensation) so dead
channels keep it invertible.

Global pruning (Sec. 3.3). A head scores the mean z of its head_dim channels (Eq. 7), an
MLP channel its own z, and one ranking runs over all layers and both module types, head
scores scaled by α = 4 D_h / 3 (a head holds 4·D_h weights per hidden unit, a channel 3).
With grouped KV heads a head holds (2 + 2/g)·D_h, and α uses that. The paper thresholds
the ranking at a count of units; we remove units in its order until the parameter budget
is met (`budget.global_structure`), so the backbone lands within one unit of the target.

Compensation (Sec. 3.4, Theorem 3). The kept columns of o_proj and down_proj are updated
so the layer output on the calibration inputs moves least, the closed form
W_K = (X_Kᵀ X_K)⁻¹ X_Kᵀ X W (`tyr.supernet.local_prune.refit`, 1% damping per Remark 5). The
paper does not say on which inputs; we walk the layers (`layerwise`) so each layer is
compensated on the outputs of the compensated layers before it, as SparseGPT does.
"""

from __future__ import annotations

import torch

from tyr.calib.stores import PRUNE
from tyr.core.device import placed
from tyr.methods.baselines.common import layerwise
from tyr.methods.baselines.common.activations import calibration_tokens, dense_model
from tyr.methods.baselines.common.budget import global_structure, on_host
from tyr.methods.baselines.common.single_level import DEVICE_KEY, load_spec, write
from tyr.supernet.local_prune import Hessian, damp, refit

METHOD = "numerical"


def numerical_score(
    weight: torch.Tensor,
    XtX: torch.Tensor,
    ratio: float,
    *,
    lam: float = 1.0,
    iterations: int = 50,
    damping: float = 0.01,
) -> torch.Tensor:
    """Algorithm 1: z minimising L(z) for a torch Linear `weight` [out, in] and input Gram XᵀX [in, in].

    `ratio` is the pruning ratio ρ; `lam` is λ as a multiple of the mean diagonal of H_l.
    """
    W = weight.double()
    H_l = (W.T @ W) * XtX.double()
    D = H_l.shape[0]
    lam = lam * torch.diagonal(H_l).mean()
    H_l = damp(H_l, damping)  # the objective gains ½ δ m ‖z − 1‖²: gradient and Hessian stay consistent
    H = H_l + lam * torch.ones(D, D, dtype=H_l.dtype)
    L = torch.linalg.cholesky(H)
    r, one, z = (1.0 - ratio) * D, torch.ones(D, dtype=H_l.dtype), torch.ones(D, dtype=H_l.dtype)
    for _ in range(iterations):
        g = H_l @ (z - one) + lam * (z.sum() - r) * one
        z = z - torch.cholesky_solve(g[:, None], L)[:, 0]
    return z


def layer_scores(layer, x, pos, spec, ratio: float, batch_size: int, **options) -> tuple:
    """(head scores, channel scores) of one layer from its calibration inputs."""
    H_heads, H_chans = Hessian(layer.self_attn.o_proj.in_features), Hessian(layer.mlp.down_proj.in_features)
    for inputs in layerwise.sublayer_inputs(layer, x, pos, batch_size):
        H_heads.add(inputs["heads"])
        H_chans.add(inputs["channels"])
    z_attn = numerical_score(layer.self_attn.o_proj.weight, H_heads.mean(), ratio, **options)
    z_mlp = numerical_score(layer.mlp.down_proj.weight, H_chans.mean(), ratio, **options)
    return z_attn.reshape(spec.num_heads, spec.head_dim).mean(1), z_mlp


def head_scale(spec) -> float:
    """α: a head's weights per hidden unit over a channel's (4 D_h / 3 without GQA)."""
    return (2 + 2 / spec.group_size) * spec.head_dim / 3


def least_squares(W: torch.Tensor, H: torch.Tensor, cols: torch.Tensor, damping: float = 0.01) -> torch.Tensor:
    """Theorem 3: the kept rows of W [in, out] that best reproduce X W from X_K, W_K = H_KK⁻¹ (H W)_K,
    as a torch weight [out, K] (H damped by 1% of its mean diagonal, Remark 5)."""
    Hd = damp(H, damping)
    return refit(Hd, Hd @ W, cols).T


def run(
    model_dir,
    tokens_zarr,
    out_dir,
    *,
    target_sparsity: float,
    lam: float = 1.0,
    iterations: int = 50,
    compensate: bool = True,
    split: str = PRUNE,
    max_seqs: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
):
    """Numerical scores on the dense model, global ranking, sequential compensation; returns the genome path."""
    spec = load_spec(model_dir)
    model = dense_model(model_dir)  # on the host: its layers go to the device one at a time
    tokens = calibration_tokens(tokens_zarr, split, max_seqs)
    alpha = head_scale(spec)
    with placed(device, key=DEVICE_KEY) as dev:
        scores = on_host(
            layer_scores(layer, x, pos, spec, target_sparsity, batch_size, lam=lam, iterations=iterations)
            for _, layer, x, pos in layerwise.layers(model, tokens, batch_size, dev)
        )
        structure = global_structure(spec, target_sparsity, [alpha * s[0] for s in scores], [s[1] for s in scores])
        if compensate:
            layerwise.compensate(model, spec, tokens, structure, least_squares, batch_size, dev)
    structure.info = {"lam": lam, "iterations": iterations, "head_scale": alpha, "compensate": compensate}
    return write(model_dir, out_dir, structure, method=METHOD, target_sparsity=target_sparsity)
