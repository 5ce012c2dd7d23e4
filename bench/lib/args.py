"""The command line every bench script shares: --smoke and --out, a finished run and its target,
the WikiText-2 windows a perplexity is scored on."""

from __future__ import annotations

import argparse
import tempfile
from contextlib import contextmanager
from pathlib import Path


def parser(doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="the same code path on a tiny random model in seconds; results go to a temp folder",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder of the result files (default bench/results; with --smoke a temp folder)",
    )
    return ap


def add_run_args(ap, perplexity: bool = True) -> None:
    """A finished run (results/<run>) and target; with `perplexity`, the WikiText-2 windows to score on."""
    ap.add_argument("run_dir", nargs="?", help="a finished run, results/<run> (not with --smoke)")
    ap.add_argument("--target", default="50", help="target tag of the run's s<target>/ folder")
    if perplexity:
        ap.add_argument("--windows", type=int, default=8)
        ap.add_argument("--seq-len", type=int, default=2048)
        ap.add_argument(
            "--wikitext", default=None, help="WikiText-2 test file (default $TYR_DATA_DIR/wikitext-2/test.txt)"
        )


@contextmanager
def workspace(args):
    """Yields a scratch folder: with --smoke a temporary one (removed afterwards), where the
    result files go unless --out names another place; otherwise None. A script without --smoke
    and without a run folder, where it needs one, stops here."""
    if not args.smoke:
        if hasattr(args, "run_dir") and args.run_dir is None:
            raise SystemExit("a finished run folder (results/<run>) is required without --smoke")
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="tyr-bench-smoke-") as tmp:
        if args.out is None:
            args.out = Path(tmp) / "results"
        yield Path(tmp)
