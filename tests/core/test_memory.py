"""tyr.core.memory: trimming gives a growing-buffer loop's freed heap back to the OS."""

from __future__ import annotations

import ctypes.util
import json
import subprocess
import sys

import pytest

# Run in a fresh interpreter: whether glibc keeps freed blocks on its heap depends on its
# dynamic mmap threshold, which earlier tests in the same process move (CI failed once with
# 0.1 MB grown, the blocks having gone to mmap and back). The child fixes the premise a job
# of a long-lived Snakemake process is in after its first large free: blocks of a few MB
# come from the heap (mmap threshold 64 MB), and free() alone does not trim it.
CHILD = r"""
import ctypes, json, torch
from tyr.core.memory import release_memory, trim_heap
libc = ctypes.CDLL("libc.so.6")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
libc.mallopt(M_MMAP_THRESHOLD, 64 << 20)
libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
def resident_mb():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
trim_heap()
start = resident_mb()
caches = [torch.zeros(64, 1024) for _ in range(8)]
for _ in range(120):
    caches = [torch.cat([c, torch.ones(64, 64)], dim=1) for c in caches]  # 0.25 MB -> 2.2 MB each
del caches
grown = resident_mb()
release_memory()
print(json.dumps({"start": start, "grown": grown, "released": resident_mb()}))
"""


@pytest.mark.skipif(
    ctypes.util.find_library("c") is None or not hasattr(ctypes.CDLL(None), "malloc_trim"), reason="not glibc"
)
def test_trim_returns_the_trail_of_a_growing_cache():
    """A KV-cache-like loop (a tensor grown by cat each step, the old one freed) leaves freed
    blocks behind; after trimming, resident memory is back near where it started."""
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout
    mb = json.loads(out.splitlines()[-1])
    assert mb["grown"] - mb["start"] > 10, mb  # the premise: glibc kept the freed blocks
    assert mb["released"] < mb["start"] + 0.5 * (mb["grown"] - mb["start"]), mb
