"""How many tokens a selection stage needs before its decision is more than noise.

    .venv/bin/python bench/selection_noise.py results/<run> [--target 50] [--iteration 1] [--children 8]

On a finished run: the search's start genome of one iteration and `--children` offspring of it
(one to four level swaps, as the search makes them), each scored on every sequence of the
fitness split. For a stage of n sequences, the paired standard error of a child's fitness
difference to its parent is sd(Δ)/√n (Δ: per-sequence KL differences); the stage can tell a
child from its parent when that is below half the typical |mean Δ|. Writes
bench/results/<date>-<host>-selection-noise.md with the n (and tokens) that meets it.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from common import add_run_args, write_result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap, perplexity=False)
    ap.add_argument("--iteration", type=int, default=1)
    ap.add_argument("--children", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    from tyr.core.io import read_json
    from tyr.search.evolve import make_offspring
    from tyr.search.fitness import Evaluator
    from tyr.search.space import load_space

    torch.set_num_threads(int(__import__("os").environ.get("TYR_THREADS", "2")))
    run = Path(args.run_dir)
    it = run / f"s{args.target}" / f"iter{args.iteration}"
    best = read_json(it / "search" / "best.json")
    space = load_space(it / "supernet" / "supernet.json", run / "model" / "spec.json", best["target_sparsity"])
    parent = space.from_layers(best["start"]["layers"])
    children = make_offspring(parent, space, np.random.default_rng(args.seed), args.children)
    ev = Evaluator(it / "supernet" / "supernet.json", run / "model", run / "dense" / "topk.zarr",
                   run / "calib" / "tokens.zarr", dtype="bfloat16")
    ev.set_tokens(range(ev.n_seq))
    base = ev.sequence_kl(space.kept_units(parent))
    deltas = [ev.sequence_kl(space.kept_units(c)) - base for c in children]
    sd = np.array([d.std(ddof=1) for d in deltas])
    effect = np.array([abs(d.mean()) for d in deltas])
    rows = []
    for n in (2, 4, 6, 8, 16, 32, 64):
        if n <= ev.n_seq:
            se = sd / math.sqrt(n)
            rows.append((n, n * ev.seq_len, float(np.median(se)), float(np.mean(se < effect / 2))))
    need = math.ceil((2 * np.median(sd) / np.median(effect)) ** 2)
    lines = [f"# Selection-stage noise: {run} s{args.target} iteration {args.iteration}", "", f"`{' '.join(sys.argv)}`", "",
             f"Parent: the search's start genome (KL {base.mean():.4f} on all {ev.n_seq} fitness sequences). "
             f"{len(children)} offspring; median |mean Δ| = {np.median(effect):.5f}, median sd(Δ) per sequence = "
             f"{np.median(sd):.5f}.", "",
             "| sequences | tokens | median paired SE | share of children with SE < |Δ|/2 |", "|---|---|---|---|"]
    lines += [f"| {n} | {t} | {se:.5f} | {share:.2f} |" for n, t, se, share in rows]
    lines += ["", f"A stage needs about {need} sequences ({need * ev.seq_len} tokens) for a median child's "
              f"difference to be twice its standard error."]
    write_result(f"selection-noise-s{args.target}", lines)


if __name__ == "__main__":
    main()
