"""The unstructured DAG on tiny random models: the layer jobs in order (dense and stacked on a
structural export), the exported folder, and the Snakemake run resumed after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import torch
import yaml
import zarr
from safetensors.torch import load_file

from helpers.runs import RUN, digest, planned_rules, prepare, run, snakemake_cmd, workflow_env
from helpers.supernet_factory import write_spec, write_tokens
from helpers.unstructured import check_export, prune_in_process
from tyr.calib.stores import HIDDEN
from tyr.evaluate.measure import evaluate_model
from tyr.export.hf import export as structural_export
from tyr.methods import baselines
from tyr.methods.unstructured.export import RECORD, export
from tyr.methods.unstructured.patterns import Pattern, unpack
from tyr.methods.unstructured.summary import summarize
from tyr.testing import incomplete_outputs

pytestmark = pytest.mark.usefixtures("single_thread")


N_SEQ, SEQ_LEN = 8, 32
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture
def prepared(tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir("llama")
    write_spec(model_dir)
    return model_dir, write_tokens(tmp_path / "tokens.zarr", vocab_size=128, n_seq=N_SEQ, seq_len=SEQ_LEN)


@pytest.mark.parametrize("method, pattern", [("apt", "2:4"), ("sparsegpt", 0.5), ("wanda", "4:8")])
def test_dense_source_exports_a_standard_model_with_exact_zeros(prepared, tmp_path, method, pattern):
    model_dir, tokens = prepared
    files = prune_in_process(model_dir, tokens, tmp_path / "work", method, pattern)
    record = export(model_dir, files, tmp_path / "pruned", method=method, pattern=pattern, source="dense")
    pattern = Pattern.parse(pattern)
    model, masks = check_export(tmp_path / "pruned", pattern)
    assert model.config.model_type == "llama"  # a plain Llama folder: no trust_remote_code
    assert len(masks) == 3 * len(PROJECTIONS)
    assert record["sparsity"] == pytest.approx(pattern.sparsity, abs=1e-9)
    # Layer 1 was calibrated on the PRUNED layer 0: its input store is the exported layer 0's output.
    ids = torch.from_numpy(zarr.open_group(str(tokens), mode="r")["prune"][:]).long()
    with torch.no_grad():
        out = model(ids, output_hidden_states=True).hidden_states[1]
    stored = torch.from_numpy(zarr.open_group(str(tmp_path / "work" / "acts" / "out000.zarr"), mode="r")[HIDDEN][:])
    assert torch.allclose(out, stored, atol=1e-4)


@pytest.mark.parametrize("structural", ["wanda_sp", "shortgpt"])
def test_stacked_on_a_structural_export_keeps_its_shapes(prepared, tmp_path, structural):
    """A `tyr_llama` source stays one (narrower layers, or layers with no sublayer left);
    only its remaining weights are pruned, each projection to the pattern."""
    model_dir, tokens = prepared
    genome = baselines.run(structural, model_dir, tokens, tmp_path / structural, target_sparsity=0.5)
    source = tmp_path / f"{structural}-pruned"
    structural_export(model_dir, model_dir / "spec.json", genome, source, method=structural)
    files = prune_in_process(source, tokens, tmp_path / "work", "apt", 0.5)
    export(source, files, tmp_path / "stacked", method="apt", pattern=0.5, source=f"s50/{structural}")
    model, masks = check_export(tmp_path / "stacked", Pattern.parse(0.5), trust_remote_code=True)
    base = load_file(str(source / "model.safetensors"))
    assert model.config.model_type == "tyr_llama"
    assert {k: v.shape for k, v in model.state_dict().items() if k in base} == {k: v.shape for k, v in base.items()}
    assert set(masks) == {k for k in base if k.endswith("_proj.weight")}
    for name, bits in masks.items():
        assert int(unpack(bits, base[name].shape[1]).sum()) == base[name].numel() // 2
    assert (tmp_path / "stacked" / "tyr_pruning.json").exists()  # the structural record travels along
    # Backbone sparsity counts both: structural s, then half of what is left.
    plan = {"perplexity": {}, "zeroshot": {"tasks": [], "dir": None}}
    evals = {
        name: evaluate_model(folder, tmp_path / f"{name}.json", plan=plan, speed=False)
        for name, folder in (("dense", model_dir), ("source", source), ("stacked", tmp_path / "stacked"))
    }
    summary = summarize(
        tmp_path / "dense.json",
        tmp_path / "source.json",
        tmp_path / "stacked.json",
        model_dir / "spec.json",
        tmp_path / "summary.json",
    )
    structural = 1 - evals["source"]["params"]["backbone_prunable"] / evals["dense"]["params"]["backbone_prunable"]
    assert summary["structural_sparsity"] == pytest.approx(structural)
    assert summary["sparsity"] == pytest.approx(structural + (1 - structural) * 0.5, abs=1e-9)


def test_export_refuses_a_nonzero_removed_weight(prepared, tmp_path):
    model_dir, tokens = prepared
    files = prune_in_process(model_dir, tokens, tmp_path / "work", "magnitude", 0.5)
    tensors = load_file(str(files[1]))
    tensors["mlp.down_proj.weight"] += 1.0  # the mask still says "removed"
    from safetensors.torch import save_file

    save_file(
        tensors,
        str(files[1]),
        metadata={"layer": "1", "method": "magnitude", "pattern": "50", "seconds": "0", "stats": "{}"},
    )
    with pytest.raises(ValueError, match="removed weight is not zero"):
        export(model_dir, files, tmp_path / "pruned", method="magnitude", pattern=0.5, source="dense")


# ---- the Snakemake DAG -----------------------------------------------------------------------

UNSTRUCTURED = {"methods": ["apt"], "patterns": ["2:4"], "sources": ["dense"], "blocksize": 16}


def test_dag_resumes_after_kill_and_matches_in_process(tiny_model_dir, tmp_path):
    """kill -9 once layer 1 is written; the same command finishes without redoing finished layers,
    and the exported weights equal the in-process run's bit for bit. Not in `rule all`."""
    model_dir = tiny_model_dir("llama", num_hidden_layers=6)
    workdir = tmp_path / "wf"
    run_dir = prepare(workdir, model_dir, unstructured=UNSTRUCTURED)
    out = run(workdir, "-n", "--quiet", "rules")
    assert "unstructured_layer" not in out.stdout + out.stderr  # the default target does not include it
    target = f"results/{RUN}/dense+apt2of4/pruned"
    env = workflow_env()
    proc = subprocess.Popen(
        snakemake_cmd(workdir, "--", target),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    marker = run_dir / "dense+apt2of4" / "layers" / "layer001.safetensors"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not marker.exists():
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before the kill point was reached"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    unfinished = incomplete_outputs(workdir)
    layers = sorted((run_dir / "dense+apt2of4" / "layers").glob("*.safetensors"))
    finished = {p: p.stat().st_mtime_ns for p in layers if p.resolve() not in unfinished}
    assert finished, "no layer had finished before the kill"
    run(workdir, "--", "unstructured")
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items()), "a finished layer was redone"
    table = json.loads((run_dir / "unstructured" / "table.json").read_text())
    assert [(r["source"], r["unstructured"], r["pattern"]) for r in table] == [("dense", "apt", "2of4")]

    files = prune_in_process(
        run_dir / "model", run_dir / "calib" / "tokens.zarr", tmp_path / "ref", "apt", "2:4", batch_size=8
    )
    export(run_dir / "model", files, tmp_path / "ref-pruned", method="apt", pattern="2:4", source="dense")
    assert digest(run_dir / "dense+apt2of4" / "pruned" / "model.safetensors") == digest(
        tmp_path / "ref-pruned" / "model.safetensors"
    )
    assert json.loads((run_dir / "dense+apt2of4" / "pruned" / RECORD).read_text())["pattern"] == "2of4"

    # Each layer job gets only the options it uses, not the lists: another method or pattern
    # plans its own 6 layers and what follows them, and leaves apt 2:4's jobs finished.
    for extra in ({"methods": ["apt", "sparsegpt"]}, {"patterns": ["2:4", 0.5]}):
        (tmp_path / "more.yaml").write_text(yaml.safe_dump({"unstructured": {**UNSTRUCTURED, **extra}}))
        planned = planned_rules(workdir, tmp_path / "more.yaml", target=["unstructured"])
        assert planned == {
            "unstructured": 1,
            "unstructured_layer": 6,
            "unstructured_export": 1,
            "unstructured_evaluate": 1,
            "unstructured_summary": 1,
            "total": 10,
        }, (extra, planned)
