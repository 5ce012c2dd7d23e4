"""Magnitude pruning: remove the weights of smallest |W|, one threshold over the whole matrix.

The oldest baseline (Han et al., 2015) and the one Wanda and SparseGPT compare against: it
needs no calibration data and changes no remaining weight. N:M keeps the N largest |W| of every
group of M consecutive inputs.
"""

from __future__ import annotations

from tyr.methods.unstructured.hessian import Pruned
from tyr.methods.unstructured.patterns import select


def prune(W, H=None, pattern=None, **_):
    """Zero the smallest-magnitude weights of W [d_out, d_in]; H is not used."""
    mask = select(W.abs(), pattern, scope="matrix")
    return Pruned(W.masked_fill(mask, 0), mask, None)
