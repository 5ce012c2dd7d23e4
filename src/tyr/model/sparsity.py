"""The one source of truth for parameter and sparsity accounting.

Backbone parameter sparsity = parameters removed from the prunable projections of the
decoder layers (q/k/v/o and gate/up/down, biases included) / all of them. Embeddings,
norms and lm_head are never pruned and are not in the denominator, so a level of 100%
everywhere is exactly 100% sparsity. Levels, the search constraint, export and reports
all call these functions.
"""

from __future__ import annotations

import math

from tyr.model.spec import SUBLAYERS


def attention_params(spec, q_heads: int, kv_heads: int) -> int:
    """Parameters of one attention sublayer that keeps `q_heads` query and `kv_heads` KV heads."""
    h, d = spec.hidden_size, spec.head_dim
    n = h * d * (2 * q_heads + 2 * kv_heads)
    if spec.qkv_bias:
        n += d * (q_heads + 2 * kv_heads)
    if spec.o_bias and q_heads > 0:
        n += h
    return n


def mlp_params(spec, channels: int) -> int:
    """Parameters of one MLP sublayer that keeps `channels` channels."""
    h = spec.hidden_size
    n = 3 * h * channels
    if spec.mlp_bias:
        n += 2 * channels + (h if channels > 0 else 0)
    return n


def sublayer_params(spec, sublayer: str, kept: int, kv_kept: int | None = None) -> int:
    if sublayer == "attn":
        return attention_params(spec, kept, spec.num_kv_heads if kv_kept is None else kv_kept)
    return mlp_params(spec, kept)


def dense_sublayer_params(spec, sublayer: str, layer: int) -> int:
    if sublayer == "attn":
        return attention_params(spec, spec.num_heads, spec.num_kv_heads)
    return mlp_params(spec, spec.intermediate_size[layer])


def backbone_prunable_params(spec) -> int:
    return sum(dense_sublayer_params(spec, s, i) for i in range(spec.num_layers) for s in SUBLAYERS)


def backbone_sparsity(spec, kept_params: int) -> float:
    """Sparsity of a backbone whose prunable projections hold `kept_params` parameters."""
    return 1.0 - kept_params / backbone_prunable_params(spec)


def model_params(spec) -> dict:
    """Dense parameter counts split into embedding / backbone (decoder layers) / head."""
    h = spec.hidden_size
    norms = (2 * h + (2 * spec.head_dim if spec.qk_norm else 0)) * spec.num_layers
    embedding = spec.vocab_size * h
    head = 0 if spec.tie_word_embeddings else spec.vocab_size * h
    prunable = backbone_prunable_params(spec)
    backbone = prunable + norms
    return {
        "embedding": embedding,
        "backbone": backbone,
        "backbone_prunable": prunable,
        "head": head,
        "final_norm": h,
        "total": embedding + backbone + head + h,
    }


def snap_units(fraction: float, units: int, group: int = 1) -> int:
    """Units removed at sparsity `fraction` of a sublayer with `units` units, in whole groups.

    Rounds half up (not to even) so levels are monotone and platform independent.
    """
    fraction = min(max(fraction, 0.0), 1.0)
    groups = units / group
    removed_groups = math.floor(fraction * groups + 0.5)
    return min(units, removed_groups * group)


def kv_heads_kept(spec, kept_heads) -> int:
    """KV heads that still serve at least one kept query head."""
    return len({spec.kv_of(h) for h in kept_heads})


def kept_params(spec, shapes) -> int:
    """Prunable backbone parameters kept by per-layer `shapes`.

    `shapes` is a list over layers of dicts {"attn": (q_heads, kv_heads), "mlp": channels}: the
    kept units, not a genome (level indices; docs/design.md, "Names").
    """
    total = 0
    for g in shapes:
        q, kv = g["attn"]
        total += attention_params(spec, q, kv) + mlp_params(spec, g["mlp"])
    return total
