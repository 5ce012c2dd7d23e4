"""Where the tests find offline evaluation data, and a guard that no weights are read."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

# Offline evaluation data for the tests: $TYR_DATA_DIR (CI sets it), else the development
# machines' ../shared/data. Product code only ever reads $TYR_DATA_DIR (tyr.evaluate.plan).
SHARED_DATA = Path(os.environ.get("TYR_DATA_DIR") or Path(__file__).resolve().parents[3] / "shared" / "data")


def no_weight_loading(monkeypatch):
    """Make any weight load an error, to prove a refusal happens before it."""
    from transformers import AutoModelForCausalLM

    def boom(*a, **k):
        raise AssertionError("weights were loaded before the source was validated")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", boom)


def mount_as_root(*command: str, what: str) -> None:
    """Run a `mount` command. Without root (a contributor's machine) the test skips; as root (CI)
    a failing mount fails it with the OS's words, so CI cannot pass when mounting breaks."""
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root")
    out = subprocess.run(["mount", *command], capture_output=True, text=True)
    if out.returncode:
        pytest.fail(f"{what} failed as root: {out.stderr.strip() or out.stdout.strip()}")
