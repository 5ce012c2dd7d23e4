"""What the machine multiplies natively, and where a job computes: decides where bfloat16
compute is a free speed-up and which device each heavy stage uses (config `devices`)."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path


@cache
def bf16_native(device_type: str = "any") -> bool:
    """bfloat16 matmuls run natively on this device type (here ~2x fp32): CUDA, or a CPU with
    AVX512-BF16 or AMX. `any`: on the device a job would pick (`resolve_device("auto")`)."""
    import torch

    if device_type == "cuda" or (device_type == "any" and torch.cuda.is_available()):
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(name: str, device_type: str = "any") -> str:
    """`auto` -> "bfloat16" where native, else "float32"; explicit names pass through (checked)."""
    if name == "auto":
        return "bfloat16" if bf16_native(device_type) else "float32"
    if name not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be auto, float32 or bfloat16, got {name!r}")
    return name


def resolve_device(name: str, key: str = "device") -> str:
    """`auto` -> this process's GPU when there is one, else "cpu"; `cuda` -> this process's GPU;
    `cuda:N` passes through (checked). A process's GPU is cuda:LOCAL_RANK (one GPU per rank
    under torch.distributed.run). `key` names the config key in errors (e.g. devices.supernet)."""
    import torch

    if name not in ("auto", "cpu", "cuda") and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise ValueError(f"{key} must be auto, cpu or cuda, got {name!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not torch.cuda.is_available():
        raise RuntimeError(f"{key}: {name}, but torch sees no CUDA device (is this the CPU build of torch?)")
    if name.startswith("cuda:"):
        return name
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"


def placed(name: str, key: str = "device"):
    """`with placed(device) as dev:` the stage computes on `dev` (a torch.device): tensors that
    the code creates without naming a device (torch.zeros, arange, eye ...) are made there, so
    an algorithm moves to the GPU by moving only its inputs. On the CPU this changes nothing:
    the same kernels in the same order (level files bit-identical, tests/core/test_device.py)."""
    import contextlib

    import torch

    dev = torch.device(resolve_device(name, key))

    @contextlib.contextmanager
    def scope():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        with dev:
            yield dev

    return scope()


def threads_from_env() -> None:
    """Honour the job's CPU allowance (Snakemake `threads`, SLURM cpus) in torch."""
    import torch

    n = os.environ.get("TYR_THREADS") or os.environ.get("SLURM_CPUS_PER_TASK")
    if n:
        torch.set_num_threads(int(n))
