"""End-to-end benchmark of the default pipeline: cost and quality side by side, in one run.

    python bench/pipeline.py [--targets 0.25 0.5] [--cores 2] [--run NAME] [--extra-config FILE] [--reuse]
    python bench/pipeline.py --smoke

Runs `snakemake --cores N` on the embedded SmolLM2-135M for the given targets, then reads the
Snakemake `benchmark:` files and the run's outputs and writes
`bench/results/<date>-<host>.json` and `.md`:
  - wall time end to end and per stage (sum over a stage's jobs);
  - orchestration overhead = wall time - sum of job compute times;
  - peak RSS per stage (max over its jobs) and of the whole run;
  - supernet disk size;
  - each stage's compute floor next to its time (`floors.py`: its matmul work at this CPU's
    measured GEMM speed), and the ratio;
  - search fitness evaluations per second, incremental vs naive on the same tokens (`lib.fitspeed`);
  - exported-model prefill/decode tokens/s and memory vs dense, with perplexity and zero-shot average.
Evaluation data: $TYR_DATA_DIR, as for any run (without it WikiText-2 and zero-shot are skipped).
--smoke: the invocations dry-run (`snakemake -n`) on the tiny preset, and the analysis of a tiny
finished run (lib.tinyrun).
"""

from __future__ import annotations

import csv
import json
import resource
import sys
from collections import defaultdict
from pathlib import Path

from lib import args as cli
from lib import results, snakemake
from lib.config import CONFIG, merged_config
from lib.env import ROOT, setup
from lib.tinyrun import TARGET, tiny_run, tiny_workflow_config

# Issue 13's goals: the stand-alone default pipeline at 50% in ≤ 12 min on 2 cores, overhead ≤ 10%,
# peak RSS ≤ 4 GB, incremental fitness ≥ 2x the naive re-evaluation.
TARGETS = {"peak_rss_gb": 4.0, "overhead_fraction": 0.10, "wall_minutes": 12.0, "fitness_speedup": 2.0}
SHARED = ("prepare_model", "calibrate", "embed", "evaluate_dense", "dense_topk")  # computed once per model


def run_workflow(workdir: Path, run: str, targets: list[float], cores: int, extra: list, dry_run=False) -> list[float]:
    """One `snakemake` invocation per target, in order: the first is the whole default pipeline,
    later ones reuse the model, calibration and dense results. Returns each invocation's wall time."""
    walls = []
    for i in range(len(targets)):
        overrides = snakemake.write_overrides(
            workdir / "results" / f"{run}.bench.yaml", {"run": run, "target_sparsity": targets[: i + 1]}
        )
        walls.append(snakemake.run(workdir, cores=cores, configfiles=[*extra, overrides], dry_run=dry_run)["wall_s"])
    return walls


def read_benchmarks(run_dir: Path) -> list[dict]:
    """One row per job: rule-level stage name, seconds, peak RSS (MB), from Snakemake benchmark TSVs."""
    rows = []
    for tsv in sorted((run_dir / "benchmarks").rglob("*.tsv")):
        with tsv.open() as f:
            record = next(csv.DictReader(f, delimiter="\t"))
        stage = tsv.stem.rstrip("0123456789")  # supernet_layer007 -> supernet_layer
        rss = record.get("max_rss", "NA")
        rows.append(
            {
                "job": str(tsv.relative_to(run_dir / "benchmarks")),
                "stage": stage,
                "seconds": float(record["s"]),
                "max_rss_mb": float(rss) if rss not in ("NA", "-") else None,
            }
        )
    return rows


def per_stage(rows: list[dict]) -> dict:
    stages = defaultdict(lambda: {"jobs": 0, "seconds": 0.0, "max_rss_mb": 0.0})
    for r in rows:
        s = stages[r["stage"]]
        s["jobs"] += 1
        s["seconds"] += r["seconds"]
        s["max_rss_mb"] = max(s["max_rss_mb"], r["max_rss_mb"] or 0.0)
    return dict(stages)


def floors(run_dir: Path, conf: dict, targets: list[float], cores: int) -> dict:
    """Floor seconds per stage of the whole run (shared stages once, the others per target)
    and the GEMM speeds they rest on (`floors.py`)."""
    from floors import gemm_speeds, stage_floors

    from tyr.model.spec import ModelSpec
    from tyr.workflow.config import target_tag

    spec = ModelSpec.from_json(run_dir / "model" / "spec.json")
    threads = min(int(conf.get("threads", 1)), cores)
    gflops = gemm_speeds(spec, threads)
    ev, data = conf["evaluate"], conf["data"]
    windows = [(data["heldout_sequences"] * data["seq_len"], data["seq_len"])]
    dense_eval = run_dir / "dense" / "eval.json"
    if dense_eval.exists() and "wikitext2" in json.loads(dense_eval.read_text()).get("perplexity", {}):
        windows.append(((ev.get("max_windows") or 0) * ev["seq_len"], ev["seq_len"]))
    total = defaultdict(float)
    for i, t in enumerate(targets):
        genome, share = (run_dir / f"s{target_tag(t)}" / p for p in ("tyr/genome.json", "share.json"))
        per = stage_floors(
            spec,
            conf,
            json.loads(genome.read_text())["layers"] if genome.exists() else None,
            gflops,
            conf["supernet"]["iterations"],
            len(json.loads(share.read_text())["candidates"]) if share.exists() else 0,
            windows,
        )
        for stage, seconds in per.items():
            if i == 0 or stage not in SHARED:
                total[stage] += seconds
    return {"threads": threads, "gemm_gflops": gflops, "seconds": dict(total)}


def disk_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def fitness_speed(run_dir: Path, tag: str) -> dict | None:
    """Incremental vs naive candidate evaluations per second on the same tokens (lib.fitspeed)."""
    from lib.fitspeed import offspring_speed

    from tyr.workflow.config import tag_target

    supernet = run_dir / f"s{tag}" / "iter1" / "supernet" / "supernet.json"
    if not supernet.exists():
        return None
    return offspring_speed(
        supernet,
        run_dir / "dense" / "topk.zarr",
        run_dir / "calib" / "tokens.zarr",
        run_dir / "model",
        run_dir / "model" / "spec.json",
        target_sparsity=tag_target(tag),
        candidates=8,
        tokens=512,
        repeats=2,
        dtype="auto",
    )


def quality_and_speed(run_dir: Path) -> dict:
    return {
        f"{p.parts[-4]}/{p.parts[-3]}": json.loads(p.read_text())
        for p in sorted(run_dir.glob("s*/*/eval/summary.json"))
    }


def analyse(run_dir: Path, conf: dict, targets: list[float], cores: int, walls) -> dict:
    """Everything the report shows, from the run's folder (and the invocations' wall times)."""
    from tyr.workflow.config import target_tag

    rows = read_benchmarks(run_dir)
    stages = per_stage(rows)
    wall = None if walls is None else sum(walls)
    # A later target's stand-alone pipeline = its own invocation + the shared stages it reused.
    shared = sum(stages[s]["seconds"] for s in SHARED if s in stages)
    standalone = (
        None if walls is None else {str(t): w + (shared if i else 0.0) for i, (t, w) in enumerate(zip(targets, walls))}
    )
    compute = sum(r["seconds"] for r in rows)
    result = {
        "cores": cores,
        "targets": targets,
        "wall_seconds": wall,
        "wall_seconds_per_invocation": walls,
        "standalone_pipeline_seconds": standalone,
        "job_seconds": compute,
        "overhead_seconds": None if wall is None else wall - compute,
        "overhead_fraction": None if wall is None else (wall - compute) / wall,
        "peak_rss_gb": max((r["max_rss_mb"] or 0) for r in rows) / 1024 if rows else None,
        "benchmark_self_max_rss_gb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20,
        "supernet_disk_bytes": sum(disk_size(p) for p in run_dir.glob("s*/iter*/supernet")),
        "stages": stages,
        "jobs": rows,
        "floors": floors(run_dir, conf, targets, cores),
        "fitness_speed": fitness_speed(run_dir, target_tag(targets[-1])),
        "quality": quality_and_speed(run_dir),
    }
    result["checks"] = checks(result)
    return result


def checks(result: dict) -> dict:
    """Each goal of TARGETS: (value, goal, met)."""
    out = {}
    for t, seconds in (result["standalone_pipeline_seconds"] or {}).items():
        minutes = seconds / 60
        out[f"wall minutes, pipeline at {t}"] = (
            round(minutes, 1),
            f"≤ {TARGETS['wall_minutes']}",
            minutes <= TARGETS["wall_minutes"],
        )
    overhead, rss = result["overhead_fraction"], result["peak_rss_gb"]
    speedup = (result.get("fitness_speed") or {}).get("speedup_vs_naive")
    for name, value, goal, le in (
        ("orchestration overhead", overhead, "overhead_fraction", True),
        ("peak RSS (GB)", rss, "peak_rss_gb", True),
        ("fitness speedup vs naive", speedup, "fitness_speedup", False),
    ):
        limit = TARGETS[goal]
        met = value is not None and (value <= limit if le else value >= limit)
        out[name] = (None if value is None else round(value, 3), f"{'≤' if le else '≥'} {limit}", met)
    return out


def _g(x) -> str:
    return "–" if x is None else f"{x:.4g}"


def markdown(result: dict) -> str:
    lines = [
        f"# Benchmark {result['date']} on {result['host']}",
        "",
        f"Command: `{result['command']}`",
        "",
        "| metric | value | target | met |",
        "|---|---|---|---|",
    ]
    for name, (value, goal, met) in result["checks"].items():
        lines.append(f"| {name} | {value} | {goal} | {'yes' if met else '**no**'} |")
    if result.get("wall_seconds_per_invocation"):
        walls = ", ".join(
            f"{t}: {w / 60:.1f} min" for t, w in zip(result["targets"], result["wall_seconds_per_invocation"])
        )
        lines += [
            "",
            f"One `snakemake` invocation per target, in this order ({walls}); the first is the whole "
            "pipeline, a later one reuses the shared stages (" + ", ".join(SHARED) + "), whose job time is "
            "added to give its stand-alone pipeline time. Peak RSS is the whole Snakemake process, "
            "which runs the jobs as threads.",
        ]
    return "\n".join(lines + stage_lines(result) + quality_lines(result)) + "\n"


def stage_lines(result: dict) -> list[str]:
    fl = result.get("floors") or {"seconds": {}}
    lines = [
        "",
        "## Stages",
        "",
        "| stage | jobs | seconds | floor (s) | × floor | peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in sorted(result["stages"].items(), key=lambda kv: -kv[1]["seconds"]):
        floor = fl["seconds"].get(name)
        ratio = f"{s['seconds'] / floor:.1f}" if floor else "–"
        lines.append(f"| {name} | {s['jobs']} | {s['seconds']:.1f} | {_g(floor)} | {ratio} | {s['max_rss_mb']:.0f} |")
    if fl.get("gemm_gflops"):
        speeds = ", ".join(f"{k} {v:.0f}" for k, v in fl["gemm_gflops"].items() if k != "auto")
        lines += [
            "",
            f"Floor: the stage's matmul work at this CPU's GEMM speed on {fl['threads']} thread(s) "
            f"({speeds} GFLOP/s; bench/floors.py says what each stage's work is). Evaluation floors count "
            "perplexity tokens only (not the zero-shot questions or the speed timing).",
        ]
    if result.get("fitness_speed"):
        lines += ["", "## Search fitness evaluation", "", "```", json.dumps(result["fitness_speed"], indent=2), "```"]
    return lines


def quality_lines(result: dict) -> list[str]:
    lines = [
        "",
        "## Quality and speed of the exported models",
        "",
        "| run | sparsity | ppl per data set | zero-shot avg | retention | prefill tok/s | decode tok/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in result["quality"].items():
        avg, sp = s.get("average", {}), s.get("speed", {})
        pre, dec = sp.get("prefill_tokens_per_s", {}), sp.get("decode_tokens_per_s", {})
        ppl = "; ".join(
            f"{n} {_g(p['pruned'])} (dense {_g(p['dense'])})" for n, p in (s.get("perplexity") or {}).items()
        )
        lines.append(
            f"| {name} | {s['sparsity']:.4f} | {ppl or '–'} | "
            f"{_g((avg.get('pruned') or {}).get('acc'))} | {_g((s.get('retention') or {}).get('acc'))} | "
            f"{_g(pre.get('pruned'))} (dense {_g(pre.get('dense'))}) | "
            f"{_g(dec.get('pruned'))} (dense {_g(dec.get('dense'))}) |"
        )
    return lines


def main(argv=None):
    ap = cli.parser(__doc__)
    ap.add_argument("--targets", type=float, nargs="+", default=[0.25, 0.5])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--run", default=None)
    ap.add_argument("--extra-config", default=None)
    ap.add_argument("--reuse", action="store_true", help="do not run; analyse an existing run")
    args = ap.parse_args(argv)
    setup()
    with cli.workspace(args) as tmp:
        run = args.run or ("tiny" if args.smoke else f"bench-{results.today()}")
        workdir, extra = (
            (ROOT, [args.extra_config] if args.extra_config else [])
            if not args.smoke
            else (tmp, tiny_workflow_config(tmp))
        )
        walls = None if args.reuse else run_workflow(workdir, run, args.targets, args.cores, extra, dry_run=args.smoke)
        run_dir = workdir / "results" / run
        if args.smoke:  # the dry-run computed nothing: analyse a tiny finished run instead, at its one target
            tiny_run(run_dir)
            args.targets, walls = [int(TARGET) / 100], None
        files = (CONFIG, *extra, workdir / "results" / f"{run}.bench.yaml")
        conf = merged_config(*(p for p in files if Path(p).exists()))
        result = {
            "date": results.today(),
            "host": results.host(),
            "command": " ".join(sys.argv),
            **analyse(run_dir, conf, args.targets, args.cores, walls),
        }
        if args.smoke:
            check_fitness_speed(result["fitness_speed"])
        stem = results.write("", None, result, out=args.out)
        results.suffixed(stem, ".md").write_text(markdown(result))
        print(markdown(result))


def check_fitness_speed(speed: dict | None) -> None:
    """What the parked test of benchmark_evaluator held: both speeds measured, every mode's
    fitness equal to the naive reference's (the incremental path is exact, not approximate)."""
    if not speed or speed["incremental_eval_per_s"] <= 0 or speed["naive_eval_per_s"] <= 0:
        raise RuntimeError(f"fitness speed not measured: {speed}")
    if speed["max_abs_diff"] > 1e-5:
        raise RuntimeError(f"incremental or full fitness differs from the naive one by {speed['max_abs_diff']:.2e}")


if __name__ == "__main__":
    main()
