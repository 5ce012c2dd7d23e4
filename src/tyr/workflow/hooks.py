"""The workflow's start and error hooks (rules/common.smk: `onstart`, `onerror`).

Taken when jobs are about to run, never by read-only commands (-n, --lint, --summary, --dag):
Snakemake calls `onstart` only in the main process of a run that executes something.

- One run at a time per results folder, with a lock the kernel drops when the process dies.
  Snakemake's own lock files survive a kill -9 and would make the same command fail, so the
  profiles turn them off (`nolock`) and this lock takes their place. Runs of other results
  folders (their outputs are disjoint) may go on side by side.
- A results folder on a read-only mount (an archive, a snapshot) can be read (-n, --summary),
  not extended: refused at the start, naming the folder, rather than inside the first job.
- An interrupted cluster run may leave jobs running (`tyr.workflow.slurm`): never resume beside
  them; and on error or Ctrl-C, cancel what this process submitted and left queued or running.

Light imports only: the Snakefile imports this module at parse time.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile

_HELD = []  # the run lock's open file: held until the process ends


class HookError(RuntimeError):
    """A refusal at the start of a run; the Snakefile re-raises it as a WorkflowError."""


def on_start(run_name: str, run_dir: str) -> None:
    """Everything a run checks before its first job (in this order)."""
    hold_run_lock(run_name)
    require_writable(run_dir)
    refuse_slurm_leftovers(run_dir)


def hold_run_lock(run_name: str, lock_dir: str = ".snakemake") -> None:
    os.makedirs(lock_dir, exist_ok=True)
    path = os.path.join(lock_dir, f"tyr-{run_name}.lock")
    handle = open(path, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise HookError(f"another Snakemake run of results/{run_name} is active in this directory ({path})") from None
    _HELD.append(handle)


def require_writable(run_dir: str) -> None:
    try:
        os.makedirs(run_dir, exist_ok=True)
        tempfile.TemporaryFile(dir=run_dir).close()
    except OSError as e:
        raise HookError(
            f"{run_dir} is not writable ({e.strerror}): this run has jobs to do. Run it where it can "
            f"write (snakemake -d DIR, or copy {run_dir} there), or make the folder writable."
        ) from None


def refuse_slurm_leftovers(run_dir: str, log_dir: str = ".snakemake/log") -> None:
    from tyr.workflow import slurm

    ids = slurm.leftovers(log_dir, run_dir)
    if ids:
        raise HookError(slurm.leftover_message(ids, run_dir))


def on_error(logfiles) -> None:
    """On error or Ctrl-C: cancel the SLURM jobs this process submitted and left queued or running."""
    from tyr.workflow import slurm

    ids = slurm.cancel_own(logfiles)
    if ids:
        print(f"cancelled the SLURM jobs this run left running: {' '.join(ids)}", file=sys.stderr)
