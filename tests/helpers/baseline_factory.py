"""What the baseline tests share: a prepared tiny model, the dense activations computed piece by
piece (no hooks, no tyr.methods.baselines code), a genome's level tensors and the layers they rebuild."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tyr.model import adapter
from tyr.model.spec import ModelSpec
from tyr.supernet.format import layer_shape, layer_state, load_level, pruned_config, read_supernet

N_SEQ, SEQ_LEN = 8, 32


def spec_of(model_dir) -> ModelSpec:
    return ModelSpec.from_json(Path(model_dir) / "spec.json")


def split_tokens(tokens_zarr, n=None, split="prune") -> torch.Tensor:
    import zarr

    return torch.from_numpy(zarr.open_group(str(tokens_zarr), mode="r")[split][:]).long()[:n]


def prune_tokens(tokens_zarr, n=None) -> torch.Tensor:
    return split_tokens(tokens_zarr, n)


def layer_pieces(layer, x, pos) -> dict:
    """One layer's sublayer inputs and outputs at layer input x (token dimensions kept)."""
    a = layer.input_layernorm(x)
    z = layer.self_attn.heads(a, pos)
    h = x + layer.self_attn.o_proj(z)
    m = layer.post_attention_layernorm(h)
    u = layer.mlp.channels(m)
    return {"x": x, "a": a, "z": z, "h": h, "m": m, "u": u, "y": h + layer.mlp.down_proj(u)}


def flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.shape[-1]).double()


def dense_pass(model_dir, tokens):
    """Every sublayer's input and output in the dense model, computed piece by piece (no hooks).

    Per layer: x (layer input), z (o_proj input), h (residual after attention),
    u (down_proj input), y (layer output); token dimensions flattened for z and u.
    """
    model = adapter.load_model(model_dir, dtype=torch.float32)
    x = model.model.embed_tokens(tokens)
    pos = model.model.position_embeddings(x)
    out = []
    with torch.no_grad():
        for layer in model.model.layers:
            p = layer_pieces(layer, x, pos)
            out.append({**p, "z": flat(p["z"]), "u": flat(p["u"]), "layer": layer})
            x = p["y"]
    return model, pos, out


def chosen_levels(genome_json):
    """Per layer, the (attn, mlp) level tensors the genome names."""
    genome = json.loads(Path(genome_json).read_text())
    index = read_supernet(genome["supernet"])
    levels = []
    for layer, choice in enumerate(genome["layers"]):
        pair = []
        for sub in ("attn", "mlp"):
            (entry,) = [e for e in index["layers"][layer][sub] if e["kept"] == choice[sub]]
            pair.append(load_level(entry["path"])[0])
        levels.append(pair)
    return genome, index, levels


def rebuild(model_dir, levels):
    """The pruned decoder layers, rebuilt by tyr.supernet.format.layer_state into TyrDecoderLayers.

    A compensated bias in a level turns on the config's o_bias / down_bias (what export must do).
    """
    spec = spec_of(model_dir)
    config = adapter.load_config(model_dir)
    config.o_bias = config.o_bias or any("o_proj.bias" in a for a, _ in levels)
    config.down_bias = config.down_bias or any("down_proj.bias" in m for _, m in levels)
    shapes = [layer_shape(a, m) for a, m in levels]
    cfg = pruned_config(config, shapes)
    return [
        adapter.decoder_layer(cfg, l, layer_state(spec, adapter.load_state(model_dir, adapter.layer_prefix(l)), a, m))
        for l, (a, m) in enumerate(levels)
    ]


def pruned_loss(model_dir, genome_json, tokens) -> float:
    """Mean next-token cross-entropy of the written pruned model on `tokens`, by explicit loops."""
    model = adapter.load_model(model_dir, dtype=torch.float32)
    layers = rebuild(model_dir, chosen_levels(genome_json)[2])
    with torch.no_grad():
        x = model.model.embed_tokens(tokens)
        pos = model.model.position_embeddings(x)
        for layer in layers:
            x = layer(x, pos)
        logits = model.lm_head(model.model.norm(x))
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten()).item()


def top(scores, k):
    return sorted(torch.argsort(torch.as_tensor(scores), descending=True)[:k].tolist())


def kept_sets(levels):
    return [(set(a["kept_heads"].tolist()), set(m["kept_channels"].tolist())) for a, m in levels]
