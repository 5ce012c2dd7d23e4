"""Model families: what tyr knows about each source architecture, one adapter per family.

Every stage works on one canonical layout, Llama's: pre-norm decoder layers (RMSNorm) with
q/k/v/o attention projections over grouped KV heads and a gated gate/up/down MLP, under
Llama's tensor names (`model.layers.N.self_attn.q_proj.weight`, `mlp.gate_proj`, ...), computed
by `tyr.model.modeling_tyr`. A family is one such architecture as transformers saves it; its adapter
says which `model_type`s it covers, how their config maps to `TyrConfig` (biases, q/k norm;
variants the canonical layer does not compute are refused, with the key named), and how the
source's tensor names map to the canonical ones (`to_canonical`) and back (`from_canonical`).
`tyr.model.adapter.load_state` applies the mapping, so every later stage sees canonical names only.

Shared by every family, hence kept with the canonical layout rather than here:
  GQA       query head h reads KV head h // (heads / KV heads) (`ModelSpec.kv_of`)
  MLP       gated, act(gate) * up; a fused gate_up holds the same parameters as gate + up,
            so `tyr.model.sparsity` counts every family alike
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tyr.model.spec import ModelSpec


class UnsupportedArchitecture(ValueError):
    pass


def _locate(name: str, module: str):
    """(head, tail) with name == head + module + tail at dotted boundaries, else None."""
    i = f".{name}.".find(f".{module}.")
    return None if i < 0 else (name[:i], name[i + len(module) :])


@dataclass(frozen=True)
class Family:
    """A Llama-named family: its config flags; its tensors already have canonical names."""

    name: str
    model_types: tuple[str, ...]
    qkv_bias: bool | None = False  # None: the config's `attention_bias` (q/k/v and o alike)
    o_bias: bool | None = False
    qk_norm: bool = False
    renames: ClassVar[bool] = False  # True: source tensor names differ from the canonical ones

    # ---- config ----------------------------------------------------------------------------

    def check(self, c) -> None:
        """Refuse a variant the canonical layer would compute differently (none here)."""

    def flags(self, c) -> dict:
        bias = bool(getattr(c, "attention_bias", False))
        return {
            "qkv_bias": bias if self.qkv_bias is None else self.qkv_bias,
            "o_bias": bias if self.o_bias is None else self.o_bias,
            "qk_norm": self.qk_norm,
        }

    def tyr_config(self, c):
        """A dense `TyrConfig` equivalent to the Hugging Face config `c` of this family."""
        from tyr.model.modeling_tyr import TyrConfig

        self.check(c)
        heads = c.num_attention_heads
        rope = getattr(c, "rope_parameters", None) or {
            "rope_type": "default",
            "rope_theta": getattr(c, "rope_theta", 10000.0),
        }
        return TyrConfig(
            vocab_size=c.vocab_size,
            hidden_size=c.hidden_size,
            num_hidden_layers=c.num_hidden_layers,
            num_attention_heads=heads,
            num_key_value_heads=getattr(c, "num_key_value_heads", None) or heads,
            head_dim=getattr(c, "head_dim", None) or c.hidden_size // heads,
            intermediate_size=c.intermediate_size,
            hidden_act=c.hidden_act,
            rms_norm_eps=c.rms_norm_eps,
            max_position_embeddings=c.max_position_embeddings,
            rope_parameters=dict(rope),
            mlp_bias=bool(getattr(c, "mlp_bias", False)),
            tie_word_embeddings=bool(getattr(c, "tie_word_embeddings", False)),
            source_model_type=c.model_type,
            bos_token_id=getattr(c, "bos_token_id", None),
            eos_token_id=getattr(c, "eos_token_id", None),
            pad_token_id=getattr(c, "pad_token_id", None),
            **self.flags(c),
        )

    # ---- tensor names ------------------------------------------------------------------------

    def fused(self, config) -> dict:
        """{source module: ((canonical module, rows), ...)}: source tensors that stack canonical
        projections along their output rows, in row order (`config`: the dense `TyrConfig`)."""
        return {}

    def _source(self, name: str, config):
        """(parts, head, tail) when `name` is a fused source tensor, else None."""
        for module, parts in self.fused(config).items():
            if (at := _locate(name, module)) is not None:
                return parts, *at
        return None

    def canonical_names(self, name: str, config) -> list[str]:
        """The canonical tensor names the source tensor `name` holds (without reading it)."""
        hit = self._source(name, config)
        return [name] if hit is None else [hit[1] + part + hit[2] for part, _ in hit[0]]

    def to_canonical(self, state: dict, config) -> dict:
        """`state` (full source names) under canonical names; fused tensors split by rows."""
        out = {}
        for name, tensor in state.items():
            hit = self._source(name, config)
            if hit is None:
                out[name] = tensor
                continue
            parts, head, tail = hit
            rows = [n for _, n in parts]
            if sum(rows) != tensor.shape[0]:
                raise ValueError(f"{name}: {tensor.shape[0]} rows, but the config implies {rows}")
            # copies, not views: safetensors refuses to save tensors that share storage
            out.update({head + part + tail: t.clone() for (part, _), t in zip(parts, tensor.split(rows))})
        return out

    def from_canonical(self, state: dict, config) -> dict:
        """`state` (full canonical names) under the source's names, the inverse of `to_canonical`.
        Tensors named by module alone (unstructured masks, packed row by row) map alike."""
        import torch

        out = {}
        for name, tensor in state.items():
            hit = next(
                (
                    (module, parts, *at)
                    for module, parts in self.fused(config).items()
                    for part, _ in parts
                    if (at := _locate(name, part)) is not None
                ),
                None,
            )
            if hit is None:
                out[name] = tensor
                continue
            module, parts, head, tail = hit
            if head + module + tail in out:
                continue  # fused at its first part
            names = [head + part + tail for part, _ in parts]
            if missing := [n for n in names if n not in state]:
                raise ValueError(f"{head + module + tail}: cannot fuse without {missing}")
            out[head + module + tail] = torch.cat([state[n] for n in names])
        return out


class Phi3(Family):
    """Phi-3 (`Phi3ForCausalLM`): Llama's layer with fused projections and no biases.

    `self_attn.qkv_proj` stacks q (heads · head_dim rows), k and v (KV heads · head_dim each);
    `mlp.gate_up_proj` stacks gate and up (`chunk(2)`: gate first). The fused weights hold
    exactly the canonical ones, so the split is lossless and fusing back restores the bytes.
    """

    renames: ClassVar[bool] = True

    def check(self, c) -> None:
        # transformers 5 keeps the rotary settings in `rope_parameters`; older configs in
        # `rope_scaling` (with `type`) and a top-level `partial_rotary_factor`: read them all.
        ropes = [
            r for r in (getattr(c, "rope_parameters", None), getattr(c, "rope_scaling", None)) if isinstance(r, dict)
        ]
        for partial in [getattr(c, "partial_rotary_factor", None)] + [r.get("partial_rotary_factor") for r in ropes]:
            if partial not in (None, 1.0):
                raise UnsupportedArchitecture(
                    f"model_type 'phi3': partial_rotary_factor={partial} is not supported; tyr rotates "
                    "every head dimension (partial_rotary_factor must be 1.0)"
                )
        for kind in (r.get("rope_type", r.get("type", "default")) for r in ropes):
            if kind != "default":
                raise UnsupportedArchitecture(
                    f"model_type 'phi3': rope_scaling / rope_parameters rope_type {kind!r} is not supported; "
                    "tyr computes Phi-3's default rotary embedding only (longrope changes its frequencies "
                    "with the sequence length)"
                )
        window, longest = getattr(c, "sliding_window", None), getattr(c, "max_position_embeddings", None)
        if window is not None and (longest is None or window < longest):
            raise UnsupportedArchitecture(
                f"model_type 'phi3': sliding_window={window} is not supported; tyr attends over the "
                "whole context (set sliding_window to null in config.json only if no sequence is longer)"
            )

    def fused(self, config) -> dict:
        d, kv = config.head_dim, config.num_key_value_heads * config.head_dim
        return {
            "self_attn.qkv_proj": (
                ("self_attn.q_proj", config.num_attention_heads * d),
                ("self_attn.k_proj", kv),
                ("self_attn.v_proj", kv),
            ),
            "mlp.gate_up_proj": (
                ("mlp.gate_proj", config.intermediate_size),
                ("mlp.up_proj", config.intermediate_size),
            ),
        }


class TyrExport(Family):
    """tyr's own export (`tyr_llama`): already a `TyrConfig`, already canonical names."""

    def tyr_config(self, c):
        return c


# Llama-named families differ only in their attention flags. Llama and Qwen3 read
# `attention_bias` (one switch for q/k/v and o); Qwen2 always has q/k/v biases and no o bias.
FAMILIES = (
    Family("llama", ("llama",), qkv_bias=None, o_bias=None),
    Family("mistral", ("mistral",)),
    Family("qwen2", ("qwen2",), qkv_bias=True),
    Family("qwen3", ("qwen3",), qkv_bias=None, o_bias=None, qk_norm=True),
    Phi3("phi3", ("phi3",)),
    TyrExport("tyr", ("tyr_llama",)),
)
BY_MODEL_TYPE = {t: f for f in FAMILIES for t in f.model_types}
# Tensors tyr writes itself (exports, level files) carry canonical names.
CANONICAL = Family("canonical", ())


def family_of(model_type) -> Family | None:
    return BY_MODEL_TYPE.get(model_type)


def check_supported(hf_config) -> None:
    """Refuse, naming it, an architecture or a variant of one that tyr cannot prune exactly."""
    model_type = getattr(hf_config, "model_type", None)
    family = family_of(model_type)
    if family is None:
        archs = getattr(hf_config, "architectures", None) or [model_type]
        raise UnsupportedArchitecture(
            f"architecture {archs[0]!r} (model_type {model_type!r}) is not supported; "
            f"tyr prunes Llama-shaped decoders: model_type one of {sorted(set(BY_MODEL_TYPE) - {'tyr_llama'})}"
        )
    if getattr(hf_config, "num_hidden_layers", 0) < 1 or getattr(hf_config, "num_attention_heads", 0) < 1:
        raise UnsupportedArchitecture(f"model_type {model_type!r} config has no decoder layers or heads")
    family.check(hf_config)


def tyr_config(hf_config):
    """A dense `TyrConfig` equivalent to a supported Hugging Face config."""
    check_supported(hf_config)
    return family_of(hf_config.model_type).tyr_config(hf_config)


def spec_from_config(hf_config) -> ModelSpec:
    """The ModelSpec of a supported family's HF config, with its parameter counts."""
    from tyr.model import sparsity

    c = tyr_config(hf_config)
    spec = ModelSpec(
        architecture=(getattr(hf_config, "architectures", None) or ["LlamaForCausalLM"])[0],
        model_type=c.source_model_type,
        num_layers=c.num_hidden_layers,
        hidden_size=c.hidden_size,
        num_heads=c.num_attention_heads,
        num_kv_heads=c.num_key_value_heads,
        head_dim=c.head_dim,
        intermediate_size=list(c.layer_intermediate),
        vocab_size=c.vocab_size,
        tie_word_embeddings=c.tie_word_embeddings,
        qkv_bias=c.qkv_bias,
        o_bias=c.o_bias,
        mlp_bias=c.mlp_bias,
        qk_norm=c.qk_norm,
    )
    spec.params = sparsity.model_params(spec)
    return spec
