"""Dense-vs-pruned summary: retention, speed-ups, pairing by data set, refusals."""

from __future__ import annotations

import json

import pytest

from tyr.core.io import write_json
from tyr.evaluate.summary import summarize
from tyr.evaluate.zeroshot import average


def _eval_json(path, *, prunable, total, ppl, accs, prefill, decode, memory):
    zs = {t: {"acc": a, "acc_norm": a + 0.1, "n": 100, "limit": 100} for t, a in accs.items()}
    speed = {
        "prefill_tokens_per_s": prefill,
        "decode_tokens_per_s": decode,
        "peak_memory_mib": memory,
        "weights_mib": total / 2**18,
        "prompt_tokens": 256,
        "new_tokens": 64,
        "batch_size": 1,
        "device": "cpu",
        "threads": 2,
    }
    write_json(
        path,
        {
            "model": str(path),
            "params": {"total": total, "backbone": prunable + 10, "backbone_prunable": prunable},
            "perplexity": {
                "wikitext2": {"perplexity": ppl, "seq_len": 2048, "windows": 140, "source": "w.txt", "label": "W"}
            },
            "zeroshot": zs,
            "average": average(zs),
            "speed": speed,
        },
    )
    return path


def test_summary_retention_and_speedups(tmp_path, tiny_model_dir):
    from transformers import AutoConfig

    from tyr.model import sparsity
    from tyr.model.families import spec_from_config

    spec = spec_from_config(AutoConfig.from_pretrained(tiny_model_dir("llama")))
    spec.to_json(tmp_path / "spec.json")
    dense_prunable = sparsity.backbone_prunable_params(spec)
    kept = dense_prunable * 3 // 5
    dense = _eval_json(
        tmp_path / "d.json",
        prunable=dense_prunable,
        total=100_000,
        ppl=10.0,
        accs={"arc_easy": 0.6, "openbookqa": 0.3},
        prefill=100.0,
        decode=20.0,
        memory=400.0,
    )
    pruned = _eval_json(
        tmp_path / "p.json",
        prunable=kept,
        total=80_000,
        ppl=15.0,
        accs={"arc_easy": 0.45, "openbookqa": 0.3},
        prefill=150.0,
        decode=30.0,
        memory=300.0,
    )
    layers = [{"attn": 3, "mlp": 96}, {"attn": 0, "mlp": 48}, {"attn": 4, "mlp": 0}]
    write_json(tmp_path / "g.json", {"target_sparsity": 0.4, "sparsity": 0.4, "layers": layers})
    s = summarize(
        dense, pruned, tmp_path / "spec.json", tmp_path / "g.json", tmp_path / "tyr" / "eval" / "summary.json"
    )

    assert s["sparsity"] == pytest.approx(1 - kept / dense_prunable)
    assert s["perplexity"] == {
        "wikitext2": {
            "dense": 10.0,
            "pruned": 15.0,
            "ratio": 1.5,
            "seq_len": 2048,
            "windows": 140,
            "source": "w.txt",
            "label": "W",
        }
    }
    assert s["average"]["dense"]["acc"] == pytest.approx(0.45) and s["average"]["pruned"]["acc"] == pytest.approx(0.375)
    assert s["retention"]["acc"] == pytest.approx(0.375 / 0.45)
    assert s["retention"]["acc_norm"] == pytest.approx(0.475 / 0.55)
    assert s["zeroshot"]["arc_easy"]["pruned"]["acc"] == 0.45
    assert s["speed"]["prefill_speedup"] == pytest.approx(1.5) and s["speed"]["decode_speedup"] == pytest.approx(1.5)
    assert s["speed"]["memory_ratio"] == pytest.approx(0.75) and s["params"]["total_ratio"] == pytest.approx(0.8)
    assert json.loads((tmp_path / "tyr" / "eval" / "summary.json").read_text())["retention"] == s["retention"]
    assert s["method"] == "tyr" and [r["attn_sparsity"] for r in s["distribution"]] == [0.25, 1.0, 0.0]
    assert [r["mlp_sparsity"] for r in s["distribution"]] == [0.0, 0.5, 1.0]
    assert "gguf" not in s
    write_json(
        tmp_path / "table.json", {"result": "s50/tyr", "rows": []}
    )  # gguf.enabled: llama.cpp's table rides along
    s_gguf = summarize(
        dense,
        pruned,
        tmp_path / "spec.json",
        tmp_path / "g.json",
        tmp_path / "sg.json",
        gguf_json=tmp_path / "table.json",
    )
    assert s_gguf["gguf"] == {"result": "s50/tyr", "rows": []}

    # An export's own record (compensation biases outside the accounting) gives the sparsity.
    record = json.loads(pruned.read_text())
    record["pruning"] = {"params": {"total": 80_000, "backbone_prunable": kept - 64}}
    write_json(tmp_path / "p1.json", record)
    s1 = summarize(dense, tmp_path / "p1.json", tmp_path / "spec.json", tmp_path / "g.json", tmp_path / "s1.json")
    assert s1["sparsity"] == pytest.approx(1 - (kept - 64) / dense_prunable)
    record["pruning"]["params"]["total"] = 79_999
    write_json(tmp_path / "p1.json", record)
    with pytest.raises(ValueError, match="export record"):
        summarize(dense, tmp_path / "p1.json", tmp_path / "spec.json", tmp_path / "g.json", tmp_path / "s1.json")

    # Numbers measured differently are refused, not compared.
    other = json.loads(pruned.read_text())
    other["zeroshot"]["arc_easy"]["n"] = 50
    write_json(tmp_path / "p2.json", other)
    with pytest.raises(ValueError, match="different tasks or sample counts"):
        summarize(dense, tmp_path / "p2.json", tmp_path / "spec.json", tmp_path / "g.json", tmp_path / "s2.json")
    with pytest.raises(ValueError, match="does not describe the dense model"):
        summarize(pruned, dense, tmp_path / "spec.json", tmp_path / "g.json", tmp_path / "s3.json")


def test_summary_pairs_only_figures_measured_the_same_way(tmp_path, tiny_model_dir):
    """Perplexities pair by data set; different windows are refused; skips and continuations are carried."""
    from transformers import AutoConfig

    from tyr.model import sparsity
    from tyr.model.families import spec_from_config

    spec = spec_from_config(AutoConfig.from_pretrained(tiny_model_dir("llama")))
    spec.to_json(tmp_path / "spec.json")
    n = sparsity.backbone_prunable_params(spec)
    dense = _eval_json(
        tmp_path / "d.json",
        prunable=n,
        total=100,
        ppl=10.0,
        accs={"arc_easy": 0.5},
        prefill=1.0,
        decode=1.0,
        memory=1.0,
    )
    pruned = _eval_json(
        tmp_path / "p.json",
        prunable=n // 2,
        total=50,
        ppl=20.0,
        accs={"arc_easy": 0.4},
        prefill=1.0,
        decode=1.0,
        memory=1.0,
    )
    d, p = json.loads(dense.read_text()), json.loads(pruned.read_text())
    d["perplexity"]["heldout"] = {"perplexity": 5.0, "seq_len": 256, "windows": 16, "label": "H"}
    d["continuations"] = [{"prompt": "Hi", "continuation": " there"}]
    p["continuations"] = [{"prompt": "Hi", "continuation": " the the"}]
    p["skipped"] = {"wikitext-raw": "offline"}
    write_json(dense, d)
    write_json(pruned, p)
    write_json(
        tmp_path / "g.json",
        {"target_sparsity": 0.5, "sparsity": 0.5, "layers": [{"attn": 4, "mlp": 96}] * spec.num_layers},
    )
    s = summarize(dense, pruned, tmp_path / "spec.json", tmp_path / "g.json", tmp_path / "s.json")
    assert set(s["perplexity"]) == {"wikitext2"}  # the pruned model has no held-out figure: nothing to pair
    assert s["continuations"] == [{"prompt": "Hi", "dense": " there", "pruned": " the the"}]
    assert s["skipped"] == {"wikitext-raw": "offline"}
    p["perplexity"]["wikitext2"]["windows"] = 7
    write_json(pruned, p)
    with pytest.raises(ValueError, match="measured differently"):
        summarize(dense, pruned, tmp_path / "spec.json", tmp_path / "g.json", tmp_path / "s.json")
