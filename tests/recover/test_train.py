"""Recovery: distillation lowers the pruned model's KL to the dense one on text it never trained
on, the folder it writes loads as a user loads it and computes what was trained, and a stopped
recovery continues to bit-identical weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers.export_factory import CHANNELS, HEADS, build_supernet, genome
from helpers.supernet_factory import write_tokens
from tyr.calib import stores
from tyr.core import signals
from tyr.core.io import write_json
from tyr.export import hf as ex
from tyr.model.adapter import load_model
from tyr.model.families import spec_from_config
from tyr.recover import train
from tyr.recover.distill import distill_loss, teacher_targets

pytestmark = pytest.mark.usefixtures("single_thread")
FAST = dict(steps=12, batch=4, lr=3e-3, warmup=2, rank=4, alpha=8.0, checkpoint_every=4, dtype="float32")


@pytest.fixture
def run(tiny_model_dir, tmp_path):
    """(dense dir, pruned export, tokens.zarr) of the tiny llama with export_factory's structure."""
    from transformers import AutoConfig

    dense = tiny_model_dir("llama")
    spec = spec_from_config(AutoConfig.from_pretrained(dense))
    spec.to_json(tmp_path / "spec.json")
    supernet = build_supernet(dense, spec, tmp_path / "supernet", HEADS, CHANNELS)
    write_json(tmp_path / "genome.json", genome(supernet, spec, HEADS, CHANNELS))
    pruned = tmp_path / "pruned"
    ex.export(dense, tmp_path / "spec.json", tmp_path / "genome.json", pruned)
    tokens = write_tokens(tmp_path / "tokens.zarr", vocab_size=128, n_seq=8, seq_len=16)
    return dense, pruned, tokens


def heldout_kl(model_dir, dense, tokens) -> float:
    ids = torch.from_numpy(stores.read_tokens(tokens, stores.HELDOUT).astype(np.int64))
    with torch.no_grad():
        teacher = load_model(dense)(input_ids=ids).logits
        student = load_model(model_dir)(input_ids=ids).logits
        return float(distill_loss(student, teacher_targets(teacher, teacher.shape[-1])))


def test_distill_loss_is_the_kl_to_the_teacher():
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    kl = torch.nn.functional.kl_div
    ref = kl(s.log_softmax(-1), t.log_softmax(-1), log_target=True, reduction="none")
    assert torch.allclose(distill_loss(s, teacher_targets(t, 11)), ref.sum(-1).mean(), atol=1e-6)
    assert float(distill_loss(t, teacher_targets(t, 99))) == pytest.approx(0.0, abs=1e-6)  # k past the vocabulary
    tau = 2.0  # Hinton's τ² keeps the gradient scale: the KL of the softened distributions × τ²
    soft = kl((s / tau).log_softmax(-1), (t / tau).log_softmax(-1), log_target=True, reduction="none")
    assert torch.allclose(distill_loss(s, teacher_targets(t, 11, tau), tau), soft.sum(-1).mean() * tau**2, atol=1e-6)


def test_top_k_targets_and_the_hand_written_gradient_match_the_plain_formula():
    """Truncated to the teacher's k best tokens, renormalised: loss and gradient equal autograd's of
    the plain formula, written independently (a dense q_T with zeros off the top k)."""
    torch.manual_seed(1)
    s, t, k, tau = torch.randn(3, 4, 13), torch.randn(3, 4, 13), 5, 1.5
    top = (t / tau).topk(k, -1)
    q = torch.zeros_like(t).scatter_(-1, top.indices, top.values.softmax(-1))
    s.requires_grad_(True)
    loss = distill_loss(s, teacher_targets(t, k, tau), tau)
    loss.backward()
    mine, s.grad = s.grad, None
    log_s = (s / tau).log_softmax(-1)
    ref = (q * (torch.where(q > 0, q.log(), 0.0) - log_s)).sum(-1).mean() * tau**2
    ref.backward()
    assert torch.allclose(loss, ref, atol=1e-6)
    assert torch.allclose(mine, s.grad, atol=1e-6)
    # Off the teacher's k tokens the gradient only lowers the student's probability.
    off = q == 0
    assert (mine[off] >= 0).all() and (mine[~off].sum() < 0)


def test_batches_are_a_pure_function_of_seed_and_step():
    from tyr.recover.text import batch_order

    epoch = np.concatenate([batch_order(10, 5, step, 3) for step in (0, 1)])
    assert sorted(epoch) == list(range(10))  # one epoch: every sequence once
    assert list(batch_order(10, 5, 1, 3)) == list(batch_order(10, 5, 1, 3))
    assert list(batch_order(10, 5, 2, 3)) != list(batch_order(10, 5, 0, 3))  # the next epoch reshuffles


def test_recovery_text_never_holds_the_heldout_split(run):
    from tyr.recover.text import recovery_sequences

    _, _, tokens = run
    seqs = recovery_sequences(tokens)
    heldout = {tuple(r) for r in stores.read_tokens(tokens, stores.HELDOUT)}
    assert len(seqs) == 24 and not heldout & {tuple(r) for r in seqs}


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_recovery_lowers_heldout_kl_and_loads_as_trained(run, tmp_path, mode):
    dense, pruned, tokens = run
    out = tmp_path / f"{mode}-out"
    record = train.recover(pruned, dense, tokens, out, tmp_path / f"{mode}-state", mode=mode, progress=False, **FAST)
    before, after = heldout_kl(pruned, dense, tokens), heldout_kl(out, dense, tokens)
    assert after < 0.9 * before, (before, after)
    assert record["history"][-1]["step"] == FAST["steps"] and len(record["history"]) == FAST["steps"]
    assert json.loads((out / "tyr_recovery.json").read_text())["options"]["mode"] == mode
    # A plain from_pretrained folder (LoRA merged: no adapter weights, no peft needed), same shapes.
    from transformers import AutoModelForCausalLM

    user = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    assert not any("lora" in k for k in user.state_dict())
    assert json.loads((out / "config.json").read_text()) == json.loads((pruned / "config.json").read_text())
    ids = torch.tensor([[3, 9, 27, 81, 4]])
    with torch.no_grad():
        assert torch.allclose(user(ids).logits, load_model(out)(input_ids=ids).logits, atol=1e-5)
    # The embedding is not trained (tyr.recover.adapters).
    assert torch.equal(load_model(out).model.embed_tokens.weight, load_model(pruned).model.embed_tokens.weight)


def test_a_stopped_recovery_continues_bit_identically(run, tmp_path, monkeypatch):
    dense, pruned, tokens = run
    train.recover(pruned, dense, tokens, tmp_path / "whole", tmp_path / "s1", progress=False, **FAST)

    calls, step = [], train._step

    def stop_after_six(*args, **kwargs):  # SIGTERM during step 6: its checkpoint is written, then Stopped
        calls.append(1)
        if len(calls) == 6 and not stopped:
            stopped.append(signals.STOP.set())
        return step(*args, **kwargs)

    stopped = []

    monkeypatch.setattr(train, "_step", stop_after_six)
    try:
        with pytest.raises(signals.Stopped):
            train.recover(pruned, dense, tokens, tmp_path / "resumed", tmp_path / "s2", progress=False, **FAST)
    finally:
        signals.STOP.clear()
    assert json.loads((tmp_path / "s2" / "state.json").read_text())["history"][-1]["step"] == 6
    calls.clear()
    other_cadence = dict(FAST, checkpoint_every=5)  # how often it saves is not what it computes
    train.recover(pruned, dense, tokens, tmp_path / "resumed", tmp_path / "s2", progress=False, **other_cadence)
    assert len(calls) == FAST["steps"] - 6  # it continued, it did not start over
    assert (tmp_path / "whole" / "model.safetensors").read_bytes() == (
        tmp_path / "resumed" / "model.safetensors"
    ).read_bytes()


def test_the_watch_scores_the_heldout_split_and_changes_nothing_trained(run, tmp_path):
    """Held-out perplexity at step 0 (the pruned model's own), every watch_every steps and at the
    end, each what the evaluation computes from the folder at that point; the weights are those of
    a run that never looks (bit-identical), and the watch's time is not training time."""
    from tyr.evaluate.perplexity import heldout_perplexity

    dense, pruned, tokens = run
    looked = train.recover(pruned, dense, tokens, tmp_path / "a", tmp_path / "sa", progress=False,
                           **dict(FAST, watch_every=5))  # fmt: skip
    blind = train.recover(pruned, dense, tokens, tmp_path / "b", tmp_path / "sb", progress=False,
                          **dict(FAST, watch_every=0))  # fmt: skip
    assert [p["step"] for p in looked["curve"]] == [0, 5, 10, 12] and blind["curve"] == []
    start, end = looked["curve"][0]["heldout_perplexity"], looked["curve"][-1]["heldout_perplexity"]
    assert start == pytest.approx(heldout_perplexity(load_model(pruned), tokens)["perplexity"], rel=1e-5)
    assert end == pytest.approx(heldout_perplexity(load_model(tmp_path / "a"), tokens)["perplexity"], rel=1e-5)
    assert end < start
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    seconds = [p["seconds"] for p in looked["curve"]]
    assert seconds == sorted(seconds) and seconds[-1] == looked["seconds"]
    saved = json.loads((tmp_path / "a" / "tyr_recovery.json").read_text())
    assert saved["curve"] == looked["curve"]


def test_a_checkpoint_of_other_options_is_not_continued(run, tmp_path):
    dense, pruned, tokens = run
    train.recover(pruned, dense, tokens, tmp_path / "a", tmp_path / "state", progress=False, **FAST)
    other = dict(FAST, lr=1e-3)
    record = train.recover(pruned, dense, tokens, tmp_path / "b", tmp_path / "state", progress=False, **other)
    assert record["options"]["lr"] == 1e-3 and len(record["history"]) == FAST["steps"]
    fresh = train.recover(pruned, dense, tokens, tmp_path / "c", tmp_path / "fresh", progress=False, **other)
    assert (tmp_path / "b" / "model.safetensors").read_bytes() == (tmp_path / "c" / "model.safetensors").read_bytes()
    assert fresh["final_loss"] == record["final_loss"]
