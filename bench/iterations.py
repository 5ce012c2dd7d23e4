"""WikiText-2 perplexity after each coarse-to-fine iteration of a finished run.

    .venv/bin/python bench/iterations.py results/<run> [--target 50] [--windows 8] [--seq-len 2048]

Exports each iteration's best genome (and the uniform genome) to a temporary folder and
measures perplexity on the same windows as the run's evaluation, and the search's own
objective on the whole fitness split (KL to the dense model over all its sequences, float32
head; the search itself only sees small fresh samples). Prints a markdown table and writes
it to bench/results/<date>-<host>-iterations-s<target>.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import add_run_args, genome_perplexity, write_result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap)
    args = ap.parse_args(argv)

    import torch

    from tyr.core.io import read_json
    from tyr.evaluate.perplexity import read_texts
    from tyr.search.fitness import Evaluator

    torch.set_num_threads(2)
    run = Path(args.run_dir)
    model, base = run / "model", run / f"s{args.target}"
    texts = read_texts(args.wikitext)
    genomes = [("uniform", base / "uniform" / "genome.json")]
    genomes += [(f"iter{i}", p) for i, p in sorted((int(p.parts[-3][4:]), p) for p in base.glob("iter*/search/best.json"))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, genome in genomes:
            ppl = genome_perplexity(run, genome, Path(tmp) / name, texts, args, method=name)
            g = read_json(genome)
            supernet = base / ("iter1" if name == "uniform" else name) / "supernet" / "supernet.json"
            ev = Evaluator(supernet, model, run / "dense" / "topk.zarr", run / "calib" / "tokens.zarr")
            ev.set_tokens(range(ev.n_seq))
            kl = ev.fitness([x for layer in g["layers"] for x in (layer["attn"], layer["mlp"])], incremental=False)
            del ev
            rows.append((name, g.get("sparsity"), g.get("fitness"), kl, ppl))
            print(f"[iterations] {name} ppl {ppl:.2f}", file=sys.stderr, flush=True)
    lines = [f"# Perplexity per iteration: {run} s{args.target}", "", f"`{' '.join(sys.argv)}`", "",
             "| genome | backbone sparsity | search fitness (KL, last sample) | KL, whole fitness split | "
             "WikiText-2 ppl |", "|---|---|---|---|---|"]
    for name, sp, fit, kl, ppl in rows:
        lines.append(f"| {name} | {sp:.4f} | {'–' if fit is None else f'{fit:.4f}'} | {kl:.4f} | {ppl:.2f} |")
    lines.append(f"\n{args.windows} windows × {args.seq_len} tokens of WikiText-2 test.")
    write_result(f"iterations-s{args.target}", lines)


if __name__ == "__main__":
    main()
