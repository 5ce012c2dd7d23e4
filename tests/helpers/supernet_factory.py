"""A small, valid supernet on disk, written in exactly the format of docs/design.md.

Levels are chosen by plain slicing (no pruning criterion, no compensation): a level of
`k` units keeps the first `k` units of a seeded per-layer permutation, and its o_proj /
down_proj are the dense columns of those units. The full level therefore reproduces the
dense layer exactly, and every sparser level is a genuine structural sub-network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tyr.core.io import save_safetensors, write_json
from tyr.model import sparsity
from tyr.model.adapter import layer_prefix, load_state
from tyr.model.spec import ModelSpec, spec_from_config


def write_spec(model_dir) -> Path:
    from transformers import AutoConfig

    path = Path(model_dir) / "spec.json"
    spec_from_config(AutoConfig.from_pretrained(model_dir)).to_json(path)
    return path


def even_levels(units: int, n_levels: int) -> list[int]:
    """Kept counts dense→sparse, evenly spaced from `units` down to 0, deduplicated."""
    kept = [int(round(units * (1 - i / (n_levels - 1)))) for i in range(n_levels)]
    return sorted(set(kept), reverse=True)


def attn_level(spec: ModelSpec, dense: dict, order: np.ndarray, kept: int) -> dict:
    heads = np.sort(order[:kept])
    kv = sorted({spec.kv_of(int(h)) for h in heads})
    d = spec.head_dim
    cols = (heads[:, None] * d + np.arange(d)[None, :]).reshape(-1)
    tensors = {
        "o_proj.weight": dense["self_attn.o_proj.weight"][:, torch.as_tensor(cols, dtype=torch.long)].clone(),
        "kept_heads": torch.as_tensor(heads, dtype=torch.int64),
        "kept_kv_heads": torch.as_tensor(kv, dtype=torch.int64),
        "q_to_kv": torch.as_tensor([kv.index(spec.kv_of(int(h))) for h in heads], dtype=torch.int64),
    }
    if "self_attn.o_proj.bias" in dense:
        tensors["o_proj.bias"] = dense["self_attn.o_proj.bias"].clone()
    return tensors


def mlp_level(dense: dict, order: np.ndarray, kept: int) -> dict:
    ch = torch.as_tensor(np.sort(order[:kept]), dtype=torch.int64)
    tensors = {"down_proj.weight": dense["mlp.down_proj.weight"][:, ch].clone(), "kept_channels": ch}
    if "mlp.down_proj.bias" in dense:
        tensors["down_proj.bias"] = dense["mlp.down_proj.bias"].clone()
    return tensors


def build_supernet(model_dir, run_dir, *, attn_levels: int = 5, mlp_levels: int = 5,
                   target_sparsity: float = 0.5, iteration: int = 1, seed: int = 0) -> dict:
    """Write `levels.json`, per-layer level files + manifests and `supernet/supernet.json`.

    Returns the paths: {"supernet", "levels", "spec"}.
    """
    run_dir = Path(run_dir)
    spec = ModelSpec.from_json(write_spec(model_dir))
    rng = np.random.default_rng(seed)
    sn_dir = run_dir / "supernet"
    levels_doc = {"iteration": iteration, "delta": 1.0 / (attn_levels - 1), "target_sparsity": target_sparsity,
                  "layers": []}
    index = {"iteration": iteration, "model": str(model_dir), "layers": []}
    for layer in range(spec.num_layers):
        dense = load_state(model_dir, layer_prefix(layer))
        manifest = {"layer": layer}
        entry = {"layer": layer}
        levels_layer = {}
        for sub, n_levels in (("attn", attn_levels), ("mlp", mlp_levels)):
            units = spec.units(sub, layer)
            order = rng.permutation(units)
            kept_list = even_levels(units, n_levels)
            centre = min(kept_list, key=lambda k: (abs((units - k) - target_sparsity * units), k))
            levels_layer[sub] = {"kept": kept_list, "centre": centre}
            manifest[sub], entry[sub] = [], []
            for kept in kept_list:
                tensors = attn_level(spec, dense, order, kept) if sub == "attn" else mlp_level(dense, order, kept)
                kv_kept = len(tensors["kept_kv_heads"]) if sub == "attn" else None
                params = sparsity.sublayer_params(spec, sub, layer, kept, kv_kept)
                meta = {"layer": layer, "sublayer": sub, "kept": kept, "sparsity": 1 - kept / units,
                        "params": params, "iteration": iteration}
                if sub == "attn":
                    meta["kv_kept"] = kv_kept
                rel = f"{sub}/k{kept:05d}.safetensors"
                save_safetensors(sn_dir / f"layer{layer:03d}" / rel, tensors, meta)
                level = {"kept": kept, "params": params, "sparsity": 1 - kept / units, "file": rel}
                if sub == "attn":
                    level["kv_kept"] = kv_kept
                manifest[sub].append(level)
                entry[sub].append({**level, "file": f"layer{layer:03d}/{rel}"})
        write_json(sn_dir / f"layer{layer:03d}" / "manifest.json", manifest)
        index["layers"].append(entry)
        levels_doc["layers"].append(levels_layer)
    write_json(run_dir / "levels.json", levels_doc)
    write_json(sn_dir / "supernet.json", index)
    return {"supernet": sn_dir / "supernet.json", "levels": run_dir / "levels.json",
            "spec": Path(model_dir) / "spec.json"}


def write_tokens(path, *, vocab_size: int, n_seq: int = 8, seq_len: int = 32, seed: int = 0) -> Path:
    """A `tokens.zarr` group with random `prune`/`fitness`/`selection`/`heldout` int32 splits."""
    import zarr

    rng = np.random.default_rng(seed)
    group = zarr.open_group(str(path), mode="w")
    for split in ("prune", "fitness", "selection", "heldout"):
        data = rng.integers(3, vocab_size, size=(n_seq, seq_len), dtype=np.int32)
        arr = group.create_array(split, shape=data.shape, dtype="int32", chunks=(1, seq_len))
        arr[:] = data
    group.attrs.update({"source": "random", "tokenizer": "tiny", "seed": seed, "seq_len": seq_len})
    return Path(path)


def make_run(root, *, n_layers: int = 4, n_seq: int = 8, seq_len: int = 32, k: int = 16, seed: int = 0,
             target_sparsity: float = 0.5, **model_overrides) -> dict:
    """A tiny model, its supernet, a token file and the dense top-k: everything a search reads."""
    from tyr.search.fitness import dense_topk
    from tyr.testing import tiny_hf_model

    root = Path(root)
    model = tiny_hf_model("llama", seed=seed, num_hidden_layers=n_layers, initializer_range=0.1, **model_overrides)
    model.save_pretrained(root / "model")
    paths = build_supernet(root / "model", root / "iter1", target_sparsity=target_sparsity, seed=seed)
    paths["model"] = root / "model"
    paths["tokens"] = write_tokens(root / "tokens.zarr", vocab_size=model.config.vocab_size, n_seq=n_seq,
                                   seq_len=seq_len, seed=seed)
    paths["topk"] = root / "topk.zarr"
    dense_topk(paths["model"], paths["tokens"], paths["topk"], k=k)
    return paths
