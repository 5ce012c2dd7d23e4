"""The coarsened KL against the full-vocabulary KL it bounds."""

import torch

from tyr.search import kl, reference


def test_coarse_kl_is_a_lower_bound_and_exact_at_full_vocab():
    torch.manual_seed(0)
    p_logits, q_logits = torch.randn(50, 40) * 3, torch.randn(50, 40) * 3
    logp, logq = p_logits.log_softmax(-1), q_logits.log_softmax(-1)
    full = (logp.exp() * (logp - logq)).sum()
    top, idx = logp.topk(40, dim=-1)
    exact = kl.coarse_kl_rows(q_logits, top, idx, torch.full((50,), float("-inf"))).sum()
    assert torch.allclose(exact, full, rtol=1e-5)
    for k in (1, 5, 20):
        top, idx, rest = reference.topk_logprobs(torch.nn.Identity(), p_logits, k)
        coarse = kl.coarse_kl_rows(q_logits, top, idx, rest).sum()
        assert 0 < coarse <= full + 1e-5
        assert torch.equal(kl.coarse_kl_rows(q_logits.clone(), top, idx, rest, overwrite=True).sum(), coarse)
    assert abs(kl.coarse_kl_rows(p_logits, top, idx, rest).sum()) < 1e-5  # identical distributions
    # a candidate whose tail mass underflows float32 still gets a finite, larger KL
    peaked = [p_logits.clone().scatter_(-1, idx, p_logits.gather(-1, idx) + gap) for gap in (20.0, 300.0)]
    kls = [kl.coarse_kl_rows(q, top, idx, rest) for q in peaked]
    assert torch.isfinite(kls[1]).all() and (kls[1] > kls[0]).all()
