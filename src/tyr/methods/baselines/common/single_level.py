"""What every baseline produces: one structure, written as a one-level supernet + genome.

A baseline's result is one structure: per layer, the kept query heads and MLP channels,
and optionally compensated output projections (weights: Numerical, Search-LLM's
reformation; biases: FLAP). It is written as a supernet with exactly one level per
sublayer, in the format of docs/design.md, plus a genome naming those levels, so
`tyr.export.hf.export` builds every method's pruned model the same way. Nothing here slices
the input projections: `tyr.supernet.format.layer_state` does that from the kept indices; the
level files hold the kept indices and the sliced (or compensated) o_proj / down_proj.
How the kept units are chosen within a parameter budget is `tyr.methods.baselines.common.budget`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tyr.model import sparsity
from tyr.model.spec import ModelSpec

log = logging.getLogger("tyr.methods.baselines")

ITERATION = 1  # a baseline is a single pass; supernet.assemble needs one iteration number
TOLERANCE = 0.005  # methods are compared at the same backbone sparsity, ±0.5 pp, or say why not
DEVICE_KEY = "devices.baselines"  # the config key of a baseline's device (tyr.core.device.placed names it in errors)


@dataclass
class Structure:
    """The kept units of every layer, and compensated output projections where a method has them."""

    heads: list[list[int]]  # kept query heads per layer, sorted
    channels: list[list[int]]  # kept MLP channels per layer, sorted
    o_bias: list | None = None  # per layer: o_proj bias to store (None: the dense one)
    down_bias: list | None = None  # per layer: down_proj bias to store
    o_weight: list | None = None  # per layer: compensated o_proj [hidden, kept·head_dim] (None: sliced dense)
    down_weight: list | None = None  # per layer: compensated down_proj [hidden, kept]
    info: dict = field(default_factory=dict)  # method details recorded in the genome

    def kept_params(self, spec) -> int:
        return sum(
            attention_params(spec, h) + sparsity.mlp_params(spec, len(c)) for h, c in zip(self.heads, self.channels)
        )

    def sparsity(self, spec) -> float:
        return sparsity.backbone_sparsity(spec, self.kept_params(spec))


def attention_params(spec, kept_heads) -> int:
    return sparsity.attention_params(spec, len(kept_heads), sparsity.kv_heads_kept(spec, kept_heads))


def resolve_setting(method: str, table: dict, setting: str, overrides: dict) -> dict:
    """A method's search budget: its named setting ("cpu" default, "paper" the paper's) with
    explicit options on top. Unknown names are errors, not silently ignored options."""
    if setting not in table:
        raise ValueError(f"{method}: setting must be one of {sorted(table)}, not {setting!r}")
    unknown = set(overrides) - set(table[setting])
    if unknown:
        raise ValueError(f"{method}: unknown option(s) {sorted(unknown)}; expected {sorted(table[setting])}")
    return {**table[setting], **overrides}


def load_spec(model_dir) -> ModelSpec:
    path = Path(model_dir) / "spec.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: the prepared model folder has no spec.json (run tyr.model.prepare first)")
    return ModelSpec.from_json(path)


# ---- output: a one-level-per-sublayer supernet and its genome ----------------------------------


def write(model_dir, out_dir, structure: Structure, *, method: str, target_sparsity: float) -> Path:
    """Write `out_dir/supernet/` (levels, manifests, supernet.json) and `out_dir/genome.json`.

    The supernet folder is written under a temporary name and renamed into place; the
    genome is written last, so its existence means the method finished.
    """
    from tyr.core.io import atomic_path, write_json
    from tyr.supernet.format import assemble

    spec = load_spec(model_dir)
    out_dir = Path(out_dir)
    if len(structure.heads) != spec.num_layers or len(structure.channels) != spec.num_layers:
        raise ValueError(f"{method}: structure covers {len(structure.heads)} layers, the model has {spec.num_layers}")
    (out_dir / "genome.json").unlink(missing_ok=True)  # a stale genome must not outlive its supernet
    with atomic_path(out_dir / "supernet") as tmp:
        manifests = [
            _write_layer(model_dir, spec, tmp / f"layer{l:03d}", l, structure, method) for l in range(spec.num_layers)
        ]
        assemble(manifests, tmp / "supernet.json")
    supernet_json = out_dir / "supernet" / "supernet.json"
    achieved = structure.sparsity(spec)
    structure.info["target_gap_pp"] = round((achieved - target_sparsity) * 100, 3)
    structure.info["within_tolerance"] = abs(achieved - target_sparsity) <= TOLERANCE
    if not structure.info["within_tolerance"]:  # on real models only coarse methods get here; they say why
        log.warning(
            "%s: backbone sparsity %.4f is off the target %.4f by more than %g pp: %s",
            method,
            achieved,
            target_sparsity,
            TOLERANCE * 100,
            structure.info.get("off_target", "unit granularity"),
        )
    genome = {
        "iteration": ITERATION,
        "method": method,
        "supernet": str(supernet_json),
        "target_sparsity": target_sparsity,
        "sparsity": achieved,
        "fitness": None,
        "layers": [{"attn": len(h), "mlp": len(c)} for h, c in zip(structure.heads, structure.channels)],
        "baseline": structure.info,
    }
    write_json(out_dir / "genome.json", genome)
    log.info(
        "%s: backbone sparsity %.4f (target %.4f) -> %s", method, achieved, target_sparsity, out_dir / "genome.json"
    )
    return out_dir / "genome.json"


def _write_layer(model_dir, spec, layer_dir: Path, layer: int, structure: Structure, method: str) -> Path:
    from tyr.model.adapter import layer_prefix, load_state
    from tyr.supernet.format import write_level, write_manifest

    dense = load_state(model_dir, layer_prefix(layer))
    heads, chans = structure.heads[layer], structure.channels[layer]
    d = spec.head_dim
    cols = torch.tensor([h * d + i for h in heads for i in range(d)], dtype=torch.long)
    o_weight = dense["self_attn.o_proj.weight"]
    o_bias = structure.o_bias[layer] if structure.o_bias is not None else dense.get("self_attn.o_proj.bias")
    down_weight = dense["mlp.down_proj.weight"]
    down_bias = structure.down_bias[layer] if structure.down_bias is not None else dense.get("mlp.down_proj.bias")
    o_kept = structure.o_weight[layer] if structure.o_weight is not None else o_weight[:, cols]
    down_kept = (
        structure.down_weight[layer]
        if structure.down_weight is not None
        else down_weight[:, torch.tensor(chans, dtype=torch.long)]
    )
    meta = {"layer": layer, "iteration": ITERATION, "method": method}
    levels = {
        sublayer: [write_level(layer_dir, spec, layer, sublayer, units, _like(w, like), _like(b, like), meta)]
        for sublayer, units, w, b, like in (
            ("attn", heads, o_kept, o_bias, o_weight),
            ("mlp", chans, down_kept, down_bias, down_weight),
        )
    }
    write_manifest(
        layer_dir,
        layer=layer,
        iteration=ITERATION,
        centre={"attn": len(heads), "mlp": len(chans)},
        levels=levels,
        method=method,
    )
    return layer_dir / "manifest.json"


def _like(tensor, weight):
    """A stored tensor on the host in the checkpoint's dtype (compensation is computed in float64,
    on the method's device)."""
    return None if tensor is None else torch.as_tensor(tensor).cpu().to(weight.dtype).contiguous().clone()
