"""bench/scaling.py: its fit recovers known constants, and its count of the pruning path's work
follows the loop of `tyr.supernet.local_prune.prune_levels` step by step."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from tyr.supernet import local_prune
from tyr.supernet.levels import sublayer_levels

_PATH = Path(__file__).resolve().parents[1] / "bench" / "scaling.py"
_spec = importlib.util.spec_from_file_location("bench_scaling", _PATH)
scaling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scaling)


def test_fit_recovers_constants_from_synthetic_timings():
    rng = np.random.default_rng(0)
    X = rng.uniform(1e6, 1e9, size=(12, 3))  # three kinds of work, spanning three decades
    true = np.array([2e-9, 5e-11, 3e-12])
    y = X @ true * rng.uniform(0.98, 1.02, size=12)  # 2 % timing noise
    assert np.allclose(scaling.fit_nonneg(X, y), true, rtol=0.1)


def test_fit_keeps_constants_non_negative():
    X = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0]])
    y = 2.0 * X[:, 0] - 0.5  # the best unconstrained intercept is negative
    coef = scaling.fit_nonneg(X, y)
    assert (coef >= 0).all() and coef[1] == 0 and abs(coef[0] - 1.8) < 0.2


def test_path_features_follow_prune_levels_step_by_step(monkeypatch):
    """Σn² and the step count of path_features are those of the real loop (n = rows of W at each
    saliency call), for an MLP (channels in steps of 4) and an attention (heads of 8 channels)."""
    seen = []
    real = local_prune.saliency

    def counting(W, G, Hinv, group, **kw):
        seen.append(W.shape[0])
        return real(W, G, Hinv, group, **kw)

    monkeypatch.setattr(local_prune, "saliency", counting)
    torch.manual_seed(0)
    for width, d_out, group, per_step, units_group in ((96, 24, 1, 4, 4), (48, 48, 8, 1, 1)):
        seen.clear()
        levels, _ = sublayer_levels(width // group, 0.5, 0.125, 9, units_group)
        X = torch.randn(4 * width, width)
        H = X.T @ X / len(X)
        local_prune.prune_levels(torch.randn(d_out, width), H, levels, group=group, per_step=per_step)
        f = scaling.path_features(width, d_out, group, per_step, levels)
        assert f["steps"] == len(seen)
        assert f["s2"] == sum(n * n for n in seen)
        assert f["sw"] == sum(n * d_out for n in seen)
