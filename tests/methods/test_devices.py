"""The device path of the baselines and of the unstructured layer job, checked without a GPU: a GPU
the machine lacks is refused before anything is written, the error naming the config key; `auto`
on such a machine is the CPU path, byte for byte the default's result."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import zarr

from helpers.unstructured import prune_in_process
from tyr.calib.calibrate import embed
from tyr.calib.stores import HIDDEN
from tyr.core.io import load_safetensors
from tyr.methods import baselines
from tyr.methods.unstructured.layer import prune_layer

pytestmark = pytest.mark.usefixtures("single_thread")

# Small search budgets: these tests compare two runs, not search quality.
FAST = {
    "search_llm": {"population": 4, "parents": 2, "mutations": 2, "crossovers": 1, "epochs": 1},
    "nirvana": {"candidates": 2},
    "adapruner": {"trials": 3},
}


@pytest.fixture
def no_gpu(monkeypatch):
    """A machine where torch sees no CUDA device (also on one that has a GPU)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def written(out_dir: Path) -> dict:
    """Every file under `out_dir` as bytes, its own path (the genome names its supernet) masked."""
    return {
        p.relative_to(out_dir).as_posix(): p.read_bytes().replace(str(out_dir).encode(), b"<out>")
        for p in sorted(out_dir.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("method", sorted(baselines.METHODS))
def test_a_baseline_refuses_a_gpu_the_machine_lacks_naming_the_key(prepared, tmp_path, no_gpu, method):
    model_dir, tokens_zarr = prepared()
    with pytest.raises(RuntimeError, match=r"devices\.baselines: cuda:1, but torch sees no CUDA"):
        baselines.run(method, model_dir, tokens_zarr, tmp_path / "out", target_sparsity=0.3, device="cuda:1")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method", sorted(baselines.METHODS))
def test_a_baseline_on_auto_without_a_gpu_writes_the_defaults_bytes(prepared, tmp_path, no_gpu, method):
    model_dir, tokens_zarr = prepared()
    runs = {}
    for name, device in (("default", {}), ("auto", {"device": "auto"})):
        options = {**FAST.get(method, {}), **device}
        baselines.run(method, model_dir, tokens_zarr, tmp_path / name, target_sparsity=0.3, **options)
        runs[name] = written(tmp_path / name)
    assert "genome.json" in runs["default"] and runs["auto"] == runs["default"]


def test_the_layer_job_refuses_a_gpu_the_machine_lacks_naming_the_key(prepared, tmp_path, no_gpu):
    model_dir, tokens_zarr = prepared()
    embed(model_dir, tokens_zarr, tmp_path / "in.zarr")
    out, nxt = tmp_path / "layer000.safetensors", tmp_path / "out000.zarr"
    with pytest.raises(RuntimeError, match=r"devices\.unstructured: cuda, but torch sees no CUDA"):
        prune_layer(model_dir, tmp_path / "in.zarr", 0, out, nxt, method="sparsegpt", pattern=0.5, device="cuda")
    assert not out.exists() and not nxt.exists()


@pytest.mark.parametrize("method", ["apt", "sparsegpt", "wanda", "magnitude", "refit"])
def test_the_layer_jobs_on_auto_without_a_gpu_write_the_defaults_tensors(prepared, tmp_path, no_gpu, method):
    model_dir, tokens_zarr = prepared()
    default = prune_in_process(model_dir, tokens_zarr, tmp_path / "default", method, "2:4")
    auto = prune_in_process(model_dir, tokens_zarr, tmp_path / "auto", method, "2:4", device="auto")
    for a, b in zip(default, auto):
        (ta, ma), (tb, mb) = load_safetensors(a), load_safetensors(b)
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
        assert {**ma, "seconds": None} == {**mb, "seconds": None}  # statistics included; wall time aside
    for layer in range(len(default)):
        store = f"acts/out{layer:03d}.zarr"
        stored = [zarr.open_group(str(tmp_path / run / store), mode="r")[HIDDEN][:] for run in ("default", "auto")]
        assert stored[0].tobytes() == stored[1].tobytes()
