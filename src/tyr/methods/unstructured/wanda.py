"""Wanda (Sun et al., ICLR 2024): prune by |W_ij| · ‖X_j‖₂, per output row, without any update.

X_j is input j of the layer over all calibration tokens, so ‖X_j‖₂ = √(N·H_jj); the factor √N
is the same for every weight and does not change the ranking. Wanda compares weights within
an output row (its paper finds this better than one threshold per matrix for LLMs); N:M
compares within each group of M consecutive inputs of a row.
"""

from __future__ import annotations

import torch

from tyr.methods.unstructured.hessian import Pruned
from tyr.methods.unstructured.patterns import select

ROW_WISE = True  # rows are pruned independently: projections sharing H may be stacked


def scores(W, H):
    """|W_ij| · ‖X_j‖ (up to the common factor √N)."""
    return W.abs() * torch.diagonal(H).clamp_min(0).sqrt().to(W.dtype)[None, :]


def prune(W, H, pattern, **_):
    """Zero the weights of lowest Wanda score in every row of W [d_out, d_in]."""
    mask = select(scores(W, H), pattern, scope="row")
    return Pruned(W.masked_fill(mask, 0), mask, None)
