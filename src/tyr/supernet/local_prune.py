"""Local structural pruning of one sublayer's output projection (Týr-the-Pruner, Sec. 3.2).

Notation follows the paper and SparseGPT: the output projection maps d_in input channels
to d_out outputs, Y = X W with W laid out as [d_in, d_out] (the transpose of a torch
Linear weight). Input channels are grouped into units of `group` channels (an attention
query head = head_dim channels, an MLP channel = 1). With H = XᵀX (damped) and G = H W,

  saliency(p)   = <G_p, W_p>                         first-order Taylor term
                + ½ <W_p, ([H⁻¹]_pp)⁻¹ W_p>           OBS term (block form for a head)
  remove P      W_K -= H⁻¹[K,P] ([H⁻¹]_PP)⁻¹ W_P     OBS compensation
                H⁻¹ <- H⁻¹_KK - H⁻¹[K,P] ([H⁻¹]_PP)⁻¹ H⁻¹[P,K]   (inverse of H_KK)
  level K       W_K = H_KK⁻¹ G_K,  G = H W_dense     exact least-squares refit (what the
                                                     exact OBS path holds at every step)

One progressive pass, a few units per step, emits every requested level; the kept sets
are nested because they lie on one path.
"""

from __future__ import annotations

import torch


class Hessian:
    """H = XᵀX / N over calibration tokens, accumulated in float64 (sparsegpt's add_batch).
    With a second input, the cross moment XᵀY / N (the corrected refit's C = XᵀX_dense)."""

    def __init__(self, d_in: int):
        self.H = torch.zeros(d_in, d_in, dtype=torch.float64)
        self.n = 0

    def add(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        y = x if y is None else y.reshape(-1, y.shape[-1]).float()
        # One float32 product per batch is exact enough; the sum across batches is float64.
        self.H += (x.T @ y).double()
        self.n += x.shape[0]

    def mean(self) -> torch.Tensor:
        return self.H / max(self.n, 1)


def damp(H: torch.Tensor, lam: float) -> torch.Tensor:
    """H + λ·mean(diag H)·I: keeps H invertible when channels are dead or collinear."""
    d = torch.diagonal(H).mean().clamp_min(torch.finfo(H.dtype).tiny)
    return H + lam * d * torch.eye(H.shape[0], dtype=H.dtype)


def saliency(W, G, Hinv, group: int, *, taylor=True, obs=True) -> torch.Tensor:
    """Score of each unit (rows p*group..(p+1)*group of W); the lowest is pruned first."""
    n = W.shape[0] // group
    Wp, Gp = W.view(n, group, -1), G.view(n, group, -1)
    score = torch.zeros(n, dtype=W.dtype)
    if taylor:
        score += (Gp * Wp).sum((1, 2))
    if obs and group == 1:  # 1x1 blocks: a division (their 105 batched solves took 0.4 s of a SmolLM2 layer's ~3.3 s)
        score += 0.5 * (Wp * (Wp / torch.diagonal(Hinv)[:, None, None])).sum((1, 2))
    elif obs:
        idx = torch.arange(n * group).view(n, group)
        blocks = Hinv[idx[:, :, None], idx[:, None, :]]  # [n, group, group] diagonal blocks
        score += 0.5 * (Wp * torch.linalg.solve(blocks, Wp)).sum((1, 2))
    return score


def channels(units: torch.Tensor, group: int) -> torch.Tensor:
    """Input-channel indices of `units` (unit u covers channels u*group .. u*group+group-1)."""
    return (units[:, None] * group + torch.arange(group)).reshape(-1)


def refit(H, G, kept_channels):
    """W_K = H_KK⁻¹ G_K: the least-squares output projection on the kept channels."""
    K = kept_channels
    L = torch.linalg.cholesky(H[K][:, K])
    return torch.cholesky_solve(G[K], L)


def prune_levels(
    weight, H, levels, *, group=1, per_step=1, damp_ratio=0.01, taylor=True, obs=True, compensate=True, G=None
) -> dict:
    """Prune a Linear `weight` [d_out, d_in] progressively; emit every level in one pass.

    H: [d_in, d_in] undamped XᵀX/N. levels: kept-unit counts. Returns {kept: (kept_units
    LongTensor sorted, weight [d_out, kept*group] in weight's dtype)}. With
    compensate=False the same units are selected but the kept columns of the dense
    weight are returned unchanged (plain masking; the ablation of the refit).
    G: the least-squares target's right-hand side [d_in, d_out]; default H·W (fit the dense
    projection's output on this input). Another target (e.g. XᵀX_dense·W) starts the path
    at its full refit W = H⁻¹G, which OBS steps keep a least-squares fit.
    """
    d_out, d_in = weight.shape
    n_units = d_in // group
    assert n_units * group == d_in, "d_in must be a whole number of units"
    targets = sorted({int(k) for k in levels}, reverse=True)
    assert all(0 <= k <= n_units for k in targets), f"levels {targets} outside [0, {n_units}]"

    W_dense = weight.detach().double().T.contiguous()  # [d_in, d_out]
    Hd = damp(H.double(), damp_ratio)
    own_target = G is None  # the dense projection's output: W_dense is its own full refit
    G = Hd @ W_dense if own_target else G.double()
    out = {}

    alive = torch.arange(n_units)  # units still kept, in original order
    # The damped H and its factor go as soon as H⁻¹ exists: beside the caller's H they kept two
    # more d_in² fp64 matrices alive through the pass (an 8B MLP's are 1.6 GB each). W and G are
    # never written in place (each step gathers new ones), so neither needs a copy to start from.
    L = torch.linalg.cholesky(Hd)
    del Hd
    Hinv = torch.cholesky_inverse(L)
    del L
    W = W_dense if own_target else Hinv @ G
    for target in targets:
        while len(alive) > target:
            score = saliency(W, G, Hinv, group, taylor=taylor, obs=obs)
            k = min(per_step, len(alive) - target)
            drop = torch.sort(torch.argsort(score, stable=True)[:k]).values  # local unit positions
            P = channels(drop, group)
            keep = torch.ones(W.shape[0], dtype=torch.bool)
            keep[P] = False
            K = keep.nonzero().squeeze(1)
            # OBS: the optimal update of the kept rows K for zeroing W_P, and H⁻¹ of the kept rows,
            # computed on K alone and in place: no d×d product or difference before the gathers.
            Hinv_P = Hinv.index_select(0, P)
            M = Hinv_P.index_select(1, K).T @ torch.linalg.inv(Hinv_P.index_select(1, P))
            W = W.index_select(0, K).addmm_(M, W.index_select(0, P), alpha=-1)
            # Rows, then columns, each assigned at once: the old n×n H⁻¹ is freed before the column
            # gather, so two of them are alive, not three (bench/layer_scale.py measured the three).
            Hinv = Hinv.index_select(0, K)
            Hinv = Hinv.index_select(1, K).addmm_(M, Hinv_P.index_select(1, K), alpha=-1)
            # After an exact OBS step W_K is the least-squares fit on K, so H_KK W_K = (H W_dense)_K:
            # G of the current W is the dense G restricted to the kept rows (no recomputation).
            G = G.index_select(0, K)
            unit_keep = torch.ones(len(alive), dtype=torch.bool)
            unit_keep[drop] = False
            alive = alive[unit_keep]
        out[target] = (alive.clone(), _level_weight(alive, W, W_dense, group, compensate))
    return {k: (u, w.T.contiguous().to(weight.dtype)) for k, (u, w) in out.items()}


def _level_weight(alive, W, W_dense, group, compensate):
    """The level's weight: the path's W, which exact OBS steps keep equal to the least-squares
    refit H_KK⁻¹ G_K (tested against the explicit refit; this skips a Cholesky per level,
    ~60% of an MLP's pruning time); with compensate=False the dense rows (plain masking)."""
    if compensate:
        return W.clone()
    return W_dense[channels(alive, group)]


def recon_errors(weight, levels, H, chunk_bytes: int = 1 << 28) -> list[float]:
    """Relative output error ‖XW − XŴ‖² / ‖XW‖² from H = XᵀX of each level (kept_channels, Ŵ),
    Ŵ zero outside its kept channels. In float32: a diagnostic and a ranking (the search's
    least-damage start), where 1e-6 relative is plenty, at a sixth of float64's cost. Levels
    side by side in one product with H (≤ `chunk_bytes` of them) and ‖XW‖² once; two products
    per level, one level at a time, took 0.4 s of a SmolLM2 layer's ~3.3 s."""
    W = weight.detach().float().T  # [d_in, d_out]
    H = H.float()
    total = (W * (H @ W)).sum().clamp_min(1e-30)
    per_chunk = max(1, chunk_bytes // (W.numel() * 4))
    errors = []
    for first in range(0, len(levels), per_chunk):
        chunk = levels[first : first + per_chunk]
        D = W.repeat(1, len(chunk))  # each level's W − Ŵ, side by side
        for i, (kept_channels, pruned) in enumerate(chunk):
            D[kept_channels, i * W.shape[1] : (i + 1) * W.shape[1]] -= pruned.detach().float().T
        errors += ((D * (H @ D)).view(W.shape[0], len(chunk), W.shape[1]).sum((0, 2)) / total).tolist()
    return errors
