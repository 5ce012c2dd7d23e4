"""The related structural pruners side by side: the `compare` table of every baseline at 25% and 50%.

    TYR_DATA_DIR=/path/to/data python bench/structural.py [--run structural] [--targets 0.25 0.5]
        [--methods uniform shortgpt ...] [--cores 2] [--no-workflow] [--no-speed] [--cpu-target 0.5]
    python bench/structural.py --smoke

Runs `snakemake compare` for the given run, targets and methods (Týr itself is left out by
default: it is the subject, benchmarked by bench/pipeline.py), sampling the machine's load
average while it runs, then writes `bench/results/<date>-<host>-structural.{md,json}`: the
comparison table (WikiText-2 perplexity, zero-shot average, backbone sparsity and each
method's own wall time), each genome's distance to the target and the reason where a
method cannot meet it, and the mean load average over the run (wall times on a shared
machine stretch by roughly load / cores). `--no-workflow` only collects a finished run.
`--cpu-target T` also reruns every baseline once at target T in a fresh process and records
its CPU seconds (user + system, OMP_WAIT_POLICY=PASSIVE so idle OpenMP threads do not spin):
unlike wall time, this does not stretch with other users' load; / 2 ≈ its wall time on 2
idle cores. `--no-speed` skips the prefill/decode timing of the pruned models (the table does not use
it, and on a loaded machine it is noise); the dense model's finished evaluation is then
kept (`--rerun-triggers mtime input`: its changed `evaluate.speed` parameter does not redo it).
--smoke: `snakemake compare` dry-run on the tiny preset (uniform, shortgpt), the table made by
`tyr.evaluate.compare` from a tiny finished run, and one baseline's CPU seconds on it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from lib import args as cli
from lib import results, snakemake
from lib.env import ROOT, child_env, setup
from lib.tinyrun import TARGET, tiny_run, tiny_workflow_config

DEFAULT_METHODS = [
    "uniform",
    "shortgpt",
    "wanda_sp",
    "flap",
    "llm_pruner",
    "search_llm",
    "numerical",
    "llm_bip",
    "nirvana",
    "adapruner",
]
CPU_JOB = """import sys, torch
torch.set_num_threads(int(sys.argv[5]))
from tyr.methods import baselines
baselines.run(sys.argv[1], sys.argv[2] + '/model', sys.argv[2] + '/calib/tokens.zarr', sys.argv[3],
              target_sparsity=float(sys.argv[4]))
"""


def run_workflow(workdir: Path, run: str, targets, methods, cores: int, extra=(), speed=True, dry_run=False) -> dict:
    """`snakemake compare`, timed, with the load average sampled every 10 s."""
    settings = {"run": run, "target_sparsity": targets, "methods": methods}
    if not speed:
        settings["evaluate"] = {"speed": False}
    overrides = snakemake.write_overrides(workdir / "results" / f"{run}.bench.yaml", settings)
    triggers = [] if speed else ["--rerun-triggers", "mtime", "input"]
    done = snakemake.run(
        workdir,
        cores=cores,
        configfiles=[*extra, overrides],
        targets=["compare"],
        extra=triggers,
        dry_run=dry_run,
        sample_load=True,
    )
    return {"wall_seconds": done["wall_s"], "mean_load": done["mean_load"]}


def cpu_seconds(run_dir: Path, method: str, target: float, threads: int = 2) -> float:
    """CPU seconds of one baseline job (user + system of a fresh child process; OMP_WAIT_POLICY=PASSIVE
    so that idle OpenMP threads do not spin)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-c", CPU_JOB, method, str(run_dir), tmp, str(target), str(threads)],
            check=True,
            env=child_env(OMP_WAIT_POLICY="PASSIVE"),
        )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def genome_notes(run_dir: Path, rows) -> list[str]:
    """Each baseline's distance to the target, and its reason where it records one."""
    notes = []
    for r in rows:
        genome = run_dir / f"s{round(r['target_sparsity'] * 100)}" / r["method"] / "genome.json"
        info = (json.loads(genome.read_text()).get("baseline") or {}) if genome.exists() else {}
        if "target_gap_pp" in info:
            reason = f" ({info['off_target']})" if info.get("off_target") else ""
            notes.append(f"- {r['method']} at {r['target_sparsity']:.0%}: {info['target_gap_pp']:+.2f} pp{reason}")
    return notes


def main(argv=None):
    ap = cli.parser(__doc__)
    ap.add_argument("--run", default="structural")
    ap.add_argument("--targets", type=float, nargs="+", default=[0.25, 0.5])
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--no-workflow", action="store_true", help="only collect a finished run")
    ap.add_argument("--no-speed", action="store_true", help="skip the pruned models' speed measurement")
    ap.add_argument("--cpu-target", type=float, help="rerun each baseline at this target and record its CPU seconds")
    args = ap.parse_args(argv)
    setup()
    with cli.workspace(args) as tmp:
        workdir, extra = (tmp, tiny_workflow_config(tmp)) if args.smoke else (ROOT, [])
        if args.smoke:
            args.run, args.methods, args.cpu_target = "tiny", ["uniform", "shortgpt"], int(TARGET) / 100
        timing = (
            {}
            if args.no_workflow
            else run_workflow(
                workdir,
                args.run,
                args.targets,
                args.methods,
                args.cores,
                extra,
                speed=not args.no_speed,
                dry_run=args.smoke,
            )
        )
        if args.smoke:  # the dry-run made no table: make one from a tiny finished run
            smoke_table(workdir, args.run)
        report(workdir, args, timing)


def report(workdir: Path, args, timing: dict) -> None:
    from tyr.methods.registry import baselines

    table_dir = workdir / "results" / "compare" / args.run
    table = json.loads((table_dir / "table.json").read_text())
    lines = [
        f"# Related structural pruners, SmolLM2-135M, {args.cores} cores (run `{args.run}`)",
        "",
        f"Command: `TYR_DATA_DIR=... python bench/structural.py --run {args.run} --targets "
        f"{' '.join(map(str, args.targets))} --methods {' '.join(args.methods)}"
        f"{' --no-speed' if args.no_speed else ''}`",
        "",
    ]
    if timing and not args.smoke:
        lines += [
            f"Whole `snakemake compare`: {timing['wall_seconds'] / 60:.1f} min; mean load average "
            f"{timing['mean_load'] or os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall times stretch "
            "with the load).",
            "",
        ]
    lines += [(table_dir / "table.md").read_text(), "Distance of each baseline to its target (backbone sparsity):", ""]
    lines += genome_notes(workdir / "results" / args.run, table["rows"])
    cpu = {}
    if args.cpu_target:
        threads = 1 if args.smoke else 2
        cpu = {
            m: cpu_seconds(workdir / "results" / args.run, m, args.cpu_target, threads)
            for m in args.methods
            if m in baselines()
        }
        lines += [
            "",
            f"CPU seconds of each baseline's own job at {args.cpu_target:.0%} ({threads} threads, a fresh "
            f"process; / {threads} ≈ wall time on {threads} idle cores):",
            "",
            "| method | CPU s |",
            "|---|---|",
        ]
        lines += [f"| {m} | {s:.0f} |" for m, s in cpu.items()]
    results.write(
        "structural", lines, {"command": sys.argv, **timing, "cpu_seconds": cpu, "table": table}, out=args.out
    )


def smoke_table(workdir: Path, run: str) -> None:
    """results/compare/<run>/table.{md,json} of a tiny finished run's two methods, by the product's
    `compare_table` (the table `snakemake compare` writes)."""
    from tyr.evaluate.compare import compare_table

    run_dir = tiny_run(workdir / "results" / run)
    out = workdir / "results" / "compare" / run
    out.mkdir(parents=True, exist_ok=True)
    summaries = [run_dir / f"s{TARGET}" / m / "eval" / "summary.json" for m in ("tyr", "uniform")]
    compare_table(
        summaries,
        [[], []],
        run_dir / "dense" / "eval.json",
        out / "table.md",
        out / "table.json",
        out / "comparison.png",
    )


if __name__ == "__main__":
    main()
