"""Shared fixtures: tiny random Llama-shaped models built from a config, saved as HF folders."""

from __future__ import annotations

import os

import pytest
import torch

from helpers.baseline_factory import N_SEQ, SEQ_LEN
from helpers.supernet_factory import write_spec, write_tokens
from tyr.testing import save_tiny_model

pytest_plugins = ["helpers.guards", "pytester"]  # the skip and checkout guards; pytester for their test

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(params=["llama", "qwen2", "qwen3", "phi3"])
def model_type(request):
    return request.param


@pytest.fixture
def tiny_model_dir(tmp_path):
    """Factory: save a tiny random model (+ a tiny word-level tokenizer) to a folder."""

    def make(model_type="llama", **overrides):
        return save_tiny_model(tmp_path / f"tiny-{model_type}", model_type, **overrides)

    return make


@pytest.fixture(scope="module")
def single_thread():
    """Tiny tensors gain nothing from threads, and on a shared CPU OpenMP sync makes them crawl.
    A module opts in with `pytestmark = pytest.mark.usefixtures("single_thread")`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def prepared(tiny_model_dir, tmp_path):
    """Factory: (model_dir with spec.json, tokens.zarr) of a tiny random model (the baselines' input)."""

    def make(model_type="llama", **overrides):
        model_dir = tiny_model_dir(model_type, **overrides)
        write_spec(model_dir)
        tokens = write_tokens(tmp_path / "tokens.zarr", vocab_size=128, n_seq=N_SEQ, seq_len=SEQ_LEN)
        return model_dir, tokens

    return make


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """The embedded SmolLM2-135M prepared once per session: (its GGUF, the prepared folder)."""
    from tyr.model import prepare

    pytest.importorskip("gguf")
    try:
        gguf = prepare.embedded_gguf()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    out = prepare.prepare_model("embedded", tmp_path_factory.mktemp("smol") / "model")
    return gguf, out
