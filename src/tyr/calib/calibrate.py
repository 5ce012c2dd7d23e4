"""Calibration tokens (`calib/tokens.zarr`) and layer 0's input (`calib/embeddings.zarr`).

Text (`tyr.calib.sources`) is tokenized with the model's own tokenizer, documents are joined
with EOS between them and cut into `seq_len` chunks; chunk order is shuffled with `seed` and
each chunk goes to at most one split, so no token position is shared between splits. Text
sampled from the model itself (`data.source: self`, tyr.calib.sampling) is dealt to the splits
in order. The splits are the four of `tyr.calib.stores`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from tyr.calib import sources, stores
from tyr.core.io import atomic_path, write_checksums

log = logging.getLogger("tyr.calib.calibrate")

TOKENIZE_BATCH = 256  # documents per tokenizer call


# Read at most this many tokens (or 8x the need) from a source: enough to draw chunks from
# well beyond the first documents, without tokenizing a whole corpus.
MIN_TOKEN_BUDGET = 1 << 22


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
            f"source {label} has {len(stream):,}. Use more data or fewer/shorter sequences"
        )
    chunks = stream[: len(stream) // seq_len * seq_len].reshape(-1, seq_len)
    order = np.random.default_rng(seed).permutation(len(chunks))[:need]
    out, start = {}, 0
    for name, n in counts.items():
        out[name] = chunks[np.sort(order[start : start + n])]
        start += n
    return out


def calibrate(
    model_dir,
    out_zarr,
    *,
    source,
    seq_len: int,
    n_prune: int,
    n_fitness: int,
    n_selection: int,
    n_heldout: int,
    seed: int = 0,
    text_field: str = "text",
    hub_split: str | None = None,
    temperature: float = 1.0,
    device: str = "cpu",
) -> Path:
    """Write the calibration token splits of `source` to the zarr group `out_zarr`.

    prune: the pruning Hessians; fitness: the search's samples; selection: the final choice
    among the iterations' genomes (never seen by a search); heldout: evaluation only.
    `device`: where `source: self` samples (config `devices.calibrate`); other sources only tokenize.
    """
    from transformers import AutoConfig, AutoTokenizer

    from tyr.calib.sampling import sample_self

    counts = dict(zip(stores.SPLITS, (n_prune, n_fitness, n_selection, n_heldout)))
    if seq_len < 2 or min(counts.values()) < 0 or sum(counts.values()) < 1:
        raise ValueError(f"calibration sizes: seq_len {seq_len} must be >= 2, split counts {counts} >= 0 and not all 0")
    sources.check_source("data.source", source)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    vocab = AutoConfig.from_pretrained(model_dir).vocab_size
    attrs = {
        "source": sources.source_label(source),
        "tokenizer": str(getattr(tokenizer, "name_or_path", model_dir)),
        "tokenizer_class": type(tokenizer).__name__,
        "seed": seed,
        "seq_len": seq_len,
        "eos_token_id": tokenizer.eos_token_id,
        **{f"n_{k}": v for k, v in counts.items()},
    }
    need = sum(counts.values())
    if source == "self":
        samples, attrs["sampling"] = sample_self(model_dir, need, seq_len, seed, temperature=temperature, device=device)
        bounds = np.cumsum([0, *counts.values()])
        splits = {k: samples[bounds[i] : bounds[i + 1]] for i, k in enumerate(counts)}
    else:
        split = hub_split or "train"
        texts = sources.iter_texts(source, text_field=text_field, hub_split=split)
        stream = token_stream(tokenizer, texts, budget=max(8 * need * seq_len, MIN_TOKEN_BUDGET))
        splits = split_chunks(stream, counts, seq_len, seed, sources.source_label(source))
        attrs.update(tokens_read=int(len(stream)), text_field=text_field)
        if isinstance(source, str) and source in sources.HUB:
            attrs["hub_split"] = split
    _check_vocab(splits, vocab, model_dir)
    stores.write_tokens(out_zarr, splits, attrs)
    log.info("calibration %s: %s sequences × %d tokens from %s", out_zarr, counts, seq_len, attrs["source"])
    return Path(out_zarr)


def _check_vocab(splits: dict, vocab: int, model_dir) -> None:
    top = max((int(a.max()) for a in splits.values() if a.size), default=0)
    if top >= vocab:
        raise ValueError(f"{model_dir}: tokenizer produced id {top} but the model's vocab_size is {vocab}")


def embed(model_dir, tokens_zarr, out_zarr, *, split=stores.PRUNE, batch_size=8) -> None:
    """Layer 0's input: the token embeddings of the calibration split."""
    from tyr.model import adapter

    weight = adapter.load_state(model_dir, "model.embed_tokens.")["weight"]
    tokens = stores.read_tokens(tokens_zarr, split)
    with atomic_path(out_zarr) as tmp:
        out = stores.create_hidden(tmp, (*tokens.shape, weight.shape[1]))
        for i, ids in stores.row_batches(tokens, batch_size):
            out[i : i + len(ids)] = weight[ids.long()].float().numpy()
        write_checksums(tmp)
