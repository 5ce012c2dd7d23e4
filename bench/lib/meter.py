"""Timing library functions from outside, without hooks in the product: `Meter.wrap` replaces a
function (or method) by a timed one for the duration of a `with meter:` block.

Such a span silently measures nothing when a refactor renames the function, or stops calling it
through the attribute that was wrapped (commit 84672a6 left the supernet worker recording no
reconstruction cost at all). So a missing attribute is an error at once, and leaving the block
is an error when any wrapped function recorded no call.
"""

from __future__ import annotations

import time
from collections import defaultdict


class MeterError(RuntimeError):
    """A timing span that cannot measure what it says it measures."""


class Meter:
    """CPU and wall seconds of wrapped functions, summed per key (key_of(args, kwargs, out) ->
    (key, features, info)), with per-call features summed beside them."""

    def __init__(self):
        self._patches = []  # (owner, name, original)
        self.calls = {}  # "owner.name" -> calls since wrapping
        self.rows, self.info = defaultdict(lambda: defaultdict(float)), {}

    def wrap(self, owner, name: str, key_of) -> None:
        if not hasattr(owner, name):
            raise MeterError(f"{_label(owner, name)} does not exist: the timing span would measure nothing")
        original = getattr(owner, name)
        label = _label(owner, name)
        self.calls[label] = 0

        def timed(*args, **kwargs):
            cpu, wall = time.process_time(), time.perf_counter()
            out = original(*args, **kwargs)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            self.calls[label] += 1
            key, features, info = key_of(args, kwargs, out)
            self._record(key, cpu, wall, features, info)
            return out

        # Restored as it was: a method inherited from a base class is removed again, not copied down.
        own = name in vars(owner)
        self._patches.append((owner, name, vars(owner)[name] if own else None))
        setattr(owner, name, timed)

    def _record(self, key, cpu: float, wall: float, features: dict, info) -> None:
        row = self.rows[key]
        row["cpu"] += cpu
        row["wall"] += wall
        row["calls"] += 1
        for f, v in features.items():
            row[f] += float(v)
        if info is not None:
            self.info[key] = info

    def take(self) -> dict:
        """The rows recorded since the last take, keyed "a/b" (the key's parts joined)."""
        rows = {
            "/".join(map(str, k)): dict(v, **({"info": self.info[k]} if k in self.info else {}))
            for k, v in self.rows.items()
        }
        self.rows, self.info = defaultdict(lambda: defaultdict(float)), {}
        return rows

    def restore(self) -> None:
        for owner, name, original in reversed(self._patches):
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self._patches.clear()

    def check(self) -> None:
        """Raise when a wrapped function was never called: what it timed moved elsewhere."""
        idle = sorted(label for label, n in self.calls.items() if n == 0)
        if idle:
            raise MeterError(
                f"wrapped but never called: {', '.join(idle)}; the code it timed no longer goes "
                "through it, so its cost would silently read as zero"
            )

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.restore()
        if exc_type is None:
            self.check()
        return False


def _label(owner, name: str) -> str:
    return f"{getattr(owner, '__name__', type(owner).__name__)}.{name}"
