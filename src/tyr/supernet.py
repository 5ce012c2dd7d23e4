"""The supernet on disk: every level of every sublayer, and how to rebuild a pruned layer.

A level file stores only what pruning chose or changed (kept indices and the
compensated output projection); the input projections are a pure slice of the dense
weights, rebuilt here so that no consumer slices by hand. See docs/design.md.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from tyr.io import load_safetensors, read_json

ATTN_PREFIX = "self_attn."
MLP_PREFIX = "mlp."


def level_path(layer_dir, sublayer: str, kept: int) -> Path:
    return Path(layer_dir) / sublayer / f"k{kept:05d}.safetensors"


def load_level(path) -> tuple[dict, dict]:
    """(tensors, metadata) of one level file; metadata values parsed to int/float."""
    tensors, meta = load_safetensors(path)
    parsed = {}
    for k, v in meta.items():
        for cast in (int, float):
            try:
                parsed[k] = cast(v)
                break
            except ValueError:
                continue
        else:
            parsed[k] = v
    return tensors, parsed


def attention_state(spec, dense: dict, level: dict) -> dict:
    """Sliced attention tensors (names relative to the layer) for one attention level.

    `dense` holds the dense layer's tensors by their names relative to the layer.
    """
    d = spec.head_dim
    heads, kv = level["kept_heads"], level["kept_kv_heads"]
    q_rows = (heads[:, None] * d + _arange(d, heads)).reshape(-1)
    kv_rows = (kv[:, None] * d + _arange(d, kv)).reshape(-1)
    out = {
        "self_attn.q_proj.weight": dense["self_attn.q_proj.weight"][q_rows],
        "self_attn.k_proj.weight": dense["self_attn.k_proj.weight"][kv_rows],
        "self_attn.v_proj.weight": dense["self_attn.v_proj.weight"][kv_rows],
        "self_attn.o_proj.weight": level["o_proj.weight"],
    }
    for name, rows in (("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows)):
        bias = dense.get(f"self_attn.{name}.bias")
        if bias is not None:
            out[f"self_attn.{name}.bias"] = bias[rows]
    if "o_proj.bias" in level:
        out["self_attn.o_proj.bias"] = level["o_proj.bias"]
    for norm in ("q_norm", "k_norm"):  # per-head-dim norms are shared by all heads
        if f"self_attn.{norm}.weight" in dense:
            out[f"self_attn.{norm}.weight"] = dense[f"self_attn.{norm}.weight"]
    return out


def mlp_state(dense: dict, level: dict) -> dict:
    """Sliced MLP tensors (names relative to the layer) for one MLP level."""
    ch = level["kept_channels"]
    out = {
        "mlp.gate_proj.weight": dense["mlp.gate_proj.weight"][ch],
        "mlp.up_proj.weight": dense["mlp.up_proj.weight"][ch],
        "mlp.down_proj.weight": level["down_proj.weight"],
    }
    for name in ("gate_proj", "up_proj"):
        bias = dense.get(f"mlp.{name}.bias")
        if bias is not None:
            out[f"mlp.{name}.bias"] = bias[ch]
    if "down_proj.bias" in level:
        out["mlp.down_proj.bias"] = level["down_proj.bias"]
    return out


def layer_state(spec, dense: dict, attn_level: dict, mlp_level: dict) -> dict:
    """The full state of a pruned decoder layer; a sublayer with 0 units has no tensors."""
    state = {k: v for k, v in dense.items() if k.endswith("layernorm.weight")}
    if len(attn_level["kept_heads"]) > 0:
        state.update(attention_state(spec, dense, attn_level))
    if len(mlp_level["kept_channels"]) > 0:
        state.update(mlp_state(dense, mlp_level))
    return state


def layer_shape(attn_level: dict, mlp_level: dict) -> dict:
    """The per-layer config entries of `TyrConfig` for a pruned layer."""
    return {
        "q_heads": int(len(attn_level["kept_heads"])),
        "kv_heads": int(len(attn_level["kept_kv_heads"])),
        "q_to_kv": [int(x) for x in attn_level["q_to_kv"]],
        "intermediate": int(len(mlp_level["kept_channels"])),
    }


def pruned_config(dense_config, shapes: list[dict]):
    """A `TyrConfig` whose layer `l` has the shape `shapes[l]` (see `layer_shape`)."""
    from tyr.modeling_tyr import TyrConfig

    cfg = TyrConfig.from_dict(dense_config.to_dict())
    cfg.layer_q_heads = [s["q_heads"] for s in shapes]
    cfg.layer_kv_heads = [s["kv_heads"] for s in shapes]
    cfg.layer_q_to_kv = [list(s["q_to_kv"]) for s in shapes]
    cfg.layer_intermediate = [s["intermediate"] for s in shapes]
    return cfg


def pruned_layer(spec, config, layer: int, dense: dict, attn_level: dict, mlp_level: dict, dtype=None):
    """A `TyrDecoderLayer` for `layer` built from the dense tensors and two level files' tensors."""
    from tyr.model import build_layer

    shapes = [layer_shape(attn_level, mlp_level)] * config.num_hidden_layers
    return build_layer(pruned_config(config, shapes), layer, layer_state(spec, dense, attn_level, mlp_level), dtype)


def read_supernet(path) -> dict:
    """The supernet index (`supernet.json`), with level files resolved relative to it."""
    index = read_json(path)
    root = Path(path).parent
    for layer in index["layers"]:
        for sublayer in ("attn", "mlp"):
            for level in layer[sublayer]:
                level["path"] = str(root / level["file"])
    return index


def _arange(n, like):
    import torch

    return torch.arange(n, dtype=like.dtype, device=like.device)[None, :]


# ---- building the supernet (Týr-the-Pruner, Sec. 3.2): one job per decoder layer -------------

log = logging.getLogger("tyr.supernet")

HIDDEN = "hidden"  # the array of an activation store: float32 [n_seq, seq_len, hidden]
CHUNK_SEQS = 4


def attention_level(spec, kept_heads, o_weight, o_bias=None) -> dict:
    """The tensors of an attention level file; a KV head goes when all its query heads are gone."""
    import torch

    heads = [int(h) for h in kept_heads]
    assert heads == sorted(set(heads)), "kept heads must be sorted (o_proj columns follow them)"
    kv = sorted({spec.kv_of(h) for h in heads})
    tensors = {
        "o_proj.weight": o_weight,
        "kept_heads": torch.tensor(heads, dtype=torch.int64),
        "kept_kv_heads": torch.tensor(kv, dtype=torch.int64),
        "q_to_kv": torch.tensor([kv.index(spec.kv_of(h)) for h in heads], dtype=torch.int64),
    }
    if o_bias is not None and heads:
        tensors["o_proj.bias"] = o_bias
    return tensors


def mlp_level(kept_channels, down_weight, down_bias=None) -> dict:
    """The tensors of an MLP level file."""
    import torch

    kept = torch.as_tensor(kept_channels, dtype=torch.int64)
    assert bool((kept[1:] > kept[:-1]).all()), "kept channels must be sorted (down_proj columns follow them)"
    tensors = {"down_proj.weight": down_weight, "kept_channels": kept}
    if down_bias is not None and len(kept_channels) > 0:
        tensors["down_proj.bias"] = down_bias
    return tensors


def _create_hidden(path, shape):
    import zarr

    group = zarr.open_group(str(path), mode="w")
    chunks = (min(CHUNK_SEQS, shape[0]), *shape[1:])
    return group.create_array(HIDDEN, shape=shape, chunks=chunks, dtype="float32", compressors=None)


def _batches(array, batch_size):
    import torch

    for i in range(0, array.shape[0], batch_size):
        yield i, torch.from_numpy(array[i:i + batch_size])


def _open_hidden(path):
    import zarr

    return zarr.open_group(str(path), mode="r")[HIDDEN]


def embed(model_dir, tokens_zarr, out_zarr, *, split="prune", batch_size=8) -> None:
    """Layer 0's input: the token embeddings of the calibration split."""
    import torch
    import zarr

    from tyr import model as adapter
    from tyr.io import atomic_path

    weight = adapter.load_state(model_dir, "model.embed_tokens.")["weight"]
    tokens = zarr.open_group(str(tokens_zarr), mode="r")[split]
    with atomic_path(out_zarr) as tmp:
        out = _create_hidden(tmp, (*tokens.shape, weight.shape[1]))
        for i, ids in _batches(tokens, batch_size):
            out[i:i + len(ids)] = weight[ids.long()].float().numpy()


def build_layer(model_dir, spec_json, levels_json, inputs_zarr, layer, layer_dir, next_inputs_zarr, *,
                damp=0.01, heads_per_step=1, channels_per_step=16, batch_size=8, compensate=True,
                accumulate="expected", taylor=True, obs=True, iteration=1) -> dict:
    """Prune every level of layer `layer`'s two sublayers and propagate the expected output.

    Reads the layer's expected input (`inputs_zarr`), writes the level files and, last,
    `layer_dir/manifest.json`; writes the layer's expected output to `next_inputs_zarr`
    (skipped when None). accumulate="dense" propagates the dense outputs instead (ablation).
    Calibration streams through the store in batches of `batch_size` sequences.
    """
    import torch

    from tyr import accumulate as acc
    from tyr import model as adapter
    from tyr.io import atomic_path, read_json, save_safetensors, write_json
    from tyr.local_prune import Hessian, channels, prune_levels, recon_error
    from tyr.model import ModelSpec
    from tyr.modeling_tyr import TyrRotaryEmbedding
    from tyr.sparsity import attention_params, mlp_params

    if accumulate not in ("expected", "dense"):
        raise ValueError(f"accumulate must be 'expected' or 'dense', not {accumulate!r}")
    start = time.perf_counter()
    spec = ModelSpec.from_json(spec_json)
    config = adapter.load_config(model_dir)
    levels = read_json(levels_json)["layers"][layer]
    dense = adapter.load_state(model_dir, adapter.layer_prefix(layer))
    module = adapter.build_layer(config, layer, dense, torch.float32)
    x_in = _open_hidden(inputs_zarr)
    pos = TyrRotaryEmbedding(config)(torch.zeros(1), torch.arange(x_in.shape[1])[None])
    layer_dir = Path(layer_dir)
    prune = dict(damp_ratio=damp, taylor=taylor, obs=obs, compensate=compensate)
    meta = dict(layer=layer, iteration=iteration)
    manifest = {"layer": layer, "iteration": iteration}
    if all("centre" in levels[s] for s in ("attn", "mlp")):  # lets the search read centres from the index
        manifest["centre"] = {s: levels[s]["centre"] for s in ("attn", "mlp")}

    def emit(sublayer, name, H, group, per_step, make_level, params):
        """Prune one sublayer, write its level files; return W̄, b̄ for the expectation."""
        weight, bias = dense[f"{name}.weight"], dense.get(f"{name}.bias")
        units = weight.shape[1] // group
        kept = levels[sublayer]["kept"]
        pruned = prune_levels(weight, H, kept, group=group, per_step=per_step, **prune)
        weights = acc.level_weights(kept, units)
        entries, variants = [], []
        for k, w_e in zip(kept, weights):
            unit_idx, w = pruned[k]
            tensors = make_level(unit_idx, w, bias)
            level = {"kept": k}
            if sublayer == "attn":
                level["kv_kept"] = len(tensors["kept_kv_heads"])
            level["sparsity"] = 1 - k / units
            level["params"] = params(k, level.get("kv_kept"))
            file = f"{sublayer}/k{k:05d}.safetensors"
            save_safetensors(layer_dir / file, tensors, {**meta, "sublayer": sublayer, **level})
            entries.append({**level, "file": file, "weight": w_e,
                            "recon_error": recon_error(weight, w, channels(unit_idx, group), H)})
            variants.append((unit_idx, w))
        manifest[sublayer] = entries
        if accumulate == "dense":
            return weight.float(), None if bias is None else bias.float()
        return acc.expected_projection(variants, weights, weight.shape[1], group), acc.expected_bias(bias, variants, weights)

    with torch.no_grad():
        # Attention: Hessian of the o_proj input over the expected layer input.
        H = Hessian(spec.num_heads * spec.head_dim)
        for _, x in _batches(x_in, batch_size):
            H.add(acc.attention_input(module, x, pos))
        W_attn, b_attn = emit("attn", "self_attn.o_proj", H.mean(), spec.head_dim, heads_per_step,
                              lambda u, w, b: attention_level(spec, u, w, b),
                              lambda k, kv: attention_params(spec, k, kv))
        t_attn = time.perf_counter() - start

        def attn_out(x):  # the residual stream after the expected attention sublayer
            return acc.residual(x, acc.attention_input(module, x, pos), W_attn, b_attn)

        # MLP: calibrated on the attention sublayer's expected output.
        H = Hessian(spec.intermediate_size[layer])
        for _, x in _batches(x_in, batch_size):
            H.add(acc.mlp_input(module, attn_out(x)))
        W_mlp, b_mlp = emit("mlp", "mlp.down_proj", H.mean(), 1, channels_per_step,
                            lambda u, w, b: mlp_level(u, w, b), lambda k, kv: mlp_params(spec, k))
        del H

        if next_inputs_zarr is not None:
            with atomic_path(next_inputs_zarr) as tmp:
                out = _create_hidden(tmp, x_in.shape)
                for i, x in _batches(x_in, batch_size):
                    h = attn_out(x)
                    out[i:i + len(x)] = acc.residual(h, acc.mlp_input(module, h), W_mlp, b_mlp).numpy()

    manifest["seconds"] = round(time.perf_counter() - start, 3)
    write_json(layer_dir / "manifest.json", manifest)
    log.info("layer %d: %d attn + %d mlp levels in %.1fs (attention %.1fs)", layer,
             len(manifest["attn"]), len(manifest["mlp"]), manifest["seconds"], t_attn)
    return manifest


def assemble(manifests, out_json) -> dict:
    """The supernet index: every layer's manifest, level files relative to `out_json`."""
    from tyr.io import read_json, write_json

    root = Path(out_json).parent.resolve()
    layers = []
    for path in manifests:
        m = read_json(path)
        base = Path(path).parent.resolve()
        for sublayer in ("attn", "mlp"):
            for level in m[sublayer]:
                level["file"] = Path(os.path.relpath(base / level["file"], root)).as_posix()
        layers.append(m)
    layers.sort(key=lambda m: m["layer"])
    if [m["layer"] for m in layers] != list(range(len(layers))):
        raise ValueError(f"manifests do not cover layers 0..{len(layers) - 1}: {[m['layer'] for m in layers]}")
    iterations = {m["iteration"] for m in layers}
    if len(iterations) != 1:
        raise ValueError(f"manifests mix iterations {sorted(iterations)}")
    index = {"iteration": iterations.pop(), "layers": layers}
    write_json(out_json, index)
    return index


def build_all(model_dir, spec_json, levels_json, tokens_zarr, out_dir, **options) -> Path:
    """embed + every `build_layer` + `assemble`, in process, in the workflow's layout.

    out_dir/acts/layer{l:03d}.zarr (deleted once consumed), out_dir/supernet/layer{l:03d}/,
    out_dir/supernet/supernet.json (returned).
    """
    import shutil

    from tyr.model import ModelSpec

    out_dir = Path(out_dir)
    n_layers = ModelSpec.from_json(spec_json).num_layers
    acts = [out_dir / "acts" / f"layer{l:03d}.zarr" for l in range(n_layers)]
    layer_dirs = [out_dir / "supernet" / f"layer{l:03d}" for l in range(n_layers)]
    start = time.perf_counter()
    embed(model_dir, tokens_zarr, acts[0], batch_size=options.get("batch_size", 8))
    for l in range(n_layers):
        nxt = acts[l + 1] if l + 1 < n_layers else None  # the last layer's output feeds nothing
        build_layer(model_dir, spec_json, levels_json, acts[l], l, layer_dirs[l], nxt, **options)
        shutil.rmtree(acts[l])
    out = out_dir / "supernet" / "supernet.json"
    assemble([d / "manifest.json" for d in layer_dirs], out)
    log.info("supernet of %d layers in %.1fs -> %s", n_layers, time.perf_counter() - start, out)
    return out
