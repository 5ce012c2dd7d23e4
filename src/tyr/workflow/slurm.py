"""SLURM jobs a stopped run leaves behind.

Snakemake's Ctrl-C is meant to `scancel` the jobs it submitted, but the executor plugin's list of
active jobs is empty while a status check is in flight (snakemake-interface-executor-plugins
moves the jobs out of the list for the check), so an interrupt then cancels nothing: measured
with the tiny workflow on the CI cluster, the running `search` and `export` jobs ran on to
completion after Ctrl-C. A resumed run would start the same jobs again beside them, both
writing the same outputs. So the workflow's hooks do it themselves (rules/common.smk):

- on error or interrupt, cancel every job this Snakemake process submitted and that is still
  queued or running (read from the process's own log);
- on start, refuse to run while jobs submitted by an earlier run of the same results folder
  are alive (a `kill -9` of Snakemake runs no hook), naming them and the `scancel` command.

Nothing here runs without `squeue` on PATH, i.e. off a SLURM cluster.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")


def available() -> bool:
    return shutil.which("squeue") is not None and shutil.which("scancel") is not None


def submitted(log_text: str) -> list[str]:
    """SLURM job ids a Snakemake log says were submitted, in order."""
    return SUBMITTED.findall(log_text)


def alive(job_ids) -> list[str]:
    """Those of `job_ids` still queued or running (squeue lists nothing else)."""
    wanted = set(job_ids)
    if not wanted:
        return []
    listed = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=60, check=True)
    return sorted(set(listed.stdout.split()) & wanted, key=int)


def cancel(job_ids) -> list[str]:
    """`scancel` those of `job_ids` still alive; the ids cancelled."""
    ids = alive(job_ids)
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, text=True, timeout=60, check=True)
    return ids


def cancel_own(logfiles) -> list[str]:
    """Cancel the jobs this Snakemake process submitted (its log files) that are still alive."""
    if not available():
        return []
    return cancel([i for f in logfiles for i in submitted(Path(f).read_text(errors="replace"))])


def leftovers(log_dir, run_dir: str) -> list[str]:
    """Jobs still alive that earlier Snakemake runs of results folder `run_dir` submitted: the
    ids in every log under `log_dir` (.snakemake/log) whose jobs write to `run_dir`."""
    if not available() or not Path(log_dir).is_dir():
        return []
    marker = run_dir.rstrip("/") + "/"
    ids = []
    for log in sorted(Path(log_dir).glob("*.snakemake.log")):
        text = log.read_text(errors="replace")
        if marker in text:
            ids += submitted(text)
    return alive(ids)


def leftover_message(ids, run_dir: str) -> str:
    listed = " ".join(ids)
    return (
        f"{len(ids)} SLURM job(s) of an earlier run of {run_dir} are still queued or running ({listed}); "
        f"a resumed job would write the same outputs beside them. Cancel them (scancel {listed}) "
        f"or wait for them to end, then run the same command again."
    )
