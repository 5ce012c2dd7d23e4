"""The final Týr genome: the best of the search's start and every iteration's best, chosen on
tokens no search ever saw (the calibration `selection` split).

A coarse-to-fine iteration can lower the search's own objective and still be worse on new
text (measured: iteration 4 raised WikiText-2 perplexity at both 25% and 50%), and iteration
1 can end worse than where it started. So each candidate, under its own iteration's supernet,
is scored by its KL to the dense model on every sequence of the selection split; the lowest
mean wins. Per-sequence values make the decision auditable: the paired standard error of
each candidate's difference to the winner says whether the choice is above noise.
"""

from __future__ import annotations

import math

import numpy as np

from tyr.calib import stores
from tyr.core.io import read_json, write_json
from tyr.search.space import kept_of


def candidates(best_jsons) -> list[dict]:
    """{name, layers, supernet, ...} of iteration 1's start and of every iteration's best."""
    out = []
    for path in best_jsons:
        best = read_json(path)
        if best.get("start") and not out:  # the first iteration's start genome
            out.append(
                {
                    "name": "start",
                    **best["start"],
                    "supernet": best["supernet"],
                    "iteration": best["iteration"],
                    "generations": 0,
                    "path": str(path),
                }
            )
        out.append(
            {
                "name": f"iter{best['iteration']}",
                "layers": best["layers"],
                "supernet": best["supernet"],
                "iteration": best["iteration"],
                "sparsity": best["sparsity"],
                "generations": best.get("generations"),
                "path": str(path),
            }
        )
    return out


def score(cands, model_dir, topk_zarr, tokens_zarr, *, dtype="float32", device="cpu", batch_size=4) -> dict:
    """Per-sequence KL of every candidate on the whole selection split, {name: array}."""
    from tyr.search.fitness import Evaluator

    by_supernet, out = {}, {}
    for c in cands:
        by_supernet.setdefault(c["supernet"], []).append(c)
    for supernet, group in by_supernet.items():
        ev = Evaluator(
            supernet,
            model_dir,
            topk_zarr,
            tokens_zarr,
            split=stores.SELECTION,
            dtype=dtype,
            device=device,
            batch_size=batch_size,
        )
        ev.set_tokens(range(ev.n_seq))
        for c in group:
            out[c["name"]] = ev.sequence_kl(kept_of(c["layers"]))
        del ev
    return out


def paired_se(a: np.ndarray, b: np.ndarray) -> float:
    """Standard error of mean(a - b) over paired sequences."""
    d = np.asarray(a) - np.asarray(b)
    return float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")


def select_genome(best_jsons, model_dir, topk_zarr, tokens_zarr, out_json, *, dtype="float32", device="cpu") -> dict:
    """Write the chosen genome (in best.json's format) with the record of the choice."""
    cands = candidates(best_jsons)
    kl = score(cands, model_dir, topk_zarr, tokens_zarr, dtype=dtype, device=device)
    chosen = min(cands, key=lambda c: (float(kl[c["name"]].mean()), -cands.index(c)))
    record = {
        c["name"]: {
            "kl": float(kl[c["name"]].mean()),
            "se_vs_chosen": paired_se(kl[c["name"]], kl[chosen["name"]]),
            "sparsity": c.get("sparsity"),
            "iteration": c["iteration"],
            "generations": c["generations"],
        }
        for c in cands
    }
    runner_up = min((r["kl"] - record[chosen["name"]]["kl"], n) for n, r in record.items() if n != chosen["name"])
    best = read_json(chosen["path"])
    genome = {
        **best,
        "layers": chosen["layers"],
        "sparsity": chosen["sparsity"],
        "chosen": chosen["name"],
        "selection": {
            "split": stores.SELECTION,
            "sequences": int(len(kl[chosen["name"]])),
            "candidates": record,
            "margin": runner_up[0],
            "margin_se": record[runner_up[1]]["se_vs_chosen"],
        },
    }
    genome.pop("start", None)
    write_json(out_json, genome)
    return genome
