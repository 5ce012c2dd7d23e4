"""Handing freed memory back to the OS.

Jobs run as threads of one long-lived Snakemake process, and glibc keeps freed blocks in its
heaps: the resident size then ratchets up to the sum of the largest jobs, and a loop whose
tensors grow a little every step (a KV cache extended by `cat`) leaves a trail of blocks too
small for the next step, so its resident size grows with the number of steps.
"""

from __future__ import annotations

import ctypes
import functools
import gc


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, loaded once (the sampling loop calls it every 16 steps); None elsewhere."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


def trim_heap() -> None:
    """Return glibc's free heap pages to the OS (a no-op elsewhere). Self-sampling 128 × 256
    tokens of SmolLM2 peaked at 4.43 GB resident without it and at 1.43 GB trimmed every 16
    steps, with the same tokens and no loss of speed."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def release_memory() -> None:
    """After a job: collect garbage, then trim the heap."""
    gc.collect()
    trim_heap()
