"""The shape of a dense source model (`model/spec.json`): layers, heads, widths, parameter counts.

Prunable units per layer:
  attention  a query head = a head_dim block of o_proj input channels + its q_proj rows;
             a KV head (k_proj/v_proj rows) goes when all its query heads are gone
  mlp        a channel = one down_proj input channel + its gate_proj/up_proj rows
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SUBLAYERS = ("attn", "mlp")


@dataclass
class ModelSpec:
    """Shapes and parameter counts of a dense source model (written as spec.json)."""

    architecture: str
    model_type: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: list[int]
    vocab_size: int
    tie_word_embeddings: bool
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    params: dict = field(default_factory=dict)

    @property
    def group_size(self) -> int:
        return self.num_heads // self.num_kv_heads

    def kv_of(self, head: int) -> int:
        return head // self.group_size

    def units(self, sublayer: str, layer: int) -> int:
        return self.num_heads if sublayer == "attn" else self.intermediate_size[layer]

    def to_json(self, path) -> None:
        from tyr.core.io import atomic_write_text

        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def from_json(cls, path) -> ModelSpec:
        return cls(**json.loads(Path(path).read_text()))
