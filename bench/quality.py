"""Pruned quality of the default pipeline over search seeds, at matched sparsity.

    python bench/quality.py [--targets 0.25 0.5] [--seeds 0 1 2] [--cores 2] [--prefix quality]
    python bench/quality.py --smoke

For every search seed, the default workflow (methods tyr and uniform) runs in
results/<prefix>-seed<k>/. What does not depend on the search seed (prepared model,
calibration, dense top-k and evaluation, iteration 1's levels and supernet, the uniform
baseline) is computed once, in seed 0's run, and copied with its timestamps into the others,
so each further seed runs only its searches, the later iterations and the final choice.
Evaluation data come from $TYR_DATA_DIR (WikiText-2 test; without it only the run's own
held-out split). Writes bench/results/<date>-<host>-<prefix>.{md,json}: per target,
Týr's and uniform's perplexities as mean ± sd over seeds, their ratios, backbone sparsities
and the iteration each seed's selection chose. --smoke: seed 0's invocation dry-run on the tiny
preset, the seed-independent copy into seed 1, and the collection and report over two tiny runs.
"""

from __future__ import annotations

import shutil
import statistics
import sys
from pathlib import Path

from lib import args as cli
from lib import results, snakemake
from lib.env import ROOT, setup
from lib.tinyrun import TARGET, tiny_run, tiny_workflow_config

SHARED = ("model", "calib", "dense")  # seed-independent, per run
PER_TARGET = ("iter1/levels.json", "iter1/supernet", "uniform")  # seed-independent, per target


def run_seed(workdir: Path, prefix: str, seed: int, targets, cores: int, extra, dry_run=False) -> float:
    run = f"{prefix}-seed{seed}"
    overrides = snakemake.write_overrides(
        workdir / "results" / f"{run}.quality.yaml",
        {"run": run, "target_sparsity": targets, "methods": ["tyr", "uniform"], "search": {"seed": seed}},
    )
    if seed != 0:
        seed_from(workdir / "results" / f"{prefix}-seed0", workdir / "results" / run, targets)
    return snakemake.run(workdir, cores=cores, configfiles=[*extra, overrides], dry_run=dry_run)["wall_s"]


def seed_from(src: Path, dst: Path, targets) -> None:
    """Copy seed 0's seed-independent artifacts, timestamps kept, so Snakemake reuses them."""
    from tyr.workflow.config import target_tag

    for name in SHARED:
        _copy(src / name, dst / name)
    for t in targets:
        for rel in PER_TARGET:
            _copy(src / f"s{target_tag(t)}" / rel, dst / f"s{target_tag(t)}" / rel)


def _copy(a: Path, b: Path) -> None:
    if b.exists() or not a.exists():
        return
    b.parent.mkdir(parents=True, exist_ok=True)
    (shutil.copytree if a.is_dir() else shutil.copy2)(a, b)


def collect(results_dir: Path, prefix: str, seeds, targets) -> dict:
    """Per target and method: the summary figures of every seed."""
    from tyr.core.io import read_json
    from tyr.workflow.config import target_tag

    out = {}
    for t in targets:
        rows = out.setdefault(str(t), {})
        for seed in seeds:
            base = results_dir / f"{prefix}-seed{seed}" / f"s{target_tag(t)}"
            for method in ("tyr", "uniform"):
                s = read_json(base / method / "eval" / "summary.json")
                genome = read_json(base / method / "genome.json")
                share = base / "share.json" if method == "tyr" else None  # tyr.search.split: the attention/MLP split
                rows.setdefault(method, []).append(
                    {
                        "seed": seed,
                        "sparsity": s["sparsity"],
                        "chosen": genome.get("chosen"),
                        "attention_kept": read_json(share)["chosen"] if share and share.exists() else None,
                        "perplexity": {n: p["pruned"] for n, p in s["perplexity"].items()},
                        "dense": {n: p["dense"] for n, p in s["perplexity"].items()},
                        "selection_kl": {
                            k: v["kl"] for k, v in (genome.get("selection") or {}).get("candidates", {}).items()
                        },
                    }
                )
    return out


def mean_sd(values) -> tuple[float, float]:
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def markdown(result: dict) -> str:
    lines = [
        f"# Pruned quality over search seeds ({result['date']}, {result['host']})",
        "",
        f"`{result['command']}`",
        "",
        f"Seeds {result['seeds']}; SmolLM2-135M; default configuration; wall time per seed in the JSON.",
        "",
    ]
    if result.get("note"):
        lines += [result["note"], ""]
    for t, rows in result["rows"].items():
        sets = sorted(rows["tyr"][0]["perplexity"], key=lambda n: (n != "wikitext2", n))
        dense = rows["tyr"][0]["dense"]
        lines += [
            f"## {float(t):.0%}",
            "",
            "| method | backbone sparsity | "
            + "".join(f"ppl {n} (mean ± sd) | " for n in sets)
            + "chosen | attention kept |",
            "|---|---|" + "---|" * len(sets) + "---|---|",
        ]
        lines.append("| dense | 0 | " + "".join(f"{dense[n]:.2f} | " for n in sets) + "– | – |")
        for method in ("tyr", "uniform"):
            r = rows[method]
            sp = mean_sd(x["sparsity"] for x in r)
            cells = "".join("{:.2f} ± {:.2f} | ".format(*mean_sd(x["perplexity"][n] for x in r)) for n in sets)
            chosen = ", ".join(str(x["chosen"]) for x in r) if method == "tyr" else "–"
            kept = ", ".join("even" if x.get("attention_kept") is None else f"{x['attention_kept']:g}" for x in r)
            lines.append(
                f"| {method} | {sp[0]:.4f} ± {sp[1]:.4f} | {cells}{chosen} | {kept if method == 'tyr' else 'even'} |"
            )
        lines.append(
            "\nPer seed (Týr): "
            + "; ".join(
                f"seed {x['seed']}: "
                + ", ".join(f"{n} {x['perplexity'][n]:.2f}" for n in sets)
                + f" at {100 * x['sparsity']:.2f}%"
                for x in rows["tyr"]
            )
            + "."
        )
        for n in sets:
            tyr, uni = (mean_sd(x["perplexity"][n] for x in rows[m])[0] for m in ("tyr", "uniform"))
            lines.append(f"\n{n}: Týr / uniform = {tyr / uni:.3f}; Týr / dense = {tyr / dense[n]:.2f}.")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = cli.parser(__doc__)
    ap.add_argument("--targets", type=float, nargs="+", default=[0.25, 0.5])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--prefix", default="quality")
    ap.add_argument("--configfile", action="append", default=[], help="extra config files (ablations)")
    ap.add_argument("--reuse", action="store_true", help="do not run; collect finished runs")
    ap.add_argument("--note", default="", help="how the runs were made, when not by this script (--reuse)")
    args = ap.parse_args(argv)
    setup()
    with cli.workspace(args) as tmp:
        workdir, extra = (tmp, tiny_workflow_config(tmp)) if args.smoke else (ROOT, args.configfile)
        if args.smoke:
            args.seeds, args.reuse = [0], False  # one dry-run; the runs to collect are tiny ones, below
        walls = (
            {}
            if args.reuse
            else {
                s: run_seed(workdir, args.prefix, s, args.targets, args.cores, extra, dry_run=args.smoke)
                for s in args.seeds
            }
        )
        if args.smoke:
            args.seeds, args.targets = smoke_runs(workdir / "results", args.prefix)
        result = {
            "date": results.today(),
            "host": results.host(),
            "command": " ".join(sys.argv),
            "note": args.note,
            "seeds": args.seeds,
            "targets": args.targets,
            "wall_seconds": walls,
            "rows": collect(workdir / "results", args.prefix, args.seeds, args.targets),
        }
        stem = results.write(args.prefix, None, result, out=args.out)
        results.suffixed(stem, ".md").write_text(markdown(result))
        print(markdown(result))


def smoke_runs(results_dir: Path, prefix: str) -> tuple[list[int], list[float]]:
    """Two tiny finished seeds to collect; seed 2's folder is made by seed_from alone and must
    then hold every seed-independent artifact."""
    for seed in (0, 1):
        tiny_run(results_dir / f"{prefix}-seed{seed}")
    target = int(TARGET) / 100
    seed_from(results_dir / f"{prefix}-seed0", results_dir / f"{prefix}-seed2", [target])
    missing = [
        p
        for p in (*SHARED, *(f"s{TARGET}/{rel}" for rel in PER_TARGET))
        if not (results_dir / f"{prefix}-seed2" / p).exists()
    ]
    if missing:
        raise RuntimeError(f"seed_from did not copy {missing}")
    return [0, 1], [target]


if __name__ == "__main__":
    main()
