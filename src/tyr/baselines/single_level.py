"""What the baselines share downstream of their scores: the parameter budget and the output.

A baseline's result is one structure: per layer, the kept query heads and MLP channels,
and optionally a compensated output bias (FLAP). It is written as a supernet with exactly
one level per sublayer, in the format of docs/design.md, plus a genome naming those
levels, so `tyr.export.export` builds every method's pruned model the same way. Nothing
here slices the input projections: `tyr.supernet.layer_state` does that from the kept
indices; the level files hold the kept indices and the sliced (never refit) o_proj /
down_proj.

Budget. The target is a backbone sparsity in the sense of `tyr.sparsity` (the only
accounting); a KV head is removed, and counted, when all its query heads are gone.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tyr import sparsity
from tyr.model import ModelSpec

log = logging.getLogger("tyr.baselines")

ITERATION = 1  # a baseline is a single pass; supernet.assemble needs one iteration number


@dataclass
class Structure:
    """The kept units of every layer, and compensated output biases where a method has them."""

    heads: list[list[int]]                          # kept query heads per layer, sorted
    channels: list[list[int]]                       # kept MLP channels per layer, sorted
    o_bias: list | None = None                      # per layer: o_proj bias to store (None: the dense one)
    down_bias: list | None = None                   # per layer: down_proj bias to store
    info: dict = field(default_factory=dict)        # method details recorded in the genome

    def kept_params(self, spec) -> int:
        return sum(attention_params(spec, h) + sparsity.mlp_params(spec, len(c))
                   for h, c in zip(self.heads, self.channels))

    def sparsity(self, spec) -> float:
        return sparsity.backbone_sparsity(spec, self.kept_params(spec))


def attention_params(spec, kept_heads) -> int:
    return sparsity.attention_params(spec, len(kept_heads), sparsity.kv_heads_kept(spec, kept_heads))


def load_spec(model_dir) -> ModelSpec:
    path = Path(model_dir) / "spec.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: the prepared model folder has no spec.json (run tyr.prepare first)")
    return ModelSpec.from_json(path)


def top_k(scores: torch.Tensor, k: int) -> list[int]:
    """The indices of the k highest scores, sorted by index (ties: the lower index wins)."""
    if k <= 0:
        return []
    values = torch.as_tensor(scores).tolist()
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    return sorted(order[:k])


# ---- budgets ---------------------------------------------------------------------------------


def uniform_structure(spec, target_sparsity: float, head_scores, channel_scores) -> Structure:
    """Uniform per-layer ratio: the same head count in every layer, the same MLP ratio in every layer.

    Attention keeps, in every layer, the head count nearest the target ratio (heads are
    coarse: 9 heads give ratios in steps of 11%); the MLP ratio, also uniform, then
    absorbs that rounding so the backbone sparsity is the closest to the target one kept
    channel per layer allows. Within each sublayer the highest-scoring units are kept.
    """
    H = spec.num_heads
    q = H - sparsity.snap_units(target_sparsity, H)
    heads = [top_k(head_scores[l], q) for l in range(spec.num_layers)]
    attn = sum(attention_params(spec, h) for h in heads)
    budget = (1.0 - target_sparsity) * sparsity.backbone_prunable_params(spec)
    widest = max(spec.intermediate_size)

    def widths(k):  # k kept channels in the widest layer; the same ratio elsewhere
        return [int(math.floor(k * size / widest + 0.5)) for size in spec.intermediate_size]

    def kept(k):
        return attn + sum(sparsity.mlp_params(spec, m) for m in widths(k))

    # kept(k) is non-decreasing in k: bisect for the first k at or over the budget.
    lo, hi = 0, widest
    while lo < hi:
        mid = (lo + hi) // 2
        if kept(mid) < budget:
            lo = mid + 1
        else:
            hi = mid
    k = min((c for c in (lo - 1, lo) if 0 <= c <= widest), key=lambda c: (abs(kept(c) - budget), -c))
    channels = [top_k(channel_scores[l], m) for l, m in enumerate(widths(k))]
    return Structure(heads, channels)


def global_structure(spec, target_sparsity: float, head_scores, channel_scores) -> Structure:
    """Remove units across all layers and both module types in ascending score order.

    Scores must be comparable across sublayers (FLAP standardises them). Each removal is
    charged its exact parameter cost through `tyr.sparsity` (a query head costs its q/o
    slices, plus k/v when it is the last of its KV head); removal stops at the budget,
    on whichever side of it is closer, so the result is within one unit of the target.
    """
    units = [(float(s), 0, l, h) for l in range(spec.num_layers) for h, s in enumerate(head_scores[l])]
    units += [(float(s), 1, l, c) for l in range(spec.num_layers) for c, s in enumerate(channel_scores[l])]
    units.sort()
    heads = [set(range(spec.num_heads)) for _ in range(spec.num_layers)]
    channels = [set(range(spec.intermediate_size[l])) for l in range(spec.num_layers)]
    to_remove = target_sparsity * sparsity.backbone_prunable_params(spec)

    def params(kind, l):
        return attention_params(spec, heads[l]) if kind == 0 else sparsity.mlp_params(spec, len(channels[l]))

    removed = 0
    for _, kind, l, u in units:
        kept = heads[l] if kind == 0 else channels[l]
        before = params(kind, l)
        kept.discard(u)
        cost = before - params(kind, l)
        if removed + cost > to_remove:  # this unit crosses the budget: take it only if that lands closer
            if removed + cost - to_remove >= to_remove - removed:
                kept.add(u)
            break
        removed += cost
    return Structure([sorted(h) for h in heads], [sorted(c) for c in channels])


# ---- output: a one-level-per-sublayer supernet and its genome ----------------------------------


def write(model_dir, out_dir, structure: Structure, *, method: str, target_sparsity: float) -> Path:
    """Write `out_dir/supernet/` (levels, manifests, supernet.json) and `out_dir/genome.json`.

    The supernet folder is written under a temporary name and renamed into place; the
    genome is written last, so its existence means the method finished.
    """
    from tyr.io import atomic_path, write_json
    from tyr.construct import assemble

    spec = load_spec(model_dir)
    out_dir = Path(out_dir)
    if len(structure.heads) != spec.num_layers or len(structure.channels) != spec.num_layers:
        raise ValueError(f"{method}: structure covers {len(structure.heads)} layers, the model has {spec.num_layers}")
    (out_dir / "genome.json").unlink(missing_ok=True)  # a stale genome must not outlive its supernet
    with atomic_path(out_dir / "supernet") as tmp:
        manifests = [_write_layer(model_dir, spec, tmp / f"layer{l:03d}", l, structure, method)
                     for l in range(spec.num_layers)]
        assemble(manifests, tmp / "supernet.json")
    supernet_json = out_dir / "supernet" / "supernet.json"
    achieved = structure.sparsity(spec)
    genome = {"iteration": ITERATION, "method": method, "supernet": str(supernet_json),
              "target_sparsity": target_sparsity, "sparsity": achieved, "fitness": None,
              "layers": [{"attn": len(h), "mlp": len(c)} for h, c in zip(structure.heads, structure.channels)],
              "baseline": structure.info}
    write_json(out_dir / "genome.json", genome)
    log.info("%s: backbone sparsity %.4f (target %.4f) -> %s", method, achieved, target_sparsity, out_dir / "genome.json")
    return out_dir / "genome.json"


def _write_layer(model_dir, spec, layer_dir: Path, layer: int, structure: Structure, method: str) -> Path:
    from tyr.io import save_safetensors, write_json
    from tyr.model import layer_prefix, load_state
    from tyr.supernet import attention_level, mlp_level

    dense = load_state(model_dir, layer_prefix(layer))
    heads, chans = structure.heads[layer], structure.channels[layer]
    d = spec.head_dim
    cols = torch.tensor([h * d + i for h in heads for i in range(d)], dtype=torch.long)
    o_weight = dense["self_attn.o_proj.weight"]
    o_bias = structure.o_bias[layer] if structure.o_bias is not None else dense.get("self_attn.o_proj.bias")
    down_weight = dense["mlp.down_proj.weight"]
    down_bias = structure.down_bias[layer] if structure.down_bias is not None else dense.get("mlp.down_proj.bias")
    levels = {
        "attn": attention_level(spec, heads, o_weight[:, cols].clone(), _like(o_bias, o_weight)),
        "mlp": mlp_level(chans, down_weight[:, torch.tensor(chans, dtype=torch.long)].clone(), _like(down_bias, down_weight)),
    }
    manifest = {"layer": layer, "iteration": ITERATION, "method": method}
    for sublayer, tensors in levels.items():
        units, kept = spec.units(sublayer, layer), len(heads if sublayer == "attn" else chans)
        entry = {"kept": kept}
        if sublayer == "attn":
            entry["kv_kept"] = len(tensors["kept_kv_heads"])
        entry["sparsity"] = 1 - kept / units
        entry["params"] = sparsity.sublayer_params(spec, sublayer, layer, kept, entry.get("kv_kept"))
        entry["file"] = f"{sublayer}/k{kept:05d}.safetensors"
        save_safetensors(layer_dir / entry["file"], tensors,
                         {"layer": layer, "sublayer": sublayer, "iteration": ITERATION, "method": method,
                          **{k: v for k, v in entry.items() if k != "file"}})
        manifest[sublayer] = [entry]
    write_json(layer_dir / "manifest.json", manifest)
    return layer_dir / "manifest.json"


def _like(bias, weight):
    """A bias in the checkpoint's dtype (compensation is computed in float64)."""
    return None if bias is None else torch.as_tensor(bias).to(weight.dtype).contiguous()
