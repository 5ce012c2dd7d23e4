"""Perplexity of one model: on a WikiText-style text, and on the run's own held-out split.

Protocol (WikiText-2 test, as in GPTQ/SparseGPT/Wanda, documented exactly):
  1. documents are joined with "\\n\\n" (tyr.calib.sources reads WikiText-2, local file or hub split,
     as ONE document: the split's text verbatim), and tokenized once with the tokenizer's
     defaults (a BOS is prepended only if the tokenizer does so by default);
  2. the ids are cut into non-overlapping windows of `seq_len` tokens (capped at the
     model's max_position_embeddings); the trailing partial window is dropped;
  3. every window is scored independently (no context carried over): the mean token NLL
     over all `seq_len - 1` predictions of all windows; perplexity = exp(mean NLL).
  `max_windows` evaluates only the first windows (a documented subset, for CPU budgets).
The held-out split's sequences are each one window.
"""

from __future__ import annotations

import math


def max_positions(model) -> int:
    return int(getattr(model.config, "max_position_embeddings", None) or 2048)


def perplexity(model, tokenizer, texts, *, seq_len=2048, batch_size=1, max_windows=None) -> dict:
    """WikiText-style perplexity of `texts` (protocol in the module docstring)."""
    windows, total = text_windows(tokenizer, texts, min(int(seq_len), max_positions(model)), max_windows)
    return {**window_perplexity(model, windows, batch_size=batch_size), "total_tokens": total}


def text_windows(tokenizer, texts, seq_len: int, max_windows=None):
    """(windows [n, seq_len] of token ids, total token count): steps 1 and 2 of the protocol."""
    ids = tokenizer("\n\n".join(texts), return_tensors="pt").input_ids[0]
    n = ids.numel() // seq_len
    if max_windows is not None:
        n = min(n, int(max_windows))
    if n < 1:
        raise ValueError(f"{ids.numel()} tokens do not fill one window of {seq_len}")
    return ids[: n * seq_len].view(n, seq_len), int(ids.numel())


def window_perplexity(model, windows, *, batch_size=1) -> dict:
    """exp(mean NLL) of every next-token prediction inside each row of `windows` [n, T]."""
    import torch

    n, seq_len = windows.shape
    device = next(model.parameters()).device
    nll = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for batch in windows.split(batch_size):
            nll += _window_nll(model, batch.to(device)).cpu()
    count = n * (seq_len - 1)
    mean = float(nll) / count
    return {"perplexity": math.exp(mean), "nll": mean, "seq_len": seq_len, "windows": n, "scored_tokens": count}


def _window_nll(model, batch):
    """Summed NLL of every next-token prediction inside the windows of `batch`."""
    import torch.nn.functional as F

    logits = model(batch, use_cache=False).logits[:, :-1]
    return F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten(), reduction="sum").double()


def heldout_perplexity(model, tokens_zarr, *, batch_size=4) -> dict:
    """Perplexity on the calibration `heldout` split: each sequence is one window."""
    import torch

    from tyr.calib import stores

    windows = torch.from_numpy(stores.read_tokens(tokens_zarr, stores.HELDOUT)).long()
    if windows.shape[0] == 0:
        raise ValueError(f"{tokens_zarr}: the heldout split is empty (data.heldout_sequences: 0)")
    return window_perplexity(model, windows, batch_size=batch_size)


def read_texts(source) -> list[str]:
    """The test split of a WikiText-style source (a local file is one document, read verbatim)."""
    from tyr.calib.sources import read_texts

    return read_texts(source, hub_split="test")
