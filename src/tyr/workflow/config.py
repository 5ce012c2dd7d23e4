"""Configuration checks that need more than the JSON schema.

Imported by the Snakefile at parse time (also by every SLURM job), so this module
imports nothing heavy: no torch, no transformers, no datasets. Every error names the
offending key and value, and is raised before any job runs.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from tyr.calib import sources
from tyr.search.space import SPLIT_CONFLICT

LOCAL_SUFFIXES = {*sources.DATA_SUFFIXES, ".gguf"}  # a source with one of these is a path, not a hub id


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


def generations(search: dict, iteration: int) -> int:
    """Generations of iteration `iteration` (1-based): `search.generations` is a count for every
    iteration or a list per iteration whose last entry repeats."""
    g = search["generations"]
    return int(g[min(iteration, len(g)) - 1] if isinstance(g, list) else g)


def looks_local(source: str) -> bool:
    """A path rather than a hub id: it exists, is explicitly relative/absolute, or has a file suffix."""
    return (
        os.path.exists(os.path.expanduser(source))
        or source.startswith((".", "/", "~"))
        or Path(source).suffix.lower() in LOCAL_SUFFIXES
    )


MOVED = {("search", "device"): "devices.search"}  # old key -> where it lives now


def refuse_moved_keys(config) -> None:
    """A key that moved is named with its new home (before the schema, whose message would
    only say the old key is unexpected)."""
    for (section, key), new in MOVED.items():
        if key in (config.get(section) or {}):
            raise ConfigError(f"{section}.{key} is now {new} (each heavy stage has its own: config.yaml `devices`)")


def check(config) -> None:
    """Raise ConfigError on the first semantic problem (the schema has already passed)."""
    for t in targets(config):
        if not 0 < t < 1:
            raise ConfigError(f"target_sparsity: {t} is outside (0, 1)")
    _check_methods(config["methods"])
    _check_model(config["model"])
    _check_data(config["data"])
    if "tyr" in base_methods(config) and config["data"]["selection_sequences"] < 1:
        raise ConfigError("data.selection_sequences: Týr chooses its final genome on this split; it needs >= 1")
    _check_search(config["search"], config["data"])
    _check_evaluate(config["evaluate"])
    _check_recover(config.get("recover"))


def base_methods(config) -> list[str]:
    """The structural methods whose results the run needs (`tyr+recover` needs `tyr`'s), in order."""
    from tyr.methods import registry

    return list(dict.fromkeys(registry.base_method(m) for m in config["methods"]))


def _check_recover(recover) -> None:
    """recover.text: `calibration`, or local files that can be read now (never the hub: a
    recovery trains on it, and the held-out split must stay unseen)."""
    if not recover or recover["text"] == "calibration":
        return
    try:
        sources.local_files(recover["text"])
    except (OSError, ValueError) as e:
        raise ConfigError(f"recover.text: {e}") from None


def _check_methods(methods) -> None:
    """Every name must be in the one registry of methods (`tyr.methods.registry`)."""
    from tyr.methods import registry

    for name in methods:
        if name not in registry.result_names():
            raise ConfigError(
                f"methods: {name!r} is not a method; expected one of {registry.names()}, "
                f"or one of them with {registry.RECOVERED!r} (the recovery step)"
            )
    if len(set(methods)) != len(methods):
        raise ConfigError(f"methods: {methods} names a method twice")


def _check_model(model) -> None:
    source = model["source"]
    if source == "embedded":
        embedded_gguf()
    elif looks_local(source) and not os.path.exists(os.path.expanduser(source)):
        raise ConfigError(f"model.source: local path {source!r} does not exist")


def _check_data(data) -> None:
    _check_text_source("data.source", data["source"])


def _check_text_source(key: str, source) -> None:
    """A text source (a built-in name, a hub data set or local files) can be read now."""
    try:
        sources.check_source(key, source)
    except (OSError, ValueError) as e:  # FileNotFoundError, ConnectionError: the message names the key
        raise ConfigError(str(e)) from None


def describe_calibration(data) -> str:
    """The calibration plan in one line, for the log of every run."""
    source = data["source"]
    what = {
        "pydoc": "pydoc (English prose of the Python documentation, shipped with Python)",
        "self": "self (text sampled from the dense model itself)",
    }.get(source, str(source))
    return (
        f"calibration: {what}; {data['prune_sequences']} pruning + {data['fitness_sequences']} search + "
        f"{data['selection_sequences']} selection + {data['heldout_sequences']} held-out "
        f"sequences × {data['seq_len']} tokens"
    )


def _check_search(search, data) -> None:
    if search["trade_attn_mlp"] and search["attention_kept"] is not None:
        raise ConfigError(SPLIT_CONFLICT)
    if search["attention_kept"] == "auto":
        if search["share_text"] == "self":
            raise ConfigError(
                "search.share_text: self-sampled text cannot choose the attention/MLP split (it ranks "
                "the splits in the reverse order of real text, tyr.search.split); use real prose, e.g. pydoc"
            )
        _check_text_source("search.share_text", search["share_text"])
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
                f"(data.fitness_sequences × data.seq_len = {available})"
            )
    if search["fixed_last_stage"] and len(stages) > 1:
        last = math.ceil(stages[-1][0] / data["seq_len"])
        need = max(t for t, _ in stages[:-1])
        if need > available - last * data["seq_len"]:
            raise ConfigError(
                f"search.stages: with search.fixed_last_stage the last stage keeps {last} of the "
                f"{data['fitness_sequences']} fitness sequences and the earlier stages draw from the rest, "
                f"but one asks for {need} tokens: set data.fitness_sequences ≥ "
                f"{last + math.ceil(need / data['seq_len'])} or search.fixed_last_stage: false"
            )


def _check_evaluate(ev) -> None:
    for key in ("wikitext", "zeroshot_dir"):
        v = ev[key]
        if v not in ("auto", "none") and looks_local(v) and not os.path.exists(os.path.expanduser(v)):
            raise ConfigError(f"evaluate.{key}: local path {v!r} does not exist")


def embedded_gguf() -> Path:
    """`tyr.model.embedded.embedded_gguf`, its absence a configuration error."""
    from tyr.model import embedded

    try:
        return embedded.embedded_gguf()
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None


def num_layers(source: str) -> int:
    """Decoder layers of the model, known before it is prepared (the DAG is unrolled per layer).

    Cheap on purpose: the source's config.json or GGUF header; a hub id reads only its
    config.json. Never the prepared `model/spec.json`: that may be another model's
    (`tyr.workflow.runplan` refuses such a folder).
    """
    import json

    path = embedded_gguf() if source == "embedded" else Path(os.path.expanduser(source))
    if path.suffix == ".gguf":
        from gguf import GGUFReader

        try:
            fields = GGUFReader(str(path)).fields
            arch = fields["general.architecture"]
            arch = bytes(arch.parts[arch.data[0]]).decode()
            count = fields[f"{arch}.block_count"]
            return int(count.parts[count.data[0]][0])
        except Exception as e:  # numpy, struct and key errors of a truncated or foreign file
            raise ConfigError(
                f"model.source: {path} is not a readable GGUF file ({type(e).__name__}: {e}); "
                "a truncated or corrupt download? Fetch it again"
            ) from None
    if path.is_dir():
        cfg = json.loads((path / "config.json").read_text())
    else:
        from huggingface_hub import hf_hub_download

        try:
            cfg = json.loads(Path(hf_hub_download(source, "config.json")).read_text())
        except Exception as e:  # offline, unknown id, gated...
            raise ConfigError(
                f"model.source: cannot read config.json of hub model {source!r} ({e}); "
                "point model.source at a local HF folder or a .gguf file"
            ) from None
    cfg = cfg.get("text_config", cfg)
    if "num_hidden_layers" not in cfg:
        raise ConfigError(
            f"model.source: {source!r} config has no num_hidden_layers "
            f"(model_type {cfg.get('model_type')!r} is not a supported decoder)"
        )
    return int(cfg["num_hidden_layers"])
