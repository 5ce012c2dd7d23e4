"""Search budget against quality: one iteration's supernet searched for more and more generations.

    python bench/search_budget.py results/<run> [--target 50] [--iteration 1] [--generations 10 20 40]
        [--windows 8] [--wikitext FILE]
    python bench/search_budget.py --smoke

Runs the default search (same seed, offspring and stages as the run's config) on the
iteration's supernet, continuing one random stream through the growing generation counts
(a search resumed with more generations simply goes on), exports the best genome after each
count and measures WikiText-2 perplexity on the same windows as the run's evaluation, next to
the uniform genome. Writes bench/results/<date>-<host>-search-budget.md. --smoke: 1 and 2
generations of the tiny preset's search on a tiny finished run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from lib import args as cli
from lib import results
from lib.config import default_config, search_options
from lib.env import setup, wikitext_path
from lib.exported import genome_perplexity
from lib.tinyrun import smoke_run_args


def main(argv=None):
    ap = cli.parser(__doc__)
    cli.add_run_args(ap)
    ap.add_argument("--iteration", type=int, default=1)
    ap.add_argument("--generations", type=int, nargs="+", default=[10, 20, 40])
    args = ap.parse_args(argv)
    setup(2)
    with cli.workspace(args) as tmp:
        if args.smoke:
            smoke_run_args(args, tmp)
            args.generations = [1, 2]
        search = default_config(smoke=args.smoke)["search"]
        rows = budget_rows(Path(args.run_dir), search, args)
        lines = [
            f"# Search budget: {args.run_dir} s{args.target} iteration {args.iteration}",
            "",
            f"`{' '.join(sys.argv)}`",
            "",
            "| genome | generations | search fitness (KL) | search seconds (cumulative) | WikiText-2 ppl |",
            "|---|---|---|---|---|",
        ]
        for name, g, fit, sec, ppl in rows:
            lines.append(
                f"| {name} | {g or '–'} | {'–' if fit is None else f'{fit:.4f}'} | "
                f"{'–' if sec is None else f'{sec:.0f}'} | {ppl:.2f} |"
            )
        lines.append(
            f"\n{search['offspring']} offspring per generation, stages {search['stages']}; "
            f"{args.windows} windows × {args.seq_len} tokens of WikiText-2 test."
        )
        results.write("search-budget", lines, out=args.out)


def budget_rows(run: Path, search: dict, args) -> list[tuple]:
    """The uniform genome, then the search's best after each generation count (one search resumed
    with more generations each time): name, generations, fitness, cumulative seconds, perplexity."""
    from tyr.evaluate.perplexity import read_texts
    from tyr.search.evolve import run_search
    from tyr.workflow.config import tag_target

    it = run / f"s{args.target}" / f"iter{args.iteration}"
    texts = read_texts(wikitext_path(args.wikitext))

    def ppl_of(genome, out):
        return genome_perplexity(
            run,
            genome,
            out,
            texts,
            seq_len=args.seq_len,
            windows=args.windows,
            supernet_json=it / "supernet" / "supernet.json",
        )

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = [
            ("uniform", None, None, None, ppl_of(run / f"s{args.target}" / "uniform" / "genome.json", tmp / "uniform"))
        ]
        t0 = time.perf_counter()
        for g in sorted(args.generations):
            options = dict(search_options(search, args.iteration), generations=g)
            best = run_search(
                it / "supernet" / "supernet.json",
                run / "dense" / "topk.zarr",
                run / "calib" / "tokens.zarr",
                run / "model",
                run / "model" / "spec.json",
                tmp / "search",
                target_sparsity=tag_target(args.target),
                iteration=args.iteration,
                progress=False,
                **options,
            )
            seconds = time.perf_counter() - t0
            ppl = ppl_of(tmp / "search" / "best.json", tmp / f"g{g}")
            rows.append((f"{g} generations", g, best["fitness"], seconds, ppl))
            print(
                f"[search-budget] {g} generations: fitness {best['fitness']:.4f} ppl {ppl:.2f}",
                file=sys.stderr,
                flush=True,
            )
    return rows


if __name__ == "__main__":
    main()
