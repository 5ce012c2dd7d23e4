"""profiles/: every rule the SLURM profile can submit is sized, and every job has threads."""

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
