"""The cost model's result: measurements, fitted laws, the out-of-sample check and the 8B/70B
predictions, as markdown (what docs/cost-model.md cites) and JSON (what --refit reads back)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path

from lib.results import suffixed

from costmodel.fit import points
from costmodel.model import PATH_M2, PATH_MD, supernet_memory
from costmodel.shapes import CPU_THREADS_SPEEDUP, GPU, SHAPES


def holdout_lines(check: dict, shape: str) -> list:
    if not check:
        return []
    lines = [
        f"Out of sample: the {shape} supernet layer from laws fitted without it (CPU s):",
        "",
        "| piece | predicted | measured | ratio |",
        "|---|---|---|---|",
    ]
    for key, v in check.items():
        lines.append(f"| {key} | {v['predicted_s']:.2f} | {v['measured_s']:.2f} | {v['ratio']:.2f} |")
    return lines + [""]


def fmt_s(x: float) -> str:
    if x is None:
        return "–"
    for unit, div in (("d", 86400), ("h", 3600), ("min", 60)):
        if x >= 2 * div:
            return f"{x / div:.1f} {unit}"
    return f"{x:.3g} s"


def fmt_b(x: float) -> str:
    for unit, div in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if x >= div:
            return f"{x / div:.3g} {unit}"
    return f"{x:.3g} B"


def measurement_lines(results) -> list:
    lines = [
        "| measurement | shape | tokens | CPU s | process wall s | peak − start RSS | load 1-min (start→end) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        j = r["job"]
        what = r["kind"] + (f" {j['dtype']}" if "dtype" in j else "")
        shape = j.get("shape") or f"{j['sublayer']} w={j['width']} d_out={j['d_out']}"
        toks = {"supernet": "prune", "topk": "fitness", "fitness": "fitness"}.get(r["kind"])
        ntok = "–" if toks is None else "×".join(map(str, j[toks]))
        t = r["total"]
        lines.append(
            f"| {what} | {shape} | {ntok} | {t['cpu']:.2f} | {r['process_wall']:.1f} | "
            f"{fmt_b(t['peak_delta_bytes'])}{'' if t['peak_above_startup'] else ' (≤ start-up peak)'} | "
            f"{r['load'][0]:.2f}→{r['load'][1]:.2f} |"
        )
    return lines


def fitness_lines(results) -> list:
    """Per token, the warm fitness pieces as measured: one decoder layer at ~50 % (attention + MLP
    branch) and the LM head with the coarse KL; and a full dense_topk per token."""
    lines = [
        "| shape | dtype | tokens | layer at 50 % µs/token | LM head + KL µs/token | module build MB/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in points(results, "fitness"):
        w, c = r["warm"], r["cold"]
        subs = [v for k, v in w.items() if k.startswith("sublayer/")]
        toks = w["head"]["tokens"]
        built = [v for k, v in c.items() if k.startswith("build/")]
        rate = sum(v["bytes"] for v in built) / max(sum(v["cpu"] for v in built), 1e-9) / 1e6
        lines.append(
            f"| {r['job']['shape']} | {r['job']['dtype']} | {toks:.0f} | "
            f"{1e6 * sum(v['cpu'] for v in subs) / toks:.1f} | {1e6 * w['head']['cpu'] / toks:.1f} | "
            f"{rate:.0f} |"
        )
    return lines


def law_lines(laws) -> list:
    lines = ["| law | constant | unit | predicted/measured per point |", "|---|---|---|---|"]
    for name, law in laws.items():
        if name in ("path", "holdout"):
            continue
        pts = ", ".join(f"{p['label']} {p['ratio']:.2f}" for p in law["points"] if p["ratio"] is not None)
        const = "–" if law["constant"] is None else f"{law['constant']:.3e}"
        eff = "" if not law["constant"] or "FLOP" not in law["unit"] else f" ({1e-9 / law['constant']:.1f} GFLOP/s)"
        lines.append(f"| {name} | {const}{eff} | {law['unit']} | {pts} |")
    p = laws["path"]
    if p.get("constants"):
        c = ", ".join(f"{x:.3e}" for x in p["constants"])
        pts = ", ".join(f"{q['label']} {q['ratio']:.2f}" for q in p["points"])
        lines.append(f"| path | {c} | {p['unit']} | {pts} |")
        if "held_out" in p:
            lines.append(
                f"| path, held out | – | fit without {p['held_out']['label']} | "
                f"{p['held_out']['label']} {p['held_out']['ratio']:.2f} |"
            )
    return lines


PREDICTION_ROWS = [
    ("supernet layer, iteration 1, 1 CPU thread", lambda p: fmt_s(sum(p["per_layer_iter1"]["cpu1"].values()))),
    (
        "  of which path / Hessian / forwards",
        lambda p: " / ".join(fmt_s(p["per_layer_iter1"]["cpu1"][k]) for k in ("path", "hessian", "forward")),
    ),
    ("supernet layer, 16 host threads (assumed 10x)", lambda p: fmt_s(sum(p["per_layer_iter1"]["host16"].values()))),
    ("supernet layer, 1 GPU (devices.supernet: auto)", lambda p: fmt_s(sum(p["per_layer_iter1"]["gpu"].values()))),
    (
        "  of which stream through the host (zarr reads, write, PCIe)",
        lambda p: fmt_s(p["per_layer_iter1"]["gpu"]["stream"]),
    ),
    ("supernet, all layers × iterations, 16 host threads", lambda p: fmt_s(p["supernet_total"]["host16"])),
    ("supernet, all layers × iterations, 1 GPU", lambda p: fmt_s(p["supernet_total"]["gpu"])),
    (
        "dense_topk, 16 host threads / 1 GPU",
        lambda p: " / ".join(fmt_s(p["other_stages"][w]["dense_topk"]) for w in ("host16", "gpu")),
    ),
    ("dense_topk's fp32 model fits one GPU", lambda p: "yes" if p["dense_topk_fits"] else "no: on the host"),
    ("search generation, 1 CPU thread", lambda p: fmt_s(p["per_generation"]["cpu1_x1"])),
    ("search generation, 1 GPU (1 GiB module LRU)", lambda p: fmt_s(p["per_generation"]["gpu_lru_x1"])),
    ("search generation, 8 GPUs (1 GiB module LRU)", lambda p: fmt_s(p["per_generation"]["gpu_lru_x8"])),
    ("search generation, 1 GPU (parent's modules pinned)", lambda p: fmt_s(p["per_generation"]["gpu_pinned_x1"])),
    ("search generation, 8 GPUs (parent's modules pinned)", lambda p: fmt_s(p["per_generation"]["gpu_pinned_x8"])),
    ("total, 1 CPU thread", lambda p: fmt_s(p["totals"]["cpu1_x1"])),
    ("total, before pinning (host supernet), 1 GPU", lambda p: fmt_s(p["totals"]["before_pinning_x1"])),
    ("total, before pinning (host supernet), 8 GPUs", lambda p: fmt_s(p["totals"]["before_pinning_x8"])),
    ("total, supernet + dense_topk on 16 host threads, 1 GPU", lambda p: fmt_s(p["totals"]["host_supernet_x1"])),
    ("total, supernet + dense_topk on 16 host threads, 8 GPUs", lambda p: fmt_s(p["totals"]["host_supernet_x8"])),
    ("total, as coded (devices auto), 1 GPU", lambda p: fmt_s(p["totals"]["as_coded_x1"])),
    ("total, as coded (devices auto), 8 GPUs", lambda p: fmt_s(p["totals"]["as_coded_x8"])),
]
MEMORY_ROWS = (
    "supernet_job_peak",
    "supernet_hessian_one",
    "search_host_dense_fp32",
    "search_host_dense_fp32_x8",
    "search_gpu_per_process",
    "dense_topk_gpu",
    "supernet_disk_per_iteration",
    "supernet_disk_all_iterations",
    "topk_store",
    "activation_store_per_layer",
)


def prediction_lines(preds: dict, mems: dict) -> list:
    lines = ["| | " + " | ".join(preds) + " |", "|---|" + "---|" * len(preds)]
    for label, f in PREDICTION_ROWS:
        lines.append(f"| {label} | " + " | ".join(f(p) for p in preds.values()) + " |")
    for key in MEMORY_ROWS:
        lines.append(f"| {key} | " + " | ".join(fmt_b(mems[m][key]) for m in preds) + " |")
    return lines


def supernet_memory_check(results) -> list:
    """Measured peaks against the formulas: whole supernet jobs, and prune_levels alone, whose
    8·(PATH_M2·w² + PATH_MD·w·d_out) is what dominates the 8B and 70B jobs."""
    lines = []
    for r in points(results, "supernet"):
        j = r["job"]
        pred = supernet_memory(SHAPES[j["shape"]], j["prune"][0] * j["prune"][1])["supernet_job_peak"]
        lines.append(
            f"- supernet job, {j['shape']}: measured {fmt_b(r['total']['peak_delta_bytes'])}, "
            f"formula {fmt_b(pred)} (formula/measured {pred / r['total']['peak_delta_bytes']:.2f})"
        )
    for r in points(results, "path"):
        i = r["info"]
        pred = 8 * (PATH_M2 * i["width"] ** 2 + PATH_MD * i["width"] * i["d_out"])
        lines.append(
            f"- prune_levels, w={i['width']} d_out={i['d_out']}: measured "
            f"{fmt_b(r['total']['peak_delta_bytes'])}, formula {fmt_b(pred)} "
            f"(formula/measured {pred / r['total']['peak_delta_bytes']:.2f})"
        )
    return lines


def environment(quick: bool, loads, cfg: dict) -> dict:
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "command": " ".join(["OMP_NUM_THREADS=1", "nice -n 19", "python", *sys.argv]),
        "quick": quick,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "loadavg_start": loads[0],
        "loadavg_end": loads[1],
        "layers_per_model": 1,
        "cpu_threads_speedup_assumed": CPU_THREADS_SPEEDUP,
        "gpu_assumed": GPU,
        "preset": {k: cfg[k] for k in ("data", "supernet", "search")},
    }


def write_report(stem: Path, env: dict, results, laws, preds, mems) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    suffixed(stem, ".json").write_text(
        json.dumps(
            {"environment": env, "measurements": results, "laws": laws, "predictions": preds, "memory": mems},
            indent=1,
            default=str,
        )
    )
    loads = (env["loadavg_start"], env["loadavg_end"])
    commands = [f"`{c}`" for c in env.get("sources", [env["command"]])]
    lines = [
        f"# Cost scaling on this CPU ({'quick smoke run' if env['quick'] else 'full run'})",
        "",
        "Measured by "
        + " and ".join(commands)
        + (f"; fitted by `{env['refit_command']}`" if "refit_command" in env else "")
        + ".",
        "",
        f"{env['cpu']}, {env['cores']} cores, torch {env['torch']}; every measurement in a fresh process on "
        f"one thread. Load average (1, 5, 15 min) at the start {loads[0]}, at the end {loads[1]}: with both "
        "cores busy the wall clock inflates, CPU seconds much less. Models have ONE decoder layer "
        "(per-layer costs are linear in depth), random weights (tyr.testing), tied embeddings.",
        "",
        "## Measurements",
        "",
        *measurement_lines(results),
        "",
        "Search fitness per token (warm module cache; CPU, one thread):",
        "",
        *fitness_lines(results),
        "",
        "## Fitted laws (CPU seconds, one thread)",
        "",
        *law_lines(laws),
        "",
        "Supernet job memory, measured (ru_maxrss over the start) vs the formula:",
        "",
        *holdout_lines(laws["holdout"]["pieces"], laws["holdout"]["shape"]),
        *supernet_memory_check(results),
        "",
        "## Paper preset predicted (one target sparsity; GPU columns are extrapolations, not measurements)",
        "",
        "Recompute share per selection stage (8B): "
        + ", ".join(f"{x:.2f}" for x in preds["Llama-3.1-8B"]["recompute"])
        + ".",
        "",
        *prediction_lines(preds, mems),
        "",
    ]
    suffixed(stem, ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
