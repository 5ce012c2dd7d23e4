"""Markdown report and PNG plots of pruning runs (matplotlib, Agg backend).

Every function takes explicit input paths and writes explicit outputs (atomically), so
the workflow can wrap them in rules. Inputs:
  summaries    `eval/summary.json` of `tyr.evaluate.summary.summarize` (carry the per-layer
               distribution, so the report needs no spec)
  genomes      optional `genome.json`s (fitness, iteration), matched to summaries by folder
  generations  optional `iter{i}/search/generations.tsv` files; parsed generically: the first
               column is the generation, the first column whose name contains "best" is
               the best fitness of that generation
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from tyr.core.io import atomic_path, atomic_write_text, read_json
from tyr.core.markdown import cell, pct


def write_report(summaries, out_markdown, *, genomes=(), generations=(), shares=(), plots_dir=None) -> Path:
    """Write `out_markdown` and its plots (default: a `plots/` folder beside it)."""
    out_markdown = Path(out_markdown)
    plots = Path(plots_dir) if plots_dir else out_markdown.parent / "plots"
    runs = [_run(Path(s), _match_genome(Path(s), genomes)) for s in summaries]
    lines = ["# tyr pruning report", ""]
    lines += _results_table(runs) + [""] + _data_notes(runs) + [""] + _task_table(runs)
    lines += [""] + _continuations(runs) + _gguf_tables(runs) + _recovery_curve(runs, out_markdown, plots)
    if runs:
        plot_tradeoff(runs, plots / "tradeoff.png")
        lines += ["", "## Quality against sparsity", "", _img(out_markdown, plots / "tradeoff.png")]
        lines += ["", "## Per-layer sparsity distribution", ""]
        for run in runs:
            png = plots / f"distribution_{run['slug']}.png"
            plot_distribution(
                run["summary"]["distribution"], png, title=run["label"], target=run["summary"].get("target_sparsity")
            )
            lines += [f"### {run['label']}", "", _img(out_markdown, png), ""]
    lines += _share_table(shares) + _selection_table(runs)
    if generations:
        plot_fitness(generations, plots / "fitness.png")
        lines += [
            "## Search: fitness per generation, every iteration in a row",
            "",
            _img(out_markdown, plots / "fitness.png"),
            "",
            "Fitness: KL(dense ‖ candidate) of next-token distributions; lower is better. Solid: the "
            "parent of each generation on the same fixed sequences of the selection split (no search "
            "decision uses them), comparable across generations and iterations. Dotted: the best of each "
            "generation on its own fresh sample of the fitness split, which is why it jumps.",
        ]
    atomic_write_text(out_markdown, "\n".join(lines).rstrip() + "\n")
    return out_markdown


# ---- runs ------------------------------------------------------------------------------------


def _run(summary_path: Path, genome: dict | None) -> dict:
    s = read_json(summary_path)
    method, target = s.get("method") or summary_path.parent.parent.name, s.get("target_sparsity")
    label = f"{method} @ {pct(target, 0)}" if target is not None else method
    slug = f"{method}_s{round(100 * target)}" if target is not None else method
    return {"summary": s, "genome": genome or {}, "label": label, "slug": slug, "path": summary_path}


def _match_genome(summary_path: Path, genomes) -> dict | None:
    """The genome of `.../{method}/genome.json` for a summary at `.../{method}/eval/summary.json`."""
    run_dir = summary_path.resolve().parent.parent
    for g in genomes:
        if Path(g).resolve().parent == run_dir:
            return read_json(g)
    return None


def perplexity_sets(summaries) -> list[str]:
    """Names of the perplexity data sets the summaries share, WikiText-2 first."""
    names = [set(s.get("perplexity") or {}) for s in summaries]
    common = set.intersection(*names) if names else set()
    return sorted(common, key=lambda n: (n != "wikitext2", n))


def _results_table(runs) -> list[str]:
    sets = perplexity_sets([r["summary"] for r in runs])
    lines = [
        "## Results",
        "",
        "| run | backbone sparsity | params | "
        + "".join(f"ppl {n} (dense → pruned) | " for n in sets)
        + "avg acc_norm (dense → pruned) | retention | prefill × | decode × | fitness |",
        "|---|---:|---:|" + "---|" * len(sets) + "---|---:|---:|---:|---:|",
    ]
    for r in runs:
        s = r["summary"]
        avg, speed = s.get("average"), s.get("speed", {})
        ppl = "".join(f"{_arrow(s['perplexity'][n], 'dense', 'pruned', '.2f')} | " for n in sets)
        lines.append(
            f"| {r['label']} | {pct(s['sparsity'])} | "
            f"{s['params']['pruned']['total']:,} / {s['params']['dense']['total']:,} "
            f"| {ppl}{_arrow(avg and {k: v['acc_norm'] for k, v in avg.items()}, 'dense', 'pruned', '.4f')} "
            f"| {fmt((s.get('retention') or {}).get('acc_norm'), '.3f')} "
            f"| {fmt(speed.get('prefill_speedup'), '.2f')} | {fmt(speed.get('decode_speedup'), '.2f')} "
            f"| {fmt(r['genome'].get('fitness'), '.4g')} |"
        )
    return lines


def _data_notes(runs) -> list[str]:
    """What each perplexity was measured on, and what was skipped and why (tyr.evaluate.plan)."""
    labels, skipped = {}, {}
    for r in runs:
        for name, p in (r["summary"].get("perplexity") or {}).items():
            labels.setdefault(name, (p.get("label") or p.get("source"), p["windows"], p["seq_len"]))
        skipped.update(r["summary"].get("skipped") or {})
    lines = ["Evaluation data:", ""]
    lines += [f"- ppl {n}: {label} ({w} windows × {t} tokens)" for n, (label, w, t) in sorted(labels.items())]
    lines += [f"- {name}: **skipped**: {why}" for name, why in sorted(skipped.items())]
    digests = sorted({r["summary"].get("calibration_digest") for r in runs} - {None})
    lines += [f"- calibration tokens: sha256 `{d}` (`calibration_digest`)" for d in digests]
    return lines


def _gguf_tables(runs) -> list[str]:
    """llama.cpp's measurements of each result's GGUF files (`gguf.enabled`; tyr.evaluate.gguf_table)."""
    from tyr.evaluate.gguf_table import markdown

    lines = []
    for run in runs:
        if "gguf" in run["summary"]:
            lines += ["", f"## In llama.cpp (GGUF): {run['label']}", "", *markdown(run["summary"]["gguf"])]
    return lines


def _continuations(runs) -> list[str]:
    """Greedy continuations of the fixed prompts, dense and every pruned model side by side."""
    rows = [(r["label"], c) for r in runs for c in r["summary"].get("continuations") or []]
    if not rows:
        return []
    lines = ["## What the models say (greedy continuations)", ""]
    for prompt in dict.fromkeys(c["prompt"] for _, c in rows):
        lines += [f"**{prompt}**", "", "| model | continuation |", "|---|---|"]
        answers = [(label, c) for label, c in rows if c["prompt"] == prompt]
        lines.append(f"| dense | {cell(answers[0][1]['dense'])} |")
        lines += [f"| {label} | {cell(c['pruned'])} |" for label, c in answers]
        lines.append("")
    return lines


def _recovery_curve(runs, out_markdown, plots) -> list[str]:
    """Every `+recover` result's held-out perplexity against its training minutes (tyr.recover.train:
    one run's own points on its schedule, not shorter schedules), a plot and a table."""
    curves = {r["label"]: r["summary"]["recovery"]["curve"] for r in runs
              if (r["summary"].get("recovery") or {}).get("curve")}  # fmt: skip
    if not curves:
        return []
    png = plots / "recovery.png"
    plot_recovery(curves, png)
    lines = ["", "## Recovery: held-out perplexity during training", "", _img(out_markdown, png), "",
             "| result | step | minutes | held-out ppl |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {label} | {p['step']} | {p['seconds'] / 60:.1f} | {p['heldout_perplexity']:.2f} |"
              for label, points in curves.items() for p in points]  # fmt: skip
    return lines + ["", "Minutes of training only (the teacher's targets, once before the first step, and "
                    "these evaluations are not counted); the held-out split is never trained on."]  # fmt: skip


def _share_table(shares) -> list[str]:
    """Týr's attention/MLP split per target (`share.json` of tyr.search.split): every candidate's perplexity."""
    lines = []
    for path in shares:
        r = read_json(path)
        lines += [
            f"## Attention/MLP split: Týr @ {pct(r['target_sparsity'], 0)}",
            "",
            f"Near-uniform genomes of iteration 1's supernet, scored by perplexity on {r['sequences']} × "
            f"{r['seq_len']} tokens of `{r['text']}` (text the method does not otherwise see); every search "
            "holds the chosen split. ± is the paired standard error of the log-perplexity difference.",
            "",
            "| attention kept | backbone sparsity | perplexity | vs chosen |",
            "|---|---:|---:|---:|",
        ]
        best = next(c for c in r["candidates"] if c["attention_kept"] == r["chosen"])
        for c in r["candidates"]:
            label = "even split" if c["attention_kept"] is None else pct(c["attention_kept"], 1)
            diff = (
                "chosen"
                if c is best
                else (f"+{math.log(c['perplexity'] / best['perplexity']):.3f} ± {c['nll_se_vs_chosen']:.2g}")
            )
            lines.append(f"| {label} | {pct(c['sparsity'])} | {c['perplexity']:.2f} | {diff} |")
        lines.append("")
    return lines


def _selection_table(runs) -> list[str]:
    """Týr's final choice: every candidate's KL on the selection split, and the paired noise."""
    lines = []
    for r in runs:
        sel = r["summary"].get("selection")
        if not sel:
            continue
        chosen = min(sel["candidates"].items(), key=lambda kv: kv[1]["kl"])[0]
        lines += [
            f"## Final choice: {r['label']}",
            "",
            f"KL to the dense model on all {sel['sequences']} sequences of the `{sel['split']}` split "
            "(tokens no search saw); ± is the paired standard error of the difference to the chosen genome.",
            "",
            "| candidate | generations | backbone sparsity | KL | vs chosen |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, c in sel["candidates"].items():
            diff = (
                "chosen"
                if name == chosen
                else f"+{c['kl'] - sel['candidates'][chosen]['kl']:.4g} ± {c['se_vs_chosen']:.2g}"
            )
            lines.append(f"| {name} | {c.get('generations')} | {pct(c.get('sparsity'))} | {c['kl']:.4g} | {diff} |")
        lines.append("")
    return lines


def _task_table(runs) -> list[str]:
    rows = [(r["label"], t, v) for r in runs for t, v in (r["summary"].get("zeroshot") or {}).items()]
    if not rows:
        return []
    lines = [
        "## Zero-shot accuracy per task",
        "",
        "| run | task | n | acc dense | acc pruned | acc_norm dense | acc_norm pruned |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, task, v in rows:
        lines.append(
            f"| {label} | {task} | {v.get('n')} | {v['dense']['acc']:.4f} | {v['pruned']['acc']:.4f} "
            f"| {v['dense']['acc_norm']:.4f} | {v['pruned']['acc_norm']:.4f} |"
        )
    return lines


# ---- plots -----------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on compute nodes
    import matplotlib.pyplot as plt

    return plt


def _save(fig, png) -> None:
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)


def plot_distribution(rows, out_png, *, title="", target=None) -> None:
    """Per-layer attention and MLP unit sparsity (bars), the target as a line."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    layers = [r["layer"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(rows) + 2), 3.5))
    w = 0.4
    ax.bar([x - w / 2 for x in layers], [r["attn_sparsity"] for r in rows], w, label="attention (heads)")
    ax.bar([x + w / 2 for x in layers], [r["mlp_sparsity"] for r in rows], w, label="MLP (channels)")
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=1, label=f"target backbone sparsity {pct(target, 0)}")
    ax.set(xlabel="layer", ylabel="units removed", ylim=(0, 1.05), title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    _save(fig, out_png)


def read_generations(tsv) -> tuple[list[float], list[float], str]:
    """(generations, best fitness, name of the best column) of a generations.tsv."""
    columns = read_columns(tsv)
    best = next((name for name in columns if "best" in name.lower()), None)
    if best is None:
        raise ValueError(f"{tsv}: no column named like 'best' in {list(columns)}")
    return columns[next(iter(columns))], columns[best], best


def read_columns(tsv) -> dict[str, list[float]]:
    """The numeric columns of a generations.tsv by name ("nan" where a value was not recorded)."""
    with open(tsv, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if not rows:
        raise ValueError(f"{tsv}: empty")
    body = [r for r in rows[1:] if r]
    return {name: [float(r[i]) for r in body] for i, name in enumerate(rows[0])}


def plot_fitness(tsvs, out_png) -> None:
    """Per search target, its iterations one after the other: the parent's KL on the fixed
    tracking sequences (solid, when recorded) and the best of each generation's sample (dotted)."""
    plt = _pyplot()
    tsvs = [Path(t) for t in tsvs]
    groups = {}
    for tsv in tsvs:
        groups.setdefault(tsv.resolve().parents[2], []).append(tsv)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for k, (target_dir, files) in enumerate(groups.items()):
        offset, name, color = 0, target_dir.name, f"C{k}"
        for i, tsv in enumerate(sorted(files, key=lambda p: int(p.parents[1].name[4:] or 0))):
            cols = read_columns(tsv)
            gens, best = read_generations(tsv)[:2]
            x = [offset + g for g in gens]
            ax.plot(x, best, ":", color=color, alpha=0.6, label=f"{name} best of sample" if i == 0 else None)
            track = cols.get("track_fitness")
            if track and not all(math.isnan(t) for t in track):
                ax.plot(
                    x, track, "-o", ms=3, color=color, label=f"{name} parent on fixed sequences" if i == 0 else None
                )
            ax.axvline(offset + 0.5, color="0.85", lw=0.8)
            offset += len(gens)
    ax.set(xlabel="generation (iterations in a row)", ylabel="KL to dense")
    ax.legend(fontsize=8)
    _save(fig, out_png)


def plot_tradeoff(runs, out_png) -> None:
    """Perplexity and average accuracy against actual backbone sparsity, per method; dense at 0."""
    plt = _pyplot()
    fig, (ax_ppl, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    by_method = {}
    for r in runs:
        by_method.setdefault(r["summary"].get("method") or r["label"], []).append(r["summary"])
    dense_done = False
    sets = perplexity_sets([r["summary"] for r in runs])
    ppl_set = sets[0] if sets else None
    for method, sums in sorted(by_method.items()):
        sums = sorted(sums, key=lambda s: s["sparsity"])
        x = [s["sparsity"] for s in sums]
        if ppl_set:
            ax_ppl.plot(x, [s["perplexity"][ppl_set]["pruned"] for s in sums], marker="o", label=method)
        if all("average" in s for s in sums):
            ax_acc.plot(x, [s["average"]["pruned"]["acc_norm"] for s in sums], marker="o", label=method)
        if not dense_done:  # every summary carries the same dense numbers
            if ppl_set:
                ax_ppl.plot([0], [sums[0]["perplexity"][ppl_set]["dense"]], "k*", ms=10, label="dense")
            if "average" in sums[0]:
                ax_acc.plot([0], [sums[0]["average"]["dense"]["acc_norm"]], "k*", ms=10, label="dense")
            dense_done = True
    ppls = [y for line in ax_ppl.lines for y in line.get_ydata()]
    wide = ppls and max(ppls) / min(ppls) > 10  # perplexity explodes at high sparsity: log only then
    ax_ppl.set(
        xlabel="backbone sparsity", ylabel=f"perplexity ({ppl_set or 'none'})", yscale="log" if wide else "linear"
    )
    ax_acc.set(xlabel="backbone sparsity", ylabel="zero-shot average acc_norm")
    for ax in (ax_ppl, ax_acc):
        if ax.lines:
            ax.legend(fontsize=8)
    _save(fig, out_png)


def plot_recovery(curves, out_png) -> None:
    """Held-out perplexity against training minutes, one line per recovered result."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for label, points in curves.items():
        ax.plot([p["seconds"] / 60 for p in points], [p["heldout_perplexity"] for p in points], "-o", ms=3, label=label)
    ax.set(xlabel="training minutes", ylabel="held-out perplexity")
    ax.legend(fontsize=8)
    _save(fig, out_png)


# ---- formatting ------------------------------------------------------------------------------


def _short_labels(paths) -> list[str]:
    """Each search's folder (e.g. s50/tyr/iter2), relative to what all of them share."""
    dirs = [p.resolve().parent.parent if p.parent.name == "search" else p.resolve().parent for p in paths]
    if len(dirs) == 1:
        return [dirs[0].name]
    root = os.path.commonpath(dirs)
    return [str(d.relative_to(root)) or d.name for d in dirs]


def _img(markdown: Path, png: Path) -> str:
    return f"![{png.stem}]({os.path.relpath(png, markdown.parent)})"


def _arrow(pair, a, b, spec) -> str:
    return f"{pair[a]:{spec}} → {pair[b]:{spec}}" if pair else "n/a"


def fmt(x, spec, missing="n/a") -> str:
    """A table cell: `x` formatted by `spec`, or `missing` for None / NaN."""
    return missing if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:{spec}}"
