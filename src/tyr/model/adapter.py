"""Model adapter: any supported model folder as the canonical layout every stage computes with.

What differs between source architectures (config flags, tensor names) lives in their family's
adapter (`tyr.model.families`); this module turns any supported folder into the canonical layout:
a `TyrConfig` (`load_config`), and weights under Llama's tensor names (`load_state`), loaded into
`modeling_tyr`'s classes (`decoder_layer`, `load_layer`, `load_model`), so one forward
implementation serves every stage and every family. A folder is either a dense source (its own
family's config and names) or a tyr export (`is_export`: per-layer shapes, canonical names).
"""

from __future__ import annotations

import json
from pathlib import Path

from tyr.model import families

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
    return {name[len(prefix) :]: t for name, t in state.items() if name.startswith(prefix)}


def is_export(model_dir) -> bool:
    """Whether `model_dir` holds a tyr export (a `TyrConfig` with per-layer shapes) rather than a
    dense source folder. The one test: an export's config.json carries `layer_q_heads`, whatever
    `model_type` it names (exports write the source's, `TyrConfig.to_dict`)."""
    path = Path(model_dir) / "config.json"
    return path.exists() and "layer_q_heads" in json.loads(path.read_text())


def folder_family(model_dir):
    """(family, dense `TyrConfig` or None) whose tensor names the weights of `model_dir` carry.

    A prepared source keeps its family's names; what tyr writes (exports, which mark their
    config with per-layer shapes) is canonical, and so is a folder of bare tensors.
    """
    path = Path(model_dir) / "config.json"
    raw = json.loads(path.read_text()) if path.exists() else {}
    family = families.family_of(raw.get("model_type"))
    if family is None or is_export(model_dir):
        return families.CANONICAL, None
    return family, (load_config(model_dir) if family.renames else None)


def layer_prefix(layer: int) -> str:
    return f"model.layers.{layer}."


def load_config(model_dir):
    """The `TyrConfig` of a dense source folder or of a tyr export (per-layer shapes kept)."""
    from transformers import AutoConfig

    from tyr.model.modeling_tyr import TyrConfig

    if is_export(model_dir):
        return TyrConfig.from_pretrained(model_dir)
    return families.tyr_config(AutoConfig.from_pretrained(model_dir, trust_remote_code=False))


def decoder_layer(config, layer: int, state: dict, dtype=None):
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
    return decoder_layer(config, layer, load_state(model_dir, layer_prefix(layer)), dtype)


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
        raise ValueError(
            f"{model_dir}: weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    model.model.rotary_emb = type(model.model.rotary_emb)(config)  # buffers were created on meta
    if dtype is not None:
        model.to(dtype)
    return model.requires_grad_(False).eval()


def rotary(config, seq_len: int, *, device="cpu", dtype=None):
    """(cos, sin) of positions 0 .. seq_len-1: what every layer attends with on a calibration window
    (the table `TyrModel.position_embeddings` gives a model's forward)."""
    import torch

    from tyr.model.modeling_tyr import TyrRotaryEmbedding

    like = torch.zeros(1, dtype=dtype or torch.float32, device=device)
    return TyrRotaryEmbedding(config).to(device)(like, torch.arange(seq_len, device=device)[None])


def o_proj_input(layer, x, pos):
    """The o_proj input (the per-head attention outputs) of a decoder layer at layer input x."""
    return layer.self_attn.heads(layer.input_layernorm(x), pos)


def down_proj_input(layer, h):
    """The down_proj input (the MLP channels) of a decoder layer at the MLP's residual input h."""
    return layer.mlp.channels(layer.post_attention_layernorm(h))
