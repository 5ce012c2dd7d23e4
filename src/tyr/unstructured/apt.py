"""APT (Zhao et al., EMNLP Findings 2024): remove several weights of a row at once, optimally.

For one row w with the free columns F and G = (H_FF)⁻¹, removing the set P jointly is solved
exactly by the multi-weight OBS update

    δw = −w_P (G_PP)⁻¹ G_P,:          loss increase  w_P (G_PP)⁻¹ w_Pᵀ

(tyr.unstructured.hessian gives the scaling). SparseGPT applies the single-weight version
column by column and fixes every column it passes, so a weight it removes cannot move the kept
weights of the same block before it; APT removes the block's set together and every free
weight, in the block or after it, takes part in the compensation:

    for each block B of `blocksize` columns, left to right:
        G_BB = U_BBᵀ U_BB                         (U: Cholesky factor of H⁻¹; G_B,F = U_BBᵀ U_B,F)
        P, W_B' = per row, the set chosen by the joint saliency, removed jointly   (greedy_removal)
                  i.e. W_B' = W_B − X G_BB with x_P = (G_PP)⁻¹ w_P, 0 elsewhere
        E    = X U_BBᵀ = (W_B − W_B') U_BB⁻¹
        W_>B -= E U_B,>B  (= X G_B,>B: the lazy batched update of later blocks)

The joint saliency is minimised greedily: every step removes, in every row, the `step` weights
of lowest w'_q² / G'_qq, with w' and G' the row and the inverse Hessian conditioned on the
removals chosen so far (OBS after them), so the set's loss w_P (G_PP)⁻¹ w_Pᵀ is built up
jointly. Removals per row and block: N:M, M−N in every group of M inputs; unstructured, as
SparseGPT does, one threshold of the saliency w²/G_qq over the whole block (all rows) sets each
row's count, the block's total being its exact share of the matrix's removals.
"""

from __future__ import annotations

import torch

from tyr.unstructured.hessian import Pruned, dead_columns, inverse_cholesky, work_dtype
from tyr.unstructured.patterns import lowest, quota

# Removals per greedy step. One is the exact greedy; a step of 8 runs 8x fewer (small, overhead-
# bound) iterations for +1% layer-wise error on SmolLM2's calibration Hessians (bench/unstructured.py).
STEP = 8


def prune(W, H, pattern, *, blocksize=128, damp=0.01, step=STEP, **_):
    """APT on W [d_out, d_in] with the calibration Hessian H [d_in, d_in]."""
    dtype = work_dtype(W)
    W = W.to(dtype).clone()
    W[:, dead_columns(H)] = 0
    U = inverse_cholesky(H, damp, dtype)
    d_out, d_in = W.shape
    mask = torch.zeros(d_out, d_in, dtype=torch.bool)
    loss = torch.zeros(d_out, dtype=dtype)
    for i1 in range(0, d_in, blocksize):
        i2 = min(i1 + blocksize, d_in)
        Ub, Wb = U[i1:i2, i1:i2], W[:, i1:i2]
        quota = row_quota(Wb, Ub.T @ Ub, pattern, i1, i2)
        P, updated, block_loss = greedy_removal(Wb, Ub.T @ Ub, pattern, quota, step)
        E = torch.linalg.solve_triangular(Ub, Wb - updated, upper=True, left=False)  # X U_BBᵀ
        W[:, i1:i2] = updated.masked_fill(P, 0)  # zero up to rounding after the updates; make it exact
        W[:, i2:] -= E @ U[i1:i2, i2:]
        mask[:, i1:i2] = P
        loss += block_loss
    return Pruned(W, mask, loss)


def row_quota(Wb, G, pattern, i1, i2):
    """Removals of every row in the block: M−N per group (N:M), else the rows' shares of the
    block's lowest single-weight saliencies w²/G_qq (one threshold over all rows)."""
    rows = Wb.shape[0]
    if pattern.m:
        return torch.full((rows,), quota(pattern, i1, i2))
    saliency = Wb ** 2 / torch.diagonal(G)[None, :]
    return lowest(saliency.reshape(1, -1), quota(pattern, i1, i2, rows)).reshape(Wb.shape).sum(1)


def greedy_removal(Wb, G, pattern, quota, step=STEP):
    """Remove `quota[r]` weights of every row r of the block, `step` at a time, each set the
    lowest conditioned saliencies, with the joint OBS update. Returns (P, the updated block,
    the per-row loss Σ_steps w_Q (G'_QQ)⁻¹ w_Qᵀ = w_P (G_PP)⁻¹ w_Pᵀ).

    Every row runs in lockstep: with the rank-`step` factors F of each step's removals stacked
    in C, the conditioned inverse of row r is G − C_rᵀ C_r, so no per-row B×B matrix is kept.
    """
    rows, B = Wb.shape
    step = min(step, B // pattern.m if pattern.m else B)  # N:M: one removal per group and step
    # N:M needs at most M−N steps more than ⌈quota/step⌉ (the last groups lose one weight per step).
    slots = step * (-(-int(quota.max()) // step) + (pattern.m - pattern.n if pattern.m else 0)) if rows else 0
    w = Wb.clone()                                  # the rows after the removals so far
    d = torch.diagonal(G).expand(rows, B).clone()   # diagonal of the conditioned inverse
    C = Wb.new_zeros(rows, slots, B)
    P = torch.zeros(rows, B, dtype=torch.bool)
    loss = Wb.new_zeros(rows)
    k = 0
    while bool((P.sum(1) < quota).any()):
        t = step
        Q, active = pick(w.square() / d.clamp_min(torch.finfo(d.dtype).tiny), P, pattern, quota - P.sum(1), t)
        # Rows Q of the conditioned inverse (inactive slots: identity), factored: G'_QQ = L Lᵀ.
        Gq = G[Q] - torch.bmm(C[:, :k].gather(2, Q[:, None, :].expand(rows, k, t)).transpose(1, 2), C[:, :k])
        Gq = torch.where(active[..., None], Gq, 0)
        pair = active[:, :, None] & active[:, None, :]
        L = torch.linalg.cholesky(torch.where(pair, Gq.gather(2, Q[:, None, :].expand(rows, t, t)), 0)
                                  + torch.diag_embed((~active).to(w.dtype)))
        wq = torch.where(active, w.gather(1, Q), 0)
        Fy = torch.linalg.solve_triangular(L, torch.cat([Gq, wq[..., None]], 2), upper=False)
        F, y = Fy[..., :B], Fy[..., B]             # G' − FᵀF is conditioned on Q as well
        w -= torch.bmm(y[:, None, :], F).squeeze(1)  # w −= w_Q (G'_QQ)⁻¹ G'_Q,:
        d -= F.square().sum(1)
        loss += y.square().sum(1)
        C[:, k:k + t] = F
        k += t
        P.scatter_(1, Q, active | P.gather(1, Q))
    return P, w, loss


def pick(score, P, pattern, remaining, t):
    """The next `t` removals of every row: the lowest scores not yet chosen; N:M, at most one per
    group and step, from groups that have not lost their M−N weights yet. Returns indices
    [rows, t] and which of them are used."""
    score = score.masked_fill(P, torch.inf)
    if pattern.m:
        rows, B = score.shape
        groups = score.reshape(rows, B // pattern.m, pattern.m)
        full = P.reshape(groups.shape).sum(-1) >= pattern.m - pattern.n
        best, at = groups.min(-1)
        values, g = torch.topk(best.masked_fill(full, torch.inf), t, dim=1, largest=False)
        Q = g * pattern.m + at.gather(1, g)
    else:
        values, Q = torch.topk(score, t, dim=1, largest=False)
    return Q, torch.isfinite(values) & (torch.arange(t) < remaining[:, None])
