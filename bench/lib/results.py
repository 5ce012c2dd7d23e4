"""Result files: bench/results/<date>-<host>-<kind>.{md,json}.

The files under bench/results are the benchmarks' history: none is ever rewritten by a smoke run
(its --out is a temp folder, `lib.args.workspace`).
"""

from __future__ import annotations

import datetime as dt
import json
import platform
from pathlib import Path

from lib.env import ROOT

RESULTS = ROOT / "bench" / "results"


def host() -> str:
    return platform.node() or "host"


def today() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d")


def stem(kind: str, out: Path | None = None) -> Path:
    """out/<date>-<host>[-<kind>] (no suffix yet): `kind` empty for the pipeline's own files."""
    name = f"{today()}-{host()}" + (f"-{kind}" if kind else "")
    return Path(out or RESULTS) / name


def suffixed(path: Path, suffix: str) -> Path:
    """path + suffix (not Path.with_suffix: a host name may hold dots)."""
    return path.parent / (path.name + suffix)


def write(kind: str, lines=None, data=None, out: Path | None = None, quiet: bool = False) -> Path:
    """Write <stem>.md from `lines` and/or <stem>.json from `data`; print the markdown; return the stem."""
    path = stem(kind, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is not None:
        suffixed(path, ".json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    if lines is not None:
        text = "\n".join(lines) + "\n"
        suffixed(path, ".md").write_text(text)
        if not quiet:
            print(text)
    return path
