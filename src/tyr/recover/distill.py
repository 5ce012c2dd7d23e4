"""Knowledge distillation: the pruned model (student S) fits the dense model's (teacher T)
next-token distribution at every position (Hinton et al., 2015):

    L = τ² · mean_t KL( softmax(z_T,t / τ) ‖ softmax(z_S,t / τ) )

The full vocabulary, not the search's top-k: the recovery text is short (tens of thousands of
tokens), so each position's whole distribution is the signal. In float32 whatever the models
compute in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distill_loss(student_logits, teacher_logits, temperature: float = 1.0):
    """Mean over positions of τ²·KL(p_T ‖ p_S); logits [..., vocab]. The teacher carries no gradient."""
    tau = float(temperature)
    log_s = F.log_softmax(student_logits.float().flatten(0, -2) / tau, dim=-1)
    with torch.no_grad():
        log_t = F.log_softmax(teacher_logits.float().flatten(0, -2) / tau, dim=-1)
    return (log_t.exp() * (log_t - log_s)).sum(-1).mean() * tau * tau
