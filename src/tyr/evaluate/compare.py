"""One comparison table of every method at every target sparsity (issue 6).

Reads the methods' `eval/summary.json` (identical calibration tokens, identical evaluation)
and the Snakemake benchmark files of the jobs each method needed, and writes
`table.md`, `table.json` and a plot of perplexity and zero-shot average against sparsity.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from tyr.core.io import atomic_path, atomic_write_text, read_json, write_json
from tyr.evaluate.report import fmt


def job_seconds(files) -> float | None:
    """Summed wall seconds of a method's own jobs; None when any of their records is missing
    (e.g. results copied without benchmarks/), rather than a partial sum."""
    if not files or not all(Path(f).is_file() for f in files):
        return None
    total = 0.0
    for f in files:
        with open(f) as fh:
            total += float(next(csv.DictReader(fh, delimiter="\t"))["s"])
    return total


def row(summary_path: Path, benchmarks) -> dict:
    """One method at one target: its summary and the benchmark files of the jobs that produced its
    genome (the workflow lists them: rules/common.smk `method_benchmarks`)."""
    s = read_json(summary_path)
    avg = s.get("average", {})
    ret = s.get("retention") or {}
    return {
        "method": s["method"],
        "target_sparsity": s.get("target_sparsity"),
        "sparsity": s["sparsity"],
        "params_total": s["params"]["pruned"]["total"],
        "params_dense": s["params"]["dense"]["total"],
        "perplexity": {name: p["pruned"] for name, p in (s.get("perplexity") or {}).items()},
        "perplexity_label": {name: p.get("label") for name, p in (s.get("perplexity") or {}).items()},
        "zeroshot_average": (avg.get("pruned") or {}).get("acc"),
        "zeroshot_average_dense": (avg.get("dense") or {}).get("acc"),
        "retention": ret.get("acc"),
        "seconds": job_seconds(benchmarks),
    }


def compare_table(summaries, benchmarks, dense_json, out_md, out_json, out_png) -> list[dict]:
    """`benchmarks[i]`: the benchmark files of the jobs behind `summaries[i]` (shared steps, export
    and evaluation left out: they are the same for every method)."""
    rows = sorted(
        (row(Path(p), b) for p, b in zip(summaries, benchmarks, strict=True)),
        key=lambda r: (r["target_sparsity"], r["method"]),
    )
    dense = read_json(dense_json)
    table = {
        "dense": {
            "perplexity": {n: p["perplexity"] for n, p in (dense.get("perplexity") or {}).items()},
            "zeroshot_average": (dense.get("average") or {}).get("acc"),
            "params_total": dense["params"]["total"],
        },
        "perplexity_sets": _sets(rows),
        "rows": rows,
        "verdict": verdict(rows),
    }
    write_json(out_json, table)
    atomic_write_text(out_md, markdown(table))
    plot(rows, table["dense"], out_png)
    return rows


MATCH_PP = 0.5  # rows further than this from the target (percentage points) are not matched


def _sets(rows) -> list[str]:
    names = [set(r["perplexity"]) for r in rows]
    common = set.intersection(*names) if names else set()
    return sorted(common, key=lambda n: (n != "wikitext2", n))


def verdict(rows) -> list[str]:
    """Plain statements of where Týr does not beat every other method (perplexity on every
    data set, and the zero-shot average); a method that prunes less is never called a winner."""
    notes = []
    for target in sorted({r["target_sparsity"] for r in rows}):
        at = [r for r in rows if r["target_sparsity"] == target]
        tyr = next((r for r in at if r["method"] == "tyr"), None)
        if tyr is None:
            continue
        for other in at:
            if other is tyr:
                continue
            denser = _denser(other, tyr)
            for name in _sets(at):
                if _num(other["perplexity"][name]) < _num(tyr["perplexity"][name]):
                    notes.append(
                        f"at {target:.0%}, {other['method']} has lower {name} perplexity than tyr "
                        f"({other['perplexity'][name]:.2f} vs {tyr['perplexity'][name]:.2f}){denser}"
                    )
            if _num(other["zeroshot_average"], -1) > _num(tyr["zeroshot_average"], -1):
                notes.append(
                    f"at {target:.0%}, {other['method']} has a higher zero-shot average than tyr "
                    f"({other['zeroshot_average']:.4f} vs {tyr['zeroshot_average']:.4f}){denser}"
                )
    return notes


def _denser(other, tyr) -> str:
    """A method that cannot meet the target exactly (whole layers, whole heads per layer) may
    keep more parameters than Týr; say so next to any win, in percentage points."""
    gap = tyr["sparsity"] - other["sparsity"]
    if gap >= MATCH_PP / 100:
        return f", but it prunes {gap * 100:.1f} pp less of the backbone: not a like-for-like win"
    return ""


def _matched(r) -> str:
    gap = (r["sparsity"] - r["target_sparsity"]) * 100
    return f"{gap:+.1f} pp" + ("" if abs(gap) <= MATCH_PP else " (not matched)")


def markdown(table) -> str:
    d, sets = table["dense"], table["perplexity_sets"]
    lines = [
        "| method | target | backbone sparsity | vs target | params | "
        + "".join(f"ppl {n} | " for n in sets)
        + "zero-shot avg (acc) | retention | wall time (s) |",
        "|---|---|---|---|---|" + "---|" * len(sets) + "---|---|---|",
        f"| dense | – | 0 | – | {d['params_total']:,} | "
        + "".join(f"{_f(d['perplexity'].get(n), '.2f')} | " for n in sets)
        + f"{_f(d['zeroshot_average'], '.4f')} | 1 | – |",
    ]
    for r in table["rows"]:
        lines.append(
            f"| {r['method']} | {r['target_sparsity']:.0%} | {r['sparsity']:.4f} | {_matched(r)} | "
            f"{r['params_total']:,} | "
            + "".join(f"{_f(r['perplexity'][n], '.2f')} | " for n in sets)
            + f"{_f(r['zeroshot_average'], '.4f')} | {_f(r['retention'], '.3f')} | {_f(r['seconds'], '.0f')} |"
        )
    labels = {n: l for r in table["rows"] for n, l in r["perplexity_label"].items()}
    lines += [""] + [f"ppl {n}: {labels.get(n) or n}." for n in sets]
    lines += [
        "",
        f"vs target: backbone sparsity minus the target; rows more than {MATCH_PP} pp away are marked "
        "(not matched) and their wins are not counted as wins. Wall time: the method's own jobs (supernet "
        "and search for tyr; iteration 1's supernet for uniform; the baseline job otherwise); shared "
        "preparation and evaluation excluded. Zero-shot accuracy over n questions has a standard error of "
        "about √(p(1−p)/n): ±0.025 for the average of 3 tasks × 100 questions near chance (0.25), so "
        "smaller differences are noise.",
        "",
    ]
    if table["verdict"]:
        lines += ["**Where Týr does not win:**", ""] + [f"- {n}" for n in table["verdict"]]
    else:
        lines += ["Týr has the lowest perplexity and the highest zero-shot average at every target."]
    return "\n".join(lines) + "\n"


def plot(rows, dense, out_png) -> None:
    import matplotlib

    sets = _sets(rows)
    ppl_set = sets[0] if sets else None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method in sorted({r["method"] for r in rows}):
        rs = sorted((r for r in rows if r["method"] == method), key=lambda r: r["sparsity"])
        if ppl_set:
            axes[0].plot([r["sparsity"] for r in rs], [r["perplexity"][ppl_set] for r in rs], "o-", label=method)
        axes[1].plot([r["sparsity"] for r in rs], [r["zeroshot_average"] for r in rs], "o-", label=method)
    if ppl_set and dense["perplexity"].get(ppl_set):
        axes[0].axhline(dense["perplexity"][ppl_set], color="k", ls=":", label="dense")
    if dense["zeroshot_average"]:
        axes[1].axhline(dense["zeroshot_average"], color="k", ls=":", label="dense")
    axes[0].set(xlabel="backbone sparsity", ylabel=f"perplexity ({ppl_set or 'none'})", yscale="log")
    axes[1].set(xlabel="backbone sparsity", ylabel="zero-shot average (acc)")
    axes[0].legend()
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def _num(x, missing=math.inf):
    return missing if x is None else x


def _f(x, spec) -> str:
    return fmt(x, spec, missing="–")
