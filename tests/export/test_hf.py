"""Export: a genome becomes a standalone HF folder that loads without tyr installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers.export_factory import (
    CHANNELS,
    HEADS,
    build_supernet,
    genome,
    masked_dense_logits,
    masked_dense_logits_of,
    run_clean,
)
from tyr.core.io import save_safetensors, write_json
from tyr.export import hf as ex
from tyr.model import adapter, sparsity
from tyr.model.families import spec_from_config


# Tiny llama (conftest): 3 layers, 4 query heads over 2 KV heads (group 2), head_dim 16, 96 channels.
@pytest.fixture
def setup(tiny_model_dir, tmp_path):
    """(dense dir, spec.json, supernet.json, spec) for a tiny llama, optionally with tied embeddings."""

    def make(**overrides):
        from transformers import AutoConfig

        model_dir = tiny_model_dir("llama", **overrides)
        spec = spec_from_config(AutoConfig.from_pretrained(model_dir))
        spec_json = tmp_path / "spec.json"
        spec.to_json(spec_json)
        supernet = build_supernet(model_dir, spec, tmp_path / "supernet", HEADS, CHANNELS)
        return model_dir, spec_json, supernet, spec

    return make


def export_genome(setup_tuple, tmp_path, heads, channels, name="pruned", **kw):
    model_dir, spec_json, supernet, spec = setup_tuple
    g = tmp_path / f"{name}.json"
    write_json(g, genome(supernet, spec, heads, channels))
    out = tmp_path / name
    return out, ex.export(model_dir, spec_json, g, out, **kw)


@pytest.mark.parametrize("tied", [False, True])
def test_export_loads_without_tyr_and_keeps_promise(setup, tmp_path, tied):
    s = setup(tie_word_embeddings=tied)
    model_dir, _, _, spec = s
    out, summary = export_genome(s, tmp_path, HEADS, CHANNELS)
    result = run_clean(out, tmp_path)
    assert result["generated"] == 5 and result["roundtrip_equal"] and result["tied"] == tied
    assert result["tokenizer_prompted"] == [] and result["tokenizer"]

    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama" and config["source_model_type"] == "llama"
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_tyr.TyrForCausalLM"
    assert config["layer_q_heads"] == [3, 0, 2] and config["layer_kv_heads"] == [2, 0, 2]
    assert config["layer_q_to_kv"] == [[0, 1, 1], [], [0, 1]] and config["layer_intermediate"] == [48, 7, 0]
    assert (out / "modeling_tyr.py").read_bytes() == ex.MODELING_FILE.read_bytes()
    assert (out / "tokenizer.json").exists() and (out / "README.md").exists()

    # Parameter count: what tyr.model.sparsity promised for the genome's shapes, tensor for tensor.
    promised = sparsity.kept_params(
        spec, [{"attn": (3, 2), "mlp": 48}, {"attn": (0, 0), "mlp": 7}, {"attn": (2, 2), "mlp": 0}]
    )
    assert summary["params"]["backbone_prunable"] == promised
    assert result["params"] == spec.params["total"] - spec.params["backbone_prunable"] + promised
    assert summary["params"]["total"] == result["params"]

    ids = torch.tensor([[3, 9, 27, 81, 4, 12, 40]])
    ref = masked_dense_logits(model_dir, spec, HEADS, CHANNELS, ids)
    assert torch.allclose(torch.tensor(result["logits"]), ref[0, -1, :8], atol=1e-5)


def test_full_density_genome_equals_dense(setup, tmp_path):
    s = setup()
    model_dir, _, _, spec = s
    full_heads = [list(range(spec.num_heads))] * spec.num_layers
    full_channels = [list(range(n)) for n in spec.intermediate_size]
    out, summary = export_genome(s, tmp_path, full_heads, full_channels, name="full")
    assert summary["sparsity"] == 0.0 and summary["params"]["total"] == spec.params["total"]

    from transformers import AutoModelForCausalLM

    pruned = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    dense_tyr = adapter.load_model(model_dir)
    dense_hf = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = torch.randint(3, 128, (2, 19))
    with torch.no_grad():
        got = pruned(ids).logits
        assert torch.equal(got, dense_tyr(ids).logits)  # same code, same tensors: bit-identical
        assert torch.allclose(got, dense_hf(ids).logits, atol=1e-5)


def test_export_matches_masked_dense_in_process(setup, tmp_path):
    """Heterogeneous layers in process (cheaper than the subprocess), over many positions."""
    s = setup()
    model_dir, _, _, spec = s
    out, _ = export_genome(s, tmp_path, HEADS, CHANNELS)
    from transformers import AutoModelForCausalLM

    pruned = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    assert pruned.model.layers[1].self_attn is None and pruned.model.layers[2].mlp is None
    ids = torch.randint(3, 128, (2, 23))
    with torch.no_grad():
        assert torch.allclose(pruned(ids).logits, masked_dense_logits(model_dir, spec, HEADS, CHANNELS, ids), atol=1e-5)


def test_export_refuses_broken_promises(setup, tmp_path):
    s = setup()
    model_dir, spec_json, supernet, spec = s
    g = genome(supernet, spec, HEADS, CHANNELS)
    bad_level = dict(g, layers=[dict(g["layers"][0], mlp=13), *g["layers"][1:]])
    write_json(tmp_path / "g1.json", bad_level)
    with pytest.raises(ex.ExportError, match="layer 0 mlp: genome keeps 13"):
        ex.export(model_dir, spec_json, tmp_path / "g1.json", tmp_path / "o1")
    write_json(tmp_path / "g2.json", dict(g, sparsity=g["sparsity"] + 0.01))
    with pytest.raises(ex.ExportError, match="claims sparsity"):
        ex.export(model_dir, spec_json, tmp_path / "g2.json", tmp_path / "o2")
    # A level whose params entry disagrees with tyr.model.sparsity is caught too.
    index = json.loads(Path(supernet).read_text())
    index["layers"][2]["attn"][1]["params"] += 1
    Path(supernet).write_text(json.dumps(index))
    write_json(tmp_path / "g3.json", g)
    with pytest.raises(ex.ExportError, match="supernet levels promise"):
        ex.export(model_dir, spec_json, tmp_path / "g3.json", tmp_path / "o3")
    assert not any(p.name.startswith("o") and p.is_dir() for p in tmp_path.iterdir())  # nothing half-written


def test_shard_writer_splits_and_indexes(tmp_path):
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME

    writer = ex.ShardWriter(tmp_path, max_bytes=1000)
    tensors = {f"t{i}": torch.full((100,), float(i)) for i in range(5)}  # 400 bytes each: 2 per shard
    writer.add(tensors)
    writer.close()
    index = json.loads((tmp_path / SAFE_WEIGHTS_INDEX_NAME).read_text())
    assert sorted(set(index["weight_map"].values())) == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    loaded = adapter.load_state(tmp_path)
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items()) and len(loaded) == 5


def test_model_card_records_pruning_and_calibration(setup, tmp_path):
    import zarr

    s = setup()
    calib = zarr.open_group(str(tmp_path / "tokens.zarr"), mode="w")
    for split, n in (("prune", 4), ("fitness", 3), ("selection", 2), ("heldout", 1)):
        calib.create_array(split, shape=(n, 32), dtype="int32")
    calib.attrs.update({"source": "wikitext-2/valid.txt", "seed": 0, "seq_len": 32})
    card = {
        "base_model": "tiny-llama",
        "tokens_zarr": tmp_path / "tokens.zarr",
        "evaluation": {"pruned": {"perplexity": 12.5}},
    }
    out, summary = export_genome(s, tmp_path, HEADS, CHANNELS, card=card)
    text = (out / "README.md").read_text()
    assert "base_model: tiny-llama" in text and "wikitext-2/valid.txt" in text
    # every split's shape, the selection split included (it was left out once)
    for split, n in (("prune", 4), ("fitness", 3), ("selection", 2), ("heldout", 1)):
        assert f"| {split} sequences x tokens | {n}x32 |" in text
    assert f"{100 * summary['sparsity']:.2f}%" in text and "pruned.perplexity | 12.5" in text
    assert "| 1 | 0/4 | 0/2 | 100.00% | 7/96 |" in text

    # An evaluation plan and prompts: the data sets to be used, the skips, and greedy continuations.
    plan = {
        "perplexity": {"heldout": {"source": "heldout", "label": "held-out split"}},
        "zeroshot": {"tasks": [], "dir": None},
        "skipped": {"wikitext2": "offline"},
    }
    out2, _ = export_genome(
        s, tmp_path / "b", HEADS, CHANNELS, card={"evaluation_plan": plan, "prompts": ["ab", "cd"], "new_tokens": 4}
    )
    text = (out2 / "README.md").read_text()
    assert "- perplexity `heldout`: held-out split" in text and "- wikitext2: skipped (offline)" in text
    assert "| prompt | dense | pruned |" in text and "| ab |" in text and "| cd |" in text


def test_compensation_biases_switch_config_flags(setup, tmp_path):
    """FLAP-style levels carry o_proj/down_proj biases the dense llama lacks: the export gets
    bias-carrying projections, zero where a kept projection has none stored."""
    from tyr.core.io import load_safetensors

    s = setup()
    model_dir, _, supernet, spec = s
    index = json.loads(Path(supernet).read_text())
    torch.manual_seed(1)
    o_bias, down_bias = torch.randn(spec.hidden_size), torch.randn(spec.hidden_size)
    for layer, sub, name, bias in ((0, "attn", "o_proj.bias", o_bias), (1, "mlp", "down_proj.bias", down_bias)):
        path = Path(supernet).parent / index["layers"][layer][sub][1]["file"]
        tensors, meta = load_safetensors(path)
        save_safetensors(path, {**tensors, name: bias}, meta)
    out, summary = export_genome(s, tmp_path, HEADS, CHANNELS)
    config = json.loads((out / "config.json").read_text())
    assert config["o_bias"] is True and config["down_bias"] is True
    # Biases on kept projections only: o_proj of layers 0 and 2 (1 has no attention), down_proj of 0 and 1.
    assert summary["params"]["added_bias"] == 4 * spec.hidden_size

    from transformers import AutoModelForCausalLM

    pruned = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    assert sum(p.numel() for p in pruned.parameters()) == summary["params"]["total"]
    assert torch.equal(pruned.model.layers[2].self_attn.o_proj.bias, torch.zeros(spec.hidden_size))
    ids = torch.randint(3, 128, (1, 11))
    ref = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ref.model.layers[0].self_attn.o_proj.register_forward_hook(lambda m, i, o: o + o_bias)
    ref.model.layers[1].mlp.down_proj.register_forward_hook(lambda m, i, o: o + down_bias)
    got = pruned(ids).logits
    expected = masked_dense_logits_of(ref, spec, HEADS, CHANNELS, ids)
    assert torch.allclose(got, expected, atol=1e-5)


def test_export_then_evaluate_and_summarize(setup, tmp_path):
    """The exported folder goes through tyr.evaluate.measure like the dense one; the summary agrees with export."""
    from tyr.evaluate import measure as ev
    from tyr.evaluate.summary import summarize

    s = setup()
    model_dir, spec_json, _, _ = s
    out, summary = export_genome(s, tmp_path, HEADS, CHANNELS)
    text = tmp_path / "text.txt"
    text.write_text("pruning keeps what matters and drops the rest. " * 30)
    plan = {"perplexity": {"wikitext2": {"source": str(text), "label": "text"}}, "zeroshot": {"tasks": [], "dir": None}}
    opts = dict(plan=plan, seq_len=64, speed={"prompt_tokens": 16, "new_tokens": 4, "repeats": 1})
    dense = ev.evaluate_model(model_dir, tmp_path / "dense.json", **opts)
    pruned = ev.evaluate_model(out, tmp_path / "pruned.json", **opts)
    # config.json names the source architecture (so tokenizers load without custom code).
    assert pruned["model_type"] == "llama" and pruned["params"]["total"] == summary["params"]["total"]
    genome_json = tmp_path / "genome.json"
    write_json(genome_json, genome(s[2], s[3], HEADS, CHANNELS))
    got = summarize(
        tmp_path / "dense.json",
        tmp_path / "pruned.json",
        spec_json,
        genome_json,
        tmp_path / "tyr" / "eval" / "summary.json",
    )
    assert got["sparsity"] == pytest.approx(summary["sparsity"]) and got["method"] == "tyr"
    assert got["perplexity"]["wikitext2"]["dense"] == dense["perplexity"]["wikitext2"]["perplexity"]
    assert [r["attn_kept"] for r in got["distribution"]] == [3, 0, 2]
