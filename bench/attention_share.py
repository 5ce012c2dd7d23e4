"""How the backbone budget is split between attention and MLP, measured without search.

    python bench/attention_share.py results/<run> [--target 50] [--shares default 0.75 1.0] [--wikitext FILE]
    python bench/attention_share.py --smoke

For each share a of attention parameters kept (`default` = 1 − target, the paper's even split
and `uniform`'s), the near-uniform genome of iteration 1's supernet at that split
(`search.attention_kept`: attention keeps a, the MLP the rest of the same total) is exported
and scored on three kinds of text: WikiText-2 test (windows of --seq-len), the Python
documentation (`pydoc`, 64 windows of 256 tokens: real prose the method never saw), and the
run's held-out split (self-sampled text, the calibration's distribution). Every row is at the
target backbone sparsity (the sparsity column says by how much it differs).
Writes bench/results/<date>-<host>-attention-share-s<target>.{md,json}. --smoke: two shares
of a tiny finished run, short windows, its generated text as "WikiText-2".
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from lib import args as cli
from lib import results
from lib.env import setup, wikitext_path
from lib.tinyrun import smoke_run_args

PYDOC = (64, 256)  # windows × tokens of the Python documentation


def genome_at(run: Path, target: str, share: float | None, out: Path) -> Path:
    """The near-uniform genome file of iteration 1's supernet with attention keeping `share`."""
    from tyr.core.io import write_json
    from tyr.search import budget
    from tyr.search.space import load_space

    supernet = run / f"s{target}" / "iter1" / "supernet" / "supernet.json"
    space = load_space(supernet, run / "model" / "spec.json", int(target) / 100, attention_kept=share)
    genome = budget.near_uniform(space, budget.even_spread)
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / "genome.json",
        {
            "iteration": 1,
            "supernet": str(supernet),
            "target_sparsity": int(target) / 100,
            "sparsity": space.sparsity(genome),
            "layers": space.to_layers(genome),
            "attention_kept": share,
        },
    )
    return out / "genome.json"


def score(run: Path, genome_json: Path, out: Path, wikitext: list[str], args) -> dict:
    from tyr.calib.sources import read_texts
    from tyr.evaluate.measure import load
    from tyr.evaluate.perplexity import heldout_perplexity, perplexity
    from tyr.export.hf import export

    t0 = time.perf_counter()
    summary = export(run / "model", run / "model" / "spec.json", genome_json, out / "pruned", method="attention_share")
    model, tokenizer = load(out / "pruned")
    row = {
        "sparsity": summary["sparsity"],
        "heads_kept": sum(s["q_heads"] for s in summary["layers"]),
        "channels_kept": sum(s["intermediate"] for s in summary["layers"]),
        "wikitext2": perplexity(model, tokenizer, wikitext, seq_len=args.seq_len, max_windows=args.windows)[
            "perplexity"
        ],
        "pydoc": perplexity(model, tokenizer, read_texts("pydoc"), seq_len=args.pydoc[1], max_windows=args.pydoc[0])[
            "perplexity"
        ],
        "heldout": heldout_perplexity(model, run / "calib" / "tokens.zarr")["perplexity"],
    }
    row["seconds"] = round(time.perf_counter() - t0, 1)
    shutil.rmtree(out / "pruned")  # 0.5 GB each; the row is what the benchmark keeps
    return row


def main(argv=None):
    ap = cli.parser(__doc__)
    cli.add_run_args(ap)
    ap.add_argument("--shares", nargs="+", default=["default", "0.625", "0.75", "0.875", "1.0"])
    args = ap.parse_args(argv)
    setup(1)
    with cli.workspace(args) as tmp:
        args.pydoc = PYDOC
        if args.smoke:
            smoke_run_args(args, tmp)
            args.shares, args.pydoc = ["default", "1.0"], (2, args.seq_len)
        from tyr.calib.sources import read_texts

        run = Path(args.run_dir)
        wikitext = read_texts(wikitext_path(args.wikitext))
        rows = []
        for label in args.shares:
            share = None if label == "default" else float(label)
            out = run / "bench" / "attention_share" / f"s{args.target}" / label
            cached = out / "row.json"
            if not cached.exists():
                row = {"share": label, **score(run, genome_at(run, args.target, share, out), out, wikitext, args)}
                cached.write_text(json.dumps(row) + "\n")
            rows.append(json.loads(cached.read_text()))
            print(json.dumps(rows[-1]), flush=True)
        report(rows, run, args)


def report(rows, run: Path, args) -> None:
    base = next((r for r in rows if r["share"] == "default"), rows[0])
    lines = [
        f"# Attention/MLP split at {args.target}%, no search (near-uniform genomes of iteration 1's supernet)",
        "",
        f"`bench/attention_share.py {run} --target {args.target} --shares {' '.join(r['share'] for r in rows)}`",
        "",
        f"WikiText-2 test: {args.windows} × {args.seq_len} tokens; pydoc: {args.pydoc[0]} × {args.pydoc[1]}; "
        "held-out: the run's "
        "self-sampled split. `default` keeps 1 − target of attention (the even split, as `uniform`).",
        "",
        "| attention kept | sparsity | heads kept | MLP channels kept | WikiText-2 | pydoc | held-out | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['share']} | {100 * r['sparsity']:.2f}% | {r['heads_kept']} | {r['channels_kept']} | "
            f"{r['wikitext2']:.2f} ({r['wikitext2'] / base['wikitext2']:.2f}×) | {r['pydoc']:.2f} | "
            f"{r['heldout']:.2f} | {r['seconds']:.0f} |"
        )
    results.write(
        f"attention-share-s{args.target}", lines, {"run": str(run), "target": args.target, "rows": rows}, out=args.out
    )


if __name__ == "__main__":
    main()
