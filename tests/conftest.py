"""Shared fixtures: tiny random Llama-shaped models built from a config, saved as HF folders."""

from __future__ import annotations

import os

import pytest
import torch

from tiny_models import save_tiny_model, tiny_hf_model, tiny_tokenizer  # noqa: F401  (re-exported for the tests)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

# Offline evaluation data for the tests: $TYR_DATA_DIR (CI sets it), else the development
# machines' ../shared/data. Product code only ever reads $TYR_DATA_DIR (tyr.evalplan).
SHARED_DATA = os.environ.get("TYR_DATA_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture(params=["llama", "qwen2", "qwen3", "phi3"])
def model_type(request):
    return request.param


@pytest.fixture
def tiny_model_dir(tmp_path):
    """Factory: save a tiny random model (+ a tiny word-level tokenizer) to a folder."""

    def make(model_type="llama", **overrides):
        return save_tiny_model(tmp_path / f"tiny-{model_type}", model_type, **overrides)

    return make


# ---- CI cannot hide a skip ---------------------------------------------------------------------
# With TYR_CI_STRICT=1 (set by .ci/run), a skipped or xfailed test fails the session unless its
# node id is listed, with a reason, in tests/allowed_skips.txt.

ALLOWED_SKIPS = os.path.join(os.path.dirname(__file__), "allowed_skips.txt")
_not_run: dict[str, str] = {}


def allowed_skips() -> dict[str, str]:
    """{node id: reason} from allowed_skips.txt (`node-id  # reason` per line; blank and # lines ignored)."""
    allowed = {}
    with open(ALLOWED_SKIPS) as f:
        for line in f:
            if line.strip() and not line.lstrip().startswith("#"):
                node, _, reason = line.partition("#")
                allowed[node.strip()] = reason.strip()
    return allowed


def pytest_runtest_logreport(report):
    if report.skipped:
        kind = "xfailed" if hasattr(report, "wasxfail") else "skipped"
        _not_run[report.nodeid] = f"{kind}: {report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.wasxfail}"


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("TYR_CI_STRICT") != "1":
        return
    allowed = allowed_skips()
    hidden = {node: why for node, why in _not_run.items() if node not in allowed}
    if hidden:
        lines = "\n".join(f"  {node}: {why}" for node, why in sorted(hidden.items()))
        session.config.get_terminal_writer().line(
            f"\nTYR_CI_STRICT: {len(hidden)} test(s) did not run and are not in tests/allowed_skips.txt:\n{lines}",
            red=True)
        session.exitstatus = 1
