import json

import numpy as np
import torch
import zarr
from safetensors.torch import save_file

from tyr.workflow import validate


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


def test_a_flipped_byte_in_a_file_of_the_right_size_is_found(tmp_path):
    """Content hashes: a level file against its manifest, a store's and a model folder's files
    against their recorded checksums."""
    from tyr.core.io import sha256_file, write_checksums

    layer = make_results(tmp_path)
    level = layer / "mlp" / "k00008.safetensors"
    (layer / "manifest.json").write_text(
        json.dumps({"layer": 0, "mlp": [{"kept": 8, "file": "mlp/k00008.safetensors", "sha256": sha256_file(level)}]})
    )
    write_checksums(tmp_path / "calib" / "tokens.zarr")
    model = tmp_path / "model"
    model.mkdir()
    save_file({"w": torch.ones(3)}, str(model / "model.safetensors"))
    write_checksums(model)
    assert validate.problems(tmp_path) == {}

    def flip(path):
        data = bytearray(path.read_bytes())
        data[len(data) - 3] ^= 0xFF  # a weight byte: the header and size stay valid
        path.write_bytes(bytes(data))

    flip(level)
    flip(model / "model.safetensors")
    chunk = next(p for p in (tmp_path / "calib" / "tokens.zarr").rglob("*") if p.is_file() and "/c/" in str(p))
    flip(chunk)
    bad = validate.problems(tmp_path)
    assert set(bad) == {level, model, tmp_path / "calib" / "tokens.zarr"}, bad
    assert "sha256" in bad[level] and "content changed" in bad[model]
    assert validate.main([str(tmp_path), "--remove"]) == 0
    assert not (layer / "manifest.json").exists() and not model.exists()


def test_a_released_iterations_kept_level_is_checked_against_the_kept_index(tmp_path, capsys):
    """A released iteration (supernet.keep_levels: chosen) has no manifests: its kept levels are
    checked against kept.json's hashes, and the bad one is removed and its layer's manifest named
    as the target that rebuilds it."""
    from tyr.core.io import sha256_file

    layer = make_results(tmp_path)
    level = layer / "mlp" / "k00008.safetensors"
    (layer / "manifest.json").unlink()
    entry = {"kept": 8, "file": "layer000/mlp/k00008.safetensors", "sha256": sha256_file(level)}
    (layer.parent / "kept.json").write_text(json.dumps({"iteration": 1, "layers": [{"layer": 0, "mlp": [entry]}]}))
    assert validate.problems(tmp_path) == {}
    data = bytearray(level.read_bytes())
    data[len(data) - 3] ^= 0xFF
    level.write_bytes(bytes(data))
    bad = validate.problems(tmp_path)
    assert set(bad) == {level} and "against the kept index" in bad[level]
    assert validate.main([str(tmp_path), "--remove"]) == 0
    assert not level.exists() and (layer / "mlp" / "k00004.safetensors").exists()
    assert str(layer / "manifest.json") in capsys.readouterr().out
