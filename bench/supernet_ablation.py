"""Supernet ablations on the real model: what compensation, accumulation and calibration data buy.

    python bench/supernet_ablation.py --model results/smollm2-135m/model [--wikitext FILE] \
        --tokens pydoc=results/abl/pydoc.zarr --tokens self=results/abl/self.zarr \
        --variant full:pydoc --variant no_compensation:pydoc:compensate=0 \
        --variant dense_accumulation:pydoc:accumulate=dense --variant full_self:self
    python bench/supernet_ablation.py --smoke

For every variant: build iteration 1's supernet for the target (9 levels, Δ = 12.5%) with
`tyr.testing.build_supernet`, take the uniform genome (every sublayer at the target level),
export it, and measure WikiText-2 test perplexity. Missing token stores are created with
`tyr.calib.calibrate.calibrate` from the named source (pydoc, self, or a local file).
Writes bench/results/<date>-<host>-supernet-ablation[<tag>].{json,md}. --smoke: a tiny random
model, a token store made from a generated text, two variants (full, no compensation).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from lib import args as cli
from lib import results
from lib.env import ROOT, setup, wikitext_path
from lib.tinyrun import SEQ_LEN, text_of, tiny_run


def parse_options(text: str) -> dict:
    out = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=")
        out[key] = {"0": False, "1": True}.get(value, value)
    return out


def ensure_tokens(model_dir: Path, path: Path, source: str, args) -> None:
    from tyr.calib.calibrate import calibrate

    if not path.exists():
        t0 = time.perf_counter()
        source, _, temperature = source.partition("@")  # self@0.8: sampled at temperature 0.8
        calibrate(
            model_dir,
            path,
            source=source,
            seq_len=args.seq_len,
            n_prune=args.prune_sequences,
            n_fitness=args.fitness_sequences,
            n_selection=0,
            n_heldout=0,
            seed=0,
            temperature=float(temperature or 1.0),
        )
        print(f"[ablation] calibration {source}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def run_variant(name, tokens, options, args, work: Path) -> dict:
    from tyr.evaluate.measure import load
    from tyr.evaluate.perplexity import perplexity, read_texts
    from tyr.export.hf import export
    from tyr.search.budget import uniform_genome
    from tyr.supernet.levels import write_levels
    from tyr.testing import build_supernet as build_all

    model_dir, spec = Path(args.model), Path(args.model) / "spec.json"
    out = work / name
    levels = out / "levels.json"
    write_levels(spec, levels, target_sparsity=args.target, delta=0.125, n_levels=9, iteration=1, mlp_group=16)
    t0 = time.perf_counter()
    supernet = build_all(model_dir, spec, levels, tokens, out, **options)
    build_s = time.perf_counter() - t0
    genome = out / "uniform" / "genome.json"
    uniform_genome(supernet, spec, genome, target_sparsity=args.target)
    export(model_dir, spec, genome, out / "uniform" / "pruned", method="uniform")
    model, tok = load(out / "uniform" / "pruned")
    ppl = perplexity(
        model, tok, read_texts(wikitext_path(args.wikitext)), seq_len=args.eval_seq_len, max_windows=args.windows
    )
    disk = sum(f.stat().st_size for f in (out / "supernet").rglob("*") if f.is_file())
    row = {
        "variant": name,
        "options": options,
        "tokens": str(tokens),
        "build_seconds": build_s,
        "supernet_disk_bytes": disk,
        "perplexity": ppl["perplexity"],
        "windows": ppl["windows"],
        "seq_len": ppl["seq_len"],
    }
    print(f"[ablation] {json.dumps(row)}", file=sys.stderr, flush=True)
    return row


def parse(argv):
    ap = cli.parser(__doc__)
    ap.add_argument("--model", help="prepared model folder (with spec.json)")
    ap.add_argument(
        "--tokens",
        action="append",
        default=[],
        help="NAME=PATH[=SOURCE] of a tokens.zarr, made from SOURCE (default NAME) if missing",
    )
    ap.add_argument("--variant", action="append", default=[], help="NAME:TOKENS[:key=value,...]")
    ap.add_argument("--target", type=float, default=0.5)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--prune-sequences", type=int, default=64)
    ap.add_argument("--fitness-sequences", type=int, default=64)
    ap.add_argument("--wikitext", default=None, help="WikiText-2 test file (default $TYR_DATA_DIR/wikitext-2/test.txt)")
    ap.add_argument("--eval-seq-len", type=int, default=2048)
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--work", default=str(ROOT / "results" / "ablation"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tag", default="", help="suffix of the result file name")
    args = ap.parse_args(argv)
    if not args.smoke and not (args.model and args.variant):
        ap.error("--model and at least one --variant are required without --smoke")
    return args


def smoke_args(args, tmp: Path) -> None:
    """A tiny model, a token store to be made from its generated text, two variants."""
    run = tiny_run(tmp / "run")
    args.model, args.work, args.wikitext = str(run / "model"), str(tmp / "ablation"), str(text_of(run))
    args.tokens = [f"text={tmp / 'text.zarr'}={text_of(run)}"]
    args.variant = ["full:text", "no_compensation:text:compensate=0"]
    args.seq_len, args.prune_sequences, args.fitness_sequences = SEQ_LEN, 8, 8
    args.eval_seq_len, args.windows = SEQ_LEN, 2


def main(argv=None):
    args = parse(argv)
    setup(args.threads)
    with cli.workspace(args) as tmp:
        if args.smoke:
            smoke_args(args, tmp)
        work, tokens = Path(args.work), {}
        for item in args.tokens:
            name, path, *source = item.split("=")
            tokens[name] = Path(path)
            ensure_tokens(Path(args.model), tokens[name], source[0] if source else name, args)
        rows = []
        for v in args.variant:
            name, token_name, *rest = v.split(":")
            rows.append(run_variant(name, tokens[token_name], parse_options(rest[0] if rest else ""), args, work))
        report(rows, args)


def report(rows: list[dict], args) -> None:
    result = {
        "date": results.today(),
        "host": results.host(),
        "command": " ".join(sys.argv),
        "target": args.target,
        "rows": rows,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    lines = [
        f"# Supernet ablation, uniform {args.target:.0%} ({result['date']}, {result['host']})",
        "",
        f"`{result['command']}`",
        "",
        "| variant | options | calibration | WikiText-2 ppl | build (s) | disk (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['options'] or 'paper'} | {Path(r['tokens']).name} | "
            f"{r['perplexity']:.2f} | "
            f"{r['build_seconds']:.0f} | {r['supernet_disk_bytes'] / 2**20:.0f} |"
        )
    lines.append(
        f"\nPerplexity: {rows[0]['windows']} windows × {rows[0]['seq_len']} tokens of WikiText-2 test. "
        f"Peak RSS {result['peak_rss_gb']:.2f} GB."
    )
    results.write(f"supernet-ablation{args.tag}", lines, result, out=args.out)


if __name__ == "__main__":
    main()
