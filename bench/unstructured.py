"""Unstructured and N:M pruning on SmolLM2-135M (issue 14): APT against SparseGPT, Wanda, magnitude
and the exact-refit bound, on the dense model and stacked after Týr.

    python bench/unstructured.py [--patterns 0.5 2:4] [--extra-patterns 0.6 0.7]
        [--stacked s25/tyr] [--structural-note TEXT] [--cores 2] [--workdir DIR] [--force] [--ablation]
    python bench/unstructured.py --smoke

Every result is a target of the workflow (rules/unstructured.smk). Per result, one `snakemake`
invocation builds the pruned export (its wall time, CPU time and peak RSS are the method's cost:
the Snakemake process runs the jobs as threads, so wait4's rusage covers the whole stage), and a
second one evaluates it (WikiText-2, zero-shot, speed; config `evaluate`, as for every method).
The dense calibration activations and the embeddings come from the workflow's shared stages.
A result built and timed before (its `bench_cost.json`) is reused unless `--force`. Writes
bench/results/<date>-<host>-unstructured.{md,json}; `--ablation` adds the layer-wise error of
APT's greedy step sizes on dense calibration Hessians (calibration data only).
--smoke: on a tiny finished run, one result (dense+magnitude at 50%) built with the product's
functions in-process and timed as a reused result, another one's invocations dry-run, the
ablation on one layer, the zeros' cost, and the report.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lib import args as cli
from lib import results, snakemake
from lib.env import ROOT, setup
from lib.tinyrun import SEQ_LEN, tiny_run, tiny_workflow_config

METHODS = ["magnitude", "wanda", "sparsegpt", "apt", "refit"]
BUDGET_S = 600  # the stage must fit 10 minutes on 2 cores for one sparsity (issue 14)
COST = "bench_cost.json"  # written beside a result by the invocation that built it


@dataclass
class Workflow:
    """Where and how every result is built: the Snakemake working directory, its config files
    (the run's name among them), cores; `dry_run` plans the invocations and runs none."""

    workdir: Path
    configfiles: list
    cores: int
    dry_run: bool = False

    def build(self, target: str) -> dict:
        """One target; its wall and CPU seconds, peak RSS (MB) and the load average around it."""
        done = snakemake.run(
            self.workdir,
            cores=self.cores,
            configfiles=self.configfiles,
            targets=[target],
            extra=["--rerun-triggers", "mtime"],
            dry_run=self.dry_run,
        )
        return {k: done[k] for k in ("wall_s", "cpu_s", "peak_rss_mb", "load_before", "load_after")}


def results_of(wf: Workflow, run: str, jobs, force: bool) -> list[dict]:
    """Build (or, when built and timed before, reuse) every result; its summary and cost."""
    rows = []
    for source, method, tag in jobs:
        base = f"results/{run}/{source}+{method}{tag}"
        cost_file, summary_file = wf.workdir / base / COST, wf.workdir / base / "eval" / "summary.json"
        if force or not (cost_file.exists() and summary_file.exists()):
            print(f"[bench] {base}", flush=True)
            cost = wf.build(f"{base}/pruned")
            wf.build(f"{base}/eval/summary.json")
            if wf.dry_run:
                continue  # planned, not built: nothing to report
            cost_file.write_text(json.dumps(cost) + "\n")
        rows.append(
            {
                "source": source,
                "method": method,
                "pattern": tag,
                "cost": json.loads(cost_file.read_text()),
                "summary": json.loads(summary_file.read_text()),
            }
        )
    return rows


def jobs_of(sources, methods, patterns):
    from tyr.methods.unstructured.patterns import Pattern

    return [(s, m, Pattern.parse(p).tag) for s in sources for p in patterns for m in methods]


# ---- layer-wise ablation on calibration Hessians ------------------------------------------------


def ablation(workdir: Path, run: str, layers=(5, 15, 25), steps=(1, 4, 8, 16)) -> list[dict]:
    """Relative layer-wise error ‖XΔWᵀ‖²/‖XWᵀ‖² and CPU seconds (1 thread) of SparseGPT and of APT
    at several greedy step sizes, on the dense model's calibration Hessians (prune split)."""
    import torch

    from tyr.methods.baselines.common.activations import calibration_tokens, dense_model
    from tyr.methods.unstructured import prune
    from tyr.methods.unstructured.hessian import layer_error
    from tyr.methods.unstructured.patterns import Pattern
    from tyr.supernet.local_prune import Hessian

    torch.set_num_threads(1)
    model = dense_model(workdir / f"results/{run}/model")
    names = ["self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"]
    hess, hooks = {}, []
    for l in layers:
        for n in names:
            mod = model.model.layers[l].get_submodule(n)
            hess[(l, n)] = Hessian(mod.in_features)
            hooks.append(mod.register_forward_pre_hook(lambda m, a, h=hess[(l, n)]: h.add(a[0])))
    with torch.no_grad():
        for batch in calibration_tokens(workdir / f"results/{run}/calib/tokens.zarr").split(8):
            model.model(batch)
    for h in hooks:
        h.remove()
    rows = []
    for pattern in ("0.5", "2:4"):
        for (l, n), H in hess.items():
            H, W = H.mean(), model.model.layers[l].get_submodule(n).weight.detach()
            scale = float(layer_error(W, torch.zeros_like(W), H).sum())
            for method, step in [("sparsegpt", None)] + [("apt", s) for s in steps]:
                t0 = time.process_time()
                res = prune(method, W, H, Pattern.parse(pattern), **({"step": step} if step else {}))
                rows.append(
                    {
                        "pattern": pattern,
                        "layer": l,
                        "projection": n,
                        "method": method,
                        "step": step,
                        "rel_error": float(layer_error(W, res.weight, H).sum()) / scale,
                        "cpu_s": round(time.process_time() - t0, 3),
                    }
                )
    return rows


def zeros_cost(dense_dir: Path, pruned_dir: Path, repeats: int = 5, prompt_len: int = 256) -> dict:
    """Median CPU seconds (1 thread, so other load on the machine does not count) of a `prompt_len`-token
    prefill plus 32 cached decode steps, the dense model and a pruned one run alternately. The
    zeros are multiplied like any other weight: without a sparse kernel the cost is the same."""
    import statistics

    import torch

    from tyr.evaluate.measure import load

    torch.set_num_threads(1)
    models = {"dense": load(dense_dir)[0], "pruned": load(pruned_dir)[0]}
    vocab = models["dense"].config.vocab_size
    prompt = torch.randint(
        min(100, vocab // 2), min(10000, vocab), (1, prompt_len), generator=torch.Generator().manual_seed(0)
    )
    seconds = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            t0 = time.process_time()
            with torch.no_grad():
                out = model(prompt, use_cache=True)
                for _ in range(32):
                    out = model(out.logits[:, -1:].argmax(-1), past_key_values=out.past_key_values, use_cache=True)
            seconds[name].append(time.process_time() - t0)
    med = {name: statistics.median(v) for name, v in seconds.items()}
    return {"pruned": str(pruned_dir), "cpu_s": med, "ratio": med["pruned"] / med["dense"], "repeats": repeats}


# ---- the report ---------------------------------------------------------------------------------


def _ppl(summary, dataset="wikitext2"):
    """The pruned model's perplexity on one data set (summaries key them by name: tyr.evaluate.plan)."""
    return summary.get("perplexity", {}).get(dataset, {}).get("pruned")


def _g(x, fmt=".4g") -> str:
    return "–" if x is None else format(x, fmt)


def table(rows, title) -> list[str]:
    if not rows:
        return []
    lines = [
        f"### {title}",
        "",
        "| pattern | method | backbone sparsity | WikiText-2 ppl | zero-shot avg | layer error | "
        "prune wall s | prune CPU s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, c = r["summary"], r["cost"] or {}
        ppl = _ppl(s)
        avg = ((s.get("average") or {}).get("pruned") or {}).get("acc")
        lines.append(
            f"| {s['pattern_label']} | {r['method']} | {s['sparsity']:.2%} | {_g(ppl, '.2f')} | "
            f"{_g(avg, '.3f')} | {s['layer_error']:.4f} | {_g(c.get('wall_s'), '.0f')} | "
            f"{_g(c.get('cpu_s'), '.0f')} | {_g(c.get('peak_rss_mb'), '.0f')} |"
        )
    return lines + [""]


def pivot(rows, title) -> list[str]:
    """WikiText-2 perplexity of every method (rows) at every pattern (columns)."""
    if not rows:
        return []
    patterns = list(dict.fromkeys(r["summary"]["pattern_label"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    ppl = {(r["method"], r["summary"]["pattern_label"]): _ppl(r["summary"]) for r in rows}
    best = {p: min((v for (m, q), v in ppl.items() if q == p and m != "refit" and v), default=None) for p in patterns}
    lines = [f"### {title}", "", "| method | " + " | ".join(patterns) + " |", "|---" * (len(patterns) + 1) + "|"]
    for m in methods:
        cells = [
            ("**{:.2f}**" if ppl.get((m, p)) == best[p] else "{:.2f}").format(ppl[(m, p)]) if ppl.get((m, p)) else "–"
            for p in patterns
        ]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines + ["", "Bold: the lowest perplexity of a method that chooses its mask (refit is the bound).", ""]


def speed_table(rows) -> list[str]:
    lines = ["| result | prefill tok/s (dense) | decode tok/s (dense) | peak memory MiB (dense) |", "|---|---|---|---|"]
    for r in rows:
        sp = r["summary"].get("speed")
        if not sp:
            continue
        lines.append(
            f"| {r['summary']['method']} | {sp['prefill_tokens_per_s']['pruned']:.0f} "
            f"({sp['prefill_tokens_per_s']['dense']:.0f}) | {sp['decode_tokens_per_s']['pruned']:.1f} "
            f"({sp['decode_tokens_per_s']['dense']:.1f}) | {sp['peak_memory_mib']['pruned']:.0f} "
            f"({sp['peak_memory_mib']['dense']:.0f}) |"
        )
    return lines + [""]


def ablation_table(rows) -> list[str]:
    if not rows:
        return []
    lines = [
        "### APT's greedy step on calibration Hessians (dense model, 1 thread)",
        "",
        "Mean over projections of the relative layer-wise error, and total CPU seconds.",
        "",
        "| pattern | method | rel. error | CPU s |",
        "|---|---|---|---|",
    ]
    keys = sorted({(r["pattern"], r["method"], r["step"] or 0) for r in rows})
    for pattern, method, step in keys:
        sel = [r for r in rows if (r["pattern"], r["method"], r["step"] or 0) == (pattern, method, step)]
        name = method if not step else f"apt, step {step}"
        lines.append(
            f"| {pattern} | {name} | {sum(r['rel_error'] for r in sel) / len(sel):.5f} | "
            f"{sum(r['cpu_s'] for r in sel):.1f} |"
        )
    return lines + [""]


def parse(argv):
    ap = cli.parser(__doc__)
    ap.add_argument("--run", default="smollm2-135m")
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--patterns", nargs="+", default=["0.5", "2:4"])
    ap.add_argument("--extra-patterns", nargs="*", default=[], help="more patterns for apt and sparsegpt")
    ap.add_argument("--stacked", nargs="*", default=["s25/tyr"], help="structural results to stack on")
    ap.add_argument("--stacked-methods", nargs="+", default=["apt", "sparsegpt"])
    ap.add_argument("--structural-note", default="", help="which Týr version produced the stacked source")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=ROOT, help="Snakemake working directory (results/ there)")
    ap.add_argument("--force", action="store_true", help="rebuild results that were built and timed before")
    ap.add_argument("--ablation", action="store_true")
    ap.add_argument("--configfile", nargs="*", default=[], help="extra config files (e.g. a lighter evaluate)")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    setup()
    with cli.workspace(args) as tmp:
        if args.smoke:
            wf = smoke_setup(args, tmp)
        else:
            run_file = snakemake.write_overrides(
                args.workdir / "results" / f"{args.run}.unstructured.yaml", {"run": args.run}
            )
            wf = Workflow(args.workdir, [*args.configfile, run_file], args.cores)
        for shared in ("calib/embeddings.zarr", "dense/eval.json"):  # shared stages: not a method's cost
            if not (wf.workdir / "results" / args.run / shared).exists():
                wf.build(f"results/{args.run}/{shared}")
        result = measure(wf, args)
        stem = results.write("unstructured", None, result, out=args.out)
        lines = report_lines(result, args)
        results.suffixed(stem, ".md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))


def measure(wf: Workflow, args) -> dict:
    """Every result of the arguments (built or reused), the ablation and the zeros' cost."""
    run = args.run
    dense = results_of(wf, run, jobs_of(["dense"], args.methods, args.patterns), args.force)
    extra = results_of(wf, run, jobs_of(["dense"], ["apt", "sparsegpt"], args.extra_patterns), args.force)
    stacked = results_of(wf, run, jobs_of(args.stacked, args.stacked_methods, args.patterns), args.force)
    base = wf.workdir / "results" / run
    layers = (0,) if args.smoke else (5, 15, 25)
    steps = (1, 4) if args.smoke else (1, 4, 8, 16)
    abl = ablation(wf.workdir, run, layers=layers, steps=steps) if args.ablation else []
    zeros = None
    if args.smoke:
        zeros = zeros_cost(base / "model", base / "dense+magnitude50" / "pruned", repeats=1, prompt_len=SEQ_LEN)
    elif any(r["method"] == "apt" and r["pattern"] == "2of4" for r in dense):
        zeros = zeros_cost(base / "model", base / "dense+apt2of4" / "pruned")
    return {
        "date": results.today(),
        "host": results.host(),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "cores": args.cores,
        "structural_note": args.structural_note,
        "dense": dense,
        "extra": extra,
        "stacked": stacked,
        "ablation": abl,
        "zeros_cost": zeros,
    }


def report_lines(result: dict, args) -> list[str]:
    dense, extra, stacked, zeros = result["dense"], result["extra"], result["stacked"], result["zeros_cost"]
    return [
        f"# Unstructured and N:M pruning, {result['date']} on {result['host']}",
        "",
        f"Command: `{result['command']}`",
        "",
        *pivot(dense + extra, "WikiText-2 perplexity, dense SmolLM2-135M-Instruct as the source"),
        *pivot(stacked, "WikiText-2 perplexity, stacked after a structural result"),
        *table(dense, "Dense SmolLM2-135M-Instruct"),
        *table(extra, "Higher unstructured sparsity"),
        *table(stacked, f"Stacked after a structural result ({args.structural_note or 'see JSON'})"),
        "### CPU cost of the dense-with-zeros models (no sparse kernel)",
        "",
        *(
            [
                f"Dense vs {Path(zeros['pruned']).parent.name}, alternating, 1 thread, median of {zeros['repeats']}: "
                f"{zeros['cpu_s']['dense']:.2f} vs {zeros['cpu_s']['pruned']:.2f} CPU s for a prefill "
                f"+ 32 decode steps (ratio {zeros['ratio']:.3f}).",
                "",
            ]
            if zeros
            else []
        ),
        "Throughput as measured by each evaluation (wall clock, so the machine's other load shows):",
        "",
        *speed_table(dense + stacked),
        *ablation_table(result["ablation"]),
    ]


# ---- smoke: a tiny run and one result built in-process -------------------------------------------


def smoke_setup(args, tmp: Path) -> Workflow:
    """A tiny finished run with dense+magnitude at 50% built and timed; the other result asked for
    (dense+magnitude at 2:4) is only planned (dry-run)."""
    args.run, args.methods, args.patterns, args.ablation = "tiny", ["magnitude"], ["0.5", "2:4"], True
    args.extra_patterns, args.stacked = [], []
    run_dir = tiny_run(tmp / "results" / args.run)
    from tyr.calib.calibrate import embed

    embed(run_dir / "model", run_dir / "calib" / "tokens.zarr", run_dir / "calib" / "embeddings.zarr")
    t0, cpu0 = time.perf_counter(), time.process_time()
    smoke_result(run_dir, "magnitude", "0.5")
    cost = {
        "wall_s": round(time.perf_counter() - t0, 2),
        "cpu_s": round(time.process_time() - cpu0, 2),
        "peak_rss_mb": None,
        "load_before": None,
        "load_after": None,
    }
    (run_dir / "dense+magnitude50" / COST).write_text(json.dumps(cost) + "\n")
    return Workflow(tmp, tiny_workflow_config(tmp, run=args.run), 1, dry_run=True)


def smoke_result(run_dir: Path, method: str, pattern: str) -> Path:
    """What the unstructured rules do for one result, called in-process: every layer in order, the
    export, its evaluation (held-out perplexity) and summary."""
    from tyr.core.io import read_json
    from tyr.evaluate.measure import evaluate_model
    from tyr.methods.unstructured.export import export
    from tyr.methods.unstructured.layer import prune_layer
    from tyr.methods.unstructured.patterns import Pattern
    from tyr.methods.unstructured.summary import summarize
    from tyr.model.spec import ModelSpec

    model, tokens = run_dir / "model", run_dir / "calib" / "tokens.zarr"
    out = run_dir / f"dense+{method}{Pattern.parse(pattern).tag}"
    n, acts, layers = ModelSpec.from_json(model / "spec.json").num_layers, run_dir / "calib" / "embeddings.zarr", []
    for layer in range(n):
        layers.append(out / "layers" / f"layer{layer}.safetensors")
        nxt = out / "acts" / f"out{layer}.zarr" if layer + 1 < n else None
        prune_layer(model, acts, layer, layers[-1], nxt, method=method, pattern=pattern)
        acts = nxt
    export(model, layers, out / "pruned", method=method, pattern=pattern, source="dense")
    dense = read_json(run_dir / "dense" / "eval.json")
    plan = {
        "perplexity": {k: {kk: v[kk] for kk in ("source", "label")} for k, v in dense["perplexity"].items()},
        "zeroshot": {"tasks": []},
        "skipped": dense.get("skipped", {}),
    }
    evaluate_model(out / "pruned", out / "eval" / "pruned.json", plan=plan, tokens_zarr=tokens, speed=False)
    summarize(
        run_dir / "dense" / "eval.json",
        run_dir / "dense" / "eval.json",
        out / "eval" / "pruned.json",
        model / "spec.json",
        out / "eval" / "summary.json",
    )
    return out


if __name__ == "__main__":
    main()
