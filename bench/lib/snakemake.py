"""Running the project's workflow from a benchmark: one command line (the Snakefile, the local
workflow profile, config.yaml's overrides in a file), timed with the rusage of the whole
Snakemake process (the default profile runs jobs as threads in it, so that is the jobs' cost).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from lib.env import ROOT, child_env

PROFILE = ROOT / "profiles" / "default"
PRESETS = ROOT / "config" / "presets"


def write_overrides(path: Path, settings: dict) -> Path:
    """A config file of `settings` (lists given with --config arrive as strings, so a file it is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings) + "\n")
    return path


def command(workdir: Path, *, cores: int, configfiles=(), targets=(), extra=(), dry_run: bool = False) -> list[str]:
    """`snakemake` on the project's Snakefile in `workdir` with the local profile; config.yaml is the
    Snakefile's own, `configfiles` are merged over it in order."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(workdir),
        "--workflow-profile",
        str(PROFILE),
        "--cores",
        str(cores),
        *extra,
    ]
    if dry_run:
        cmd += ["--dry-run", "--quiet", "rules"]
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    return cmd + (["--", *targets] if targets else [])


def run(
    workdir: Path,
    *,
    cores: int,
    configfiles=(),
    targets=(),
    extra=(),
    dry_run: bool = False,
    env: dict | None = None,
    sample_load: bool = False,
) -> dict:
    """Run it to the end; wall and CPU seconds, peak RSS (MB), the 1-min load average before and
    after (and its mean, sampled every 10 s, with `sample_load`: wall times on a shared machine
    stretch by about load / cores). Raises with the log's tail on failure."""
    cmd = command(workdir, cores=cores, configfiles=configfiles, targets=targets, extra=extra, dry_run=dry_run)
    sampler = LoadSampler() if sample_load else None
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: a long log cannot block the run
        proc = subprocess.Popen(
            cmd, cwd=workdir, env=env or child_env(), stdout=log, stderr=subprocess.STDOUT, text=True
        )
        _, status, usage = os.wait4(proc.pid, 0)  # wait4, not wait: the rusage of this one process tree
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read()
    mean_load = sampler.stop() if sampler else None
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n{text[-6000:]}")
    return {
        "wall_s": round(time.perf_counter() - t0, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "load_before": round(load0, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "mean_load": mean_load,
        "log": text,
    }


class LoadSampler:
    """The 1-min load average every `every` seconds in a daemon thread, until `stop` (its mean)."""

    def __init__(self, every: float = 10.0):
        self.loads, self._done = [], threading.Event()
        threading.Thread(target=self._sample, args=(every,), daemon=True).start()

    def _sample(self, every: float) -> None:
        while not self._done.wait(every):
            self.loads.append(os.getloadavg()[0])

    def stop(self) -> float | None:
        self._done.set()
        return sum(self.loads) / len(self.loads) if self.loads else None
