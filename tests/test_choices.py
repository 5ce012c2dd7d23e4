"""tyr.choices: continuations scored on a shared context's KV cache equal a full forward each."""

from __future__ import annotations

import pytest
import torch

from tyr.choices import continuation_logprobs, score_requests
from tiny_models import tiny_hf_model


def full_forward(model, context, continuation):
    """(Σ log p, greedy) of one continuation from its own forward over context + continuation."""
    ids = torch.tensor([context + continuation])
    with torch.no_grad():
        logp = model(ids).logits.log_softmax(-1)[0, len(context) - 1:-1]
    target = torch.tensor(continuation)
    return float(logp.gather(1, target[:, None]).sum()), bool((logp.argmax(-1) == target).all())


@pytest.fixture(params=["llama", "tyr"])
def model(request, tiny_model_dir):
    """transformers' Llama, and tyr's own class, which every evaluation runs (dense sources too)."""
    if request.param == "llama":
        return tiny_hf_model("llama", seed=1).eval()
    from tyr.evaluate import load

    return load(tiny_model_dir("llama"))[0]


@pytest.mark.parametrize("context", [[5], [5, 9, 17, 3, 40, 2]])
def test_each_continuation_equals_its_full_forward(model, context):
    conts = [[7], [8, 21, 30], [99, 4], [7, 7, 7, 7, 12]]  # unequal lengths: right padding
    with torch.no_grad():
        got = continuation_logprobs(model, context, conts)
    for (lp, greedy), cont in zip(got, conts):
        want_lp, want_greedy = full_forward(model, context, cont)
        assert lp == pytest.approx(want_lp, abs=1e-4)
        assert greedy == want_greedy


def test_a_greedy_continuation_is_recognised(model):
    context = [3, 14, 15]
    ids = torch.tensor([context])
    with torch.no_grad():
        for _ in range(3):  # the model's own greedy continuation
            ids = torch.cat([ids, model(ids).logits[:, -1:].argmax(-1)], dim=1)
        greedy = ids[0, len(context):].tolist()
        answers = continuation_logprobs(model, context, [greedy, [(greedy[0] + 1) % 64] + greedy[1:]])
    assert answers[0][1] and not answers[1][1]


def test_requests_are_answered_in_order_and_cut_from_the_left_like_lm_eval(model):
    """Requests of two contexts, interleaved; one too long for the window is cut to its last
    max_length + 1 tokens (lm-eval's rule), which gives it a context of its own."""
    a, b, long = [1, 2, 3], [4, 5], list(range(1, 12))
    requests = [(("a", "x"), a, [6, 7]), (("b", "y"), b, [8]), (("a", "z"), a, [9]), (("l", "w"), long, [10, 11])]
    got = score_requests(model, requests, max_length=6)
    assert got[0][0] == pytest.approx(full_forward(model, a, [6, 7])[0], abs=1e-4)
    assert got[1][0] == pytest.approx(full_forward(model, b, [8])[0], abs=1e-4)
    assert got[2][0] == pytest.approx(full_forward(model, a, [9])[0], abs=1e-4)
    cut = (long + [10, 11])[-7:]
    assert got[3][0] == pytest.approx(full_forward(model, cut[:-2], [10, 11])[0], abs=1e-4)
