"""Parameter budgets: from per-unit scores to the kept heads and channels of every layer.

The target is a backbone sparsity in the sense of `tyr.model.sparsity` (the only accounting); a
KV head is removed, and counted, when all its query heads are gone. Three allocations
serve the baselines:

  uniform_structure   the same ratio in every pruned layer (LLM-Pruner, Wanda-sp, ...),
                      optionally only inside a layer range, the other layers dense;
  RunningBudget       the same, decided layer by layer (sequential methods, which choose
                      a layer's heads before they know the next layer's);
  global_structure    one ranking across layers and module types (FLAP, Numerical).
"""

from __future__ import annotations

import math

import torch

from tyr.methods.baselines.common.single_level import Structure, attention_params
from tyr.model import sparsity


def layer_params(spec, layer: int) -> int:
    return sparsity.dense_sublayer_params(spec, "attn", layer) + sparsity.dense_sublayer_params(spec, "mlp", layer)


def on_host(scores) -> list[tuple]:
    """Per-layer (head scores, channel scores) on the host: the allocations here are Python
    bookkeeping over single scores, and every element read from a GPU tensor is a device sync."""
    return [tuple(s.cpu() for s in layer) for layer in scores]


def top_k(scores, k: int) -> list[int]:
    """The indices of the k highest scores, sorted by index (ties: the lower index wins)."""
    if k <= 0:
        return []
    values = torch.as_tensor(scores).tolist()
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    return sorted(order[:k])


def layer_range(num_layers: int, value="all") -> list[int]:
    """The layers a method prunes: "all", [start, end), or "scaled".

    "scaled" is LLM-Pruner's published range for 32-layer LLaMA, layers [4, 30) (its scripts'
    `--block_*_layer_start 4 --block_*_layer_end 30`: the first four and the last two layers
    are left dense), scaled to the model's depth: [round(4/32·L), L − round(2/32·L)).
    SmolLM2-135M (30 layers): [4, 28).
    """
    if value == "all":
        return list(range(num_layers))
    if value == "scaled":
        start = math.floor(4 * num_layers / 32 + 0.5)
        end = num_layers - math.floor(2 * num_layers / 32 + 0.5)
        return list(range(start, max(end, start + 1)))
    start, end = (int(v) for v in value)
    if not 0 <= start < end <= num_layers:
        raise ValueError(f"layer range [{start}, {end}) is not inside [0, {num_layers})")
    return list(range(start, end))


def layer_ratio(spec, target_sparsity: float, layers) -> float:
    """The unit sparsity the pruned `layers` need for the whole backbone to reach the target.

    Above 1 the target cannot be met inside the range; callers clamp and record it.
    """
    total = sparsity.backbone_prunable_params(spec)
    inside = sum(layer_params(spec, l) for l in layers)
    return target_sparsity * total / inside


def range_note(spec, target_sparsity: float, layers) -> dict:
    """Genome info for a layer range too small for the target (its units all go, the target is missed)."""
    ratio = layer_ratio(spec, target_sparsity, layers)
    if ratio <= 1:
        return {}
    return {
        "off_target": f"layers [{min(layers)}, {max(layers) + 1}) hold only {target_sparsity / ratio:.1%} "
        f"of the backbone; the target {target_sparsity:.1%} cannot be met inside them"
    }


def uniform_structure(spec, target_sparsity: float, head_scores, channel_scores, layers=None) -> Structure:
    """Uniform per-layer ratio inside `layers` (default: all); the other layers stay dense.

    Attention keeps, in every pruned layer, the head count nearest the needed ratio (heads
    are coarse: 9 heads give ratios in steps of 11%); the MLP ratio, also uniform, then
    absorbs that rounding so the backbone sparsity is the closest to the target one kept
    channel per layer allows. Within each sublayer the highest-scoring units are kept.
    """
    L, H = spec.num_layers, spec.num_heads
    pruned = set(range(L) if layers is None else layers)
    ratio = min(layer_ratio(spec, target_sparsity, pruned), 1.0)
    q = H - sparsity.snap_units(ratio, H)
    heads = [top_k(head_scores[l], q) if l in pruned else list(range(H)) for l in range(L)]
    attn = sum(attention_params(spec, h) for h in heads)
    budget = (1.0 - target_sparsity) * sparsity.backbone_prunable_params(spec)
    widest = max(spec.intermediate_size[l] for l in pruned)

    def widths(k):  # k kept channels in the widest pruned layer; the same ratio in the others
        return [
            int(math.floor(k * size / widest + 0.5)) if l in pruned else size
            for l, size in enumerate(spec.intermediate_size)
        ]

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
    channels = [top_k(channel_scores[l], m) if l in pruned else list(range(m)) for l, m in enumerate(widths(k))]
    return Structure(heads, channels)


class RunningBudget:
    """A uniform structure decided layer by layer (sequential methods).

    Every pruned layer keeps the same number of heads, as in `uniform_structure`; a layer's
    MLP width is chosen once its heads are known, so that the parameters kept so far stay
    closest to the pro-rata budget. Widths are thus uniform up to the KV heads that the
    head choice happens to keep or drop (one KV head of SmolLM2 = 43 MLP channels), and
    the backbone lands within one channel per layer of the target.
    """

    def __init__(self, spec, target_sparsity: float, layers=None):
        self.spec = spec
        self.pruned = set(range(spec.num_layers) if layers is None else layers)
        self.ratio = min(layer_ratio(spec, target_sparsity, self.pruned), 1.0)
        self.heads = spec.num_heads - sparsity.snap_units(self.ratio, spec.num_heads)
        self.wanted = 0.0  # parameters the layers seen so far should keep
        self.kept = 0

    def head_count(self, layer: int) -> int:
        return self.heads if layer in self.pruned else self.spec.num_heads

    def mlp_width(self, layer: int, kept_heads) -> int:
        """The MLP width of `layer` given its kept heads; records the layer as decided."""
        spec, size = self.spec, self.spec.intermediate_size[layer]
        dense = layer_params(spec, layer)
        self.wanted += dense if layer not in self.pruned else (1.0 - self.ratio) * dense
        self.kept += attention_params(spec, kept_heads)
        per_channel = sparsity.mlp_params(spec, 2) - sparsity.mlp_params(spec, 1)
        m = size if layer not in self.pruned else min(max(round((self.wanted - self.kept) / per_channel), 0), size)
        self.kept += sparsity.mlp_params(spec, m)
        return m


def global_structure(spec, target_sparsity: float, head_scores, channel_scores) -> Structure:
    """Remove units across all layers and both module types in ascending score order.

    Scores must be comparable across sublayers (FLAP standardises them). Each removal is
    charged its exact parameter cost through `tyr.model.sparsity` (a query head costs its q/o
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
