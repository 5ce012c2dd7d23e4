"""`gguf/table.json`: one result's GGUF files beside the dense model's, as llama.cpp measured them.

One row per file type (the float file, then each quantization): size on disk, perplexity per data
set, prefill and decode tokens/s, and the ratios to the dense file of the same type. The float
row also compares llama.cpp's perplexity with PyTorch's evaluation of the same folder
(`eval/pruned.json` or `dense/eval.json`): `pytorch_relative_difference`, which the export is
held to (f32: 0.1 %, f16/bf16: 0.5 %; `within_tolerance`).
"""

from __future__ import annotations

from pathlib import Path

from tyr.core.io import read_json, write_json

TOLERANCE = {"f32": 1e-3, "f16": 5e-3, "bf16": 5e-3}


def gguf_table(checks, dense_checks, pytorch_eval_json, out_json, *, result: str, export=None) -> dict:
    """Write and return the table of `checks` (check JSONs of this result, float type first)
    against `dense_checks` (the dense model's, same types in the same order)."""
    pytorch = read_json(pytorch_eval_json).get("perplexity", {})
    rows = []
    for path, dense_path in zip(checks, dense_checks):
        check, dense = read_json(path), read_json(dense_path)
        rows.append(_row(_type_of(path), check, dense))
    float_row = rows[0]
    float_row["pytorch"] = {
        name: _agreement(float_row["type"], pytorch[name]["perplexity"], entry["perplexity"])
        for name, entry in float_row["perplexity"].items()
        if name in pytorch
    }
    table = {"result": result, "rows": rows, "llama_cpp_python": float_row["llama_cpp_python"]}
    if export:
        table["export"] = read_json(export)
    write_json(out_json, table)
    return table


def _type_of(check_json) -> str:
    return Path(check_json).stem.removeprefix("check-")


def _row(gtype: str, check: dict, dense: dict) -> dict:
    speed, dense_speed = check.get("speed", {}), dense.get("speed", {})
    row = {
        "type": gtype,
        "file": check["file"],
        "bytes": check["bytes"],
        "size_ratio": check["bytes"] / dense["bytes"],
        "perplexity": {
            name: {
                "perplexity": p["perplexity"],
                "dense": dense["perplexity"][name]["perplexity"],
                "label": p.get("label"),
                "windows": p["windows"],
                "seq_len": p["seq_len"],
            }
            for name, p in check["perplexity"].items()
            if name in dense["perplexity"]
        },
        "llama_cpp_python": check["llama_cpp_python"],
    }
    for key in ("prefill_tokens_per_s", "decode_tokens_per_s"):
        if key in speed and key in dense_speed:
            row[key], row[f"dense_{key}"] = speed[key], dense_speed[key]
            row[key.replace("tokens_per_s", "speedup")] = speed[key] / dense_speed[key]
    if speed:
        row["speed_setting"] = {k: speed[k] for k in ("prompt_tokens", "new_tokens", "repeats", "threads")}
    return row


def _agreement(gtype: str, pytorch: float, llama: float) -> dict:
    rel = abs(llama - pytorch) / pytorch
    return {
        "pytorch": pytorch,
        "llama_cpp": llama,
        "relative_difference": rel,
        "tolerance": TOLERANCE.get(gtype),
        "within_tolerance": rel <= TOLERANCE.get(gtype, 0),
    }


def markdown(table: dict) -> list[str]:
    """The table as markdown rows (report and model card)."""
    names = sorted({n for r in table["rows"] for n in r["perplexity"]})
    head = [
        "type",
        "size MB (× dense)",
        *[f"ppl {n} (dense)" for n in names],
        "prefill tok/s (× dense)",
        "decode tok/s (× dense)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table["rows"]:
        ppl = [
            f"{r['perplexity'][n]['perplexity']:.2f} ({r['perplexity'][n]['dense']:.2f})"
            if n in r["perplexity"]
            else "n/a"
            for n in names
        ]
        speed = [
            f"{r[k]:.1f} ({r[k.replace('tokens_per_s', 'speedup')]:.2f}×)" if k in r else "n/a"
            for k in ("prefill_tokens_per_s", "decode_tokens_per_s")
        ]
        lines.append(
            f"| {r['type']} | {r['bytes'] / 1e6:.1f} ({r['size_ratio']:.2f}×) | " + " | ".join(ppl + speed) + " |"
        )
    agreements = table["rows"][0].get("pytorch", {})
    lines += [""] if agreements else []
    for name, a in agreements.items():
        lines.append(
            f"- {table['rows'][0]['type']} GGUF vs PyTorch, perplexity {name}: {a['llama_cpp']:.4f} vs "
            f"{a['pytorch']:.4f} ({100 * a['relative_difference']:.3f} %; tolerance {100 * a['tolerance']:.1f} %)"
        )
    return lines
