"""Seconds per generation of the default search: compute dtype × how the cores are used.

    python bench/search_speed.py results/<run> [--target 50] [--generations 2] [--cores 2]
    python bench/search_speed.py --smoke

Runs the default search (config/config.yaml's search section) of iteration 1 of a finished
run for a few generations, once per setting: `search.dtype` float32 / bfloat16, and the
run's cores as torch threads of one process or as `search.processes` processes of one thread
(`tyr.search.launch`). Every setting starts from the same state, so the generations are the
same work; the genome of equal-dtype settings must agree (it is the distributed contract).
Writes bench/results/<date>-<host>-search-speed.md. --smoke: one generation of the tiny preset's
search on a tiny finished run, float32 and bfloat16 in one process and float32 in two.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from lib import args as cli
from lib import results
from lib.config import default_config, search_options
from lib.env import setup
from lib.tinyrun import smoke_run_args


def settings(cores: int, smoke: bool = False) -> list[dict]:
    if smoke:  # each distributed setting starts two interpreters: one is enough to exercise the path
        return [
            {"dtype": "float32", "processes": 1, "threads": 1},
            {"dtype": "bfloat16", "processes": 1, "threads": 1},
            {"dtype": "float32", "processes": 2, "threads": 2},
        ]
    out = []
    for dtype in ("float32", "bfloat16"):
        out.append({"dtype": dtype, "processes": 1, "threads": cores})
        if cores > 1:
            out.append({"dtype": dtype, "processes": cores, "threads": cores})
    return out


def run_once(kwargs: dict, setting: dict, out_dir: Path) -> float:
    """Wall seconds of one search run under `setting` (its generations' own times are in
    out_dir/generations.tsv)."""
    import torch

    from tyr.search import launch
    from tyr.search.evolve import run_search

    args = {**kwargs, "dtype": setting["dtype"], "out_dir": str(out_dir)}
    t0 = time.perf_counter()
    if setting["processes"] > 1:
        launch.launch(args, setting["processes"], setting["threads"], out_dir)
    else:
        torch.set_num_threads(setting["threads"])
        run_search(**args)
    return time.perf_counter() - t0


def main(argv=None):
    ap = cli.parser(__doc__)
    cli.add_run_args(ap, perplexity=False)
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args(argv)
    setup()
    with cli.workspace(args) as tmp:
        if args.smoke:
            smoke_run_args(args, tmp)
            args.generations = 1
        rows, genomes = measure(Path(args.run_dir).resolve(), args)
        report(rows, genomes, args)


def measure(run: Path, args) -> tuple[list[dict], dict]:
    """Every setting from the same start: its seconds per generation, setup, best fitness; and the
    best genomes per dtype (equal-dtype settings must agree)."""
    from tyr.workflow.config import tag_target

    search = default_config(smoke=args.smoke)["search"]
    it = run / f"s{args.target}" / "iter1"
    share = run / f"s{args.target}" / "share.json"
    options = dict(search_options(search, 1), generations=args.generations)
    options.pop("dtype")  # each setting names its own; the device is run_search's default (auto)
    if share.exists():
        options["attention_kept"] = json.loads(share.read_text())["chosen"]
    kwargs = dict(
        supernet_json=str(it / "supernet" / "supernet.json"),
        topk_zarr=str(run / "dense" / "topk.zarr"),
        tokens_zarr=str(run / "calib" / "tokens.zarr"),
        model_dir=str(run / "model"),
        spec_json=str(run / "model" / "spec.json"),
        target_sparsity=tag_target(args.target),
        progress=False,
        **options,
    )
    rows, genomes = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, s in enumerate(settings(args.cores, args.smoke)):
            out = Path(tmp) / str(i)
            wall = run_once(kwargs, s, out)
            best = json.loads((out / "best.json").read_text())
            gens = [float(line.split("\t")[-1]) for line in (out / "generations.tsv").read_text().splitlines()[1:]]
            genomes.setdefault(s["dtype"], []).append(best["layers"])
            rows.append(
                {
                    **s,
                    "seconds_per_generation": sum(gens) / len(gens),
                    "setup": wall - sum(gens),
                    "fitness": best["fitness"],
                }
            )
    return rows, genomes


def report(rows: list[dict], genomes: dict, args) -> None:
    agree = {d: all(g == gs[0] for g in gs) for d, gs in genomes.items()}
    base = rows[0]["seconds_per_generation"]
    lines = [
        f"# Search speed: {Path(args.run_dir).name} s{args.target}, iteration 1",
        "",
        f"`{' '.join(sys.argv)}`",
        "",
        f"Default search settings, {args.generations} generations from the same start. Seconds per "
        "generation are the search's own (generations.tsv); setup is the rest of the wall time (start-up, "
        "model and supernet loads, the start genome's tracked score).",
        "",
        "| dtype | processes × threads | s / generation | vs float32 × 1 process | setup (s) | best fitness |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        per = r["threads"] // r["processes"]
        lines.append(
            f"| {r['dtype']} | {r['processes']} × {per} | {r['seconds_per_generation']:.1f} | "
            f"{base / r['seconds_per_generation']:.2f}× | {r['setup']:.1f} | {r['fitness']:.5f} |"
        )
    lines += [
        "",
        "Same genome across processes at equal dtype: "
        + ", ".join(f"{d} {'yes' if a else '**no**'}" for d, a in agree.items())
        + ".",
    ]
    results.write("search-speed", lines, out=args.out)
    if args.smoke and not all(agree.values()):  # the distributed contract: a smoke run fails on it
        raise RuntimeError(f"equal-dtype settings found different genomes: {agree}")


if __name__ == "__main__":
    main()
