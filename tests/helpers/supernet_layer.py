"""One supernet layer's inputs on a tiny model: its spec, random calibration tokens, levels, embeddings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import zarr

from tyr.calib.calibrate import embed
from tyr.model import adapter
from tyr.model.families import spec_from_config
from tyr.model.spec import ModelSpec
from tyr.supernet import build as construct
from tyr.supernet import format as supernet
from tyr.supernet.levels import write_levels


@dataclass
class Setup:
    model_dir: Path
    spec_json: Path
    levels_json: Path
    tokens_zarr: Path
    inputs: Path  # layer 0's input (embeddings)
    spec: ModelSpec

    def build(self, out, layer=0, inputs=None, **options):
        """build_layer into out/layer, expected output into out/next.zarr; returns the manifest."""
        return construct.build_layer(
            self.model_dir,
            self.spec_json,
            self.levels_json,
            inputs or self.inputs,
            layer,
            out / "layer",
            out / "next.zarr",
            **options,
        )


def prepare(tmp_path, tiny_model_dir, model_type="llama", attn_kept=None, n_seq=10, seq_len=24, **overrides):
    """A tiny model, its spec, random calibration tokens, levels at 50% ± 25%, embeddings."""
    from transformers import AutoConfig

    path = tiny_model_dir(model_type, **overrides)
    spec = spec_from_config(AutoConfig.from_pretrained(path))
    spec.to_json(path / "spec.json")
    tokens = tmp_path / "tokens.zarr"
    group = zarr.open_group(str(tokens), mode="w")
    group.create_array("prune", shape=(n_seq, seq_len), dtype="int32")[:] = np.random.default_rng(0).integers(
        3, spec.vocab_size, (n_seq, seq_len)
    )
    levels = tmp_path / "levels.json"
    lv = write_levels(path / "spec.json", levels, target_sparsity=0.5, delta=0.25, n_levels=5, iteration=1)
    if attn_kept is not None:
        for entry in lv["layers"]:
            entry["attn"]["kept"] = attn_kept
        levels.write_text(json.dumps(lv))
    embed(path, tokens, tmp_path / "embeddings.zarr")
    return Setup(path, path / "spec.json", levels, tokens, tmp_path / "embeddings.zarr", spec)


def hidden(path):
    return torch.from_numpy(zarr.open_group(str(path), mode="r")["hidden"][:])


def rope(model_dir, x):
    return adapter.load_model(model_dir).model.position_embeddings(x)


def levels_of(layer_dir, sublayer):
    return {int(p.stem[1:]): supernet.load_level(p)[0] for p in sorted((Path(layer_dir) / sublayer).glob("k*"))}
