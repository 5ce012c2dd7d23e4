"""Per-stage cost scaling, measured on random Llama-shaped layers: the constants of docs/cost-model.md.

    OMP_NUM_THREADS=1 nice -n 19 python bench/scaling.py [--quick] [--full] [--shapes 135m,360m,1b] [--no-sweep]
    python bench/scaling.py --refit A.json [B.json] [--tag TAG]
    python bench/scaling.py --smoke

The command line of the cost model (bench/costmodel/: measure, fit, model, report). It builds
random-initialised Llama-architecture models with ONE decoder layer (every per-layer cost is linear
in depth) in a temporary folder with tyr.testing, SmolLM2-135M-, SmolLM2-360M- and Llama-3.2-1B-
shaped, and times on one thread, each in a fresh process (costmodel.measure):

  supernet  `tyr.supernet.build.build_layer` (the `supernet_layer` rule) at the paper's levels (9,
            Δ 12.5 %, 1 head / 16 channels per step) on 2 × 2048 calibration tokens, split into
            Hessian accumulation, pruning path (`prune_levels`), reconstruction error, forwards
            and level writes. Not for the 1B shape unless --full: it takes ~9 CPU-min here (an
            hour of wall clock on a busy machine), its MLP pruning path most of it.
  path      `tyr.supernet.local_prune.prune_levels` alone at wider widths (Llama-3.1-8B's attention among
            them): the O(width³) part, which does not depend on the token count.
  topk      `tyr.search.reference.dense_topk` (k = 256) over one 2048-token sequence (1B: 1024).
  fitness   `tyr.search.fitness.Evaluator` on a one-level supernet, every sublayer at 50 %: the
            pruned sublayer forwards and the LM head + KL per token, in float32 and bfloat16, and
            the build of sublayer modules from level files.

Times are CPU seconds of the process (time.process_time: user + system), so a busy machine
inflates the wall clock far more than them; both are recorded. Memory: the process's peak
resident size (ru_maxrss) minus its resident size just before the stage, in a fresh process.
Then one constant per law is fitted (costmodel.fit: seconds per FLOP, per byte; the path as
c_in·Σn² while the n×n H⁻¹ fits the last-level cache + c_out·Σn² beyond it + c_w·Σn·d_out +
c_init·(w³ + 2w²·d_out) over its elimination steps), with predicted/measured per point and the 1B
layer predicted from a fit without it (--holdout), and the paper preset (config/config.yaml +
config/presets/paper.yaml) is predicted for Llama-3.1-8B and -70B (costmodel.model). Writes
bench/results/<date>-<host>-scaling[-<tag>].{json,md}; --refit A.json [B.json] fits and predicts
again from stored measurements. --smoke: the model's own checks (costmodel.checks), then --quick
in this process (one path point in a worker process), fitted and predicted, into a temp folder.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from costmodel import checks, fit, measure, model, report
from lib import args as cli
from lib import results
from lib.env import setup


def parse(argv):
    ap = cli.parser(__doc__)
    ap.add_argument("--quick", action="store_true", help="one tiny shape and two path points: a < 1 min smoke run")
    ap.add_argument("--full", action="store_true", help="also the 1B shape's supernet layer (~9 CPU-min)")
    ap.add_argument("--shapes", default="135m,360m,1b")
    ap.add_argument("--no-sweep", dest="sweep", action="store_false", help="skip prune_levels at wider widths")
    ap.add_argument("--tag", default="", help="suffix of the result files' names (default: none; quick: quick)")
    ap.add_argument(
        "--refit",
        metavar="JSON",
        nargs="+",
        help="fit and predict again from the measurements of these result files (written as --tag)",
    )
    ap.add_argument(
        "--holdout",
        metavar="SHAPE",
        default="1b",
        help="also predict this shape's supernet layer from laws fitted without it (default 1b)",
    )
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "JOB"), help=argparse_suppress())
    return ap.parse_args(argv)


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def main(argv=None):
    args = parse(argv)
    if args.worker:
        setup()
        return measure.worker_main(*args.worker)
    setup(1)
    with cli.workspace(args):
        if args.smoke:
            print("cost model checks: " + ", ".join(checks.run_checks()), flush=True)
        cfg = model.preset()
        results_, env, stem = refit(args) if args.refit else measured(args, cfg)
        laws = fit.fit_all(results_, env.setdefault("l3_bytes", fit.l3_bytes()))
        laws["holdout"] = {"shape": args.holdout, "pieces": fit.holdout_check(results_, args.holdout, env["l3_bytes"])}
        preds = {m: model.predict(m, laws, cfg) for m in model.TARGETS}
        mems = {m: model.memory(m, cfg) for m in model.TARGETS}
        report.write_report(stem, env, results_, laws, preds, mems)


def refit(args):
    """The measurements of stored result files, their environment, and where the new fit goes."""
    olds = [json.loads(Path(f).read_text()) for f in args.refit]
    env = dict(olds[0]["environment"], refit_command=" ".join(["python", *sys.argv]))
    env["sources"] = [o["environment"]["command"] for o in olds]
    env["loadavg_end"] = olds[-1]["environment"]["loadavg_end"]
    first = Path(args.refit[0])  # without --tag the fit replaces the first file's (in --out, when given)
    stem = results.stem(f"scaling-{args.tag}", args.out) if args.tag else Path(args.out or first.parent) / first.stem
    return [r for old in olds for r in old["measurements"]], env, stem


def measured(args, cfg):
    """This run's measurements (stored at once, so a later fit can be redone with --refit)."""
    loads = [os.getloadavg()]
    measurements = measure.measure(args)
    loads.append(os.getloadavg())
    env = report.environment(args.quick or args.smoke, loads, cfg)
    tag = args.tag or ("quick" if args.quick or args.smoke else "")
    stem = results.stem("scaling" + (f"-{tag}" if tag else ""), args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    results.suffixed(stem, ".json").write_text(json.dumps({"environment": env, "measurements": measurements}, indent=1))
    return measurements, env, stem


if __name__ == "__main__":
    main()
