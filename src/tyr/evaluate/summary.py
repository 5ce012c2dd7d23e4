"""`eval/summary.json`: a pruned model's evaluation beside its dense model's, on the same data.

Every perplexity is kept under the name of its data set (`tyr.evaluate.plan`), paired only with
the dense figure of the same data set and windows; zero-shot tasks, speeds and greedy
continuations are paired the same way, and what was skipped is carried with its reason.
"""

from __future__ import annotations

from pathlib import Path

from tyr.calib.stores import calibration_digest
from tyr.core.io import read_json, write_json
from tyr.evaluate.zeroshot import METRICS, average
from tyr.model.spec import SUBLAYERS


def summarize(
    dense_json, pruned_json, spec_json, genome_json, out_json, *, method=None, tokens_zarr=None, gguf_json=None
) -> dict:
    """`eval/summary.json`: dense and pruned side by side, with retention and speed-ups.

    It also records the genome's per-layer distribution, so a report needs only summaries, and
    the digest of the run's calibration tokens (`tokens_zarr`). `method` defaults to the name of
    the folder above `eval/` (results/.../{method}/eval/). `gguf_json`: the result's
    `gguf/table.json` (tyr.evaluate.gguf_table), carried as `gguf`.
    """
    from tyr.model import sparsity
    from tyr.model.spec import ModelSpec

    dense, pruned = read_json(dense_json), read_json(pruned_json)
    spec, genome = ModelSpec.from_json(spec_json), read_json(genome_json)
    if dense["params"]["backbone_prunable"] != sparsity.backbone_prunable_params(spec):
        raise ValueError(f"{dense_json} does not describe the dense model of {spec_json}")
    summary = {
        "method": method or Path(out_json).resolve().parent.parent.name,
        "dense": str(dense["model"]),
        "pruned": str(pruned["model"]),
        "calibration_digest": calibration_digest(tokens_zarr) if tokens_zarr else None,
        "target_sparsity": genome.get("target_sparsity"),
        "genome_sparsity": genome.get("sparsity"),
        "sparsity": sparsity.backbone_sparsity(spec, _kept_prunable(pruned)),
        "params": {
            "dense": dense["params"],
            "pruned": pruned["params"],
            "total_ratio": pruned["params"]["total"] / dense["params"]["total"],
        },
    }
    summary["distribution"] = distribution(spec, genome)
    summary["perplexity"] = {
        name: perplexity_pair(dense["perplexity"][name], p)
        for name, p in pruned.get("perplexity", {}).items()
        if name in dense.get("perplexity", {})
    }
    if "zeroshot" in dense and "zeroshot" in pruned:
        summary.update(zeroshot_pair(dense["zeroshot"], pruned["zeroshot"]))
    if "speed" in dense and "speed" in pruned:
        summary["speed"] = speed_pair(dense["speed"], pruned["speed"])
    if "continuations" in dense and "continuations" in pruned:
        summary["continuations"] = continuation_pairs(dense["continuations"], pruned["continuations"])
    summary["skipped"] = {**dense.get("skipped", {}), **pruned.get("skipped", {})}
    if "selection" in genome:  # Týr: the held-out choice among the iterations' genomes
        summary["selection"] = genome["selection"]
    recovery = Path(pruned["model"]) / "tyr_recovery.json"  # a `<method>+recover` result (tyr.recover.output)
    if recovery.is_file():
        r = read_json(recovery)
        summary["recovery"] = {k: r[k] for k in ("seconds", "tokens", "final_loss", "compute_dtype", "device")}
        summary["recovery"].update(mode=r["options"]["mode"], steps=r["options"]["steps"], seed=r["options"]["seed"],
                                   curve=r.get("curve", []))  # fmt: skip
    if gguf_json is not None:  # llama.cpp's own measurements of the GGUF files (rules/gguf.smk)
        summary["gguf"] = read_json(gguf_json)
    write_json(out_json, summary)
    return summary


def _kept_prunable(pruned: dict) -> int:
    """Kept prunable parameters in tyr.model.sparsity's accounting.

    An export records it (compensation biases excluded); the loaded model's count must then
    agree on the total, or the evaluated folder is not the exported one.
    """
    record = pruned.get("pruning")
    if record is None:
        return pruned["params"]["backbone_prunable"]
    if record["params"]["total"] != pruned["params"]["total"]:
        raise ValueError(
            f"{pruned['model']}: holds {pruned['params']['total']} parameters, its export "
            f"record {record['params']['total']}"
        )
    return record["params"]["backbone_prunable"]


def distribution(spec, genome) -> list[dict]:
    """Per layer: kept units and unit sparsity of attention (query heads) and MLP (channels)."""
    rows = []
    for layer, g in enumerate(genome["layers"]):
        row = {"layer": layer}
        for sub in SUBLAYERS:
            units = spec.units(sub, layer)
            row.update({f"{sub}_kept": g[sub], f"{sub}_units": units, f"{sub}_sparsity": 1 - g[sub] / units})
        rows.append(row)
    return rows


def perplexity_pair(d, p) -> dict:
    if (d["seq_len"], d["windows"]) != (p["seq_len"], p["windows"]):
        raise ValueError(
            f"perplexities were measured differently: {d['seq_len']}x{d['windows']} vs {p['seq_len']}x{p['windows']}"
        )
    return {
        "dense": d["perplexity"],
        "pruned": p["perplexity"],
        "ratio": p["perplexity"] / d["perplexity"],
        "seq_len": d["seq_len"],
        "windows": d["windows"],
        "source": d.get("source"),
        "label": d.get("label"),
    }


def zeroshot_pair(d, p) -> dict:
    if set(d) != set(p) or any((d[t]["n"], d[t]["limit"]) != (p[t]["n"], p[t]["limit"]) for t in d):
        raise ValueError("dense and pruned zero-shot results cover different tasks or sample counts")
    tasks = {
        t: {"dense": {m: d[t][m] for m in METRICS}, "pruned": {m: p[t][m] for m in METRICS}, "n": d[t]["n"]}
        for t in sorted(d)
    }
    avg_d, avg_p = average(d), average(p)
    retention = {m: avg_p[m] / avg_d[m] if avg_d[m] else None for m in METRICS}
    return {"zeroshot": tasks, "average": {"dense": avg_d, "pruned": avg_p}, "retention": retention}


def speed_pair(d, p) -> dict:
    keys = ("prompt_tokens", "new_tokens", "batch_size", "device", "threads")
    if any(d.get(k) != p.get(k) for k in keys):
        raise ValueError(f"speeds were measured under different settings: {[(k, d.get(k), p.get(k)) for k in keys]}")
    out = {"settings": {k: d[k] for k in keys}}
    for k in ("prefill_tokens_per_s", "decode_tokens_per_s", "peak_memory_mib", "weights_mib"):
        out[k] = {"dense": d[k], "pruned": p[k]}
    out["prefill_speedup"] = p["prefill_tokens_per_s"] / d["prefill_tokens_per_s"]
    out["decode_speedup"] = p["decode_tokens_per_s"] / d["decode_tokens_per_s"]
    out["memory_ratio"] = p["peak_memory_mib"] / d["peak_memory_mib"]
    return out


def continuation_pairs(d, p) -> list[dict]:
    if [x["prompt"] for x in d] != [x["prompt"] for x in p]:
        raise ValueError("dense and pruned continuations answer different prompts")
    return [{"prompt": a["prompt"], "dense": a["continuation"], "pruned": b["continuation"]} for a, b in zip(d, p)]
