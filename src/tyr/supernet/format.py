"""The supernet on disk: every level of every sublayer, and how to rebuild a pruned layer.
(`tyr.supernet.build` builds Týr's supernet; this module is the format, and its one writer.)

A level file stores only what pruning chose or changed (kept indices and the compensated
output projection); the input projections are a pure slice of the dense weights, rebuilt here
so that no consumer slices by hand. A layer's manifest lists its levels (written last, after
them); the index (`supernet.json`) all manifests. Every supernet is written by `write_level`,
`write_manifest` and `assemble`: Týr's, the baselines' one-level ones and the tests'. See
docs/design.md.

A released iteration (`supernet.keep_levels: chosen`, `tyr.supernet.release`) has no
`supernet.json` and no manifests any more, only the level files its genomes chose, indexed by
`kept.json` beside where `supernet.json` was; `read_supernet` reads that index in its place.
"""

from __future__ import annotations

import os
from pathlib import Path

from tyr.core.io import load_safetensors, read_json, write_json
from tyr.model.spec import SUBLAYERS

OUTPUT_PROJECTION = {  # sublayer -> its output projection, the one local pruning compensates
    "attn": "self_attn.o_proj",
    "mlp": "mlp.down_proj",
}


def level_path(layer_dir, sublayer: str, kept: int) -> Path:
    return Path(layer_dir) / sublayer / f"k{kept:05d}.safetensors"


def write_level(layer_dir, spec, layer: int, sublayer: str, unit_idx, w, bias, meta: dict, **entry_extra) -> dict:
    """Write one level file (kept units `unit_idx`, compensated output projection `w`, `bias`)
    and return its manifest entry: kept units, parameters, sparsity, file and sha256, then
    `entry_extra` (Týr's supernet: the level's `weight` in the carried projection and its
    `recon_error`)."""
    from tyr.core.io import save_safetensors, sha256_file
    from tyr.model.sparsity import sublayer_params

    if sublayer == "attn":
        tensors = attention_level(spec, unit_idx, w, bias)
        entry = {"kept": len(unit_idx), "kv_kept": len(tensors["kept_kv_heads"])}
    else:
        tensors = mlp_level(unit_idx, w, bias)
        entry = {"kept": len(unit_idx)}
    entry["params"] = sublayer_params(spec, sublayer, entry["kept"], entry.get("kv_kept"))
    entry["sparsity"] = 1 - entry["kept"] / spec.units(sublayer, layer)
    path = level_path(layer_dir, sublayer, entry["kept"])
    save_safetensors(path, tensors, {**meta, "sublayer": sublayer, **entry})
    return {**entry, "file": path.relative_to(layer_dir).as_posix(), "sha256": sha256_file(path), **entry_extra}


def write_manifest(layer_dir, *, layer: int, iteration: int, centre: dict, levels: dict, **extra) -> dict:
    """A layer's manifest (`layer_dir/manifest.json`), written after its level files: the
    entries of `write_level` per sublayer (`levels`), the centre level of each (`centre`: the
    search's start), and `extra` (e.g. the method of a baseline, the job's seconds); returns it."""
    manifest = {"layer": layer, "iteration": iteration}
    manifest["centre"] = {s: int(centre[s]) for s in SUBLAYERS}
    manifest.update({s: levels[s] for s in SUBLAYERS})
    manifest.update(extra)
    write_json(Path(layer_dir) / "manifest.json", manifest)
    return manifest


def assemble(manifests, out_json) -> dict:
    """The supernet index: every layer's manifest, level files relative to `out_json`."""
    root = Path(out_json).parent.resolve()
    layers = []
    for path in manifests:
        m = read_json(path)
        base = Path(path).parent.resolve()
        for sublayer in SUBLAYERS:
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
    from tyr.model.modeling_tyr import TyrConfig

    cfg = TyrConfig.from_dict(dense_config.to_dict())
    cfg.layer_q_heads = [s["q_heads"] for s in shapes]
    cfg.layer_kv_heads = [s["kv_heads"] for s in shapes]
    cfg.layer_q_to_kv = [list(s["q_to_kv"]) for s in shapes]
    cfg.layer_intermediate = [s["intermediate"] for s in shapes]
    return cfg


def pruned_layer(spec, config, layer: int, dense: dict, attn_level: dict, mlp_level: dict, dtype=None):
    """A `TyrDecoderLayer` for `layer` built from the dense tensors and two level files' tensors."""
    from tyr.model.adapter import decoder_layer

    shapes = [layer_shape(attn_level, mlp_level)] * config.num_hidden_layers
    return decoder_layer(pruned_config(config, shapes), layer, layer_state(spec, dense, attn_level, mlp_level), dtype)


KEPT_INDEX = "kept.json"  # a released iteration's index: the levels its genomes chose


def index_of(supernet_json) -> Path:
    """The index to read for `supernet_json`: itself, or the kept index of a released iteration."""
    path = Path(supernet_json)
    kept = path.with_name(KEPT_INDEX)
    return kept if not path.exists() and kept.exists() else path


def read_supernet(path) -> dict:
    """The supernet index (`supernet.json`), with level files resolved relative to it; for a
    released iteration, its kept index (`KEPT_INDEX`: only the chosen levels)."""
    try:
        index = read_json(path)
    except FileNotFoundError:  # released (perhaps while this reader started): the kept index
        index = read_json(Path(path).with_name(KEPT_INDEX))
    root = Path(path).parent
    for layer in index["layers"]:
        for sublayer in SUBLAYERS:
            for level in layer[sublayer]:
                level["path"] = str(root / level["file"])
    return index


def _arange(n, like):
    import torch

    return torch.arange(n, dtype=like.dtype, device=like.device)[None, :]


# ---- writing level files (tyr.supernet.build builds them; baselines write one level each) ------------


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
