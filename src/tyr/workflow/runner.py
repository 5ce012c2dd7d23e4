"""Running one workflow step: logging to the rule's log file, thread count, timing.

Rules call `step(steps.<rule>, input, output, params, wildcards, threads, log)` from their
`run:` block; it runs that entry point of `tyr.workflow.steps`. Locally the
default profile runs these blocks in threads of the Snakemake process (so torch and
transformers are imported once per run, not once per job); on SLURM each job is its
own process. Both go through this function.
"""

from __future__ import annotations

import logging
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


@contextmanager
def job_log(path):
    logger = logging.getLogger("tyr")
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.addFilter(_ThisThread())
    logger.addHandler(handler)
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        handler.close()


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


def step(entry, input, output, params, wildcards, threads, log):
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
            outcome["value"] = _run(entry, input, output, params, wildcards, threads, log)
        except BaseException as e:  # re-raised in the caller's thread, where Snakemake sees it
            outcome["error"] = e

    worker = threading.Thread(target=body, name=f"tyr-{entry.__name__}")
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _run(entry, input, output, params, wildcards, threads, log):
    import torch

    from tyr.core.memory import release_memory

    name = entry.__name__
    with _lock:
        torch.set_num_threads(max(1, int(threads)))
        _warm_imports()
    with job_log(log[0]) as logger:
        logger.info("start %s %s", name, dict(wildcards.items()))
        t0 = time.perf_counter()
        try:
            result = entry(input, output, params, wildcards)
        except Exception:
            logger.exception("%s failed", name)
            raise
        finally:
            release_memory()
        logger.info("%s done in %.1f s", name, time.perf_counter() - t0)
        return result
