"""Knowledge distillation: the pruned model (student S) fits the dense model's (teacher T)
next-token distribution at every position (Hinton et al., 2015), restricted to the teacher's
top k tokens, renormalised (the search's fitness truncates too, `tyr.search.kl`, but lumps the
tail into one outcome; here the tail is dropped, so q_T − p_S is a difference of distributions):

    q_T,t = softmax over top_k(z_T,t / τ)       (the teacher's k most likely tokens, renormalised)
    L     = τ² · (1/N) Σ_t KL( q_T,t ‖ p_S,t ),  p_S = softmax(z_S / τ) over the whole vocabulary
    ∂L/∂z_S,t = τ · (p_S,t − q_T,t) / N        (q_T is zero off its k tokens)

With k at least the vocabulary, q_T is the teacher's whole distribution and L the plain KL.

Why top-k: the teacher's targets are computed once per sequence before training (`teacher_targets`,
n × seq_len × k × 12 bytes: 63 MB for the default run at k = 128) instead of a teacher forward
every step, and the loss touches the student's [N, vocab] logits in three passes, not a dozen.
Measured on 2 cores, SmolLM2's 49152-token vocabulary, a batch of 8 × 256 (2048 rows): the
full-vocabulary loss took 2.8–4.9 s and the teacher's forward 2.1–2.4 s of a 9.5–14 s step;
this loss takes 0.33 s (bench/recover.py's step seconds give the whole step). Loss and gradient
are computed together, CHUNK rows at a time in float32; only the gradient is kept for backward.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

CHUNK = 64  # rows: 64 × 49152 float32 = 12.6 MB per temporary (64 beat 256 and 1024 by 1.8–2.2x)


class Targets(NamedTuple):
    """The teacher's top-k tokens and their renormalised log-probabilities, [..., k] each."""

    index: torch.Tensor  # int64
    logp: torch.Tensor  # float32


def teacher_targets(teacher_logits, k: int, temperature: float = 1.0) -> Targets:
    """The truncated, softened teacher distribution q_T of the module docstring."""
    k = min(int(k), teacher_logits.shape[-1])
    values, index = (teacher_logits.float() / temperature).topk(k, dim=-1)
    return Targets(index, F.log_softmax(values, dim=-1))


class _KLToTeacher(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student, index, logp, tau: float):
        n = student.shape[0]
        total = torch.zeros((), dtype=torch.float32, device=student.device)
        grad = torch.empty_like(student)
        for start in range(0, n, CHUNK):
            rows = slice(start, start + CHUNK)
            z = student[rows].float() / tau  # a new tensor: .float() of float32 logits is a view
            log_s = z.sub_(torch.logsumexp(z, dim=-1, keepdim=True))  # in place: z is not needed again
            q = logp[rows].exp()
            total += (q * (logp[rows] - log_s.gather(-1, index[rows]))).sum()
            g = log_s.exp_().scatter_add_(-1, index[rows], -q)
            grad[rows] = g.mul_(tau / n).to(grad.dtype)
        ctx.save_for_backward(grad)
        return total * tau * tau / n

    @staticmethod
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        return grad * grad_out.to(grad.dtype), None, None, None


def distill_loss(student_logits, targets: Targets, temperature: float = 1.0):
    """Mean over positions of τ²·KL(q_T ‖ p_S); logits [..., vocab], targets [..., k]."""
    index, logp = (t.detach().flatten(0, -2) for t in targets)
    return _KLToTeacher.apply(student_logits.flatten(0, -2), index, logp.float(), float(temperature))
