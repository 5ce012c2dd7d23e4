import json

import numpy as np
import torch
import zarr
from safetensors.torch import save_file

from tyr import validate


def make_results(root):
    layer = root / "s50" / "iter1" / "supernet" / "layer000"
    (layer / "mlp").mkdir(parents=True)
    save_file({"w": torch.ones(4, 4)}, str(layer / "mlp" / "k00004.safetensors"))
    save_file({"w": torch.ones(8, 8)}, str(layer / "mlp" / "k00008.safetensors"))
    (layer / "manifest.json").write_text(json.dumps({"layer": 0}))
    g = zarr.open_group(str(root / "calib" / "tokens.zarr"), mode="w")
    g.create_array("prune", data=np.arange(64, dtype="int32").reshape(8, 8), chunks=(2, 8))
    return layer


def test_clean_results_pass(tmp_path):
    make_results(tmp_path)
    assert validate.problems(tmp_path) == {}


def test_truncated_and_corrupt_artifacts_are_found_and_removed(tmp_path):
    layer = make_results(tmp_path)
    level = layer / "mlp" / "k00008.safetensors"
    level.write_bytes(level.read_bytes()[:-10])  # truncated
    (tmp_path / "s50" / "bad.json").write_text("{not json")
    chunk = next(p for p in (tmp_path / "calib" / "tokens.zarr").rglob("*") if p.is_file() and "/c/" in str(p))
    chunk.write_bytes(b"garbage")
    bad = validate.problems(tmp_path)
    assert set(bad) == {level, tmp_path / "s50" / "bad.json", tmp_path / "calib" / "tokens.zarr"}
    assert validate.main([str(tmp_path)]) == 1
    assert validate.main([str(tmp_path), "--remove"]) == 0
    # The layer's manifest goes with its bad level, so Snakemake rebuilds that layer.
    assert not (layer / "manifest.json").exists() and not (tmp_path / "calib" / "tokens.zarr").exists()
    assert (layer / "mlp" / "k00004.safetensors").exists()
