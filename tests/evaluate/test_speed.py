"""Speed measurement: throughput, memory, identical prompts for dense and pruned."""

from __future__ import annotations

import torch

from tyr.evaluate import measure as ev
from tyr.evaluate import speed as sp


def test_speed_reports_throughput_and_memory(tiny_model_dir):
    model, tok = ev.load(tiny_model_dir("llama"))
    calls, forward = [], model.forward

    def counted(input_ids, **kw):
        calls.append(input_ids.shape[1])
        return forward(input_ids, **kw)

    model.forward = counted
    s = sp.measure_speed(model, tok, prompt_tokens=32, new_tokens=8, repeats=2)
    # What was timed is what the rates claim: per run one 32-token prefill and 7 one-token steps
    # on the cache (after an untimed 2-token warm-up), and each rate is its tokens over its seconds.
    assert calls == [32, 1] + 2 * ([32] + [1] * 7)
    assert (
        s["prefill_tokens_per_s"] == 32 / s["prefill_seconds"] and s["decode_tokens_per_s"] == 7 / s["decode_seconds"]
    )
    assert s["peak_memory_mib"] >= s["weights_mib"] > 0
    # Same seed, same prompt: dense and pruned are timed on identical inputs.
    assert torch.equal(sp.prompt_ids(128, tok, 1, 16, 0), sp.prompt_ids(128, tok, 1, 16, 0))
    assert not set(sp.prompt_ids(128, tok, 2, 64, 0).flatten().tolist()) & set(tok.all_special_ids)
