"""Running one workflow step: logging to the rule's log file, thread count, timing.

Rules call `step(steps.<rule>, input, output, params, wildcards, threads, log)` from their
`run:` block; it runs that entry point of `tyr.workflow.steps`. Steps that can run on another
device or in several processes also get `runtime=` (device, processes, threads): settings of
where a step runs, kept out of its params so that changing them reruns no finished job. Locally the
default profile runs these blocks in threads of the Snakemake process (so torch and
transformers are imported once per run, not once per job); on SLURM each job is its
own process. Both go through this function.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from contextlib import contextmanager

_lock = threading.Lock()


class _ThisThread(logging.Filter):
    """Keep a job's log file free of records from jobs running in other threads."""

    def __init__(self):
        super().__init__()
        self.ident = threading.get_ident()

    def filter(self, record):
        return record.thread == self.ident


class _ByThread(io.TextIOBase):
    """The process's sys.stdout or sys.stderr: what a job's thread writes (progress lines,
    warnings, other libraries' log records, a child process's output passed on) goes to that
    job's log file; every other thread writes where it wrote before. Jobs run side by side in
    threads of one Snakemake process, so without it their output interleaves on the console."""

    def __init__(self, default):
        super().__init__()
        self.default = default
        self.files = {}

    def _target(self):
        return self.files.get(threading.get_ident(), self.default)

    def write(self, text):
        return self._target().write(text)

    def flush(self):
        self._target().flush()

    def isatty(self):
        return self._target().isatty()

    def fileno(self):
        return self.default.fileno()

    @property
    def encoding(self):
        return self.default.encoding


def _routed(name: str) -> _ByThread:
    """sys.<name> wrapped once per process (call it under the runner's lock)."""
    stream = getattr(sys, name)
    if not isinstance(stream, _ByThread):
        stream = _ByThread(stream)
        setattr(sys, name, stream)
    return stream


@contextmanager
def job_log(path):
    """The job's whole output in its log file: the `tyr` logger's records, and everything the
    job's thread writes to stdout/stderr (Python warnings, transformers' and lm-eval's log
    lines, the search's progress)."""
    logger = logging.getLogger("tyr")
    logger.setLevel(logging.INFO)
    stream = open(path, "w", buffering=1)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.addFilter(_ThisThread())
    logger.addHandler(handler)
    me = threading.get_ident()
    with _lock:  # a no-op after the first job, which wrapped both streams
        routes = [_routed("stdout"), _routed("stderr")]
    for r in routes:
        r.files[me] = stream
    try:
        yield logger
    finally:
        for r in routes:
            r.files.pop(me, None)
        logger.removeHandler(handler)
        stream.close()


def _warm_imports():
    """Resolve transformers' lazy attributes in one thread: concurrent first access from
    jobs running in parallel threads can fail with "cannot import name ..."."""
    import transformers
    from transformers import (  # noqa: F401
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
        GenerationMixin,
        PretrainedConfig,
        PreTrainedModel,
    )

    import tyr.model.modeling_tyr  # noqa: F401

    return transformers


def step(entry, input, output, params, wildcards, threads, log, runtime=None):
    """Run `entry` (a function of tyr.workflow.steps) for a rule, with the rule's threads, logging
    to its log file.

    The step runs in a thread of its own that ends with it. OpenMP (torch's CPU thread pool)
    keeps one team of worker threads per thread that ever ran a parallel region; with
    Snakemake's long-lived executor threads the teams of finished jobs pile up, libgomp then
    sees more threads than cores and stops spinning between regions, and every later job
    runs ~2x slower (measured: 2.6 s -> 5.4 s per supernet layer). A fresh thread per job
    keeps the live teams to the running jobs, whose threads Snakemake already fits to --cores.
    """
    outcome = {}

    def body():
        try:
            outcome["value"] = _run(entry, (input, output, params, wildcards), runtime, threads, log)
        except BaseException as e:  # re-raised in the caller's thread, where Snakemake sees it
            outcome["error"] = e

    worker = threading.Thread(target=body, name=f"tyr-{entry.__name__}")
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _run(entry, args, runtime, threads, log):
    import torch

    from tyr.core.memory import release_memory

    name = entry.__name__
    with _lock:
        torch.set_num_threads(max(1, int(threads)))
        # before transformers binds its log handler to sys.stderr, so its records are routed too
        _routed("stdout")
        _routed("stderr")
        _warm_imports()
    with job_log(log[0]) as logger:
        logger.info("start %s %s", name, dict(args[3].items()))
        t0 = time.perf_counter()
        try:
            result = entry(*args) if runtime is None else entry(*args, runtime)
        except Exception:
            logger.exception("%s failed", name)
            raise
        finally:
            release_memory()
        logger.info("%s done in %.1f s", name, time.perf_counter() - t0)
        return result
