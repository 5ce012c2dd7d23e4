import json
import os

import pytest
import torch
import zarr

from helpers.data import mount_as_root
from helpers.supernet_layer import hidden, levels_of, prepare, rope
from tyr.model import adapter
from tyr.model.sparsity import attention_params, mlp_params
from tyr.supernet import build as construct
from tyr.supernet import format as supernet
from tyr.supernet.local_prune import channels
from tyr.testing import build_supernet


def test_embed_is_the_embedding_lookup(tmp_path, tiny_model_dir):
    s = prepare(tmp_path, tiny_model_dir)
    ids = torch.from_numpy(zarr.open_group(str(s.tokens_zarr), mode="r")["prune"][:]).long()
    emb = adapter.load_model(s.model_dir).model.embed_tokens(ids)
    assert torch.equal(hidden(s.inputs), emb)


def test_gqa_kv_removal_and_mapping(tmp_path, tiny_model_dir, model_type):
    """Every attention level, and hand-picked head sets, rebuild to a masked dense computation."""
    s = prepare(tmp_path, tiny_model_dir, model_type, attn_kept=[4, 3, 2, 1, 0])
    s.build(tmp_path)
    dense = adapter.load_state(s.model_dir, adapter.layer_prefix(0))
    config = adapter.load_config(s.model_dir)
    dense_layer = adapter.decoder_layer(config, 0, dense)
    x = hidden(s.inputs)[:3]
    pos = rope(s.model_dir, x)
    z = adapter.o_proj_input(dense_layer, x, pos)  # all 4 heads, dense
    no_mlp = {"kept_channels": torch.zeros(0, dtype=torch.int64)}
    d = s.spec.head_dim
    rng = torch.Generator().manual_seed(0)
    forced = [[2, 3], [0, 1], [1, 2], [1, 2, 3], [0], [3]]  # whole KV groups gone; irregular maps
    cases = [(lv["kept_heads"].tolist(), lv) for lv in levels_of(tmp_path / "layer", "attn").values()]
    cases += [
        (h, supernet.attention_level(s.spec, h, torch.randn(s.spec.hidden_size, len(h) * d, generator=rng)))
        for h in forced
    ]
    kv_gone = False
    for heads, lv in cases:
        kv = sorted({h // s.spec.group_size for h in heads})
        assert lv["kept_kv_heads"].tolist() == kv
        assert lv["q_to_kv"].tolist() == [kv.index(h // s.spec.group_size) for h in heads]
        kv_gone |= 0 < len(kv) < s.spec.num_kv_heads
        layer = supernet.pruned_layer(s.spec, config, 0, dense, lv, no_mlp)
        W = torch.zeros(s.spec.hidden_size, s.spec.num_heads * d)
        if heads:
            W[:, channels(torch.tensor(heads), d)] = lv["o_proj.weight"]
        ref = x + z @ W.T  # masked dense: pruned heads' columns are zero
        if "o_proj.bias" in lv:
            ref = ref + lv["o_proj.bias"]
        assert torch.allclose(layer(x, pos), ref, atol=1e-5)
    assert kv_gone


def brute_force_params(state):
    return sum(v.numel() for k, v in state.items() if "proj" in k)


@pytest.mark.parametrize(
    "model_type,overrides", [("llama", {"attention_bias": True, "mlp_bias": True}), ("qwen2", {}), ("qwen3", {})]
)
def test_params_match_sliced_tensors(tmp_path, tiny_model_dir, model_type, overrides):
    s = prepare(tmp_path, tiny_model_dir, model_type, attn_kept=[4, 3, 2, 1, 0], **overrides)
    manifest = s.build(tmp_path)
    dense = adapter.load_state(s.model_dir, adapter.layer_prefix(0))
    attn, mlp = levels_of(tmp_path / "layer", "attn"), levels_of(tmp_path / "layer", "mlp")
    empty_attn, empty_mlp = attn[0], mlp[0]
    for entry in manifest["attn"]:
        state = supernet.layer_state(s.spec, dense, attn[entry["kept"]], empty_mlp)
        assert entry["params"] == brute_force_params(state) == attention_params(s.spec, entry["kept"], entry["kv_kept"])
    for entry in manifest["mlp"]:
        state = supernet.layer_state(s.spec, dense, empty_attn, mlp[entry["kept"]])
        assert entry["params"] == brute_force_params(state) == mlp_params(s.spec, entry["kept"])
    full = supernet.layer_state(s.spec, dense, attn[4], mlp[s.spec.intermediate_size[0]])
    assert brute_force_params(full) == brute_force_params(dense)


def test_level_files_and_manifest(tmp_path, tiny_model_dir):
    s = prepare(tmp_path, tiny_model_dir)
    manifest = s.build(tmp_path, iteration=3)
    lv = json.loads(s.levels_json.read_text())["layers"][0]
    assert [e["kept"] for e in manifest["attn"]] == lv["attn"]["kept"]
    assert [e["kept"] for e in manifest["mlp"]] == lv["mlp"]["kept"]
    assert manifest["centre"] == {"attn": lv["attn"]["centre"], "mlp": lv["mlp"]["centre"]}
    for sub in ("attn", "mlp"):
        weights = [e["weight"] for e in manifest[sub]]
        assert sum(weights) == pytest.approx(1) and weights[-1] == 0  # the empty level weighs 0
        errors = [e["recon_error"] for e in manifest[sub]]
        assert errors[0] == pytest.approx(0, abs=1e-9) and errors[-1] == pytest.approx(1)
        for e in manifest[sub]:
            tensors, meta = supernet.load_level(tmp_path / "layer" / e["file"])
            assert meta["kept"] == e["kept"] and meta["iteration"] == 3 and meta["sublayer"] == sub
            assert meta["params"] == e["params"] and meta["sparsity"] == pytest.approx(e["sparsity"])
            name = "o_proj.weight" if sub == "attn" else "down_proj.weight"
            width = e["kept"] * (s.spec.head_dim if sub == "attn" else 1)
            assert tensors[name].shape == (s.spec.hidden_size, width)


def test_compensation_beats_masking_in_both_sublayers(tmp_path, tiny_model_dir, model_type):
    s = prepare(tmp_path, tiny_model_dir, model_type)
    comp = s.build(tmp_path / "comp")
    mask = s.build(tmp_path / "mask", compensate=False)
    for sub in ("attn", "mlp"):
        for c, m in zip(comp[sub], mask[sub]):
            if 0 < c["kept"] < s.spec.units(sub, 0):
                assert c["recon_error"] < m["recon_error"], (sub, c, m)


def test_build_is_deterministic(tmp_path, tiny_model_dir):
    s = prepare(tmp_path, tiny_model_dir, "qwen2")
    a, b = s.build(tmp_path / "a"), s.build(tmp_path / "b")
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert any(f.suffix == ".safetensors" for f in files)
    for f in files:  # byte for byte: the manifest records each level file's sha256
        if f.name != "manifest.json":
            assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_build_all_assembles_a_readable_supernet(tmp_path, tiny_model_dir):
    s = prepare(tmp_path, tiny_model_dir, "qwen3")
    out = build_supernet(s.model_dir, s.spec_json, s.levels_json, s.tokens_zarr, tmp_path / "run", batch_size=4)
    index = supernet.read_supernet(out)
    assert len(index["layers"]) == s.spec.num_layers and index["iteration"] == 1
    for layer in index["layers"]:
        for sub in ("attn", "mlp"):
            for level in layer[sub]:
                tensors, meta = supernet.load_level(level["path"])
                assert meta["layer"] == layer["layer"] and meta["kept"] == level["kept"]
    assert not list((tmp_path / "run" / "acts").iterdir())  # activations deleted once consumed


def test_corrected_refit_fits_the_dense_models_output(tmp_path, tiny_model_dir):
    """refit='corrected': layer 1's MLP levels are the least-squares fit, on the pruned stream's
    down_proj input, of the dense model's own down_proj output (computed here independently)."""
    from tyr.supernet.local_prune import Hessian, damp

    s = prepare(tmp_path, tiny_model_dir)
    s.build(tmp_path / "l0", 0)
    x_hat = hidden(tmp_path / "l0" / "next.zarr")
    manifest = construct.build_layer(
        s.model_dir,
        s.spec_json,
        s.levels_json,
        tmp_path / "l0" / "next.zarr",
        1,
        tmp_path / "l1" / "layer",
        None,
        refit="corrected",
        embeddings_zarr=s.inputs,
        accumulate="dense",
    )
    model = adapter.load_model(s.model_dir)
    pos = rope(s.model_dir, x_hat)
    with torch.no_grad():
        x = model.model.layers[0](hidden(s.inputs), pos)  # the dense model's input of layer 1
        block = model.model.layers[1]
        h = x + block.self_attn(block.input_layernorm(x), pos)  # ... and of its MLP
        h_hat = x_hat + block.self_attn(block.input_layernorm(x_hat), pos)  # accumulate="dense" carries dense attn
        Z, Z_hat = adapter.down_proj_input(block, h), adapter.down_proj_input(block, h_hat)
    H, C = Hessian(Z.shape[-1]), Hessian(Z.shape[-1])
    H.add(Z_hat)
    C.add(Z_hat, Z)
    W = block.mlp.down_proj.weight.double()
    G, Hd = C.mean() @ W.T, damp(H.mean(), 0.01)
    mlp = levels_of(tmp_path / "l1" / "layer", "mlp")
    for entry in manifest["mlp"]:
        K = mlp[entry["kept"]]["kept_channels"]
        expected = torch.linalg.solve(Hd[K][:, K], G[K]).T
        assert torch.allclose(mlp[entry["kept"]]["down_proj.weight"].double(), expected, atol=1e-4)
    with pytest.raises(ValueError, match="embeddings"):
        construct.build_layer(
            s.model_dir, s.spec_json, s.levels_json, s.inputs, 1, tmp_path / "x", None, refit="corrected"
        )


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root to mount, as in CI), unmounted afterwards."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    mount_as_root("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount), what="mounting a tmpfs")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_loses_nothing_and_the_build_resumes(tmp_path, tiny_model_dir, small_disk):
    """ENOSPC in the middle of a layer's level files: the job fails with the OS's error and
    leaves no manifest (so Snakemake reruns it) and no temporary files; once space is
    freed the same call writes what an untroubled build writes."""
    s = prepare(tmp_path, tiny_model_dir)
    reference = s.build(tmp_path / "ref")
    need = sum(p.stat().st_size for p in (tmp_path / "ref").rglob("*") if p.is_file())
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    assert need < free, (need, free)
    filler = small_disk / "filler"  # leave a third of what the build writes
    filler.write_bytes(b"\0" * (free - need // 3))
    with pytest.raises(OSError, match="No space left"):
        s.build(small_disk / "run")
    assert not (small_disk / "run" / "layer" / "manifest.json").exists()
    assert not [p for p in (small_disk / "run").rglob("*") if ".tmp" in p.name]
    filler.unlink()
    again = s.build(small_disk / "run")
    again.pop("seconds"), reference.pop("seconds")
    assert again == reference
