"""Sparsity patterns and the mask choices every method shares.

A pattern is either *unstructured* at a sparsity s (a fraction s of the weights of every
projection is removed) or *N:M* (at most N non-zeros in every group of M consecutive inputs of
a row; 2:4 is what sparse tensor cores run). Masks are bool, True where a weight is REMOVED.

Tags name patterns in result paths: `50` = 50% unstructured, `2of4` = 2:4.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Pattern:
    sparsity: float  # fraction of weights removed
    n: int = 0  # N:M: kept per group (0: unstructured)
    m: int = 0  # N:M: group size

    @classmethod
    def parse(cls, value) -> Pattern:
        """A fraction (0.5, "0.5") or a percentage ("50", the tag) -> unstructured; "2:4" / "2of4" -> N:M."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            s = float(value)
        else:
            text = str(value).strip()
            nm = re.fullmatch(r"(\d+)\s*(?::|of)\s*(\d+)", text)
            if nm:
                n, m = int(nm.group(1)), int(nm.group(2))
                if not 0 < n < m:
                    raise ValueError(f"N:M pattern {value!r} needs 0 < N < M")
                return cls(1 - n / m, n, m)
            if not re.fullmatch(r"\d+(\.\d+)?", text):
                raise ValueError(f"{value!r} is neither a sparsity (0.5, or '50' in percent) nor N:M ('2:4')")
            s = float(text)
            s = s / 100 if s >= 1 else s
        if not 0 < s < 1:
            raise ValueError(f"sparsity {value!r} is outside (0, 1)")
        return cls(round(s, 6))

    @property
    def tag(self) -> str:
        return f"{self.n}of{self.m}" if self.m else f"{round(self.sparsity * 100, 4):g}"

    @property
    def label(self) -> str:
        return f"{self.n}:{self.m}" if self.m else f"{self.sparsity:.0%} unstructured"


def lowest(scores, count):
    """Mask of the `count` lowest scores of every row (count: an int, or a LongTensor per row).

    Ties go to the lower index (a stable sort), so masks are reproducible.
    """
    import torch

    order = torch.sort(scores, dim=-1, stable=True).indices
    counts = torch.as_tensor(count, device=scores.device).expand(scores.shape[:-1])
    take = torch.arange(scores.shape[-1], device=scores.device) < counts[..., None]
    return torch.zeros_like(scores, dtype=torch.bool).scatter(-1, order, take)


def nm_mask(scores, n: int, m: int):
    """Mask of the M−N lowest scores in every group of M consecutive columns of every row."""
    rows, cols = scores.shape
    if cols % m:
        raise ValueError(f"{cols} inputs are not a whole number of {m}-groups")
    return lowest(scores.reshape(rows, cols // m, m), m - n).reshape(rows, cols)


def select(scores, pattern: Pattern, *, scope: str = "row"):
    """The mask of `pattern` that removes the lowest scores.

    scope "row": every row loses the same fraction (Wanda's comparison group);
    "matrix": one threshold over the whole matrix (magnitude pruning, SparseGPT's blocks).
    N:M is always per row and group.
    """
    if pattern.m:
        return nm_mask(scores, pattern.n, pattern.m)
    if scope == "row":
        return lowest(scores, removed(scores.shape[1], pattern.sparsity))
    flat = lowest(scores.reshape(1, -1), removed(scores.numel(), pattern.sparsity))
    return flat.reshape(scores.shape)


def removed(size: int, sparsity: float) -> int:
    """Weights removed out of `size` at `sparsity`, rounded half up (platform independent)."""
    return int(size * sparsity + 0.5)


def quota(pattern: Pattern, i1: int, i2: int, rows: int = 1) -> int:
    """Removals among `rows` rows × columns [i1, i2) such that the totals over all blocks are
    exact: the block's share of `removed(rows × d_in)` (unstructured), or M−N per group (N:M;
    the block holds whole groups)."""
    if pattern.m:
        return rows * (i2 - i1) // pattern.m * (pattern.m - pattern.n)
    return removed(rows * i2, pattern.sparsity) - removed(rows * i1, pattern.sparsity)


def check(mask, pattern: Pattern, *, scope: str = "row") -> None:
    """Raise if `mask` does not have the pattern's structure (every N:M group exactly M−N removed;
    unstructured: the exact count per row or matrix)."""
    if pattern.m:
        per_group = mask.reshape(mask.shape[0], -1, pattern.m).sum(-1)
        if not bool((per_group == pattern.m - pattern.n).all()):
            raise AssertionError(f"{pattern.label}: groups remove {sorted(set(per_group.flatten().tolist()))}")
        return
    got = mask.sum(1) if scope == "row" else mask.sum().reshape(1)
    want = removed(mask.shape[1] if scope == "row" else mask.numel(), pattern.sparsity)
    if not bool((got == want).all()):
        raise AssertionError(f"{pattern.label}: removed {sorted(set(got.tolist()))[:5]} per {scope}, want {want}")


def pack(mask):
    """A bool mask [d_out, d_in] as uint8 bits along the inputs (numpy.packbits, big bit order):
    1/8 of a byte per weight, so the masks of a model stay small beside its weights."""
    import numpy as np
    import torch

    return torch.from_numpy(np.packbits(mask.numpy(), axis=1))


def unpack(bits, d_in: int):
    """The bool mask [d_out, d_in] that `pack` wrote."""
    import numpy as np
    import torch

    return torch.from_numpy(np.unpackbits(bits.numpy(), axis=1, count=d_in).astype(bool))
