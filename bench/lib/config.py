"""The workflow's configuration as a benchmark needs it: config.yaml with presets or other files
merged over it the way Snakemake merges --configfile, and a config's search options."""

from __future__ import annotations

from pathlib import Path

from lib.env import ROOT

CONFIG = ROOT / "config" / "config.yaml"
TINY = ROOT / "config" / "presets" / "tiny.yaml"


def merged_config(*files) -> dict:
    """The YAML files merged in order, nested sections key by key, as Snakemake merges --configfile."""
    import yaml

    out = {}
    for path in files:
        _merge(out, yaml.safe_load(Path(path).read_text()) or {})
    return out


def _merge(into: dict, update: dict) -> None:
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def default_config(smoke: bool = False) -> dict:
    """config.yaml, with the tiny preset over it in smoke mode (sizes that run in seconds)."""
    return merged_config(CONFIG, TINY) if smoke else merged_config(CONFIG)


def search_options(search: dict, iteration: int = 1) -> dict:
    """The keyword options of `tyr.search.evolve.run_search` (SearchOptions' fields) for one
    iteration of a config's `search:` section, as rules/search.smk derives them."""
    from dataclasses import fields

    from tyr.search.evolve import SearchOptions

    names = {f.name for f in fields(SearchOptions)}
    out = {k: v for k, v in search.items() if k in names}
    gens = search["generations"]
    out["generations"] = gens[min(iteration, len(gens)) - 1] if isinstance(gens, list) else gens
    out["seed"] = search.get("seed", 0) + 1000 * iteration
    if out.get("attention_kept") == "auto":  # chosen by the attention_share step; a benchmark passes it explicitly
        out["attention_kept"] = None
    return out
