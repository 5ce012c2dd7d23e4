"""Evaluation: perplexity protocol, offline zero-shot tasks, speed fields, dense-vs-pruned summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tyr import evaluate as ev
from tyr.io import write_json

from conftest import SHARED_DATA

WIKITEXT = Path(SHARED_DATA) / "wikitext-2" / "test.txt"
ZEROSHOT = Path(SHARED_DATA) / "zeroshot"
needs_data = pytest.mark.skipif(not WIKITEXT.exists() or not ZEROSHOT.exists(), reason="shared data not present")


@needs_data
def test_perplexity_matches_transformers_loss(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    path = tiny_model_dir("llama")
    model, tok = ev.load(path)
    text = WIKITEXT.read_text()[:1600]
    got = ev.perplexity(model, tok, [text], seq_len=64, batch_size=3)

    # Direct computation: HF's own model and loss, window by window.
    ref = AutoModelForCausalLM.from_pretrained(path).eval()
    ids = tok(text, return_tensors="pt").input_ids[0]
    n = ids.numel() // 64
    with torch.no_grad():
        losses = [ref(w[None], labels=w[None]).loss for w in ids[: n * 64].view(n, 64)]
    assert got["windows"] == n and got["scored_tokens"] == n * 63
    assert math.isclose(got["perplexity"], math.exp(torch.stack(losses).mean().item()), rel_tol=1e-5)

    # seq_len is capped at the context length; max_windows takes the first windows only.
    capped = ev.perplexity(model, tok, [text], seq_len=4096, max_windows=2)
    assert capped["seq_len"] == 256 and capped["windows"] == 2
    # Documents are joined with a blank line, the GPTQ/SparseGPT convention.
    two = ev.perplexity(model, tok, [text[:800], text[800:]], seq_len=64)
    assert two["total_tokens"] == tok(text[:800] + "\n\n" + text[800:], return_tensors="pt").input_ids.numel()


def _reference_choice_scores(model, tok, context, choices):
    """Summed log-likelihood of each " choice" after `context`, computed by hand."""
    lls = []
    for choice in choices:
        ctx = tok(context, add_special_tokens=False).input_ids
        full = tok(context + " " + choice, add_special_tokens=False).input_ids
        ids = torch.tensor([full])
        with torch.no_grad():
            logp = model(ids).logits.log_softmax(-1)[0]
        lls.append(sum(logp[i - 1, full[i]].item() for i in range(len(ctx), len(full))))
    return lls


@needs_data
def test_local_zeroshot_tasks_score_the_standard_prompts(tiny_model_dir):
    """lm-eval on the local AI2 jsonl gives exactly the acc/acc_norm of the standard prompts."""
    path = tiny_model_dir("llama", max_position_embeddings=1024)  # no left truncation of long prompts
    model, tok = ev.load(path)
    limit = 6
    result = ev.zeroshot(model, ["arc_easy", "openbookqa"], data_dir=ZEROSHOT, limit=limit, tokenizer=tok)
    prompts = {"arc_easy": ("arc_easy_dev.jsonl", "Question: {}\nAnswer:"), "openbookqa": ("openbookqa_test.jsonl", "{}")}
    for task, (file, template) in prompts.items():
        docs = [json.loads(line) for line in (ZEROSHOT / file).read_text().splitlines()[:limit]]
        acc = acc_norm = 0
        for doc in docs:
            choices = [c["text"] for c in doc["question"]["choices"]]
            gold = [c["label"] for c in doc["question"]["choices"]].index(doc["answerKey"].strip())
            lls = _reference_choice_scores(model, tok, template.format(doc["question"]["stem"]), choices)
            acc += max(range(len(lls)), key=lambda i: lls[i]) == gold
            norm = [ll / len(c) for ll, c in zip(lls, choices)]  # lm-eval: per character of the choice text
            acc_norm += max(range(len(norm)), key=lambda i: norm[i]) == gold
        assert result[task]["n"] == limit
        assert result[task]["acc"] == pytest.approx(acc / limit)
        assert result[task]["acc_norm"] == pytest.approx(acc_norm / limit)


def test_ai2_adapter_rejects_unknown_answer_key():
    from tyr.tasks import ai2

    doc = {"id": "q", "question": {"stem": "s", "choices": [{"text": "a", "label": "A"}]}, "answerKey": "B"}
    with pytest.raises(ValueError, match="answerKey 'B'"):
        ai2.arc_row(doc)
    doc["answerKey"] = "A"
    assert ai2.openbookqa_row(doc) == {"id": "q", "question_stem": "s", "choices": {"text": ["a"], "label": ["A"]},
                                       "answerKey": "A"}


def test_speed_reports_throughput_and_memory(tiny_model_dir):
    model, tok = ev.load(tiny_model_dir("llama"))
    s = ev.speed(model, tok, prompt_tokens=32, new_tokens=8, repeats=2)
    assert s["prefill_tokens_per_s"] > 0 and s["decode_tokens_per_s"] > 0
    assert s["peak_memory_mib"] >= s["weights_mib"] > 0
    # Same seed, same prompt: dense and pruned are timed on identical inputs.
    assert torch.equal(ev._prompt(128, tok, 1, 16, 0), ev._prompt(128, tok, 1, 16, 0))
    assert not set(ev._prompt(128, tok, 2, 64, 0).flatten().tolist()) & set(tok.all_special_ids)


def test_evaluate_model_writes_one_json(tiny_model_dir, tmp_path):
    path = tiny_model_dir("llama")
    out = tmp_path / "dense.json"
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    r = ev.evaluate_model(path, out, wikitext=text, seq_len=128, speed={"prompt_tokens": 16, "new_tokens": 4, "repeats": 1})
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))
    assert r["params"]["total"] == sum(p.numel() for p in ev.load(path)[0].parameters())
    assert r["perplexity"]["windows"] == len(text.read_text()) // 128 and "speed" in r and "zeroshot" not in r
    assert r["model_type"] == "llama" and list(r["seconds"]) == ["load", "speed", "perplexity"]


def _eval_json(path, *, prunable, total, ppl, accs, prefill, decode, memory):
    zs = {t: {"acc": a, "acc_norm": a + 0.1, "n": 100, "limit": 100} for t, a in accs.items()}
    speed = {"prefill_tokens_per_s": prefill, "decode_tokens_per_s": decode, "peak_memory_mib": memory,
             "weights_mib": total / 2**18, "prompt_tokens": 256, "new_tokens": 64, "batch_size": 1,
             "device": "cpu", "threads": 2}
    write_json(path, {"model": str(path), "params": {"total": total, "backbone": prunable + 10, "backbone_prunable": prunable},
                      "perplexity": {"perplexity": ppl, "seq_len": 2048, "windows": 140}, "zeroshot": zs,
                      "average": ev.average(zs), "speed": speed})
    return path


def test_summary_retention_and_speedups(tmp_path, tiny_model_dir):
    from transformers import AutoConfig

    from tyr import sparsity
    from tyr.model import spec_from_config

    spec = spec_from_config(AutoConfig.from_pretrained(tiny_model_dir("llama")))
    spec.to_json(tmp_path / "spec.json")
    dense_prunable = sparsity.backbone_prunable_params(spec)
    kept = dense_prunable * 3 // 5
    dense = _eval_json(tmp_path / "d.json", prunable=dense_prunable, total=100_000, ppl=10.0,
                       accs={"arc_easy": 0.6, "openbookqa": 0.3}, prefill=100.0, decode=20.0, memory=400.0)
    pruned = _eval_json(tmp_path / "p.json", prunable=kept, total=80_000, ppl=15.0,
                        accs={"arc_easy": 0.45, "openbookqa": 0.3}, prefill=150.0, decode=30.0, memory=300.0)
    layers = [{"attn": 3, "mlp": 96}, {"attn": 0, "mlp": 48}, {"attn": 4, "mlp": 0}]
    write_json(tmp_path / "g.json", {"target_sparsity": 0.4, "sparsity": 0.4, "layers": layers})
    s = ev.summarize(dense, pruned, tmp_path / "spec.json", tmp_path / "g.json", tmp_path / "tyr" / "eval" / "summary.json")

    assert s["sparsity"] == pytest.approx(1 - kept / dense_prunable)
    assert s["perplexity"] == {"dense": 10.0, "pruned": 15.0, "ratio": 1.5, "seq_len": 2048, "windows": 140, "source": None}
    assert s["average"]["dense"]["acc"] == pytest.approx(0.45) and s["average"]["pruned"]["acc"] == pytest.approx(0.375)
    assert s["retention"]["acc"] == pytest.approx(0.375 / 0.45)
    assert s["retention"]["acc_norm"] == pytest.approx(0.475 / 0.55)
    assert s["zeroshot"]["arc_easy"]["pruned"]["acc"] == 0.45
    assert s["speed"]["prefill_speedup"] == pytest.approx(1.5) and s["speed"]["decode_speedup"] == pytest.approx(1.5)
    assert s["speed"]["memory_ratio"] == pytest.approx(0.75) and s["params"]["total_ratio"] == pytest.approx(0.8)
    assert json.loads((tmp_path / "tyr" / "eval" / "summary.json").read_text())["retention"] == s["retention"]
    assert s["method"] == "tyr" and [r["attn_sparsity"] for r in s["distribution"]] == [0.25, 1.0, 0.0]
    assert [r["mlp_sparsity"] for r in s["distribution"]] == [0.0, 0.5, 1.0]

    # An export's own record (compensation biases outside the accounting) gives the sparsity.
    record = json.loads(pruned.read_text())
    record["pruning"] = {"params": {"total": 80_000, "backbone_prunable": kept - 64}}
    write_json(tmp_path / "p1.json", record)
    s1 = ev.summarize(dense, tmp_path / "p1.json", tmp_path / "spec.json", tmp_path / "g.json", tmp_path / "s1.json")
    assert s1["sparsity"] == pytest.approx(1 - (kept - 64) / dense_prunable)
    record["pruning"]["params"]["total"] = 79_999
    write_json(tmp_path / "p1.json", record)
    with pytest.raises(ValueError, match="export record"):
        ev.summarize(dense, tmp_path / "p1.json", tmp_path / "spec.json", tmp_path / "g.json", tmp_path / "s1.json")

    # Numbers measured differently are refused, not compared.
    other = json.loads(pruned.read_text())
    other["zeroshot"]["arc_easy"]["n"] = 50
    write_json(tmp_path / "p2.json", other)
    with pytest.raises(ValueError, match="different tasks or sample counts"):
        ev.summarize(dense, tmp_path / "p2.json", tmp_path / "spec.json", tmp_path / "g.json", tmp_path / "s2.json")
    with pytest.raises(ValueError, match="does not describe the dense model"):
        ev.summarize(pruned, dense, tmp_path / "spec.json", tmp_path / "g.json", tmp_path / "s3.json")
