"""Driving the real Snakefile on a tiny model in a temporary working directory."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


RUN = "tiny"


def snakemake_cmd(workdir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(workdir),
        "--workflow-profile",
        str(ROOT / "profiles" / "default"),
        "--cores",
        "2",
        "--configfile",
        str(ROOT / "config" / "presets" / "tiny.yaml"),
        str(workdir / "test.yaml"),
        *extra,
    ]


def prepare(workdir: Path, model_dir: Path, **overrides) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    # The default evaluate section: offline and without $TYR_DATA_DIR (`run`), only the held-out
    # perplexity, speed and continuations run; WikiText-2 and zero-shot are skipped, with reasons.
    cfg = {"run": RUN, "model": {"source": str(model_dir)}, "data": {"source": "pydoc"}}
    cfg.update(overrides)
    (workdir / "test.yaml").write_text(yaml.safe_dump(cfg))
    return workdir / "results" / RUN


def workflow_env() -> dict:
    """A newcomer's environment: offline, and no $TYR_DATA_DIR (CI sets it for the other tests)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.pop("TYR_DATA_DIR", None)
    return env


def run(workdir: Path, *extra: str, check=True, env=None) -> subprocess.CompletedProcess:
    """Snakemake in `workdir` (tiny preset, its test.yaml), in a newcomer's environment plus `env`."""
    out = subprocess.run(
        snakemake_cmd(workdir, *extra),
        capture_output=True,
        text=True,
        env={**workflow_env(), **(env or {})},
        timeout=900,
    )
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{out.stdout[-4000:]}\n{out.stderr[-6000:]}")
    return out


def digest(path: Path) -> str:
    """Content hash of a file or a folder (sorted relative paths + bytes)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path.parent)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def artifacts(run_dir: Path, unfinished: set[Path] = frozenset()) -> dict[str, float]:
    """mtime of every finished artifact: manifests, levels, search results, genomes, models.

    An artifact is finished once Snakemake recorded its job as done: a job killed after
    writing its output but before that record is rightly redone (`unfinished`; for a folder
    output such as `pruned/`, every file in it). A supernet layer's weight files belong to its
    job, whose output is the manifest written last.
    """
    keep = ("manifest.json", "levels.json", "supernet.json", "best.json", "genome.json", ".safetensors", "spec.json")

    def finished(p: Path) -> bool:
        layer = next((d for d in p.parents if d.name.startswith("layer") and d.parent.name == "supernet"), None)
        owner = p if layer is None else layer / "manifest.json"
        return owner.exists() and not {owner.resolve(), *(d.resolve() for d in p.parents)} & unfinished

    return {
        str(p.relative_to(run_dir)): p.stat().st_mtime_ns
        for p in run_dir.rglob("*")
        if p.is_file() and p.name.endswith(keep) and finished(p)
    }


def rule_counts(text: str) -> dict:
    """{rule: job count} of a `snakemake -n --quiet rules` listing."""
    rows = (line.split() for line in text.splitlines())
    return {r[0]: int(r[1]) for r in rows if len(r) == 2 and r[0].isidentifier() and r[1].isdigit()}


def planned_rules(workdir, *configfiles, env=None, target=()) -> dict:
    """{rule: job count} that `snakemake -n` plans with these extra config files (tiny preset)."""
    tiny = ROOT / "config" / "presets" / "tiny.yaml"
    configs = [str(tiny), str(workdir / "test.yaml"), *map(str, configfiles)]
    out = run(
        workdir, "-n", "--configfile", *configs, "--quiet", "rules", *(["--", *target] if target else []), env=env
    )
    return rule_counts(out.stdout + out.stderr)


def dry_run(workdir, *args, check=False) -> subprocess.CompletedProcess:
    """`snakemake -n` of the project's Snakefile in `workdir` (never in the checkout): no tiny preset."""
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "-n", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"),
    )
    if check and out.returncode != 0:
        raise AssertionError(f"dry run failed:\n{out.stdout[-3000:]}\n{out.stderr[-4000:]}")
    return out
