"""The exact refit of every row for a fixed mask: the bound of any mask-then-update method.

For a row w with kept inputs K (the mask's complement), the least-squares fit of the dense
row's outputs on the calibration inputs is

    ŵ_K = H_KK⁻¹ (H wᵀ)_K,   ŵ_P = 0                 (H damped, as for every other method)

No method that keeps the same mask can reach a lower layer-wise error Δw H Δwᵀ. The mask is
APT's (tyr.methods.unstructured.apt), chosen on the same inputs, so `refit` against `apt` measures what
APT's block-by-block fixing of columns costs; it is not a different mask choice.
"""

from __future__ import annotations

import torch

from tyr.methods.unstructured import apt
from tyr.methods.unstructured.hessian import Pruned, damped, layer_error, solve_on

ROWS_PER_SOLVE = 16  # 16 rows × 768² float64 Gram matrices ≈ 75 MB for SmolLM2's down_proj


def prune(W, H, pattern, *, blocksize=128, damp=0.01, **_):
    """APT's mask on W [d_out, d_in], then the exact least-squares refit of every row."""
    mask = apt.prune(W, H, pattern, blocksize=blocksize, damp=damp).mask
    Hd = damped(H, damp)
    weight = refit_rows(W, Hd, mask)
    return Pruned(
        weight.to(torch.float64 if W.dtype == torch.float64 else torch.float32), mask, layer_error(W, weight, Hd)
    )  # the damped objective that was minimised


def refit_rows(W, H, mask):
    """ŵ_K = H_KK⁻¹ (H wᵀ)_K for every row, K = ~mask of that row, in float64."""
    W = W.double()
    rhs = W @ H  # row r: (H wᵀ)ᵀ, H symmetric
    out = torch.zeros_like(W)
    for start in range(0, W.shape[0], ROWS_PER_SOLVE):
        rows = slice(start, start + ROWS_PER_SOLVE)
        out[rows] = solve_on(H, rhs[rows], ~mask[rows])
    return out
