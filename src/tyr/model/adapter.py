"""Model adapter: the prunable structure of Llama-shaped decoders.

What differs between source architectures (config flags, tensor names) lives in their family's
adapter (`tyr.model.families`); this module turns any supported source into the canonical layout:
a `TyrConfig`, and weights under Llama's tensor names (`load_state`), loaded into
`modeling_tyr`'s classes, so one forward implementation serves every stage and every family.

Prunable units per layer:
  attention  a query head = a head_dim block of o_proj input channels + its q_proj rows;
             a KV head (k_proj/v_proj rows) goes when all its query heads are gone
  mlp        a channel = one down_proj input channel + its gate_proj/up_proj rows
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tyr.model import families
from tyr.model.families import UnsupportedArchitecture  # noqa: F401  (raised to callers of this module)

SUBLAYERS = ("attn", "mlp")

# model_type -> its family's adapter (`tyr.model.families`)
SUPPORTED = families.BY_MODEL_TYPE


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


def check_supported(hf_config) -> None:
    """Refuse, naming it, an architecture or a variant of one that tyr cannot prune exactly."""
    model_type = getattr(hf_config, "model_type", None)
    family = families.family_of(model_type)
    if family is None:
        archs = getattr(hf_config, "architectures", None) or [model_type]
        raise UnsupportedArchitecture(
            f"architecture {archs[0]!r} (model_type {model_type!r}) is not supported; "
            f"tyr prunes Llama-shaped decoders: model_type one of {sorted(set(SUPPORTED) - {'tyr_llama'})}"
        )
    if getattr(hf_config, "num_hidden_layers", 0) < 1 or getattr(hf_config, "num_attention_heads", 0) < 1:
        raise UnsupportedArchitecture(f"model_type {model_type!r} config has no decoder layers or heads")
    family.check(hf_config)


def tyr_config(hf_config):
    """A dense `TyrConfig` equivalent to a supported Hugging Face config."""
    check_supported(hf_config)
    return families.family_of(hf_config.model_type).tyr_config(hf_config)


def spec_from_config(hf_config) -> ModelSpec:
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


# ---- weights (safetensors only: never unpickle a checkpoint) ---------------------------------


def weight_files(model_dir) -> list[Path]:
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [model_dir / s for s in shards]
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors weights (tyr never loads pickled checkpoints)")
    return files


def load_state(model_dir, prefix: str = "") -> dict:
    """Tensors whose canonical name starts with `prefix` (stripped), read lazily shard by shard.

    Names are canonical whatever the source family: its adapter maps them on the way in, so
    no later stage knows which family it prunes.
    """
    from safetensors import safe_open

    family, config = folder_family(model_dir)
    state = {}
    for f in weight_files(model_dir):
        with safe_open(str(f), framework="pt") as sf:
            for name in sf.keys():
                if any(n.startswith(prefix) for n in family.canonical_names(name, config)):
                    state[name] = sf.get_tensor(name)
    state = family.to_canonical(state, config)
    return {name[len(prefix):]: t for name, t in state.items() if name.startswith(prefix)}


def folder_family(model_dir):
    """(family, dense `TyrConfig` or None) whose tensor names the weights of `model_dir` carry.

    A prepared source keeps its family's names; what tyr writes (exports, which mark their
    config with per-layer shapes) is canonical, and so is a folder of bare tensors.
    """
    path = Path(model_dir) / "config.json"
    raw = json.loads(path.read_text()) if path.exists() else {}
    family = families.family_of(raw.get("model_type"))
    if family is None or "layer_q_heads" in raw:
        return families.CANONICAL, None
    return family, (load_config(model_dir) if family.renames else None)


def layer_prefix(layer: int) -> str:
    return f"model.layers.{layer}."


def load_config(model_dir):
    """The `TyrConfig` of a dense source folder or of a tyr export (per-layer shapes kept)."""
    from transformers import AutoConfig

    from tyr.model.modeling_tyr import TyrConfig

    if "layer_q_heads" in json.loads((Path(model_dir) / "config.json").read_text()):  # a tyr export
        return TyrConfig.from_pretrained(model_dir)
    return tyr_config(AutoConfig.from_pretrained(model_dir, trust_remote_code=False))


def build_layer(config, layer: int, state: dict, dtype=None):
    """A `TyrDecoderLayer` for layer `layer` holding exactly the tensors in `state`."""
    import torch

    from tyr.model.modeling_tyr import TyrDecoderLayer

    with torch.device("meta"):
        module = TyrDecoderLayer(config, layer)
    module.load_state_dict(state, strict=True, assign=True)
    if dtype is not None:
        module.to(dtype)
    return module.requires_grad_(False).eval()


def load_layer(model_dir, layer: int, config=None, dtype=None):
    config = config or load_config(model_dir)
    return build_layer(config, layer, load_state(model_dir, layer_prefix(layer)), dtype)


def load_model(model_dir, config=None, dtype=None):
    """The whole model as a `TyrForCausalLM` (dense or pruned, by its config)."""
    import torch

    from tyr.model.modeling_tyr import TyrForCausalLM

    config = config or load_config(model_dir)
    with torch.device("meta"):
        model = TyrForCausalLM(config)
    state = load_state(model_dir)
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
        missing = [m for m in missing if m != "lm_head.weight"]
    if missing or unexpected:
        raise ValueError(f"{model_dir}: weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.model.rotary_emb = type(model.model.rotary_emb)(config)  # buffers were created on meta
    if dtype is not None:
        model.to(dtype)
    return model.requires_grad_(False).eval()


def threads_from_env() -> None:
    """Honour the job's CPU allowance (Snakemake `threads`, SLURM cpus) in torch."""
    import torch

    n = os.environ.get("TYR_THREADS") or os.environ.get("SLURM_CPUS_PER_TASK")
    if n:
        torch.set_num_threads(int(n))
