"""Summaries of unstructured results and their comparison table.

Sparsities: `unstructured_sparsity` = removed / all weights of the source's projections;
`sparsity` = removed or structurally absent / the dense model's prunable parameters
(tyr.model.sparsity's backbone accounting), so Týr 25% followed by 50% unstructured is ~62.5%.
Perplexity, zero-shot and speed are paired with the dense model's exactly as for every other
method (tyr.evaluate.summary: per data set, same windows, same questions, same speed settings).
"""

from __future__ import annotations

from pathlib import Path

from tyr.calib.stores import calibration_digest
from tyr.core.io import atomic_write_text, read_json, write_json
from tyr.evaluate.summary import perplexity_pair, speed_pair, zeroshot_pair
from tyr.methods.unstructured.export import RECORD


def summarize(dense_json, source_json, pruned_json, spec_json, out_json, *, tokens_zarr=None) -> dict:
    """`eval/summary.json` of one unstructured result (source = the model it was pruned from)."""
    from tyr.model import sparsity
    from tyr.model.spec import ModelSpec

    dense, source, pruned = read_json(dense_json), read_json(source_json), read_json(pruned_json)
    record = read_json(Path(pruned["model"]) / RECORD)
    dense_prunable = sparsity.backbone_prunable_params(ModelSpec.from_json(spec_json))
    source_prunable = pruned["params"]["backbone_prunable"]
    summary = {
        "method": f"{record['source']}+{record['method']}{record['pattern']}",
        "source": record["source"],
        "unstructured": record["method"],
        "pattern": record["pattern"],
        "pattern_label": record["pattern_label"],
        "calibration_digest": calibration_digest(tokens_zarr) if tokens_zarr else None,
        "structural_sparsity": 1 - source_prunable / dense_prunable,
        "unstructured_sparsity": record["sparsity"],
        "sparsity": 1 - (source_prunable - record["removed"]) / dense_prunable,
        "prune_seconds": record["seconds"],
        "layer_error": _mean_rel_error(record),
    }
    summary["perplexity"] = {  # per data set (tyr.evaluate.plan), beside the source model's figure
        name: {
            **perplexity_pair(dense["perplexity"][name], p),
            "source_model": source.get("perplexity", {}).get(name, {}).get("perplexity"),
        }
        for name, p in pruned.get("perplexity", {}).items()
        if name in dense.get("perplexity", {})
    }
    if "zeroshot" in dense and "zeroshot" in pruned:
        summary.update(zeroshot_pair(dense["zeroshot"], pruned["zeroshot"]))
    if "speed" in dense and "speed" in pruned:
        summary["speed"] = speed_pair(dense["speed"], pruned["speed"])
    summary["skipped"] = {**dense.get("skipped", {}), **pruned.get("skipped", {})}
    write_json(out_json, summary)
    return summary


def _mean_rel_error(record) -> float:
    """Mean over all projections of the layer-wise relative error ‖XΔWᵀ‖²/‖XWᵀ‖² (calibration data)."""
    errors = [p["rel_error"] for l in record["layers"] for p in l["projections"].values()]
    return sum(errors) / max(len(errors), 1)


def table(summaries, out_md, out_json) -> list[dict]:
    """One row per result, grouped by source and pattern; written as Markdown and JSON."""
    rows = [read_json(p) for p in summaries]
    rows.sort(key=lambda s: (s["source"], s["unstructured_sparsity"], s["pattern"], s["unstructured"]))
    write_json(out_json, rows)
    datasets = sorted({name for s in rows for name in s.get("perplexity", {})})
    labels = {name: s["perplexity"][name].get("label") or name for s in rows for name in s.get("perplexity", {})}
    lines = [
        "| source | pattern | method | backbone sparsity | "
        + "".join(f"{labels[d]} ppl (source) | " for d in datasets)
        + "zero-shot avg | layer error | prune s | prefill tok/s | decode tok/s |",
        "|---" * (9 + len(datasets)) + "|",
    ]
    for s in rows:
        ppl, avg, speed = s.get("perplexity", {}), s.get("average", {}), s.get("speed", {})
        cells = "".join(
            f"{_g(ppl.get(d, {}).get('pruned'))} ({_g(ppl.get(d, {}).get('source_model'))}) | " for d in datasets
        )
        lines.append(
            f"| {s['source']} | {s['pattern_label']} | {s['unstructured']} | {s['sparsity']:.2%} | {cells}"
            f"{_g((avg.get('pruned') or {}).get('acc'))} | "
            f"{s['layer_error']:.4f} | {s['prune_seconds']:.0f} | "
            f"{_g((speed.get('prefill_tokens_per_s') or {}).get('pruned'))} | "
            f"{_g((speed.get('decode_tokens_per_s') or {}).get('pruned'))} |"
        )
    if rows:
        dense = {d: next(s["perplexity"][d]["dense"] for s in rows if d in s.get("perplexity", {})) for d in datasets}
        lines.append("\nDense perplexity: " + ", ".join(f"{labels[d]} {v:.2f}" for d, v in dense.items()) + ".")
    atomic_write_text(out_md, "\n".join(lines) + "\n")
    return rows


def _g(x) -> str:
    return "–" if x is None else f"{x:.4g}"
