"""SIGTERM: the signal SLURM sends at a time limit or on preemption, some seconds before SIGKILL.

Snakemake answers SIGTERM by finishing the jobs that run and starting no new one; a search can
run for hours, so it would be killed mid-generation when the SIGKILL comes. `install` (the
onstart hook, in the main thread) chains a handler that also sets `STOP`; the search checks it
after each generation's checkpoint and stops there (`Stopped`), so the rerun continues from
that generation. Short jobs simply finish.
"""

from __future__ import annotations

import signal
import threading

STOP = threading.Event()


class Stopped(RuntimeError):
    """A step that stopped on SIGTERM at a point it can resume from."""


def install() -> None:
    """Set STOP on SIGTERM, then do what was done before (Snakemake's graceful stop)."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        STOP.set()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)


def check(where: str) -> None:
    """Raise Stopped when SIGTERM has come; `where` says what the rerun resumes from."""
    if STOP.is_set():
        raise Stopped(f"stopped by SIGTERM; {where}")
