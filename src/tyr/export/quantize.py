"""Quantization after pruning, by llama.cpp's own quantizer (through `llama-cpp-python`).

The input is a float GGUF written by `tyr.export.gguf` (f32 keeps the quantizer's input exact);
the output is what `llama-quantize <in> <out> <type>` writes. A tensor whose rows do not fit a
type's block (e.g. an MLP of 192 channels under a 256-block K-quant) gets llama.cpp's own
fallback type; llama.cpp logs it, nothing is hidden.
"""

from __future__ import annotations

from pathlib import Path

from tyr.core.io import atomic_path

QUANT_TYPES = ("Q8_0", "Q4_K_M", "Q4_0")


def quantize(in_path, out_path, qtype: str, *, threads: int = 1) -> dict:
    """Quantize GGUF `in_path` to `qtype` at `out_path` (atomically); return a record."""
    import ctypes

    import llama_cpp

    if qtype not in QUANT_TYPES:
        raise ValueError(f"quantization type {qtype!r}: one of {QUANT_TYPES}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype}")
    params.nthread = int(threads)
    with atomic_path(out_path) as tmp:
        rc = llama_cpp.llama_model_quantize(str(in_path).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0:
            raise RuntimeError(f"llama.cpp's quantizer returned {rc} for {in_path} -> {qtype}")
    return {
        "file": str(out_path),
        "type": qtype,
        "source": str(in_path),
        "bytes": Path(out_path).stat().st_size,
        "llama_cpp_python": llama_cpp.__version__,
    }
