"""Calibration tokens: `calib/tokens.zarr` with disjoint `prune`, `fitness`, `heldout` splits.

Sources (`data.source` in the config):
  "self"        text sampled from the dense model itself (tyr.calib.sampling; fixed seed)
  "pydoc"       English prose shipped with every Python (`pydoc_data.topics`), zero download
  "wikitext2", "c4", "fineweb-edu"
                Hugging Face datasets, only when the hub is reachable (fails fast otherwise)
  local paths   a .txt file (one document), .jsonl / .json (field `text_field`), .parquet
                (column `text_field`), a folder of such files, or a list of any of these;
                a local source never touches the network

Text is tokenized with the model's own tokenizer, documents are concatenated with EOS
between them and cut into `seq_len` chunks; chunk order is shuffled with `seed` and each
chunk goes to at most one split, so no token position is shared between splits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tyr.core.io import atomic_path, write_checksums
from tyr.workflow.config import DATA_SUFFIXES

log = logging.getLogger("tyr.calib.sources")

SPLITS = ("prune", "fitness", "selection", "heldout")
BUILTIN = ("self", "pydoc")
CHUNK_ROWS = 64            # zarr chunk height: a few hundred KB per chunk at seq_len 1-4k
TOKENIZE_BATCH = 256       # documents per tokenizer call
# Read at most this many tokens (or 8x the need) from a source: enough to draw chunks from
# well beyond the first documents, without tokenizing a whole corpus.
MIN_TOKEN_BUDGET = 1 << 22
LOCAL_HINT = "point data.source at local files (.txt, .jsonl/.json, .parquet or a folder of them) or use 'self' / 'pydoc'"


@dataclass(frozen=True)
class HubDataset:
    path: str
    name: str | None = None
    splits: dict = field(default_factory=dict)  # our split name -> datasets split or data file
    by_data_files: bool = False                  # splits name files of the repo, not configs' splits
    streaming: bool = False                       # too large to download for a calibration sample
    one_document: bool = False                    # rows are lines of articles, not documents


HUB = {
    "wikitext2": HubDataset("wikitext", "wikitext-2-raw-v1",
                            {s: s for s in ("train", "validation", "test")}, one_document=True),
    "c4": HubDataset("allenai/c4", None, {"train": "en/c4-train.00000-of-01024.json.gz",
                                          "validation": "en/c4-validation.00000-of-00008.json.gz"},
                     by_data_files=True, streaming=True),
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
                f"data source {str(path)!r}: no such file or folder, and not one of "
                f"{', '.join(BUILTIN + tuple(HUB))}")
    if not files:
        raise ValueError("data source: empty list of paths")
    return files


def validate_source(source) -> None:
    """Cheap check of `data.source` before any heavy work: no model, no network."""
    if source is None or source == "":
        raise ValueError(f"data.source is empty; {LOCAL_HINT}")
    if _paths(source) is not None:
        local_files(source)


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
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); convert it first, e.g. "
                         f"iconv -f latin1 -t utf-8") from None


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
    from tyr.model.prepare import hub_offline, hub_unreachable

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
            f"({reason or type(e).__name__ + ': ' + str(e)[:200]}); {LOCAL_HINT}") from e
    rows = (row["text"] for row in ds)
    return iter(["".join(rows)]) if ds_spec.one_document else rows


def _load_hub(ds_spec: HubDataset, split: str):
    import datasets

    if ds_spec.by_data_files:
        return datasets.load_dataset(ds_spec.path, data_files={split: ds_spec.splits[split]}, split=split,
                                     streaming=ds_spec.streaming)
    return datasets.load_dataset(ds_spec.path, ds_spec.name, split=ds_spec.splits[split], streaming=ds_spec.streaming)


# ---- tokens ------------------------------------------------------------------------------------


def _batched(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def token_stream(tokenizer, texts: Iterable[str], budget: int) -> np.ndarray:
    """Documents tokenized and joined by EOS, read until `budget` tokens (or the end)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        log.warning("tokenizer has no EOS token: documents are concatenated without a separator")
    parts, total = [], 0
    for batch in _batched(texts, TOKENIZE_BATCH):
        ids = tokenizer(batch, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
        for doc in ids:
            if total and eos is not None:
                parts.append(np.array([eos], dtype=np.int64))
                total += 1
            parts.append(np.asarray(doc, dtype=np.int64))
            total += len(doc)
        if total >= budget:
            break
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def split_chunks(stream: np.ndarray, counts: dict, seq_len: int, seed: int, label: str) -> dict:
    """Cut `stream` into seq_len chunks, shuffle them with `seed`, deal disjoint ones to splits."""
    need = sum(counts.values())
    if len(stream) < need * seq_len:
        raise ValueError(
            f"calibration needs {need:,} sequences × {seq_len:,} tokens = {need * seq_len:,} tokens; "
            f"source {label} has {len(stream):,}. Use more data or fewer/shorter sequences")
    chunks = stream[: len(stream) // seq_len * seq_len].reshape(-1, seq_len)
    order = np.random.default_rng(seed).permutation(len(chunks))[:need]
    out, start = {}, 0
    for name, n in counts.items():
        out[name] = chunks[np.sort(order[start:start + n])]
        start += n
    return out


def calibrate(model_dir, out_zarr, *, source, seq_len: int, n_prune: int, n_fitness: int, n_heldout: int,
              n_selection: int = 0, seed: int = 0, text_field: str = "text", hub_split: str | None = None,
              temperature: float = 1.0) -> Path:
    """Write the calibration token splits of `source` to the zarr group `out_zarr`.

    prune: the pruning Hessians; fitness: the search's samples; selection: the final choice
    among the iterations' genomes (never seen by a search); heldout: evaluation only.
    """
    from transformers import AutoConfig, AutoTokenizer

    from tyr.calib.sampling import sample_self

    counts = {"prune": n_prune, "fitness": n_fitness, "selection": n_selection, "heldout": n_heldout}
    if seq_len < 2 or min(counts.values()) < 0 or sum(counts.values()) < 1:
        raise ValueError(f"calibration sizes: seq_len {seq_len} must be >= 2, split counts {counts} >= 0 and not all 0")
    validate_source(source)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    vocab = AutoConfig.from_pretrained(model_dir).vocab_size
    attrs = {"source": source_label(source), "tokenizer": str(getattr(tokenizer, "name_or_path", model_dir)),
             "tokenizer_class": type(tokenizer).__name__, "seed": seed, "seq_len": seq_len,
             "eos_token_id": tokenizer.eos_token_id, **{f"n_{k}": v for k, v in counts.items()}}
    need = sum(counts.values())
    if source == "self":
        samples, attrs["sampling"] = sample_self(model_dir, need, seq_len, seed, temperature=temperature)
        bounds = np.cumsum([0, *counts.values()])
        splits = {k: samples[bounds[i]:bounds[i + 1]] for i, k in enumerate(counts)}
    else:
        split = hub_split or "train"
        texts = iter_texts(source, text_field=text_field, hub_split=split)
        stream = token_stream(tokenizer, texts, budget=max(8 * need * seq_len, MIN_TOKEN_BUDGET))
        splits = split_chunks(stream, counts, seq_len, seed, source_label(source))
        attrs.update(tokens_read=int(len(stream)), text_field=text_field)
        if isinstance(source, str) and source in HUB:
            attrs["hub_split"] = split
    _check_vocab(splits, vocab, model_dir)
    write_tokens(out_zarr, splits, attrs)
    log.info("calibration %s: %s sequences × %d tokens from %s", out_zarr, counts, seq_len, attrs["source"])
    return Path(out_zarr)


def _check_vocab(splits: dict, vocab: int, model_dir) -> None:
    top = max((int(a.max()) for a in splits.values() if a.size), default=0)
    if top >= vocab:
        raise ValueError(f"{model_dir}: tokenizer produced id {top} but the model's vocab_size is {vocab}")


def write_tokens(out_zarr, splits: dict, attrs: dict) -> None:
    """Write int32 [n, seq_len] arrays atomically: the group appears complete or not at all."""
    import zarr

    with atomic_path(out_zarr) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        for name, arr in splits.items():
            arr = np.ascontiguousarray(arr, dtype=np.int32)
            group.create_array(name, data=arr, chunks=(max(1, min(len(arr), CHUNK_ROWS)), arr.shape[1]))
        group.attrs.update(attrs)
        write_checksums(tmp)


def read_tokens(zarr_path, split: str) -> np.ndarray:
    """One split of a calibration group as an int32 [n, seq_len] array."""
    import zarr

    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {SPLITS}")
    return np.asarray(zarr.open_group(str(zarr_path), mode="r")[split][:])


def read_attrs(zarr_path) -> dict:
    import zarr

    return dict(zarr.open_group(str(zarr_path), mode="r").attrs)


__all__ = ["calibrate", "read_texts", "iter_texts", "validate_source", "read_tokens", "read_attrs",
           "local_files", "token_stream", "split_chunks", "write_tokens", "SPLITS", "HUB"]
