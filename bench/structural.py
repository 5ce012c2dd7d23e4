"""The related structural pruners side by side: the `compare` table of every baseline at 25% and 50%.

    TYR_DATA_DIR=/path/to/data .venv/bin/python bench/structural.py [--run structural] [--targets 0.25 0.5]
        [--methods uniform shortgpt ...] [--cores 2] [--no-workflow] [--no-speed] [--cpu-target 0.5]

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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, write_result  # noqa: E402

DEFAULT_METHODS = ["uniform", "shortgpt", "wanda_sp", "flap", "llm_pruner", "search_llm", "numerical", "llm_bip",
                   "nirvana", "adapruner"]


def run_workflow(run: str, targets, methods, cores: int, speed: bool = True) -> dict:
    """`snakemake compare`, timed, with the load average sampled every 10 s."""
    overrides = ROOT / "results" / f"{run}.bench.yaml"  # lists given with --config arrive as strings
    overrides.parent.mkdir(parents=True, exist_ok=True)
    settings = {"run": run, "target_sparsity": targets, "methods": methods}
    if not speed:
        settings["evaluate"] = {"speed": False}
    overrides.write_text(json.dumps(settings) + "\n")
    loads, done = [], threading.Event()

    def sample():
        while not done.wait(10):
            loads.append(os.getloadavg()[0])

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    triggers = [] if speed else ["--rerun-triggers", "mtime", "input"]
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), *triggers, "--configfile",
                    str(ROOT / "config" / "config.yaml"), str(overrides), "--", "compare"], cwd=ROOT, check=True)
    done.set()
    return {"wall_seconds": time.perf_counter() - t0, "mean_load": sum(loads) / len(loads) if loads else None}


def cpu_seconds(run_dir: Path, method: str, target: float, threads: int = 2) -> float:
    """CPU seconds of one baseline job (user + system of a fresh child process)."""
    import resource
    import tempfile

    code = ("import sys, torch; torch.set_num_threads(int(sys.argv[5])); from tyr import baselines; "
            "baselines.run(sys.argv[1], sys.argv[2] + '/model', sys.argv[2] + '/calib/tokens.zarr', sys.argv[3], "
            "target_sparsity=float(sys.argv[4]))")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-c", code, method, str(run_dir), tmp, str(target), str(threads)],
                       check=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="structural")
    ap.add_argument("--targets", type=float, nargs="+", default=[0.25, 0.5])
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--no-workflow", action="store_true", help="only collect a finished run")
    ap.add_argument("--no-speed", action="store_true", help="skip the pruned models' speed measurement")
    ap.add_argument("--cpu-target", type=float, help="rerun each baseline at this target and record its CPU seconds")
    args = ap.parse_args(argv)
    timing = {} if args.no_workflow else run_workflow(args.run, args.targets, args.methods, args.cores,
                                                        speed=not args.no_speed)
    table_dir = ROOT / "results" / "compare" / args.run
    table = json.loads((table_dir / "table.json").read_text())
    lines = [f"# Related structural pruners, SmolLM2-135M, {args.cores} cores (run `{args.run}`)", "",
             f"Command: `TYR_DATA_DIR=... python bench/structural.py --run {args.run} --targets "
             f"{' '.join(map(str, args.targets))} --methods {' '.join(args.methods)}"
             f"{' --no-speed' if args.no_speed else ''}`", ""]
    if timing:
        lines += [f"Whole `snakemake compare`: {timing['wall_seconds'] / 60:.1f} min; mean load average "
                  f"{timing['mean_load']:.1f} on {os.cpu_count()} CPUs (wall times stretch with the load).", ""]
    lines += [(table_dir / "table.md").read_text(), "Distance of each baseline to its target (backbone sparsity):", ""]
    lines += genome_notes(ROOT / "results" / args.run, table["rows"])
    cpu = {}
    if args.cpu_target:
        from tyr.methods.registry import baselines

        cpu = {m: cpu_seconds(ROOT / "results" / args.run, m, args.cpu_target) for m in args.methods if m in baselines()}
        lines += ["", f"CPU seconds of each baseline's own job at {args.cpu_target:.0%} (2 threads, a fresh process; "
                  "/ 2 ≈ wall time on 2 idle cores):", "", "| method | CPU s |", "|---|---|"]
        lines += [f"| {m} | {s:.0f} |" for m, s in cpu.items()]
    write_result("structural", lines)
    out = ROOT / "bench" / "results" / f"{time.strftime('%Y-%m-%d')}-{platform.node() or 'host'}-structural.json"
    out.write_text(json.dumps({"command": sys.argv, **timing, "cpu_seconds": cpu, "table": table}, indent=1) + "\n")


if __name__ == "__main__":
    main()
