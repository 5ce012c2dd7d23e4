"""SparseGPT (Frantar & Alistarh, ICML 2023): single-weight OBS, column by column, lazy block updates.

With U the upper Cholesky factor of H⁻¹ (tyr.methods.unstructured.hessian), column i of every row is
either kept or zeroed, and the error is spread over the columns not yet fixed:

    for each block B of `blocksize` columns:
        unstructured: mask_B = lowest w²/U_ii² over the whole block (all rows, one threshold)
        for i in B:
            N:M, at a group start: mask the M−N lowest w²/U_jj² of the group (current weights)
            err  = w_i (masked part) / U_ii          loss += err²
            W[:, i:B_end] -= err · U[i, i:B_end]     (OBS update of the rest of the block)
        W[:, B_end:] -= Err_B · U[B, B_end:]        (lazy batched update of later blocks)

A column is fixed once visited: a weight removed later in the same row can no longer move the
kept weights before it, which is what APT's joint update (tyr.methods.unstructured.apt) changes.
Published defaults: blocksize 128, damping 1% of the mean diagonal.
"""

from __future__ import annotations

import torch

from tyr.methods.unstructured.hessian import Pruned, dead_columns, inverse_cholesky, work_dtype
from tyr.methods.unstructured.patterns import lowest, nm_mask, quota


def saliency(W1, U1, a: int, b: int):
    """w²/U_ii² of columns a..b of the block, on its current (already updated) weights."""
    return W1[:, a:b] ** 2 / torch.diagonal(U1)[a:b] ** 2


def prune(W, H, pattern, *, blocksize=128, damp=0.01, **_):
    """SparseGPT on W [d_out, d_in] with the calibration Hessian H [d_in, d_in]."""
    dtype = work_dtype(W)
    W = W.to(dtype).clone()
    W[:, dead_columns(H)] = 0
    U = inverse_cholesky(H, damp, dtype)
    d_out, d_in = W.shape
    mask = torch.zeros(d_out, d_in, dtype=torch.bool)
    loss = torch.zeros(d_out, dtype=dtype)
    for i1 in range(0, d_in, blocksize):
        i2 = min(i1 + blocksize, d_in)
        W1, U1, M1 = W[:, i1:i2], U[i1:i2, i1:i2], mask[:, i1:i2]  # views: updates land in W, mask
        if not pattern.m:  # one threshold over the block; the block's exact share of the matrix's removals
            M1 |= lowest(saliency(W1, U1, 0, i2 - i1).reshape(1, -1), quota(pattern, i1, i2, d_out)).reshape(M1.shape)
        Err1 = torch.zeros_like(W1)
        for i in range(i2 - i1):
            if pattern.m and i % pattern.m == 0:
                M1[:, i : i + pattern.m] |= nm_mask(saliency(W1, U1, i, i + pattern.m), pattern.n, pattern.m)
            err = torch.where(M1[:, i], W1[:, i], 0) / U1[i, i]
            loss += err**2
            W1[:, i:] -= err[:, None] * U1[i, i:][None, :]
            Err1[:, i] = err
        W1.masked_fill_(M1, 0)  # the update made them zero up to rounding; make it exact
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]
    return Pruned(W, mask, loss)
