"""Text sources: where calibration text (`data.source`) and other prose (`search.share_text`) come from.

Sources:
  "self"        text sampled from the dense model itself (tyr.calib.sampling; fixed seed)
  "pydoc"       English prose shipped with every Python (`pydoc_data.topics`), zero download
  "wikitext2", "c4", "fineweb-edu"
                Hugging Face datasets, only when the hub is reachable (fails fast otherwise)
  local paths   a .txt file (one document), .jsonl / .json (field `text_field`), .parquet
                (column `text_field`), a folder of such files, or a list of any of these;
                a local source never touches the network

The one home of the source names and their checks: the configuration check calls `check_source`
at parse time (so this module imports nothing heavy), the calibration job again before any work.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("tyr.calib.sources")

BUILTIN = ("self", "pydoc")
DATA_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")  # the text files a local source may hold
LOCAL_HINT = (
    "point data.source at local files (.txt, .jsonl/.json, .parquet or a folder of them) or use 'self' / 'pydoc'"
)


@dataclass(frozen=True)
class HubDataset:
    path: str
    name: str | None = None
    splits: dict = field(default_factory=dict)  # our split name -> datasets split or data file
    by_data_files: bool = False  # splits name files of the repo, not configs' splits
    streaming: bool = False  # too large to download for a calibration sample
    one_document: bool = False  # rows are lines of articles, not documents


HUB = {
    "wikitext2": HubDataset(
        "wikitext", "wikitext-2-raw-v1", {s: s for s in ("train", "validation", "test")}, one_document=True
    ),
    "c4": HubDataset(
        "allenai/c4",
        None,
        {"train": "en/c4-train.00000-of-01024.json.gz", "validation": "en/c4-validation.00000-of-00008.json.gz"},
        by_data_files=True,
        streaming=True,
    ),
    "fineweb-edu": HubDataset("HuggingFaceFW/fineweb-edu", "sample-10BT", {"train": "train"}, streaming=True),
}


# ---- sources -----------------------------------------------------------------------------------


def _paths(source) -> list[Path] | None:
    """Local paths named by `source`, or None when it is a builtin or hub name."""
    if isinstance(source, (list, tuple)):
        return [Path(s).expanduser() for s in source]
    if isinstance(source, str) and (source in BUILTIN or source in HUB):
        return None
    return [Path(source).expanduser()]


def local_files(source) -> list[Path]:
    """The data files of a local source, in a fixed order (folders: sorted, recursively)."""
    files = []
    for path in _paths(source) or []:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"data source {path}: folder holds no {'/'.join(DATA_SUFFIXES)} files")
            files += found
        elif path.is_file():
            if path.suffix.lower() not in DATA_SUFFIXES:
                raise ValueError(f"data source {path}: unsupported file type; expected one of {DATA_SUFFIXES}")
            files.append(path)
        else:
            raise FileNotFoundError(
                f"data source {str(path)!r}: no such file or folder, and not one of {', '.join(BUILTIN + tuple(HUB))}"
            )
    if not files:
        raise ValueError("data source: empty list of paths")
    return files


def check_source(key: str, source) -> None:
    """Raise ValueError (FileNotFoundError for a missing path), naming `key`, when `source` cannot
    be read now: empty, a hub data set while the hub is unreachable, a missing or empty file, a
    folder without text files. Cheap: no model, and at most one HEAD request to the hub."""
    if source is None or source == "" or source == []:
        raise ValueError(f"{key} is empty; {LOCAL_HINT}")
    if isinstance(source, str) and source in HUB:
        return _check_hub(key, source)
    named = [s for s in source if str(s) in BUILTIN or str(s) in HUB] if isinstance(source, (list, tuple)) else []
    if named:
        raise ValueError(f"{key}: a list holds local files or folders only; {named[0]!r} is a built-in source name")
    for path in _paths(source) or []:
        if not path.exists():
            raise FileNotFoundError(
                f"{key}: local path {str(path)!r} does not exist, and it is not one of "
                f"{', '.join(BUILTIN + tuple(HUB))}"
            )
        if path.is_file() and path.stat().st_size == 0:
            raise ValueError(f"{key}: {str(path)!r} is an empty file")
    if _paths(source) is not None:
        local_files(source)


def _check_hub(key: str, name: str) -> None:
    """A hub data set must be reachable now, not after hours of work. In declared offline mode
    (HF_*_OFFLINE) the `datasets` cache may still serve it: the job then answers from the cache
    or fails within seconds."""
    from tyr.core.hub import hub_offline, hub_unreachable

    reason = hub_unreachable(datasets=True)
    if reason and not hub_offline(datasets=True):
        raise ConnectionError(f"{key}: {name!r} needs the Hugging Face hub ({reason}); {LOCAL_HINT}")


def source_label(source) -> str:
    if isinstance(source, (list, tuple)):
        return json.dumps([str(s) for s in source])
    return str(source)


def read_texts(source, *, text_field: str = "text", hub_split: str = "test") -> list[str]:
    """All documents of a text source (WikiText-2 is one document per split)."""
    return list(iter_texts(source, text_field=text_field, hub_split=hub_split))


def iter_texts(source, *, text_field: str = "text", hub_split: str = "train") -> Iterator[str]:
    """Documents of a text source, lazily and in a fixed order; empty documents skipped."""
    if source == "self":
        raise ValueError("data source 'self' is sampled from the model; it has no texts to read")
    if source == "pydoc":
        docs = _pydoc_texts()
    elif isinstance(source, str) and source in HUB:
        docs = _hub_texts(source, hub_split)
    else:
        docs = (d for f in local_files(source) for d in _file_texts(f, text_field))
    return (d for d in docs if d and d.strip())


def _pydoc_texts() -> Iterator[str]:
    try:
        from pydoc_data.topics import topics
    except ImportError as e:  # some distributions split the stdlib docs into another package
        raise ImportError(f"data source 'pydoc' needs the stdlib module pydoc_data ({e}); {LOCAL_HINT}") from e
    return (topics[k] for k in sorted(topics))


def _file_texts(path: Path, text_field: str) -> Iterator[str]:
    try:
        yield from _decoded_texts(path, text_field)
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); convert it first, e.g. iconv -f latin1 -t utf-8"
        ) from None


def _decoded_texts(path: Path, text_field: str) -> Iterator[str]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        yield path.read_text(encoding="utf-8")
    elif suffix == ".parquet":
        yield from _parquet_texts(path, text_field)
    else:
        yield from (_field(rec, text_field, path) for rec in _json_records(path))


def _json_records(path: Path) -> Iterator:
    """Records of a .jsonl file, or of a .json file holding an array (or JSON lines)."""
    with path.open(encoding="utf-8") as f:
        if path.suffix.lower() == ".json" and _first_char(f) == "[":
            yield from json.load(f)
            return
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not a JSON record ({e.msg})") from e


def _first_char(f) -> str:
    """First non-blank character of a text file; the file is rewound."""
    while (ch := f.read(1)) and ch.isspace():
        pass
    f.seek(0)
    return ch


def _field(record, text_field: str, path: Path) -> str:
    if isinstance(record, str):
        return record
    if not isinstance(record, dict) or text_field not in record:
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise KeyError(f"{path}: record has no field {text_field!r} (has {keys}); set data.text_field")
    return record[text_field]


def _parquet_texts(path: Path, text_field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if text_field not in pf.schema_arrow.names:
        raise KeyError(f"{path}: no column {text_field!r} (has {pf.schema_arrow.names}); set data.text_field")
    for batch in pf.iter_batches(columns=[text_field], batch_size=1024):
        yield from batch.column(0).to_pylist()


def _hub_texts(name: str, split: str | None) -> Iterator[str]:
    from tyr.core.hub import hub_offline, hub_unreachable

    ds_spec = HUB[name]
    split = split or "train"
    if split not in ds_spec.splits:
        raise ValueError(f"data source {name!r} has no split {split!r} here; choose one of {sorted(ds_spec.splits)}")
    reason = hub_unreachable(datasets=True)
    # Offline mode: `datasets` answers from its cache at once, or fails at once. A dead
    # network (not declared offline) would instead be retried for ~25 s per file: stop now.
    if reason and not hub_offline(datasets=True):
        raise ConnectionError(f"data source {name!r} needs the Hugging Face hub: {reason}; {LOCAL_HINT}")
    try:
        ds = _load_hub(ds_spec, split)
    except Exception as e:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ...)
        raise ConnectionError(
            f"data source {name!r}: cannot load {ds_spec.path} from the hub or its cache "
            f"({reason or type(e).__name__ + ': ' + str(e)[:200]}); {LOCAL_HINT}"
        ) from e
    rows = (row["text"] for row in ds)
    return iter(["".join(rows)]) if ds_spec.one_document else rows


def _load_hub(ds_spec: HubDataset, split: str):
    import datasets

    if ds_spec.by_data_files:
        return datasets.load_dataset(
            ds_spec.path, data_files={split: ds_spec.splits[split]}, split=split, streaming=ds_spec.streaming
        )
    return datasets.load_dataset(ds_spec.path, ds_spec.name, split=ds_spec.splits[split], streaming=ds_spec.streaming)
