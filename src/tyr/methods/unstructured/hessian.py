"""What the Hessian-based methods share: the damped Hessian, its inverse's Cholesky factor, the result.

H = XᵀX/N (tyr.supernet.local_prune.Hessian) of a layer's calibration inputs. With this scaling the
layer-wise error of a change ΔW of one row is ‖XΔwᵀ‖²/N = Δw H Δwᵀ, and removing a set P of
the row's weights with the optimal update of the others raises it by w_P ([H⁻¹]_PP)⁻¹ w_Pᵀ
(the issue's ½ w_P (...)⁻¹ w_Pᵀ is the same number for the Hessian 2XᵀX of ½‖·‖²).

Columns are fixed left to right. Once the columns before i are fixed, the inverse Hessian of
the free columns F = {i, i+1, ...} is (H_FF)⁻¹ = U_FFᵀ U_FF, U the upper Cholesky factor of H⁻¹
(H⁻¹ = UᵀU; SparseGPT's observation): one factorisation serves every block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tyr.supernet.local_prune import damp


@dataclass
class Pruned:
    weight: torch.Tensor  # [d_out, d_in], exact zeros where `mask`
    mask: torch.Tensor  # bool [d_out, d_in], True = removed
    loss: torch.Tensor | None  # per row: the predicted increase of Δw H Δwᵀ (None: not modelled)


def work_dtype(W: torch.Tensor) -> torch.dtype:
    """float64 stays float64 (tests check identities to 1e-10); everything else runs in float32,
    the precision of SparseGPT's reference implementation."""
    return torch.float64 if W.dtype == torch.float64 else torch.float32


def dead_columns(H: torch.Tensor) -> torch.Tensor:
    """Inputs that are always zero on the calibration data (their weights are free to remove)."""
    return torch.diagonal(H) == 0


def damped(H: torch.Tensor, damp_ratio: float) -> torch.Tensor:
    """H in float64 with dead inputs given a unit diagonal (as SparseGPT does), then damped."""
    H = H.double().clone()
    dead = dead_columns(H)
    H[dead, dead] = 1.0
    return damp(H, damp_ratio)


def inverse_cholesky(H: torch.Tensor, damp_ratio: float, dtype=torch.float32) -> torch.Tensor:
    """U, upper triangular, with UᵀU = (damped H)⁻¹ (computed in float64, returned in `dtype`)."""
    Hd = damped(H, damp_ratio)
    Hinv = torch.cholesky_inverse(torch.linalg.cholesky(Hd))
    return torch.linalg.cholesky(Hinv, upper=True).to(dtype)


def layer_error(W_dense: torch.Tensor, W_pruned: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """Per row: Δw H Δwᵀ, the measured layer-wise error ‖XΔwᵀ‖²/N (undamped H)."""
    D = W_dense.double() - W_pruned.double()
    return ((D @ H.double()) * D).sum(1)


def solve_on(A: torch.Tensor, B: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """Per row r of B [rows, n]: x_S = (A_SS)⁻¹ b_S with S = the True entries of S[r], 0 elsewhere.

    A [n, n] is symmetric positive definite. Rows with smaller sets are padded with unit
    diagonal entries and zero right-hand sides, so all rows solve one batch of equal size.
    """
    counts = S.sum(1)
    k = int(counts.max()) if len(S) else 0
    idx = torch.sort((~S).to(torch.int8), dim=1, stable=True).indices[:, :k]  # the S columns first
    valid = torch.arange(k) < counts[:, None]
    pair = valid[:, :, None] & valid[:, None, :]
    As = torch.where(pair, A[idx[:, :, None], idx[:, None, :]], 0) + torch.diag_embed((~valid).to(A.dtype))
    bs = torch.where(valid, B.gather(1, idx), 0)
    x = torch.cholesky_solve(bs[..., None], torch.linalg.cholesky(As)).squeeze(-1)
    return torch.zeros_like(B).scatter_(1, idx, torch.where(valid, x, 0))
