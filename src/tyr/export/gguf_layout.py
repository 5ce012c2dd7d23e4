"""How each layer of a tyr model maps onto llama.cpp's `deci` architecture, and what it refuses.

`deci` (llama.cpp's loader for DeciLM / Nemotron-NAS) reads per-layer arrays of query heads, KV
heads and MLP widths and builds every layer with its own counts, from ordinary Llama tensors.
Its rules (llama.cpp `src/models/deci.cpp`, `src/llama-model.cpp`), and what tyr does about each:

- query head h of a layer reads KV head h // (n_head / n_head_kv): contiguous, equal groups. tyr's
  `layer_q_to_kv` may be irregular after pruning (one KV head serving 3 query heads, another 1).
  It is expressed exactly: the query heads are reordered by KV head (their o_proj columns move
  with them, so the sum is unchanged) and a KV head serving c queries is repeated c / g times, g
  the gcd of the group sizes (repeated K/V rows compute the same attention).
- layer 0 needs >= 1 query head: llama.cpp derives the head size from layer 0's head count. A layer
  0 without attention gets one zero head (q, k, v and its o_proj columns zero: it adds exactly 0).
- a layer with MLP width 0 ends the layer early and drops its attention output. A layer whose MLP
  is removed while its attention stays gets `PAD_FF` zero channels (gate, up, down zero: exactly 0).
- head size and rope dimension are global (tyr's are: one head_dim, whole-head rotation).
- q/k norms (Qwen3), other activations than SiLU and rope scalings other than the default are not
  built by `deci`: refused, naming the key.
With `pad=False` the two padded cases are refused instead, naming the layer and the rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Zero MLP channels given to a layer whose MLP is removed but whose attention stays: 32 is the block
# of Q8_0/Q4_0, so those rows quantize natively (K-quants fall back to Q5_0 for this small tensor).
PAD_FF = 32


class GGUFError(ValueError):
    """A model the GGUF `deci` architecture cannot express (the message names the layer and rule)."""


@dataclass(frozen=True)
class LayerLayout:
    """One layer in GGUF order. `q_order`: source query heads (grouped by KV head); `kv_order`: the
    source KV head of each GGUF KV head (repeats allowed); `zero_head`: one zero query/KV head
    (layer 0 without attention); `n_ff`: GGUF MLP width (`pad_ff` of them zero channels)."""

    q_order: tuple
    kv_order: tuple
    zero_head: bool
    n_ff: int
    pad_ff: int

    @property
    def n_head(self) -> int:
        return len(self.q_order) + int(self.zero_head)

    @property
    def n_head_kv(self) -> int:
        return len(self.kv_order) + int(self.zero_head)


def check_model(config) -> None:
    """Refuse what `deci` does not build, naming the config key."""
    rope = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    refusals = [
        (getattr(config, "qk_norm", False), "qk_norm: deci has no q/k RMSNorm (Qwen3-style); not expressible"),
        (config.hidden_act != "silu", f"hidden_act {config.hidden_act!r}: deci builds a SiLU-gated MLP only"),
        (rope != "default", f"rope_parameters.rope_type {rope!r}: only the default rotary embedding is exported"),
    ]
    for refused, why in refusals:
        if refused:
            raise GGUFError(why)


def layer_layout(config, layer: int, *, pad: bool = True) -> LayerLayout:
    """The GGUF layout of `layer` of a tyr config (dense or export); GGUFError if not expressible."""
    q_heads = int(config.layer_q_heads[layer])
    q_to_kv = [int(k) for k in config.layer_q_to_kv[layer]][:q_heads]
    n_ff = int(config.layer_intermediate[layer])
    q_order, kv_order = _grouped(q_to_kv, int(config.layer_kv_heads[layer]), layer)
    zero_head = layer == 0 and q_heads == 0
    if zero_head and not pad:
        raise GGUFError(
            "layer 0 keeps no query head: llama.cpp's deci reads the head size from layer 0 (rule: layer 0 "
            "needs >= 1 query head); export with pad=True to give it one zero head"
        )
    pad_ff = PAD_FF if q_heads > 0 and n_ff == 0 else 0
    if pad_ff and not pad:
        raise GGUFError(
            f"layer {layer} keeps attention ({q_heads} query heads) but no MLP channel: llama.cpp's deci drops "
            "the attention output of a layer with feed_forward_length 0 (rule: a layer with attention needs "
            f"MLP width >= 1); export with pad=True to give it {PAD_FF} zero channels"
        )
    return LayerLayout(tuple(q_order), tuple(kv_order), zero_head, n_ff + pad_ff, pad_ff)


def _grouped(q_to_kv: list, n_kv: int, layer: int) -> tuple[list, list]:
    """(query heads ordered by KV head, KV head per GGUF KV head) with equal contiguous groups."""
    bad = [k for k in q_to_kv if not 0 <= k < n_kv]
    if bad:
        raise GGUFError(f"layer {layer}: layer_q_to_kv names KV heads {bad}, but the layer keeps {n_kv}")
    counts = [q_to_kv.count(k) for k in range(n_kv)]
    used = [k for k in range(n_kv) if counts[k]]  # a KV head no query reads computes nothing: dropped
    if not used:
        return [], []
    group = math.gcd(*(counts[k] for k in used))
    q_order = [h for k in used for h, kv in enumerate(q_to_kv) if kv == k]
    kv_order = [k for k in used for _ in range(counts[k] // group)]
    return q_order, kv_order
