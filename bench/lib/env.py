"""The environment of a benchmark: offline, explicit about its evaluation data, few threads.

Product code reads evaluation data only from $TYR_DATA_DIR (tyr.evaluate.plan); benchmarks do
the same, or take a path argument. Nothing here guesses where a development machine keeps data.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def setup(threads: int | None = None) -> None:
    """This process: hub off (no benchmark downloads anything) and `threads` torch threads."""
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)
    if threads is not None:
        import torch

        torch.set_num_threads(max(1, int(threads)))


def child_env(*, data_dir: str | os.PathLike | None = None, keep_data_dir: bool = True, **extra) -> dict:
    """The environment of a process a benchmark starts (Snakemake, a worker): offline; TYR_DATA_DIR
    as given, else inherited (or dropped with keep_data_dir=False, for runs that must not see data)."""
    env = dict(os.environ, **OFFLINE)
    if data_dir is not None:
        env["TYR_DATA_DIR"] = str(data_dir)
    elif not keep_data_dir:
        env.pop("TYR_DATA_DIR", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def wikitext_path(explicit: str | None) -> str:
    """The WikiText-2 test file: the argument, else $TYR_DATA_DIR/wikitext-2/test.txt; an error
    naming both when neither is there (a benchmark never looks for data on its own)."""
    if explicit:
        return explicit
    data = os.environ.get("TYR_DATA_DIR")
    if data and (Path(data) / "wikitext-2" / "test.txt").is_file():
        return str(Path(data) / "wikitext-2" / "test.txt")
    raise SystemExit(
        "WikiText-2 test: pass --wikitext PATH or set TYR_DATA_DIR to a folder with "
        f"wikitext-2/test.txt (TYR_DATA_DIR is {data!r})"
    )
