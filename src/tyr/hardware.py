"""What the machine multiplies natively: decides where bfloat16 compute is a free speed-up."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=None)
def bf16_native() -> bool:
    """CUDA, or a CPU with AVX512-BF16 or AMX: bfloat16 matmuls run natively (here ~2x fp32)."""
    import torch

    if torch.cuda.is_available():
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(name: str) -> str:
    """`auto` -> "bfloat16" where native, else "float32"; explicit names pass through (checked)."""
    if name == "auto":
        return "bfloat16" if bf16_native() else "float32"
    if name not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be auto, float32 or bfloat16, got {name!r}")
    return name
