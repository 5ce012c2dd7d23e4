"""The unstructured DAG's jobs run in process, and the checks every exported result must pass."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from tyr.calib.calibrate import embed
from tyr.methods.unstructured.export import MASKS
from tyr.methods.unstructured.layer import prune_layer
from tyr.methods.unstructured.patterns import unpack


def prune_in_process(model_dir, tokens, out_dir, method, pattern, **options) -> list[Path]:
    """What the DAG's jobs do, in order: embed, then every layer on the previous pruned layer's output."""
    out_dir = Path(out_dir)
    n_layers = json.loads((Path(model_dir) / "config.json").read_text())["num_hidden_layers"]
    acts = out_dir / "acts" / "embeddings.zarr"
    embed(model_dir, tokens, acts)
    files = []
    for layer in range(n_layers):
        nxt = out_dir / "acts" / f"out{layer:03d}.zarr"
        files.append(out_dir / "layers" / f"layer{layer:03d}.safetensors")
        prune_layer(model_dir, acts, layer, files[-1], nxt, method=method, pattern=pattern, blocksize=16, **options)
        acts = nxt
    return files


def check_export(folder, pattern, *, trust_remote_code=False):
    """Load with from_pretrained; every removed weight is zero, N:M groups exact; return the model."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=trust_remote_code, dtype=torch.float32)
    masks = load_file(str(Path(folder) / MASKS))
    state = model.state_dict()
    assert masks and set(masks) <= set(state)
    for name, bits in masks.items():
        weight = state[name]
        mask = unpack(bits, weight.shape[1])
        assert bool((weight[mask] == 0).all()) and bool((weight[~mask] != 0).all()), name
        if pattern.m:
            assert bool(((weight != 0).reshape(weight.shape[0], -1, pattern.m).sum(-1) == pattern.n).all()), name
    return model, masks
