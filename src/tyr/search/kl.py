"""The fitness's divergence: a coarsened KL(dense ‖ candidate) of next-token distributions.

For a position with dense top-k ids i_1..i_k let
    P = (p_1, .., p_k, p_rest)   p_rest = 1 - Σ p_j
    Q = (q_1, .., q_k, q_rest)   q_j = candidate's probability of token i_j, q_rest = 1 - Σ q_j
Both are distributions over the same k+1 outcomes, so
    KL(P ‖ Q) = Σ_j p_j log(p_j / q_j) + p_rest log(p_rest / q_rest)
is a proper KL divergence: ≥ 0, zero when the candidate agrees with the dense model on
the top-k tokens and on the lumped tail mass, and never larger than the full-vocabulary
KL (coarsening cannot increase a divergence). With k = vocab it is the exact KL. The dense
side's tail log-mass is stored by `tyr.search.reference` as a log-sum-exp over the non-top-k
logits (not log(1 - Σ p)); the candidate's is a sum of the tail's own exponentials. Both stay
accurate when the top-k hold almost all the mass.

The fitness of a candidate is the mean coarsened KL over all scored positions (the paper's
Eq. 6 adds a hidden-state error term at chosen layers; it is not implemented: on the
models this project measures the KL alone decides, and a half-wired option helps no one).
"""

from __future__ import annotations


def coarse_kl_rows(logits, logp, index, logp_rest, overwrite: bool = False):
    """KL(P ‖ Q) of every row between the (top-k + rest) coarsenings.

    One exponential pass over the vocabulary: e = exp(logits - max) gives the normaliser
    (Σ e) and, with the top-k entries zeroed, the tail mass as a sum of the tail's own terms
    (no 1 - Σ p cancellation), in one pass where two log-sum-exps would take two. A tail that
    underflows float32 (every tail logit ~87 below the max) counts as float32's smallest normal
    mass: its KL term stays finite, and large. `overwrite=True` lets a float32 `logits` be used
    as the scratch buffer.
    """
    import torch

    x = logits.float()
    top = x.gather(-1, index)
    if x is logits and not overwrite:
        x = x.clone()
    m = x.amax(-1)
    e = x.sub_(m[:, None]).exp_()
    lse = e.sum(-1).log() + m
    tail = e.scatter_(-1, index, 0.0).sum(-1).clamp_min(torch.finfo(torch.float32).tiny)
    logq_rest = tail.log() + m - lse
    logq = top - lse[:, None]
    kl_top = (logp.exp() * (logp - logq)).sum(-1)
    p_rest = logp_rest.exp()
    kl_rest = torch.where(p_rest > 0, p_rest * (logp_rest - logq_rest), torch.zeros_like(p_rest))
    return kl_top + kl_rest


def head_kl_rows(h, head_weight, batch, chunk: int):
    """KL to the dense top-k of every position of the batch, from its final-normed hidden
    states `h` [positions, hidden], through the LM head in chunks of `chunk` positions."""
    import torch

    rows = []
    for s in range(0, h.shape[0], chunk):
        sl = slice(s, s + chunk)  # [chunk, vocab] logits stay cache-friendly
        logits = torch.nn.functional.linear(h[sl].to(head_weight.dtype), head_weight)
        rows.append(coarse_kl_rows(logits, batch.logp[sl], batch.index[sl], batch.logp_rest[sl], overwrite=True))
    return torch.cat(rows)


def head_nll_rows(h, head_weight, targets, chunk: int):
    """−log p(target) of every position, from final-normed hidden states `h` [positions, hidden],
    through the LM head in chunks of `chunk` positions (as `head_kl_rows`: the full-vocabulary
    logits of a whole batch would not stay small on a larger model)."""
    import torch

    rows = []
    for s in range(0, h.shape[0], chunk):
        logits = torch.nn.functional.linear(h[s : s + chunk].to(head_weight.dtype), head_weight).float()
        rows.append(torch.nn.functional.cross_entropy(logits, targets[s : s + chunk], reduction="none"))
    return torch.cat(rows)
