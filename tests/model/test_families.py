"""Model families (tyr.model.families): a new family is one adapter plus a tiny-model test.

Phi-3 is the proof. Its checkpoints fuse q/k/v into `qkv_proj` and gate/up into `gate_up_proj`;
tyr splits them into the canonical (Llama) tensors on the way in, prunes them like any other
family, exports a model that loads and generates without tyr, and writes an unstructured
result back as a plain Phi-3 folder.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from helpers.data import no_weight_loading
from helpers.export_factory import build_supernet, genome, masked_dense_logits, run_clean
from helpers.supernet_factory import write_tokens
from helpers.unstructured import check_export, prune_in_process
from tyr.core.io import write_json
from tyr.export.hf import export
from tyr.methods.unstructured.export import export as unstructured_export
from tyr.methods.unstructured.layer import MASK_PREFIX
from tyr.methods.unstructured.patterns import Pattern
from tyr.model import adapter, families, prepare
from tyr.model.families import UnsupportedArchitecture, tyr_config
from tyr.model.spec import ModelSpec

pytestmark = pytest.mark.usefixtures("single_thread")

# Tiny Phi-3 (conftest): 3 layers, 4 query heads over 2 KV heads, head_dim 16, 96 channels.
HEADS = [[0, 3], [], [1, 2, 3]]  # one head per KV group; no attention; KV0 keeps 1, KV1 keeps 2
CHANNELS = [[2, 7, 30, 31, 64, 95], list(range(1, 96, 2)), []]  # a few; half; no MLP
FUSED = ("self_attn.qkv_proj", "mlp.gate_up_proj")


@pytest.fixture
def phi3(tiny_model_dir, tmp_path):
    """A tiny random Phi-3 as `prepare` writes it (results/<run>/model): Phi-3's own tensor names."""
    return prepare.prepare_model(str(tiny_model_dir("phi3")), tmp_path / "model")


def hf_phi3(folder):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(model).__name__ == "Phi3ForCausalLM"
    return model


def test_phi3_names_split_and_fuse_back_to_the_same_tensors(phi3):
    family, config = adapter.folder_family(phi3)
    raw = load_file(str(phi3 / "model.safetensors"))
    assert family is families.family_of("phi3") and {f"model.layers.0.{m}.weight" for m in FUSED} <= set(raw)
    canonical = adapter.load_state(phi3)
    assert not any(m in name for name in canonical for m in FUSED)
    assert canonical["model.layers.0.self_attn.q_proj.weight"].shape == (4 * 16, 64)
    assert canonical["model.layers.0.self_attn.k_proj.weight"].shape == (2 * 16, 64)
    assert canonical["model.layers.0.mlp.up_proj.weight"].shape == (96, 64)
    back = family.from_canonical(canonical, config)
    assert set(back) == set(raw) and all(torch.equal(back[k], raw[k]) for k in raw)
    # A layer read alone gets the same canonical tensors as the whole model read at once.
    layer = adapter.load_state(phi3, adapter.layer_prefix(2))
    assert layer.keys() == {k[len("model.layers.2.") :] for k in canonical if k.startswith("model.layers.2.")}
    assert all(torch.equal(v, canonical["model.layers.2." + k]) for k, v in layer.items())


def test_phi3_gate_comes_before_up(phi3):
    """The split follows Phi3MLP's own `chunk(2)`: act(gate) * up, computed by transformers."""
    mlp = hf_phi3(phi3).model.layers[1].mlp
    w = adapter.load_state(phi3, adapter.layer_prefix(1))
    x = torch.randn(5, 64)
    ours = (torch.nn.functional.silu(x @ w["mlp.gate_proj.weight"].T) * (x @ w["mlp.up_proj.weight"].T)) @ w[
        "mlp.down_proj.weight"
    ].T
    with torch.no_grad():
        assert torch.allclose(mlp(x), ours, atol=1e-6)


def export_heads(phi3, tmp_path, heads, channels, name):
    """Export the genome keeping `heads` / `channels` (plain slices of the dense tensors)."""
    spec = ModelSpec.from_json(phi3 / "spec.json")
    supernet = build_supernet(phi3, spec, tmp_path / f"supernet-{name}", heads, channels)
    write_json(tmp_path / f"{name}.json", genome(supernet, spec, heads, channels))
    summary = export(phi3, phi3 / "spec.json", tmp_path / f"{name}.json", tmp_path / name)
    return tmp_path / name, summary, spec


def test_phi3_kept_whole_exports_the_dense_phi3(phi3, tmp_path):
    from transformers import AutoModelForCausalLM

    full, summary, spec = export_heads(phi3, tmp_path, [list(range(4))] * 3, [list(range(96))] * 3, "full")
    assert summary["sparsity"] == 0.0 and summary["params"]["total"] == spec.params["total"]
    pruned = AutoModelForCausalLM.from_pretrained(full, trust_remote_code=True).eval()
    ids = torch.randint(3, 128, (2, 19))
    with torch.no_grad():
        assert torch.allclose(pruned(ids).logits, hf_phi3(phi3)(ids).logits, atol=1e-5)


def test_phi3_pruned_export_loads_without_tyr_and_equals_the_masked_phi3(phi3, tmp_path):
    out, summary, spec = export_heads(phi3, tmp_path, HEADS, CHANNELS, "pruned")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == config["source_model_type"] == "phi3"
    assert config["layer_q_heads"] == [2, 0, 3] and config["layer_q_to_kv"] == [[0, 1], [], [0, 1, 1]]
    assert config["layer_intermediate"] == [6, 48, 0]
    assert not any(m in k for k in load_file(str(out / "model.safetensors")) for m in FUSED)  # canonical

    result = run_clean(out, tmp_path)  # a fresh interpreter where tyr is not importable
    assert result["generated"] == 5 and result["roundtrip_equal"] and result["tokenizer_prompted"] == []
    assert result["params"] == summary["params"]["total"]
    ids = torch.tensor([[3, 9, 27, 81, 4, 12, 40]])  # CLEAN_ENV_SCRIPT's prompt
    # Uncompensated levels: the pruned model is transformers' dense Phi-3 with the removed
    # heads' o_proj columns and the removed channels' down_proj columns zeroed.
    ref = masked_dense_logits(phi3, spec, HEADS, CHANNELS, ids)
    assert torch.allclose(torch.tensor(result["logits"]), ref[0, -1, :8], atol=1e-5)


def test_phi3_unstructured_result_is_a_plain_phi3_folder(phi3, tmp_path):
    tokens = write_tokens(tmp_path / "tokens.zarr", vocab_size=128, n_seq=8, seq_len=32)
    files = prune_in_process(phi3, tokens, tmp_path / "work", "wanda", "2:4")
    unstructured_export(phi3, files, tmp_path / "pruned", method="wanda", pattern="2:4", source="dense")
    model, masks = check_export(tmp_path / "pruned", Pattern.parse("2:4"))  # Phi-3's class, fused masks
    assert type(model).__name__ == "Phi3ForCausalLM"
    assert set(masks) == {
        f"model.layers.{l}.{m}.weight" for l in range(3) for m in (*FUSED, "self_attn.o_proj", "mlp.down_proj")
    }
    for layer, path in enumerate(files):  # read back: exactly the canonical tensors the layer job wrote
        written = {k: v for k, v in load_file(str(path)).items() if not k.startswith(MASK_PREFIX)}
        read = adapter.load_state(tmp_path / "pruned", adapter.layer_prefix(layer))
        assert read.keys() == written.keys() and all(torch.equal(read[k], written[k]) for k in read)
    ids = torch.randint(3, 128, (2, 17))
    with torch.no_grad():
        assert torch.allclose(adapter.load_model(tmp_path / "pruned")(ids).logits, model(ids).logits, atol=1e-5)


@pytest.mark.parametrize(
    "key, value",
    [
        ("partial_rotary_factor", 0.5),
        ("rope_scaling", {"type": "longrope", "short_factor": [1.0] * 8, "long_factor": [2.0] * 8}),
        ("sliding_window", 64),
    ],
)
def test_phi3_variants_tyr_cannot_compute_are_refused_by_name(tiny_model_dir, tmp_path, monkeypatch, key, value):
    src = tiny_model_dir("phi3")
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, key: value}))
    no_weight_loading(monkeypatch)  # refused from config.json, before any weight is read
    with pytest.raises(UnsupportedArchitecture, match=f"phi3.*{key}"):
        prepare.prepare_model(str(src), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_partial_rotary_phi3_config_is_refused():
    from transformers import AutoConfig

    config = AutoConfig.for_model("phi3", partial_rotary_factor=0.5, hidden_size=64, num_attention_heads=4)
    with pytest.raises(UnsupportedArchitecture, match=r"partial_rotary_factor=0\.5 .*must be 1\.0"):
        tyr_config(config)
