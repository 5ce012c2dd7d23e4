"""A genome of a finished run, exported and scored: the perplexity column of several benchmarks."""

from __future__ import annotations

from pathlib import Path


def genome_perplexity(
    run: Path, genome, out: Path, texts, *, seq_len: int, windows: int, method: str = "tyr", supernet_json=None
) -> float:
    """Export `genome` of `run` to `out` and return its perplexity on the first `windows` windows
    of `seq_len` tokens of `texts`."""
    from tyr.evaluate.measure import load
    from tyr.evaluate.perplexity import perplexity
    from tyr.export.hf import export

    export(run / "model", run / "model" / "spec.json", genome, out, method=method, supernet_json=supernet_json)
    model, tokenizer = load(out)
    return perplexity(model, tokenizer, texts, seq_len=seq_len, max_windows=windows)["perplexity"]
