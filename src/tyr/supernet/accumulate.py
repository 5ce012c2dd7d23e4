"""Expectation error accumulation (Týr-the-Pruner, Eq. 5).

Layer ℓ+1 is calibrated on the expected output of layer ℓ over its pruned variants,
weighted by density: w_e = (1 − S_e) / Σ_e' (1 − S_e'), S_e the unit sparsity of level e
(a fully pruned variant weighs 0). Within a layer the MLP is calibrated on the attention
sublayer's expected output, so MLP pruning sees attention pruning.

The variants of a sublayer share their input projections (pure slices of the dense
weights) and differ only in the output projection, whose pruned columns are zero. Hence
the expectation is a single matmul with the weight-averaged full-shape projection
W̄ = Σ_e w_e W_e, applied to the dense sublayer's o_proj / down_proj input.
"""

from __future__ import annotations

import torch

from tyr.supernet.local_prune import channels


def level_weights(kept: list[int], units: int) -> list[float]:
    """w_e ∝ 1 − S_e = kept_e / units, normalised; all zero if every level is empty."""
    density = [k / units for k in kept]
    total = sum(density)
    return [d / total if total > 0 else 0.0 for d in density]


def expected_projection(levels, weights, d_in: int, group: int) -> torch.Tensor:
    """W̄ = Σ_e w_e W_e as a full-shape Linear weight [d_out, d_in] (zeros at pruned columns).

    levels: [(kept_units, weight [d_out, kept*group])], weights: w_e per level.
    """
    d_out = next(w.shape[0] for _, w in levels)
    W = torch.zeros(d_out, d_in, dtype=torch.float64)
    for (units, w), we in zip(levels, weights):
        if we > 0 and len(units) > 0:
            W[:, channels(units, group)] += we * w.double()
    return W.float()


def expected_bias(bias, levels, weights):
    """The bias exists only in variants that keep some unit: Σ_{e: kept>0} w_e · b."""
    if bias is None:
        return None
    return bias.float() * sum(we for (units, _), we in zip(levels, weights) if len(units) > 0)


def residual(h, z, W, b):
    """h + z Wᵀ (+ b): one sublayer's expected output added to the residual stream."""
    out = h + z @ W.T
    return out + b if b is not None else out
