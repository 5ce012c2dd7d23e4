"""The model card (README.md) of an exported model: what was pruned, how much, per layer, on
which calibration data, how it is evaluated, and what it says beside the dense model."""

from __future__ import annotations

from pathlib import Path

from tyr.calib import stores
from tyr.core.io import read_json
from tyr.core.markdown import cell, pct


def model_card(summary: dict, spec, card: dict) -> str:
    """README.md of an exported model: what was pruned, how much, on what data, how well."""
    p = summary["params"]
    base = card.get("base_model")
    target = summary["target_sparsity"]
    lines = [
        "---",
        "library_name: transformers",
        "tags: [pruned, structured-pruning, tyr]",
        *([f"base_model: {base}"] if base else []),
        "---",
        "",
        f"# {'Pruned ' + base if base else 'Pruned model'} (Týr-the-Pruner, {summary['method']})",
        "",
        "Structurally pruned: whole attention heads and MLP channels were removed, so every "
        "layer has its own width (see the table). Load with `trust_remote_code=True`; the "
        "modeling code (`modeling_tyr.py`) is self-contained (torch + transformers).",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "model = AutoModelForCausalLM.from_pretrained(PATH, trust_remote_code=True)",
        "tokenizer = AutoTokenizer.from_pretrained(PATH, trust_remote_code=True)  # it reads config.json too",
        "```",
        "",
        "## Pruning",
        "",
        "| | value |",
        "|---|---|",
        f"| method | {summary['method']} |",
        f"| source architecture | {spec.architecture} ({spec.model_type}) |",
        f"| target backbone sparsity | {pct(target)} |",
        f"| actual backbone sparsity | {pct(summary['sparsity'])} |",
        f"| prunable backbone params (q/k/v/o, gate/up/down) | {p['backbone_prunable']:,} of "
        f"{p['dense_backbone_prunable']:,} |",
        f"| backbone params (incl. norms) | {p['backbone']:,} of {p['dense_backbone']:,} |",
        f"| total params | {p['total']:,} of {p['dense_total']:,} |",
        *(
            [f"| compensation biases added (outside the sparsity accounting) | {p['added_bias']:,} |"]
            if p.get("added_bias")
            else []
        ),
        "",
        "Backbone sparsity = removed / all parameters of the prunable projections; embeddings, "
        "norms and lm_head are never pruned.",
        "",
        "## Per-layer distribution",
        "",
        "| layer | query heads | KV heads | attention sparsity | MLP channels | MLP sparsity |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for i, s in enumerate(summary["layers"]):
        attn = 1 - s["q_heads"] / spec.num_heads
        mlp = 1 - s["intermediate"] / spec.intermediate_size[i]
        lines.append(
            f"| {i} | {s['q_heads']}/{spec.num_heads} | {s['kv_heads']}/{spec.num_kv_heads} | "
            f"{pct(attn)} | {s['intermediate']}/{spec.intermediate_size[i]} | {pct(mlp)} |"
        )
    lines += ["", "## Calibration data", "", *_kv_table(_calibration(card.get("tokens_zarr", card.get("calibration"))))]
    lines += ["", "## Evaluation", "", *_evaluation(card)]
    if card.get("continuations"):
        lines += ["", "## What it says (greedy continuations)", "", "| prompt | dense | pruned |", "|---|---|---|"]
        lines += [f"| {cell(c['prompt'])} | {cell(c['dense'])} | {cell(c['pruned'])} |" for c in card["continuations"]]
    return "\n".join(lines) + "\n"


def side_by_side(dense_dir, pruned_dir, prompts, new_tokens: int) -> list[dict]:
    """Greedy continuations of `prompts` by the dense and the pruned model."""
    from tyr.evaluate.measure import continuations, load

    out = {}
    for name, folder in (("dense", dense_dir), ("pruned", pruned_dir)):
        model, tokenizer = load(folder)
        out[name] = continuations(model, tokenizer, prompts, new_tokens=new_tokens)
        del model
    return [
        {"prompt": d["prompt"], "dense": d["continuation"], "pruned": p["continuation"]}
        for d, p in zip(out["dense"], out["pruned"])
    ]


def _evaluation(card: dict) -> list[str]:
    """The evaluation this model gets (a `tyr.evaluate.plan` plan: data sets, and what is skipped
    and why), or the numbers of an evaluation JSON when one is given."""
    plan = card.get("evaluation_plan")
    if plan is None and card.get("evaluation") is None:  # the workflow's exports: weights first, numbers after
        return [
            "The workflow evaluates this model beside the dense one: `eval/summary.json` beside this folder "
            "and the report of the run hold the data sets and the numbers."
        ]
    if plan is None:
        return _kv_table(_flatten(_load_maybe(card.get("evaluation"))))
    lines = [
        "The workflow evaluates this model beside the dense one on the same data "
        "(`eval/summary.json` and the report of the run hold the numbers):",
        "",
    ]
    lines += [f"- perplexity `{name}`: {p['label']}" for name, p in plan["perplexity"].items()]
    if plan["zeroshot"]["tasks"]:
        lines.append(
            f"- zero-shot: {', '.join(plan['zeroshot']['tasks'])} ({plan['zeroshot']['dir'] or 'lm-eval hub tasks'})"
        )
    lines += [f"- {name}: skipped ({why})" for name, why in plan.get("skipped", {}).items()]
    return lines


def _calibration(calib) -> dict:
    if calib is None or isinstance(calib, dict):
        return calib or {}
    info = {k: v for k, v in stores.read_attrs(calib).items() if k != "checksums"}
    for name, shape in stores.split_shapes(calib).items():
        info[f"{name} sequences x tokens"] = "x".join(map(str, shape))
    info["calibration_digest"] = stores.calibration_digest(calib)  # the same key as summary.json's
    return info


def _load_maybe(obj):
    return read_json(obj) if isinstance(obj, (str, Path)) else (obj or {})


def _flatten(d: dict, prefix="") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


def _kv_table(d: dict) -> list[str]:
    if not d:
        return ["Not recorded."]
    rows = [f"| {k} | {f'{v:.4g}' if isinstance(v, float) else v} |" for k, v in d.items()]
    return ["| | |", "|---|---|", *rows]
