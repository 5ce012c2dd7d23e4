from pathlib import Path

import pytest
import torch

from tyr.core import device as hardware


def test_dtype_auto_follows_the_device_and_names_are_checked():
    assert hardware.resolve_dtype("auto", "cuda") == "bfloat16"  # every CUDA GPU tyr targets multiplies bf16
    # on the CPU exactly where it multiplies bf16 natively, read here from its flags
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert hardware.resolve_dtype("auto", "cpu") == ("bfloat16" if native else "float32")
    assert hardware.resolve_dtype("float32", "cuda") == "float32"
    with pytest.raises(ValueError, match="float16"):
        hardware.resolve_dtype("float16")


def test_device_auto_is_the_cpu_without_a_gpu_and_cuda_is_refused_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hardware.resolve_device("auto") == "cpu"
    assert hardware.resolve_device("cpu") == "cpu"
    with pytest.raises(RuntimeError, match="device: cuda"):
        hardware.resolve_device("cuda")
    with pytest.raises(ValueError, match="tpu"):
        hardware.resolve_device("tpu")


def test_each_rank_takes_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert hardware.resolve_device("auto") == "cuda:2"
    monkeypatch.setenv("LOCAL_RANK", "5")  # more ranks than GPUs: they share, round robin
    assert hardware.resolve_device("cuda") == "cuda:1"


def test_a_stage_placed_on_the_cpu_makes_its_tensors_there_and_cuda_is_refused_naming_its_key(monkeypatch):
    with hardware.placed("cpu", "devices.supernet") as dev:
        assert dev == torch.device("cpu") and torch.zeros(2).device == dev
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="devices.supernet: cuda"):
        with hardware.placed("cuda", "devices.supernet"):
            pass
    with pytest.raises(ValueError, match="devices.evaluate must be"):
        hardware.resolve_device("cuda:one", "devices.evaluate")


def test_a_named_gpu_is_taken_as_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert hardware.resolve_device("cuda:3") == "cuda:3"
