"""Self-sampled calibration: seeded, batched on the KV cache exactly like full recomputation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tyr.calib import sampling


@pytest.fixture
def model_dir(tiny_model_dir):
    return tiny_model_dir("llama")


def test_self_sampling_is_seeded_and_uses_the_cache_correctly(model_dir):
    from tyr.model.adapter import load_model

    a, how = sampling.sample_self(model_dir, 3, 12, seed=7, dtype="float32", batch_size=2)
    assert np.array_equal(a, sampling.sample_self(model_dir, 3, 12, seed=7, dtype="float32", batch_size=2)[0])
    assert not np.array_equal(a, sampling.sample_self(model_dir, 3, 12, seed=8, dtype="float32", batch_size=2)[0])
    assert how["dtype"] == "float32" and how["batch_size"] == 2
    # Reference: the same draws, recomputing the whole prefix each step (no KV cache), batch by batch.
    model = load_model(model_dir)
    gen = torch.Generator().manual_seed(7)
    rows = []
    with torch.no_grad():
        for b in (2, 1):
            seq = torch.full((b, 1), how["from_token"])
            for _ in range(11):
                probs = torch.softmax(model(seq).logits[:, -1].float(), -1)
                seq = torch.cat([seq, torch.multinomial(probs, 1, generator=gen)], 1)
            rows.append(seq)
    assert np.array_equal(a, torch.cat(rows).numpy())


def test_sampling_starts_a_document(model_dir):
    from transformers import AutoConfig, AutoTokenizer

    tok, config = AutoTokenizer.from_pretrained(model_dir), AutoConfig.from_pretrained(model_dir)
    assert sampling.start_token(tok, config) == tok.get_vocab()["<s>"]  # the tiny tokenizer's document start
    config.bos_token_id = 1

    class NoSeparator:
        def get_vocab(self):
            return {"a": 5}

    assert sampling.start_token(NoSeparator(), config) == 1
    config.bos_token_id, config.eos_token_id = None, [2, 3]
    assert sampling.start_token(NoSeparator(), config) == 2


def test_bfloat16_sampling_runs_where_asked(model_dir):
    a, how = sampling.sample_self(model_dir, 2, 6, seed=0, dtype="bfloat16")
    assert a.shape == (2, 6) and how["dtype"] == "bfloat16" and (a[:, 0] == how["from_token"]).all()
