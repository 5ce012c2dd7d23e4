"""Evaluation: perplexity protocol, offline zero-shot tasks, speed fields, dense-vs-pruned summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.data import SHARED_DATA
from tyr.calib.stores import write_tokens
from tyr.evaluate import measure as ev
from tyr.evaluate import perplexity as ppl
from tyr.evaluate import zeroshot as zs

WIKITEXT = Path(SHARED_DATA) / "wikitext-2" / "test.txt"
ZEROSHOT = Path(SHARED_DATA) / "zeroshot"
needs_data = pytest.mark.skipif(not WIKITEXT.exists() or not ZEROSHOT.exists(), reason="shared data not present")


@needs_data
def test_perplexity_matches_transformers_loss(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    path = tiny_model_dir("llama")
    model, tok = ev.load(path)
    text = WIKITEXT.read_text()[:1600]
    got = ppl.perplexity(model, tok, [text], seq_len=64, batch_size=3)

    # Direct computation: HF's own model and loss, window by window.
    ref = AutoModelForCausalLM.from_pretrained(path).eval()
    ids = tok(text, return_tensors="pt").input_ids[0]
    n = ids.numel() // 64
    with torch.no_grad():
        losses = [ref(w[None], labels=w[None]).loss for w in ids[: n * 64].view(n, 64)]
    assert got["windows"] == n and got["scored_tokens"] == n * 63
    assert math.isclose(got["perplexity"], math.exp(torch.stack(losses).mean().item()), rel_tol=1e-5)

    # seq_len is capped at the context length; max_windows takes the first windows only.
    capped = ppl.perplexity(model, tok, [text], seq_len=4096, max_windows=2)
    assert capped["seq_len"] == 256 and capped["windows"] == 2
    # Documents are joined with a blank line, the GPTQ/SparseGPT convention.
    two = ppl.perplexity(model, tok, [text[:800], text[800:]], seq_len=64)
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
    result = zs.zeroshot(model, ["arc_easy", "openbookqa"], data_dir=ZEROSHOT, limit=limit, tokenizer=tok)
    prompts = {
        "arc_easy": ("arc_easy_dev.jsonl", "Question: {}\nAnswer:"),
        "openbookqa": ("openbookqa_test.jsonl", "{}"),
    }
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
    from tyr.evaluate.tasks import ai2

    doc = {"id": "q", "question": {"stem": "s", "choices": [{"text": "a", "label": "A"}]}, "answerKey": "B"}
    with pytest.raises(ValueError, match="answerKey 'B'"):
        ai2.arc_row(doc)
    doc["answerKey"] = "A"
    assert ai2.openbookqa_row(doc) == {
        "id": "q",
        "question_stem": "s",
        "choices": {"text": ["a"], "label": ["A"]},
        "answerKey": "A",
    }


def test_evaluate_model_writes_one_json(tiny_model_dir, tmp_path):
    path = tiny_model_dir("llama")
    out = tmp_path / "dense.json"
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    tokens = tmp_path / "tokens.zarr"
    write_tokens(tokens, {"heldout": np.arange(3 * 20).reshape(3, 20) % 100}, {})
    plan = {
        "perplexity": {
            "wikitext2": {"source": str(text), "label": "a text"},
            "heldout": {"source": "heldout", "label": "held-out tokens"},
        },
        "zeroshot": {"tasks": [], "dir": None},
        "skipped": {"zeroshot:arc_easy": "no data"},
    }
    r = ev.evaluate_model(
        path,
        out,
        plan=plan,
        tokens_zarr=tokens,
        seq_len=128,
        prompts=["The fox"],
        new_tokens=5,
        speed={"prompt_tokens": 16, "new_tokens": 4, "repeats": 1},
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))
    assert r["params"]["total"] == sum(p.numel() for p in ev.load(path)[0].parameters())
    # Every figure is stored under its data set's name, with the label that says what it is.
    assert r["perplexity"]["wikitext2"]["windows"] == len(text.read_text()) // 128
    assert (
        r["perplexity"]["wikitext2"]["label"] == "a text" and r["perplexity"]["heldout"]["label"] == "held-out tokens"
    )
    assert r["perplexity"]["heldout"]["windows"] == 3 and r["perplexity"]["heldout"]["scored_tokens"] == 3 * 19
    assert r["skipped"] == {"zeroshot:arc_easy": "no data"} and "speed" in r and "zeroshot" not in r
    assert r["continuations"][0]["prompt"] == "The fox" and isinstance(r["continuations"][0]["continuation"], str)
    assert r["model_type"] == "llama"
    assert list(r["seconds"]) == ["load", "speed", "perplexity:wikitext2", "perplexity:heldout", "continuations"]


def test_heldout_perplexity_matches_transformers_loss(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    path = tiny_model_dir("llama")
    ids = np.random.default_rng(0).integers(3, 100, size=(4, 32))
    write_tokens(tmp_path / "t.zarr", {"heldout": ids}, {})
    model, _ = ev.load(path)
    got = ppl.heldout_perplexity(model, tmp_path / "t.zarr")
    ref = AutoModelForCausalLM.from_pretrained(path).eval()
    with torch.no_grad():
        losses = [ref(torch.tensor(w)[None], labels=torch.tensor(w)[None]).loss for w in ids]
    assert math.isclose(got["perplexity"], math.exp(torch.stack(losses).mean().item()), rel_tol=1e-5)
