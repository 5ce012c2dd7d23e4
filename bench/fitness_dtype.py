"""Fitness computed in float32 vs bfloat16: speed, value drift and candidate ranking.

    python bench/fitness_dtype.py results/<run> [--target 50] [--iteration 1] [--candidates 24] [--sequences 8]
    python bench/fitness_dtype.py --smoke

Scores the same offspring of the iteration's start genome on the same fitness tokens with
both compute dtypes (`search.dtype`: sublayer branches and LM head; the residual stream stays
float32) and reports evaluations per second, the largest absolute difference of the fitness
values, and the Spearman correlation of their rankings (issue 13 asks ≥ 0.98).
Writes bench/results/<date>-<host>-fitness-dtype.md. (bench/results/2026-11-23-vm-head-dtype.md
is this script's first result, under its former name bench/head_dtype.py.) --smoke: 4 offspring
on 2 sequences of a tiny finished run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from lib import args as cli
from lib import results
from lib.env import setup
from lib.tinyrun import smoke_run_args


def ranks(x) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(float)


def main(argv=None):
    ap = cli.parser(__doc__)
    cli.add_run_args(ap, perplexity=False)
    ap.add_argument("--iteration", type=int, default=1)
    ap.add_argument("--candidates", type=int, default=24)
    ap.add_argument("--sequences", type=int, default=8)
    args = ap.parse_args(argv)
    setup(2)
    with cli.workspace(args) as tmp:
        if args.smoke:
            smoke_run_args(args, tmp)
            args.candidates, args.sequences = 4, 2
        values, seconds, tokens = score_both(Path(args.run_dir), args)
        f32, bf16 = values["float32"], values["bfloat16"]
        spearman = float(np.corrcoef(ranks(f32), ranks(bf16))[0, 1])
        lines = [
            f"# Fitness compute dtype: {args.run_dir} s{args.target} iteration {args.iteration}",
            "",
            f"`{' '.join(sys.argv)}`",
            "",
            "| compute dtype | evaluations/s |",
            "|---|---|",
        ]
        lines += [f"| {dtype} | {len(f32) / seconds[dtype]:.3f} |" for dtype in values]
        lines += [
            "",
            f"{len(f32)} offspring of the start genome, {args.sequences} fitness sequences "
            f"({tokens} tokens). Speed-up {seconds['float32'] / seconds['bfloat16']:.2f}×; "
            f"largest |Δfitness| {np.abs(f32 - bf16).max():.2e} (fitness spread {f32.std():.3f}); "
            f"Spearman rank correlation {spearman:.4f}.",
        ]
        results.write("fitness-dtype", lines, out=args.out)


def score_both(run: Path, args):
    """The same offspring scored in float32 and in bfloat16 (warm module caches, as in a running
    search): their fitness values, the seconds of each pass, and the tokens scored."""
    from tyr.search.budget import start_genome
    from tyr.search.evolve import make_offspring
    from tyr.search.fitness import Evaluator
    from tyr.search.space import load_space
    from tyr.workflow.config import tag_target

    supernet = run / f"s{args.target}" / f"iter{args.iteration}" / "supernet" / "supernet.json"
    space = load_space(supernet, run / "model" / "spec.json", tag_target(args.target))
    rng = np.random.default_rng(0)
    parent = start_genome(space, rng)
    children = [space.kept_units(c) for c in make_offspring(parent, space, rng, args.candidates, 4)]
    values, seconds = {}, {}
    for dtype in ("float32", "bfloat16"):
        ev = Evaluator(supernet, run / "model", run / "dense" / "topk.zarr", run / "calib" / "tokens.zarr", dtype=dtype)
        ev.set_tokens(list(range(args.sequences)))
        ev.set_parent(space.kept_units(parent))
        for c in children:  # warm the module cache, as in a running search
            ev.fitness(c)
        t0 = time.perf_counter()
        values[dtype] = np.array([ev.fitness(c) for c in children])
        seconds[dtype] = time.perf_counter() - t0
    return values, seconds, ev.n_positions


if __name__ == "__main__":
    main()
