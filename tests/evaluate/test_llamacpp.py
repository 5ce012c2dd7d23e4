"""llama.cpp's own checks of a GGUF file: its perplexity equals PyTorch's on the same windows (an
independent computation: tyr.evaluate.perplexity on the HF folder), its speed check runs, and the
table, summary and model card carry the numbers."""

from __future__ import annotations

import pytest

from helpers.supernet_factory import write_tokens
from tyr.core.io import read_json, write_json
from tyr.evaluate import llamacpp
from tyr.evaluate.gguf_table import gguf_table, markdown
from tyr.evaluate.perplexity import heldout_perplexity
from tyr.export.gguf import export_gguf
from tyr.export.gguf_card import write_card
from tyr.export.quantize import quantize
from tyr.model.adapter import load_model

PLAN = {"perplexity": {"heldout": {"source": "heldout", "label": "held-out split"}}}


@pytest.fixture
def files(tiny_model_dir, tmp_path):
    model = tiny_model_dir("llama", intermediate_size=128)
    tokens = write_tokens(tmp_path / "tokens.zarr", vocab_size=128, n_seq=3, seq_len=48)
    export_gguf(model, tmp_path / "model-f32.gguf", tokenizer_source=model)
    write_json(tmp_path / "model-f32.json", export_gguf(model, tmp_path / "again.gguf", tokenizer_source=model))
    quantize(tmp_path / "model-f32.gguf", tmp_path / "model-Q8_0.gguf", "Q8_0")
    return model, tokens, tmp_path


def test_perplexity_equals_pytorch_and_table_records_it(files):
    model, tokens, tmp = files
    speed = {"prompt_tokens": 16, "new_tokens": 4, "repeats": 2}
    checks = []
    for t in ("f32", "Q8_0"):
        result = llamacpp.check(
            tmp / f"model-{t}.gguf", model_dir=model, plan=PLAN, tokens_zarr=tokens, speed_options=speed, threads=1
        )
        write_json(tmp / f"check-{t}.json", result)
        checks.append(tmp / f"check-{t}.json")
    pytorch = heldout_perplexity(load_model(model), tokens)
    ours = read_json(checks[0])["perplexity"]["heldout"]
    assert ours["windows"] == pytorch["windows"] and ours["scored_tokens"] == pytorch["scored_tokens"]
    # llama.cpp's default f16 KV cache is the only rounding beyond summation order
    assert ours["perplexity"] == pytest.approx(pytorch["perplexity"], rel=1e-3)
    write_json(tmp / "eval.json", {"perplexity": {"heldout": pytorch}})
    table = gguf_table(
        checks, checks, tmp / "eval.json", tmp / "table.json", result="dense", export=tmp / "model-f32.json"
    )
    assert [r["type"] for r in table["rows"]] == ["f32", "Q8_0"]
    assert table["rows"][0]["pytorch"]["heldout"]["within_tolerance"]
    assert table["rows"][1]["bytes"] < table["rows"][0]["bytes"] / 2
    assert table["rows"][0]["decode_speedup"] == 1.0  # dense against itself
    write_card(table, tmp / "README.md")
    card = (tmp / "README.md").read_text()
    assert "llama-cli -m model-Q8_0.gguf" in card and "FROM ./model-Q8_0.gguf" in card
    assert f"llama-cpp-python {table['llama_cpp_python']}" in card
    assert any(line.startswith("| Q8_0 |") for line in markdown(table))


def test_logits_of_a_fresh_context(files):
    """Each call starts from an empty KV cache: the same ids give the same logits twice."""
    model, _, tmp = files
    llm = llamacpp.load(tmp / "model-f32.gguf", n_ctx=32, threads=1, logits_all=True)
    try:
        a = llamacpp.logits(llm, [5, 9, 11, 40])
        llamacpp.logits(llm, [7, 7, 7])
        assert (llamacpp.logits(llm, [5, 9, 11, 40]) == a).all()
    finally:
        llm.close()
