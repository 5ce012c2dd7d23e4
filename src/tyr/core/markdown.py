"""Markdown table cells, shared by the model card and the report."""

from __future__ import annotations


def cell(text) -> str:
    """Text as one table cell: whitespace folded to single spaces, pipes escaped, never empty."""
    return " ".join(str(text).split()).replace("|", "\\|") or "(nothing)"


def pct(x, digits: int = 2) -> str:
    """A fraction as a percentage, `n/a` for None."""
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"
