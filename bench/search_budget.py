"""Search budget against quality: one iteration's supernet searched for more and more generations.

    .venv/bin/python bench/search_budget.py results/<run> [--target 50] [--iteration 1]
        [--generations 10 20 40] [--windows 8]

Runs the default search (same seed, offspring and stages as the run's config) on the
iteration's supernet, continuing one random stream through the growing generation counts
(a search resumed with more generations simply goes on), exports the best genome after each
count and measures WikiText-2 perplexity on the same windows as the run's evaluation, next to
the uniform genome. Writes bench/results/<date>-<host>-search-budget.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import ROOT, add_run_args, genome_perplexity, write_result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap)
    ap.add_argument("--iteration", type=int, default=1)
    ap.add_argument("--generations", type=int, nargs="+", default=[10, 20, 40])
    args = ap.parse_args(argv)

    import torch

    from tyr.evaluate.perplexity import read_texts
    from tyr.search.evolve import run_search
    from tyr.workflow.config import tag_target

    torch.set_num_threads(2)
    run = Path(args.run_dir)
    search = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["search"]
    model, spec = run / "model", run / "model" / "spec.json"
    it = run / f"s{args.target}" / f"iter{args.iteration}"
    texts = read_texts(args.wikitext)

    def ppl_of(genome, out):
        return genome_perplexity(run, genome, out, texts, args, supernet_json=it / "supernet" / "supernet.json")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows.append(("uniform", None, None, None, ppl_of(run / f"s{args.target}" / "uniform" / "genome.json",
                                                        tmp / "uniform")))
        t0 = time.perf_counter()
        for g in sorted(args.generations):
            best = run_search(it / "supernet" / "supernet.json", run / "dense" / "topk.zarr",
                              run / "calib" / "tokens.zarr", model, spec, tmp / "search",
                              target_sparsity=tag_target(args.target), offspring=search["offspring"],
                              generations=g, stages=search["stages"], seed=search["seed"] + 1000 * args.iteration,
                              max_swaps=search["max_swaps"], dtype=search.get("dtype", "float32"),
                              iteration=args.iteration, progress=False)
            seconds = time.perf_counter() - t0
            ppl = ppl_of(tmp / "search" / "best.json", tmp / f"g{g}")
            rows.append((f"{g} generations", g, best["fitness"], seconds, ppl))
            print(f"[search-budget] {g} generations: fitness {best['fitness']:.4f} ppl {ppl:.2f}", file=sys.stderr,
                  flush=True)
    lines = [f"# Search budget: {run} s{args.target} iteration {args.iteration}", "", f"`{' '.join(sys.argv)}`", "",
             "| genome | generations | search fitness (KL) | search seconds (cumulative) | WikiText-2 ppl |",
             "|---|---|---|---|---|"]
    for name, g, fit, sec, ppl in rows:
        lines.append(f"| {name} | {g or '–'} | {'–' if fit is None else f'{fit:.4f}'} | "
                     f"{'–' if sec is None else f'{sec:.0f}'} | {ppl:.2f} |")
    lines.append(f"\n{search['offspring']} offspring per generation, stages {search['stages']}; "
                 f"{args.windows} windows × {args.seq_len} tokens of WikiText-2 test.")
    write_result("search-budget", lines)


if __name__ == "__main__":
    main()
