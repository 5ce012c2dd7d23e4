"""Recovery (issue 28): the retraining-free results of a finished run, and each after recovery.

    python bench/recover.py results/<run> [--target 50] [--methods tyr uniform] [--seeds 0 1 2]
        [--curve 10 50 ...] [--set key=value ...] [--windows 8] [--wikitext FILE]
    python bench/recover.py --smoke

For every method and recovery seed, `tyr.recover.train.recover` trains the run's export
(`s<target>/<method>/pruned`) toward its dense model with the config's `recover` section (the
command line overrides keys, e.g. --set steps=140), then scores WikiText-2 (the run's evaluation
windows) and the held-out split: the same numbers as `eval/summary.json`. The dense model and
the retraining-free exports are scored once. --curve: for each method, one more recovery (the
first seed) per step count, each a whole schedule of that length (warm-up and cosine decay
scaled to it, not a snapshot of a longer run), so the curve shows what a shorter budget gives.
`seconds` is the recovery's wall time, the teacher's targets, loading and writing included.
Writes bench/results/<date>-<host>-recover.{md,json} after every row (JSON `rows`: method,
target_sparsity, seed, steps, perplexity and dense per data set, seconds).
--smoke: a few steps on the tiny finished run.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from lib import args as cli
from lib import results
from lib.config import default_config
from lib.env import setup, wikitext_path
from lib.tinyrun import smoke_run_args


def main(argv=None):
    ap = cli.parser(__doc__)
    cli.add_run_args(ap)
    ap.add_argument("--methods", nargs="+", default=["tyr", "uniform"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--curve", type=int, nargs="*", default=[], metavar="STEPS",
                    help="more recoveries of the first seed, one per step count")  # fmt: skip
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recover.<key> overrides (YAML values)")
    args = ap.parse_args(argv)
    setup(2)
    with cli.workspace(args) as tmp:
        options = dict(default_config(smoke=args.smoke)["recover"])
        options.update({k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)})
        if args.smoke:
            smoke_run_args(args, tmp)
            options.update(steps=3, batch=2)
            args.seeds, args.curve = [0], [2]

        def save(rows, said):
            data = {"options": options, "rows": rows, "continuations": said}
            results.write("recover", report(rows, said, options, args), data, out=args.out, quiet=True)

        rows, said = measure(Path(args.run_dir), options, args, save)
        print("\n".join(report(rows, said, options, args)))


def plan(args, options) -> list[tuple[str, int, int]]:
    """(method, seed, steps) of every recovery: each seed at the options' steps, then the curve."""
    main = [(m, seed, options["steps"]) for m in args.methods for seed in args.seeds]
    return main + [(m, args.seeds[0], n) for m in args.methods for n in args.curve if n != options["steps"]]


def measure(run: Path, options: dict, args, save) -> tuple[list[dict], dict]:
    from tyr.recover.train import recover
    from tyr.workflow.config import tag_target

    score = scorer(run, args)
    dense = score(run / "model")
    target = tag_target(args.target)
    base = run / f"s{args.target}"
    rows = [_row(m, target, None, None, score(base / m / "pruned"), dense, 0.0) for m in args.methods]
    said: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method, seed, steps in plan(args, options):
            out, state = Path(tmp) / f"{method}-{seed}-{steps}", Path(tmp) / f"state-{method}-{seed}-{steps}"
            t0 = time.perf_counter()
            record = recover(base / method / "pruned", run / "model", run / "calib" / "tokens.zarr",
                             out, state, card={"prompts": PROMPTS, "new_tokens": 24},
                             **dict(options, seed=seed, steps=steps))  # fmt: skip
            seconds = time.perf_counter() - t0
            extra = {"train_seconds": record["seconds"], "loss": record["final_loss"], "tokens": record["tokens"],
                     "heldout_curve": record.get("curve", [])}  # fmt: skip
            rows.append(_row(f"{method}+recover", target, seed, steps, score(out), dense, seconds, **extra))
            if steps == options["steps"]:
                said.setdefault(method, _continuations(out))
            print(f"[recover] {method} seed {seed} steps {steps}: {rows[-1]['perplexity']} in {seconds:.0f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
            save(rows, said)
    return rows, said


PROMPTS = ["The capital of France is", "Once upon a time, there was a"]


def scorer(run: Path, args):
    """model folder -> {data set: perplexity}: WikiText-2 on the run's windows and the held-out split."""
    from tyr.evaluate.measure import load
    from tyr.evaluate.perplexity import heldout_perplexity, perplexity, read_texts

    texts = read_texts(wikitext_path(args.wikitext))

    def score(folder) -> dict:
        model, tokenizer = load(folder)
        wiki = perplexity(model, tokenizer, texts, seq_len=args.seq_len, max_windows=args.windows)["perplexity"]
        held = heldout_perplexity(model, run / "calib" / "tokens.zarr")["perplexity"]
        return {"wikitext2": wiki, "heldout": held}

    return score


def _row(method, target, seed, steps, ppl, dense, seconds, **extra) -> dict:
    return {"method": method, "target_sparsity": target, "seed": seed, "steps": steps, "perplexity": ppl,
            "dense": dense, "seconds": seconds, **extra}  # fmt: skip


def _continuations(folder: Path) -> list[str]:
    """The dense / retraining-free / recovered continuations the recovery recorded, as table rows."""
    from tyr.core.io import read_json
    from tyr.core.markdown import cell

    rows = read_json(folder / "tyr_recovery.json")["continuations"]
    return [f"| {' | '.join(cell(r[k]) for k in ('prompt', 'dense', 'pruned', 'recovered'))} |" for r in rows]


def report(rows: list[dict], said: dict, options: dict, args) -> list[str]:
    lines = [
        f"# Recovery: {args.run_dir} s{args.target}",
        "",
        f"`{' '.join(['python', 'bench/recover.py', *sys.argv[1:]])}`",
        "",
        f"Recovery options (config.yaml `recover`, with the command line's): `{json.dumps(options)}`. "
        f"WikiText-2: {args.windows} windows × {args.seq_len} tokens of the test split; held-out: the "
        "calibration's held-out split (never trained on). Mean ± sd over the recovery seeds; seconds: "
        "wall time of the recovery (the teacher's targets, loading and writing included).",
        "",
        "| model | steps | seeds | WikiText-2 ppl | × dense | held-out ppl | × dense | recovery seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    dense = rows[0]["dense"]
    lines.append(f"| dense | – | – | {dense['wikitext2']:.2f} | 1.00 | {dense['heldout']:.2f} | 1.00 | – |")
    main = [r for r in rows if r["steps"] in (None, options["steps"])]
    for method in dict.fromkeys(r["method"] for r in main):
        lines.append(_table_row([r for r in main if r["method"] == method], dense))
    curve = [r for r in rows if r["steps"] is None or r["seed"] == args.seeds[0]]
    if args.curve:
        lines += ["", f"Curve (recovery seed {args.seeds[0]}; each point a whole schedule of that many steps):", "",
                  "| model | steps | minutes | WikiText-2 ppl | held-out ppl |", "|---|---|---|---|---|"]  # fmt: skip
        for r in sorted(curve, key=lambda r: (r["method"].removesuffix("+recover"), r["steps"] or 0)):
            lines.append(f"| {r['method']} | {r['steps'] or 0} | {r['seconds'] / 60:.1f} | "
                         f"{r['perplexity']['wikitext2']:.2f} | {r['perplexity']['heldout']:.2f} |")  # fmt: skip
    lines += _within_run(main, args.seeds[0])
    for method, table in said.items():
        lines += ["", f"{method}, recovery seed {args.seeds[0]} (greedy):", "",
                  "| prompt | dense | pruned | recovered |", "|---|---|---|---|", *table]  # fmt: skip
    return lines


def _within_run(main: list[dict], seed: int) -> list[str]:
    """The held-out perplexity during one whole run (tyr.recover.train's watch), the first seed."""
    runs = [r for r in main if r["seed"] == seed and r.get("heldout_curve")]
    if not runs:
        return []
    lines = ["", f"Within one run (recovery seed {seed}; held-out perplexity every `watch_every` steps of the "
             "default schedule; training minutes only):", "", "| model | step | minutes | held-out ppl |",
             "|---|---|---|---|"]  # fmt: skip
    return lines + [f"| {r['method']} | {p['step']} | {p['seconds'] / 60:.1f} | {p['heldout_perplexity']:.2f} |"
                    for r in runs for p in r["heldout_curve"]]  # fmt: skip


def _table_row(rs: list[dict], dense: dict) -> str:
    cells = [_mean_sd([r["perplexity"][k] for r in rs]) for k in ("wikitext2", "heldout")]
    ratios = [statistics.mean(r["perplexity"][k] / dense[k] for r in rs) for k in ("wikitext2", "heldout")]
    trained = rs[0]["seed"] is not None
    secs = _mean_sd([r["seconds"] for r in rs], "{:.0f}") if trained else "–"
    return (f"| {rs[0]['method']} | {rs[0]['steps'] or '–'} | {len(rs) if trained else '–'} | {cells[0]} | "
            f"{ratios[0]:.2f} | {cells[1]} | {ratios[1]:.2f} | {secs} |")  # fmt: skip


def _mean_sd(values, fmt="{:.2f}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


if __name__ == "__main__":
    main()
