"""What the cost model must get right about itself, checked by `bench/scaling.py --smoke` (these were
tests/test_bench_scaling.py, a benchmark's test inside the product's suite): the fit recovers known
constants and keeps them non-negative, and `path_features` counts exactly the steps and the Σn² of
`tyr.supernet.local_prune.prune_levels`' loop."""

from __future__ import annotations

import numpy as np
from lib.meter import Meter, MeterError

from costmodel.fit import fit_nonneg, path_features


class CheckFailed(AssertionError):
    pass


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise CheckFailed(what)


def fit_recovers_constants() -> None:
    rng = np.random.default_rng(0)
    X = rng.uniform(1e6, 1e9, size=(12, 3))  # three kinds of work, spanning three decades
    true = np.array([2e-9, 5e-11, 3e-12])
    y = X @ true * rng.uniform(0.98, 1.02, size=12)  # 2 % timing noise
    coef = fit_nonneg(X, y)
    _expect(np.allclose(coef, true, rtol=0.1), f"fit_nonneg recovered {coef}, not {true}")


def fit_keeps_constants_non_negative() -> None:
    X = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0]])
    y = 2.0 * X[:, 0] - 0.5  # the best unconstrained intercept is negative
    coef = fit_nonneg(X, y)
    _expect((coef >= 0).all() and coef[1] == 0 and abs(coef[0] - 1.8) < 0.2, f"fit_nonneg gave {coef}")


def path_features_follow_prune_levels() -> None:
    """Σn² and the step count of path_features are those of the real loop (n = rows of W at each
    saliency call), for an MLP (channels in steps of 4) and an attention (heads of 8 channels)."""
    import torch

    from tyr.supernet import local_prune
    from tyr.supernet.levels import sublayer_levels

    torch.manual_seed(0)
    for width, d_out, group, per_step, units_group in ((96, 24, 1, 4, 4), (48, 48, 8, 1, 1)):
        levels, _ = sublayer_levels(width // group, 0.5, 0.125, 9, units_group)
        X = torch.randn(4 * width, width)
        with Meter() as meter:  # fails if prune_levels stops going through local_prune.saliency
            meter.wrap(
                local_prune,
                "saliency",
                lambda a, k, o: (("saliency",), {"n": a[0].shape[0], "n2": a[0].shape[0] ** 2}, None),
            )
            local_prune.prune_levels(
                torch.randn(d_out, width), X.T @ X / len(X), levels, group=group, per_step=per_step
            )
            seen = meter.take()["saliency"]
        f = path_features(width, d_out, group, per_step, levels)
        _expect(
            f["steps"] == seen["calls"] and f["s2"] == seen["n2"] and f["sw"] == seen["n"] * d_out,
            f"path_features {f} against the loop's {dict(seen)} (width {width}, group {group})",
        )


def meter_fails_loudly() -> None:
    """The timing spans the cost model rests on: a name that does not exist is an error at once,
    and one that was wrapped but never called is an error when the span ends."""
    import types

    target = types.SimpleNamespace(used=lambda: None, unused=lambda: None)
    try:
        Meter().wrap(target, "renamed", lambda a, k, o: (("x",), {}, None))
    except MeterError:
        pass
    else:
        raise CheckFailed("Meter.wrap accepted a name that does not exist")
    try:
        with Meter() as meter:
            meter.wrap(target, "used", lambda a, k, o: (("used",), {}, None))
            meter.wrap(target, "unused", lambda a, k, o: (("unused",), {}, None))
            target.used()
    except MeterError as e:
        _expect("unused" in str(e) and "used," not in str(e), f"the wrong names were blamed: {e}")
    else:
        raise CheckFailed("a span whose wrapped function was never called ended without an error")
    _expect(target.used.__name__ == "<lambda>", "the wrapped functions were not restored")


CHECKS = (
    meter_fails_loudly,
    fit_recovers_constants,
    fit_keeps_constants_non_negative,
    path_features_follow_prune_levels,
)


def run_checks() -> list[str]:
    for check in CHECKS:
        check()
    return [c.__name__ for c in CHECKS]
