"""The dense reference of the fitness (`dense/topk.zarr`, rule `dense_topk`).

The dense model runs once over the fitness and selection splits; per position we keep the
top-k log-probabilities, their token ids, and the log-probability of everything else (the
"rest" bucket). Memory is O(k) per position instead of O(vocab). Each split's group records
the digest of its tokens (`tyr.calib.stores.tokens_digest`), so a reader can check that the
reference belongs to the tokens it scores (`read_scored_split`).
"""

from __future__ import annotations

from tyr.calib import stores
from tyr.core.io import atomic_path, write_checksums


def read_scored_split(topk_zarr, tokens_zarr, split: str):
    """A split's tokens and its group of the dense top-k store, checked to belong together."""
    import zarr

    tokens = stores.read_tokens(tokens_zarr, split)
    topk = zarr.open_group(str(topk_zarr), mode="r")
    if split not in topk:
        raise ValueError(f"{topk_zarr} holds no dense top-k of the {split!r} split (has {list(topk.group_keys())})")
    if topk[split].attrs.get("tokens_sha256") != stores.tokens_digest(tokens):
        raise ValueError(f"{topk_zarr} was computed on other tokens than {tokens_zarr}[{split}]")
    return tokens, topk[split]


def topk_logprobs(lm_head, hidden, k: int, chunk: int = 1024):
    """Top-k log-probs, their ids and the tail log-mass of `lm_head(hidden)` rows, chunked over rows."""
    import torch

    tops, ids, rests = [], [], []
    for h in hidden.split(chunk):
        logits = lm_head(h).float()
        lse = logits.logsumexp(-1)
        top, idx = logits.topk(k, dim=-1)
        tops.append(top - lse[:, None])
        ids.append(idx)
        rests.append(_tail_logsumexp(logits, idx) - lse)
    return torch.cat(tops), torch.cat(ids), torch.cat(rests)


SCORED_SPLITS = (stores.FITNESS, stores.SELECTION)  # the search's samples, and the final choice among iterations


def dense_topk(
    model_dir,
    tokens_zarr,
    out_zarr,
    *,
    k: int = 64,
    splits=SCORED_SPLITS,
    batch_size: int = 4,
    dtype: str = "float32",
    chunk: int = 256,
    device: str = "cpu",
) -> None:
    """Run the dense model once on each split and store its top-k next-token log-probs.

    `out_zarr` (group, written atomically) holds one subgroup per non-empty split with `logp`
    [n_seq, seq_len, k] (`dtype`), `index` int32 [n_seq, seq_len, k], `logp_rest` float32
    [n_seq, seq_len] (log of the mass outside the top-k, for the KL's tail term), attrs
    `tokens_sha256`; the group's attrs hold `k` and `model`. `device`: config `devices.dense_topk`
    (the model on the device, one batch of tokens at a time; float32 on both).
    """
    from tyr.core.device import placed, threads_from_env
    from tyr.model.adapter import load_model

    threads_from_env()
    with placed(device, "devices.dense_topk") as dev:
        model = load_model(model_dir).to(dev)
        _dense_topk(model, model_dir, tokens_zarr, out_zarr, k, splits, batch_size, dtype, chunk)


def _dense_topk(model, model_dir, tokens_zarr, out_zarr, k, splits, batch_size, dtype, chunk) -> None:
    import zarr

    k = min(k, model.config.vocab_size)
    present = set(zarr.open_group(str(tokens_zarr), mode="r").array_keys())
    with atomic_path(out_zarr) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        for split in (s for s in splits if s in present):
            tokens = stores.read_tokens(tokens_zarr, split)
            if len(tokens):
                _write_topk(group.create_group(split), model, tokens, k, batch_size, dtype, chunk)
        group.attrs.update({"k": k, "splits": [s for s in splits if s in group], "model": str(model_dir)})
        write_checksums(tmp)


def _write_topk(group, model, tokens, k, batch_size, dtype, chunk) -> None:
    import torch

    n, seq_len = tokens.shape
    logp = group.create_array("logp", shape=(n, seq_len, k), dtype=dtype, chunks=(1, seq_len, k))
    index = group.create_array("index", shape=(n, seq_len, k), dtype="int32", chunks=(1, seq_len, k))
    rest = group.create_array("logp_rest", shape=(n, seq_len), dtype="float32", chunks=(1, seq_len))
    with torch.inference_mode():
        for s in range(0, n, batch_size):
            ids = torch.from_numpy(tokens[s : s + batch_size]).long().to(model.device)
            hidden, _ = model.model(ids)  # final-normed hidden states
            top, idx, tail = topk_logprobs(model.lm_head, hidden.flatten(0, 1), k, chunk)
            b = ids.shape[0]
            logp[s : s + b] = top.view(b, seq_len, k).cpu().numpy().astype(dtype)
            index[s : s + b] = idx.view(b, seq_len, k).int().cpu().numpy()
            rest[s : s + b] = tail.view(b, seq_len).cpu().numpy()
    group.attrs.update({"tokens_sha256": stores.tokens_digest(tokens)})


def _tail_logsumexp(logits, index):
    """log Σ exp(logits) over the entries not in `index` (-inf when there are none)."""
    return logits.scatter(-1, index, float("-inf")).logsumexp(-1)
