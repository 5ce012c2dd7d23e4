"""What the per-run bench scripts share: their arguments, a genome's perplexity, the result file."""

from __future__ import annotations

import datetime as dt
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def add_run_args(ap, perplexity: bool = True) -> None:
    """A finished run and target; with `perplexity`, the WikiText-2 windows to score on."""
    ap.add_argument("run_dir")
    ap.add_argument("--target", default="50")
    if perplexity:
        ap.add_argument("--windows", type=int, default=8)
        ap.add_argument("--seq-len", type=int, default=2048)
        ap.add_argument("--wikitext", default=str(ROOT.parent / "shared/data/wikitext-2/test.txt"))


def genome_perplexity(run: Path, genome, out: Path, texts, args, *, method="tyr", supernet_json=None) -> float:
    """Export `genome` of `run` to `out` and return its perplexity on the chosen windows."""
    from tyr.evaluate.measure import load
    from tyr.evaluate.perplexity import perplexity
    from tyr.export.hf import export

    export(run / "model", run / "model" / "spec.json", genome, out, method=method, supernet_json=supernet_json)
    model, tokenizer = load(out)
    return perplexity(model, tokenizer, texts, seq_len=args.seq_len, max_windows=args.windows)["perplexity"]


def merged_config(*files) -> dict:
    """The YAML files merged in order, nested sections key by key, as Snakemake merges --configfile."""
    import yaml

    out = {}
    for path in files:
        _merge(out, yaml.safe_load(Path(path).read_text()) or {})
    return out


def _merge(into: dict, update: dict) -> None:
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def write_result(kind: str, lines) -> str:
    """Write bench/results/<date>-<host>-<kind>.md, print it and return its text."""
    text = "\n".join(lines) + "\n"
    date, host = dt.datetime.now().strftime("%Y-%m-%d"), platform.node() or "host"
    (ROOT / "bench" / "results" / f"{date}-{host}-{kind}.md").write_text(text)
    print(text)
    return text
