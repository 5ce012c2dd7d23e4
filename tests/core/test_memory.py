"""tyr.core.memory: trimming gives a growing-buffer loop's freed heap back to the OS."""

from __future__ import annotations

import ctypes.util

import pytest
import torch

from tyr.core.memory import release_memory, trim_heap


def resident_mb() -> float:
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024


@pytest.mark.skipif(
    ctypes.util.find_library("c") is None or not hasattr(ctypes.CDLL(None), "malloc_trim"), reason="not glibc"
)
def test_trim_returns_the_trail_of_a_growing_cache():
    """A KV-cache-like loop (a tensor grown by cat each step, the old one freed) leaves freed
    blocks behind; after trimming, resident memory is back near where it started."""
    trim_heap()
    start = resident_mb()
    caches = [torch.zeros(64, 1024) for _ in range(8)]
    for _ in range(120):
        caches = [torch.cat([c, torch.ones(64, 64)], dim=1) for c in caches]  # 2 MB -> 6 MB each
    del caches
    grown = resident_mb()
    assert grown - start > 10  # the premise: glibc kept the freed blocks (23 MB here)
    release_memory()
    assert resident_mb() < start + 0.5 * (grown - start)
