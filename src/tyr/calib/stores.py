"""The one home of the calibration stores' formats (docs/design.md): the token splits of
`calib/tokens.zarr` and the activation stores (`calib/embeddings.zarr`, a layer's `acts/out*.zarr`).

Token splits: int32 [n_seq, seq_len] arrays `prune` (the pruning Hessians), `fitness` (the search's
samples), `selection` (Týr's final choice among iterations, seen by no search) and `heldout`
(evaluation only), disjoint by construction (tyr.calib.calibrate). Every reader goes through
`read_tokens`; `tokens_digest` fingerprints a split so stores computed from it (the dense top-k)
can be checked to belong to it. Activation stores hold one float32 array `hidden`
[n_seq, seq_len, hidden]: a layer's input on the prune split.
"""

from __future__ import annotations

import hashlib

import numpy as np

from tyr.core.io import atomic_path, write_checksums

SPLITS = ("prune", "fitness", "selection", "heldout")
PRUNE, FITNESS, SELECTION, HELDOUT = SPLITS


CHUNK_ROWS = 64  # zarr chunk height: a few hundred KB per chunk at seq_len 1-4k


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
    return np.asarray(zarr.open_group(str(zarr_path), mode="r")[split][:], dtype=np.int32)


def split_shapes(zarr_path) -> dict:
    """{split: (n_seq, seq_len)} of the splits a calibration group holds, in SPLITS order."""
    import zarr

    group = zarr.open_group(str(zarr_path), mode="r")
    return {name: tuple(group[name].shape) for name in SPLITS if name in group}


def read_attrs(zarr_path) -> dict:
    """The calibration's provenance (source, tokenizer, seed, counts, sampling) as its group recorded it."""
    import zarr

    return dict(zarr.open_group(str(zarr_path), mode="r").attrs)


def tokens_digest(tokens: np.ndarray) -> str:
    """Fingerprint of a token split: ties `topk.zarr` to the exact tokens it was computed on."""
    return hashlib.sha256(np.ascontiguousarray(tokens, dtype=np.int32).tobytes()).hexdigest()


def calibration_digest(zarr_path) -> str:
    """Fingerprint of every token split of a run (`summary.json`'s `calibration_digest`): which
    tokens pruned, searched, selected and evaluated it. A sampler change shows up here first."""
    h = hashlib.sha256()
    for name in SPLITS:
        tokens = read_tokens(zarr_path, name)
        h.update(f"{name}:{tokens.shape}:{tokens_digest(tokens)};".encode())
    return h.hexdigest()


# ---- activation stores ------------------------------------------------------------------------


HIDDEN = "hidden"  # the array of an activation store: float32 [n_seq, seq_len, hidden]
CHUNK_SEQS = 4  # sequences per zarr chunk


def create_hidden(path, shape):
    """An empty activation store [n_seq, seq_len, hidden] at `path` (write into it, then rename)."""
    import zarr

    group = zarr.open_group(str(path), mode="w")
    chunks = (min(CHUNK_SEQS, shape[0]), *shape[1:])
    return group.create_array(HIDDEN, shape=shape, chunks=chunks, dtype="float32", compressors=None)


def open_hidden(path):
    """The activation array of a store, read lazily."""
    import zarr

    return zarr.open_group(str(path), mode="r")[HIDDEN]


def row_batches(array, batch_size):
    """(first row, float tensor of rows first..first+batch_size) over an array's first axis."""
    import torch

    for i in range(0, array.shape[0], batch_size):
        yield i, torch.from_numpy(array[i : i + batch_size])


def write_hidden(path, shape, batches) -> None:
    """An activation store of `shape` written atomically from (first row, float tensor) batches."""
    with atomic_path(path) as tmp:
        out = create_hidden(tmp, shape)
        for i, x in batches:
            out[i : i + len(x)] = x.cpu().numpy()  # a GPU stage's batches too
