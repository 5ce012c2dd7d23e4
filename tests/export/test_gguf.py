"""GGUF export: a tiny random Llama with its own heads, KV grouping and MLP width per layer, written
as llama.cpp's `deci` architecture, loaded by llama.cpp itself; its logits must equal PyTorch's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.export_factory import CHANNELS, HEADS, build_supernet, genome
from tyr.core.io import write_json
from tyr.evaluate import llamacpp
from tyr.export import hf
from tyr.export.gguf import export_gguf, rope_permute
from tyr.export.gguf_layout import GGUFError, layer_layout
from tyr.export.quantize import quantize
from tyr.model.adapter import load_config, load_model
from tyr.model.families import spec_from_config

# f32 weights and an f32 KV cache: llama.cpp and PyTorch differ only by summation order.
ATOL = 1e-5
# Layer 0 keeps no query head (the zero head), uneven GQA, a layer without MLP but with attention.
HEADS_L0 = [[], [1, 2, 3], [0, 3]]


def _pruned(tiny_model_dir, tmp_path, heads, channels=CHANNELS, **overrides):
    from transformers import AutoConfig

    model_dir = tiny_model_dir("llama", **overrides)
    spec = spec_from_config(AutoConfig.from_pretrained(model_dir))
    spec.to_json(tmp_path / "spec.json")
    supernet = build_supernet(model_dir, spec, tmp_path / "supernet", heads, channels)
    write_json(tmp_path / "genome.json", genome(supernet, spec, heads, channels))
    hf.export(model_dir, tmp_path / "spec.json", tmp_path / "genome.json", tmp_path / "pruned")
    return tmp_path / "pruned"


def _logits_match(folder, gguf_path):
    ids = torch.randint(3, 128, (40,), generator=torch.Generator().manual_seed(0))
    llm = llamacpp.load(gguf_path, n_ctx=64, threads=1, logits_all=True, kv_f32=True)
    try:
        theirs = llamacpp.logits(llm, ids.tolist())
    finally:
        llm.close()
    with torch.no_grad():
        ours = load_model(folder)(ids[None]).logits[0].numpy()
    return np.abs(theirs - ours).max(), np.abs(ours).max()


@pytest.mark.parametrize("heads", [HEADS, HEADS_L0], ids=["uneven-gqa", "layer0-no-attention"])
@pytest.mark.parametrize("tied", [False, True])
def test_llama_cpp_logits_equal_pytorch(tiny_model_dir, tmp_path, heads, tied):
    pruned = _pruned(tiny_model_dir, tmp_path, heads, tie_word_embeddings=tied)
    record = export_gguf(pruned, tmp_path / "m.gguf", tokenizer_source=pruned)
    err, scale = _logits_match(pruned, tmp_path / "m.gguf")
    assert err < ATOL, f"max |llama.cpp - PyTorch| = {err:.2e} (logits up to {scale:.2f})"
    layers = record["layers"]
    assert layers[2]["zero_channels"] == 32 and [x["q_heads"] for x in layers[1:]] == [len(h) for h in heads[1:]]
    assert layers[0]["zero_head"] == (heads[0] == [])


def test_dense_model_round_trips_and_quantizes(tiny_model_dir, tmp_path):
    """The dense source folder itself exports too; llama.cpp's Q8_0 of it stays close."""
    from transformers import AutoConfig

    model_dir = tiny_model_dir("llama", intermediate_size=128)
    export_gguf(model_dir, tmp_path / "f32.gguf", tokenizer_source=model_dir)
    err, _ = _logits_match(model_dir, tmp_path / "f32.gguf")
    assert err < ATOL
    q = quantize(tmp_path / "f32.gguf", tmp_path / "q8.gguf", "Q8_0")
    assert q["bytes"] < (tmp_path / "f32.gguf").stat().st_size / 2
    err8, scale = _logits_match(model_dir, tmp_path / "q8.gguf")
    assert err8 < 0.05 * scale, (err8, scale)
    assert AutoConfig.from_pretrained(model_dir).num_hidden_layers == 3


def test_half_precision_files_stay_close(tiny_model_dir, tmp_path):
    pruned = _pruned(tiny_model_dir, tmp_path, HEADS)
    export_gguf(pruned, tmp_path / "f16.gguf", tokenizer_source=pruned, ftype="f16")
    err, scale = _logits_match(pruned, tmp_path / "f16.gguf")
    assert err < 1e-2 * scale


def test_irregular_groups_become_equal_contiguous_groups():
    """KV 0 serves query 2, KV 1 serves queries 0, 1, 3: gcd 1, so KV 1 is repeated three times."""

    class C:
        layer_q_heads, layer_kv_heads, layer_intermediate = [4], [2], [8]
        layer_q_to_kv = [[1, 1, 0, 1]]

    layout = layer_layout(C, 0)
    assert layout.q_order == (2, 0, 1, 3) and layout.kv_order == (0, 1, 1, 1)
    C.layer_q_to_kv = [[0, 0, 1, 1]]
    assert layer_layout(C, 0).kv_order == (0, 1)  # regular GQA stays as it is


def test_refusals_name_the_layer_and_the_rule(tiny_model_dir, tmp_path):
    pruned = _pruned(tiny_model_dir, tmp_path, HEADS_L0)
    with pytest.raises(GGUFError, match="layer 0 keeps no query head.*layer 0 needs >= 1 query head"):
        export_gguf(pruned, tmp_path / "x.gguf", tokenizer_source=pruned, pad=False)
    config = load_config(pruned)
    config.layer_q_heads[0] = 1  # past the layer-0 rule, the attention-without-MLP one
    with pytest.raises(GGUFError, match="layer 2 keeps attention .* but no MLP channel"):
        layer_layout(config, 2, pad=False)
    assert not (tmp_path / "x.gguf").exists()


def test_refuses_q_k_norm(tiny_model_dir, tmp_path):
    qwen3 = tiny_model_dir("qwen3")
    with pytest.raises(GGUFError, match="qk_norm"):
        export_gguf(qwen3, tmp_path / "q.gguf", tokenizer_source=qwen3)


def test_rope_permutation_pairs_halves():
    """Row i of a head's second half lands right after row i of its first half."""
    t = torch.arange(8.0)[:, None]  # one head of 8 dims: halves [0..3], [4..7]
    assert rope_permute(t, 8)[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
