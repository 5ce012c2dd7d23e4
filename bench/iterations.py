"""WikiText-2 perplexity after each coarse-to-fine iteration of a finished run.

    python bench/iterations.py results/<run> [--target 50] [--windows 8] [--seq-len 2048] [--wikitext FILE]
    python bench/iterations.py --smoke

Exports each iteration's best genome (and the uniform genome) to a temporary folder and
measures perplexity on the same windows as the run's evaluation, and the search's own
objective on the whole fitness split (KL to the dense model over all its sequences, float32
head; the search itself only sees small fresh samples). Prints a markdown table and writes
it to bench/results/<date>-<host>-iterations-s<target>.md. --smoke: a tiny finished run (one
iteration), two short windows of its generated text.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from lib import args as cli
from lib import results
from lib.env import setup, wikitext_path
from lib.exported import genome_perplexity
from lib.tinyrun import smoke_run_args


def main(argv=None):
    ap = cli.parser(__doc__)
    cli.add_run_args(ap)
    args = ap.parse_args(argv)
    setup(2)
    with cli.workspace(args) as tmp:
        if args.smoke:
            smoke_run_args(args, tmp)
        rows = score(Path(args.run_dir), args)
        lines = [
            f"# Perplexity per iteration: {args.run_dir} s{args.target}",
            "",
            f"`{' '.join(sys.argv)}`",
            "",
            "| genome | backbone sparsity | search fitness (KL, last sample) | KL, whole fitness split | "
            "WikiText-2 ppl |",
            "|---|---|---|---|---|",
        ]
        for name, sp, fit, kl, ppl in rows:
            lines.append(f"| {name} | {sp:.4f} | {'–' if fit is None else f'{fit:.4f}'} | {kl:.4f} | {ppl:.2f} |")
        lines.append(f"\n{args.windows} windows × {args.seq_len} tokens of WikiText-2 test.")
        results.write(f"iterations-s{args.target}", lines, out=args.out)


def score(run: Path, args) -> list[tuple]:
    """Per genome (uniform, then each iteration's best): sparsity, its search fitness, its KL on the
    whole fitness split (float32, full forward) and its WikiText-2 perplexity."""
    from tyr.core.io import read_json
    from tyr.evaluate.perplexity import read_texts
    from tyr.search.fitness import Evaluator
    from tyr.search.space import kept_of

    model, base = run / "model", run / f"s{args.target}"
    texts = read_texts(wikitext_path(args.wikitext))
    genomes = [("uniform", base / "uniform" / "genome.json")]
    bests = sorted((int(p.parts[-3][4:]), p) for p in base.glob("iter*/search/best.json"))
    genomes += [(f"iter{i}", p) for i, p in bests]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, genome in genomes:
            ppl = genome_perplexity(
                run, genome, Path(tmp) / name, texts, seq_len=args.seq_len, windows=args.windows, method=name
            )
            g = read_json(genome)
            supernet = base / ("iter1" if name == "uniform" else name) / "supernet" / "supernet.json"
            ev = Evaluator(supernet, model, run / "dense" / "topk.zarr", run / "calib" / "tokens.zarr")
            ev.set_tokens(range(ev.n_seq))
            kl = ev.fitness(kept_of(g["layers"]), incremental=False)
            del ev
            rows.append((name, g.get("sparsity"), g.get("fitness"), kl, ppl))
            print(f"[iterations] {name} ppl {ppl:.2f}", file=sys.stderr, flush=True)
    return rows


if __name__ == "__main__":
    main()
