"""How the backbone budget is split between attention and MLP (`search.attention_kept: auto`).

The paper holds attention and MLP at the same sparsity. On SmolLM2-135M that split, not the
search, is what limits Týr at 50%: keeping 87.5% of attention and cutting the MLP deeper gives
WikiText-2 65.7 instead of 113.0 with no search at all (bench/attention_share.py). The best
share depends on the model and the target, so it is measured, once per target, before any
search: for the even split and each candidate share a of attention parameters kept, the
near-uniform genome of iteration 1's supernet at that split is scored by its perplexity on
real prose the method does not otherwise see (`search.share_text`, default the Python
documentation, always offline). The lowest wins; every search of the target holds that split.

Why not the calibration's own text: on the self-sampled held-out split the shares rank in
nearly the reverse order of real text's (50%, bench/results/2026-11-28-vm-attention-share-s50.md:
a = 0.625 best at 173.8, 1.0 worst at 193.8; on WikiText-2 and pydoc 0.625 is the worst of the
uneven splits and 1.0 or 0.875 the best): text sampled from the model at temperature 1
leans less on attention than real prose does.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from tyr.core.io import write_json
from tyr.model.spec import SUBLAYERS

log = logging.getLogger(__name__)


def candidate_shares(space, target_sparsity: float, shares) -> list:
    """The even split (None) and every distinct share reachable at the target, in the given order."""
    from tyr.search.space import split_budget

    dense = {s: sum(p for p, k in zip(space.dense, space.kinds) if k == s) for s in SUBLAYERS}
    out, seen = [None], {round(1 - target_sparsity, 6)}
    for a in map(float, shares):
        if round(a, 6) in seen:
            continue
        seen.add(round(a, 6))
        try:
            split_budget(dense, target_sparsity, a)
        except ValueError as e:
            log.info("attention share %g skipped: %s", a, e)
            continue
        out.append(a)
    return out


def share_tokens(model_dir, source, n_seq: int, seq_len: int, seed: int = 0) -> np.ndarray:
    """n_seq disjoint windows of seq_len tokens of `source`, shuffled with `seed`."""
    from transformers import AutoTokenizer

    from tyr.calib.calibrate import split_chunks, token_stream
    from tyr.calib.sources import iter_texts, source_label

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    stream = token_stream(tokenizer, iter_texts(source, hub_split="test"), budget=4 * n_seq * seq_len)
    return split_chunks(stream, {"share": n_seq}, seq_len, seed, source_label(source))["share"]


def choose_share(
    supernet_json,
    model_dir,
    spec_json,
    out_json,
    *,
    target_sparsity: float,
    shares,
    text="pydoc",
    sequences: int = 32,
    seq_len: int = 256,
    seed: int = 0,
    dtype: str = "float32",
    device: str = "cpu",
) -> dict:
    """Score every candidate split's near-uniform genome on `text`; write and return the record."""
    from tyr.calib.sources import source_label
    from tyr.calib.stores import tokens_digest
    from tyr.search import budget
    from tyr.search.fitness import Evaluator
    from tyr.search.select import paired_se
    from tyr.search.space import kept_of, load_space

    base = load_space(supernet_json, spec_json, target_sparsity)
    tokens = share_tokens(model_dir, text, sequences, seq_len, seed)
    ev = Evaluator(supernet_json, model_dir, None, None, split=None, dtype=dtype, device=device)
    ev.use_tokens(tokens, label=source_label(text))
    ev.set_tokens(range(ev.n_seq))
    rows, nll = [], {}
    for a in candidate_shares(base, target_sparsity, shares):
        space = load_space(supernet_json, spec_json, target_sparsity, attention_kept=a)
        genome = budget.near_uniform(space, budget.even_spread)
        nll[a] = ev.sequence_nll(kept_of(space.to_layers(genome)))
        rows.append(
            {
                "attention_kept": a,
                "label": "even" if a is None else f"{a:g}",
                "sparsity": space.sparsity(genome),
                "perplexity": math.exp(float(nll[a].mean())),
            }
        )
        log.info("attention kept %s: perplexity %.2f on %s", rows[-1]["label"], rows[-1]["perplexity"], text)
    best = min(rows, key=lambda r: r["perplexity"])
    for r in rows:  # is the choice above noise? paired over the same sequences
        r["nll_se_vs_chosen"] = 0.0 if r is best else paired_se(nll[r["attention_kept"]], nll[best["attention_kept"]])
    record = {
        "target_sparsity": target_sparsity,
        "supernet": str(supernet_json),
        "text": source_label(text),
        "sequences": int(ev.n_seq),
        "seq_len": int(ev.seq_len),
        "tokens_sha256": tokens_digest(tokens),
        "candidates": rows,
        "chosen": best["attention_kept"],
        "chosen_label": best["label"],
    }
    write_json(out_json, record)
    return record
