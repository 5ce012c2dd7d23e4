"""A small, valid supernet on disk, written by the product's writer (tyr.supernet.format).

Levels are chosen by plain slicing (no pruning criterion, no compensation): a level of
`k` units keeps the first `k` units of a seeded per-layer permutation, and its o_proj /
down_proj are the dense columns of those units. The full level therefore reproduces the
dense layer exactly, and every sparser level is a genuine structural sub-network: slicing is
the independent oracle the tests hold the supernet's consumers to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tyr.core.io import write_json
from tyr.model.adapter import layer_prefix, load_state
from tyr.model.families import spec_from_config
from tyr.model.spec import SUBLAYERS, ModelSpec
from tyr.supernet.format import OUTPUT_PROJECTION, assemble, write_level, write_manifest
from tyr.supernet.local_prune import channels, recon_errors


def write_spec(model_dir) -> Path:
    from transformers import AutoConfig

    path = Path(model_dir) / "spec.json"
    spec_from_config(AutoConfig.from_pretrained(model_dir)).to_json(path)
    return path


def even_levels(units: int, n_levels: int) -> list[int]:
    """Kept counts dense→sparse, evenly spaced from `units` down to 0, deduplicated."""
    kept = [int(round(units * (1 - i / (n_levels - 1)))) for i in range(n_levels)]
    return sorted(set(kept), reverse=True)


def _level(spec, dense, sublayer: str, order: np.ndarray, kept: int):
    """(kept units, output projection) of the level keeping the first `kept` units of `order`:
    the dense o_proj / down_proj columns of those units, no compensation."""
    units = torch.as_tensor(np.sort(order[:kept]), dtype=torch.int64)
    name = OUTPUT_PROJECTION[sublayer]
    group = spec.head_dim if sublayer == "attn" else 1
    return units, dense[f"{name}.weight"][:, channels(units, group)].clone()


def _write_layer(spec, dense, layer_dir, layer: int, levels: dict, rng, iteration: int) -> Path:
    """Every level of one layer through the product's writer; recon errors from an isotropic
    input (H = I: the relative Frobenius error of the output projection)."""
    entries = {}
    for sub in SUBLAYERS:
        order = rng.permutation(spec.units(sub, layer))
        name = OUTPUT_PROJECTION[sub]
        weight, bias = dense[f"{name}.weight"], dense.get(f"{name}.bias")
        group = spec.head_dim if sub == "attn" else 1
        variants = [_level(spec, dense, sub, order, k) for k in levels[sub]["kept"]]
        errors = recon_errors(weight, [(channels(u, group), w) for u, w in variants], torch.eye(weight.shape[1]))
        meta = {"layer": layer, "iteration": iteration}
        entries[sub] = [
            write_level(layer_dir, spec, layer, sub, u, w, bias, meta, weight=0.0, recon_error=e)
            for (u, w), e in zip(variants, errors)
        ]
    write_manifest(
        layer_dir, layer=layer, iteration=iteration, centre={s: levels[s]["centre"] for s in SUBLAYERS}, levels=entries
    )
    return Path(layer_dir) / "manifest.json"


def build_supernet(
    model_dir,
    run_dir,
    *,
    attn_levels: int = 5,
    mlp_levels: int = 5,
    target_sparsity: float = 0.5,
    iteration: int = 1,
    seed: int = 0,
) -> dict:
    """Write `levels.json`, per-layer level files + manifests and `supernet/supernet.json`.

    Returns the paths: {"supernet", "levels", "spec"}.
    """
    run_dir = Path(run_dir)
    spec = ModelSpec.from_json(write_spec(model_dir))
    rng = np.random.default_rng(seed)
    sn_dir = run_dir / "supernet"
    levels_doc = {
        "iteration": iteration,
        "delta": 1.0 / (attn_levels - 1),
        "target_sparsity": target_sparsity,
        "layers": [],
    }
    manifests = []
    for layer in range(spec.num_layers):
        levels = {}
        for sub, n_levels in (("attn", attn_levels), ("mlp", mlp_levels)):
            units = spec.units(sub, layer)
            kept = even_levels(units, n_levels)
            centre = min(kept, key=lambda k: (abs((units - k) - target_sparsity * units), k))
            levels[sub] = {"kept": kept, "centre": centre}
        dense = load_state(model_dir, layer_prefix(layer))
        manifests.append(_write_layer(spec, dense, sn_dir / f"layer{layer:03d}", layer, levels, rng, iteration))
        levels_doc["layers"].append(levels)
    write_json(run_dir / "levels.json", levels_doc)
    assemble(manifests, sn_dir / "supernet.json")
    return {
        "supernet": sn_dir / "supernet.json",
        "levels": run_dir / "levels.json",
        "spec": Path(model_dir) / "spec.json",
    }


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


def make_run(
    root,
    *,
    n_layers: int = 4,
    n_seq: int = 8,
    seq_len: int = 32,
    k: int = 16,
    seed: int = 0,
    target_sparsity: float = 0.5,
    **model_overrides,
) -> dict:
    """A tiny model, its supernet, a token file and the dense top-k: everything a search reads."""
    from tyr.search.reference import dense_topk
    from tyr.testing import tiny_hf_model

    root = Path(root)
    model = tiny_hf_model("llama", seed=seed, num_hidden_layers=n_layers, initializer_range=0.1, **model_overrides)
    model.save_pretrained(root / "model")
    paths = build_supernet(root / "model", root / "iter1", target_sparsity=target_sparsity, seed=seed)
    paths["model"] = root / "model"
    paths["tokens"] = write_tokens(
        root / "tokens.zarr", vocab_size=model.config.vocab_size, n_seq=n_seq, seq_len=seq_len, seed=seed
    )
    paths["topk"] = root / "topk.zarr"
    dense_topk(paths["model"], paths["tokens"], paths["topk"], k=k)
    return paths
