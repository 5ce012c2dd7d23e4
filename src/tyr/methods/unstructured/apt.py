"""APT (Zhao et al., EMNLP Findings 2024): remove several weights of a row at once, optimally.

For one row w with the free columns F and G = (H_FF)⁻¹, removing the set P jointly is solved
exactly by the multi-weight OBS update

    δw = −w_P (G_PP)⁻¹ G_P,:          loss increase  w_P (G_PP)⁻¹ w_Pᵀ

(tyr.methods.unstructured.hessian gives the scaling). SparseGPT applies the single-weight version
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

The paper's repository holds no code; this follows its formulation (the joint update of a set
removed within a block, unstructured and N:M), with the mask choice written out here.
"""

from __future__ import annotations

import torch

from tyr.methods.unstructured.hessian import Pruned, dead_columns, inverse_cholesky, work_dtype
from tyr.methods.unstructured.patterns import lowest, quota

# Removals per greedy step. One is the exact greedy; 8 runs 8x fewer (small, overhead-bound)
# iterations for +1-4% layer-wise error on SmolLM2's calibration Hessians (ablation in
# bench/results/*-unstructured.md).
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
        G = Ub.T @ Ub
        P, updated, block_loss = by_quota(Wb, G, pattern, row_quota(Wb, G, pattern, i1, i2), step)
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
    saliency = Wb**2 / torch.diagonal(G)[None, :]
    return lowest(saliency.reshape(1, -1), quota(pattern, i1, i2, rows)).reshape(Wb.shape).sum(1)


ROWS_PER_CHUNK = 128  # rows that share a greedy loop: its cost grows with their largest quota


def by_quota(Wb, G, pattern, quota, step):
    """`greedy_removal` on chunks of rows with similar quotas (rows run in lockstep, so a chunk
    costs as much as its largest quota: sorting lowers the cost of unstructured blocks ~2x)."""
    order = torch.argsort(quota, stable=True)
    P, w, loss = torch.zeros_like(Wb, dtype=torch.bool), torch.empty_like(Wb), Wb.new_zeros(Wb.shape[0])
    for rows in order.split(ROWS_PER_CHUNK):
        P[rows], w[rows], loss[rows] = greedy_removal(Wb[rows], G, pattern, quota[rows], step)
    return P, w, loss


def greedy_removal(Wb, G, pattern, quota, step=STEP):
    """Remove `quota[r]` weights of every row r of the block, `step` at a time, each time those
    of lowest conditioned saliency, with the joint OBS update. Returns (P, the updated block,
    the per-row loss Σ_steps w_Q (G'_QQ)⁻¹ w_Qᵀ, which equals w_P (G_PP)⁻¹ w_Pᵀ)."""
    rows, B = Wb.shape
    step = min(step, B // pattern.m if pattern.m else B)  # N:M: one removal per group and step
    # N:M needs at most M−N steps more than ⌈quota/step⌉ (the last groups lose one weight per step).
    steps = -(-int(quota.max()) // step) + (pattern.m - pattern.n if pattern.m else 0) if rows else 0
    state = Conditioned(Wb, G, step * steps)
    P = torch.zeros(rows, B, dtype=torch.bool)
    loss = Wb.new_zeros(rows)
    while bool((P.sum(1) < quota).any()):
        Q, active = pick(state.saliency(), P, pattern, quota - P.sum(1), step)
        loss += state.remove(Q, active)
        P.scatter_(1, Q, active | P.gather(1, Q))
    return P, state.w, loss


class Conditioned:
    """Rows of a block after some joint OBS removals: the updated weights w, and the inverse
    Hessian conditioned on each row's removals, G − C_rᵀ C_r, kept as the stacked rank-`step`
    factors C_r of the removals (O(k·B) per row, no per-row B×B matrix). Rows run in lockstep."""

    def __init__(self, Wb, G, slots):
        rows, B = Wb.shape
        self.G, self.w, self.k = G, Wb.clone(), 0
        self.d = torch.diagonal(G).expand(rows, B).clone()  # diagonal of the conditioned inverse
        self.C = Wb.new_zeros(rows, slots, B)

    def saliency(self):
        """w'_q² / G'_qq: the loss of removing q alone, after the removals so far."""
        return self.w.square() / self.d.clamp_min(torch.finfo(self.d.dtype).tiny)

    def remove(self, Q, active):
        """Remove the weights Q [rows, t] jointly (inactive slots: nothing); returns the loss."""
        rows, t = Q.shape
        C = self.C[:, : self.k]
        Gq = self.G[Q] - torch.bmm(C.gather(2, Q[:, None, :].expand(rows, self.k, t)).transpose(1, 2), C)
        Gq = torch.where(active[..., None], Gq, 0)  # rows Q of the conditioned inverse
        pair = active[:, :, None] & active[:, None, :]
        L = torch.linalg.cholesky(
            torch.where(pair, Gq.gather(2, Q[:, None, :].expand(rows, t, t)), 0)
            + torch.diag_embed((~active).to(Gq.dtype))
        )  # G'_QQ = L Lᵀ
        wq = torch.where(active, self.w.gather(1, Q), 0)
        Fy = torch.linalg.solve_triangular(L, torch.cat([Gq, wq[..., None]], 2), upper=False)
        F, y = Fy[..., :-1], Fy[..., -1]
        self.w -= torch.bmm(y[:, None, :], F).squeeze(1)  # w −= w_Q (G'_QQ)⁻¹ G'_Q,:
        self.d -= F.square().sum(1)  # G' −= FᵀF
        self.C[:, self.k : self.k + t] = F
        self.k += t
        return y.square().sum(1)  # w_Q (G'_QQ)⁻¹ w_Qᵀ


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
