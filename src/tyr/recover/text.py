"""The text recovery trains on: token sequences the run owns, never its held-out split.

`calibration` (default): the prune, fitness and selection splits of `calib/tokens.zarr`, the text
the pruning itself used (self-sampled by default: general prose from the dense model, offline).
A local file or folder (data.source's formats, `tyr.calib.sources`): the user's own text, cut
into sequences of the calibration's length.
"""

from __future__ import annotations

import numpy as np

from tyr.calib import stores

TRAIN_SPLITS = (stores.PRUNE, stores.FITNESS, stores.SELECTION)  # not stores.HELDOUT: the evaluation's


def recovery_sequences(tokens_zarr, source: str = "calibration", *, model_dir=None, sequences=None,
                       text_field: str = "text") -> np.ndarray:  # fmt: skip
    """int64 [n, seq_len] training sequences; `sequences` caps n (None: all there are)."""
    if source == "calibration":
        have = stores.split_shapes(tokens_zarr)
        arrays = [stores.read_tokens(tokens_zarr, s) for s in TRAIN_SPLITS if s in have and have[s][0]]
        if not arrays:
            raise ValueError(f"{tokens_zarr}: no {'/'.join(TRAIN_SPLITS)} sequences to recover on")
        out = np.concatenate(arrays).astype(np.int64)
    else:
        out = _file_sequences(source, tokens_zarr, model_dir, sequences, text_field)
    return out[:sequences] if sequences else out


def _file_sequences(source, tokens_zarr, model_dir, sequences, text_field) -> np.ndarray:
    from transformers import AutoTokenizer

    from tyr.calib.calibrate import token_stream
    from tyr.calib.sources import iter_texts, local_files

    local_files(source)  # a clear error naming recover.text when the path is not there
    seq_len = next(iter(stores.split_shapes(tokens_zarr).values()))[1]
    budget = (sequences or 10**9) * seq_len
    stream = token_stream(AutoTokenizer.from_pretrained(model_dir), iter_texts(source, text_field=text_field), budget)
    n = len(stream) // seq_len
    if n == 0:
        raise ValueError(f"recover.text {source!r}: {len(stream)} tokens, fewer than one sequence of {seq_len}")
    return stream[: n * seq_len].reshape(n, seq_len)


def batch_order(n: int, batch: int, step: int, seed: int) -> np.ndarray:
    """The sequence indices of training step `step` (0-based): epoch e is one permutation of the n
    sequences drawn from (seed, e); steps take consecutive batches of it. A pure function of its
    arguments, so a resumed run draws exactly the batches an uninterrupted one would."""
    per_epoch = max(1, n // batch)
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[k * batch : (k + 1) * batch]
