"""How many tokens a selection stage needs before its decision is more than noise.

    python bench/selection_noise.py results/<run> [--target 50] [--iteration 1] [--children 8]
    python bench/selection_noise.py --smoke

On a finished run: the search's start genome of one iteration and `--children` offspring of it
(one to four level swaps, as the search makes them), each scored on every sequence of the
fitness split. For a stage of n sequences, the paired standard error of a child's fitness
difference to its parent is sd(Δ)/√n (Δ: per-sequence KL differences); the stage can tell a
child from its parent when that is below half the typical |mean Δ|. Writes
bench/results/<date>-<host>-selection-noise-s<target>.md with the n (and tokens) that meets it.
--smoke: 3 children on a tiny finished run.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from lib import args as cli
from lib import results
from lib.env import setup
from lib.tinyrun import smoke_run_args


def main(argv=None):
    ap = cli.parser(__doc__)
    cli.add_run_args(ap, perplexity=False)
    ap.add_argument("--iteration", type=int, default=1)
    ap.add_argument("--children", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    setup(args.threads)
    with cli.workspace(args) as tmp:
        if args.smoke:
            smoke_run_args(args, tmp)
            args.children = 3
        base, deltas, n_seq, seq_len = paired_deltas(Path(args.run_dir), args)
        sd = np.array([d.std(ddof=1) for d in deltas])
        effect = np.array([abs(d.mean()) for d in deltas])
        rows = [
            (n, n * seq_len, float(np.median(sd / math.sqrt(n))), float(np.mean(sd / math.sqrt(n) < effect / 2)))
            for n in (2, 4, 6, 8, 16, 32, 64)
            if n <= n_seq
        ]
        need = math.ceil((2 * np.median(sd) / np.median(effect)) ** 2)
        lines = [
            f"# Selection-stage noise: {args.run_dir} s{args.target} iteration {args.iteration}",
            "",
            f"`{' '.join(sys.argv)}`",
            "",
            f"Parent: the search's start genome (KL {base.mean():.4f} on all {n_seq} fitness sequences). "
            f"{len(deltas)} offspring; median |mean Δ| = {np.median(effect):.5f}, median sd(Δ) per sequence = "
            f"{np.median(sd):.5f}.",
            "",
            "| sequences | tokens | median paired SE | share of children with SE < |Δ|/2 |",
            "|---|---|---|---|",
        ]
        lines += [f"| {n} | {t} | {se:.5f} | {share:.2f} |" for n, t, se, share in rows]
        lines += [
            "",
            f"A stage needs about {need} sequences ({need * seq_len} tokens) for a median child's "
            f"difference to be twice its standard error.",
        ]
        results.write(f"selection-noise-s{args.target}", lines, out=args.out)


def paired_deltas(run: Path, args):
    """The start genome's per-sequence KL on every fitness sequence, and each child's difference to it."""
    from tyr.core.io import read_json
    from tyr.search.evolve import make_offspring
    from tyr.search.fitness import Evaluator
    from tyr.search.space import load_space

    it = run / f"s{args.target}" / f"iter{args.iteration}"
    best = read_json(it / "search" / "best.json")
    space = load_space(it / "supernet" / "supernet.json", run / "model" / "spec.json", best["target_sparsity"])
    parent = space.from_layers(best["start"]["layers"])
    children = make_offspring(parent, space, np.random.default_rng(args.seed), args.children)
    ev = Evaluator(
        it / "supernet" / "supernet.json",
        run / "model",
        run / "dense" / "topk.zarr",
        run / "calib" / "tokens.zarr",
        dtype="bfloat16",
    )
    ev.set_tokens(range(ev.n_seq))
    base = ev.sequence_kl(space.kept_units(parent))
    return base, [ev.sequence_kl(space.kept_units(c)) - base for c in children], ev.n_seq, ev.seq_len


if __name__ == "__main__":
    main()
