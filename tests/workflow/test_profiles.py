"""profiles/: every rule the SLURM profile can submit is sized, and every job has threads; GPUs go
to the rules with a GPU path (none with TYR_SLURM_GPUS=0); the per-layer supernet jobs are grouped."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def workflow_rules(workdir) -> set[str]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--list-rules"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return {line.strip() for line in out.stdout.splitlines() if line.strip().isidentifier()}


def local_rules() -> set[str]:
    """Names under every `localrules:` directive of the Snakefile and rules/*.smk."""
    names = set()
    for path in [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]:
        for block in re.findall(r"^localrules:\n((?:[ \t]+\w+,?\n)+)", path.read_text(), re.M):
            names |= set(re.findall(r"\w+", block))
    return names


def test_every_submitted_rule_is_sized_and_threaded(tmp_path):
    """A rule the profile leaves out gets 1 CPU, 4 GB and 30 minutes: attention_share with the
    paper preset holds a whole 8B model. So every non-local rule needs its own entry."""
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    submitted = workflow_rules(tmp_path) - local_rules()
    assert {"search", "supernet_layer", "attention_share", "unstructured_layer"} <= submitted
    assert not submitted - set(profile["set-resources"]), "rules without set-resources"
    assert not submitted - set(profile["set-threads"]), "rules without set-threads"
    assert not set(profile["set-resources"]) - submitted, "entries naming no submitted rule"
    for rule in submitted:
        entry = profile["set-resources"][rule]
        assert {"mem_mb", "runtime", "cpus_per_task"} <= set(entry), rule


# Rules whose step runs torch on the job's GPU when it has one, and rules that have no GPU path.
GPU_RULES = {
    "calibrate",  # data.source: self samples text from the model
    "supernet_layer",
    "dense_topk",
    "search",
    "select_tyr",
    "attention_share",
    "export",  # the model card's greedy continuations
    "evaluate_dense",
    "evaluate_pruned",
    "baseline",
    "unstructured_layer",
    "unstructured_evaluate",
    "recover",
}
CPU_RULES = {"prepare_model", "embed", "unstructured_export", "export_gguf", "quantize_gguf", "check_gguf"}


def rendered(monkeypatch, **env) -> dict:
    """The SLURM profile as Snakemake reads it (a YTE template) under these TYR_SLURM_* variables."""
    import yte

    for key in [k for k in os.environ if k.startswith("TYR_SLURM_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with open(ROOT / "profiles" / "slurm" / "config.yaml") as f:
        return yte.process_yaml(f)


def test_gpus_go_to_every_rule_with_a_gpu_path_and_none_with_zero(tmp_path, monkeypatch):
    submitted = workflow_rules(tmp_path) - local_rules()
    assert submitted == GPU_RULES | CPU_RULES, "a submitted rule is not classified here as GPU or CPU"
    resources = rendered(monkeypatch)["set-resources"]
    assert {rule for rule, entry in resources.items() if "gpu" in entry} == GPU_RULES
    assert all(resources[rule]["gpu"] == 1 for rule in GPU_RULES)
    resources = rendered(monkeypatch, TYR_SLURM_GPUS="2", TYR_SLURM_SEARCH_GPUS="8", TYR_SLURM_GPU_MODEL="a100")
    resources = resources["set-resources"]
    assert {rule: resources[rule]["gpu"] for rule in GPU_RULES} == {r: 8 if r == "search" else 2 for r in GPU_RULES}
    assert all(resources[rule]["gpu_model"] == "a100" for rule in GPU_RULES)
    resources = rendered(monkeypatch, TYR_SLURM_GPUS="0")["set-resources"]
    assert not [rule for rule, entry in resources.items() if "gpu" in entry or "gpu_model" in entry]


def test_each_supernet_chain_is_one_job_that_fits_a_day(monkeypatch):
    """The (target, iteration) chain of supernet_layer jobs is one SLURM job by default, whose
    runtime request is the sum of its layers' (docs/slurm.md, "Grouping"): for the 32 layers of
    Llama-3.1-8B, the model the profile is sized for, within 24 h, and twice that on the retry."""
    profile = rendered(monkeypatch)
    assert profile["groups"] == {"supernet_layer": "layers_s{target}_i{iter}"}
    runtime = profile["set-resources"]["supernet_layer"]["runtime"]
    minutes = {attempt: eval(str(runtime), {"attempt": attempt}) for attempt in (1, 2)}
    assert 32 * minutes[1] <= 24 * 60 and minutes[2] == 2 * minutes[1], minutes
    profile = rendered(monkeypatch, TYR_SLURM_GROUP_LAYERS="0", TYR_SLURM_LAYER_MINUTES="90")
    assert "groups" not in profile and eval(profile["set-resources"]["supernet_layer"]["runtime"], {"attempt": 1}) == 90
