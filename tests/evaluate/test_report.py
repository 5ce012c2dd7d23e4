"""Report: markdown tables and PNG plots from summaries, genomes and generations.tsv files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tyr.core.io import write_json
from tyr.evaluate import report


def _summary(path: Path, *, method, target, sparsity, ppl, acc_norm) -> Path:
    dist = [
        {
            "layer": i,
            "attn_kept": 2,
            "attn_units": 4,
            "attn_sparsity": 0.5,
            "mlp_kept": 48 - 16 * i,
            "mlp_units": 96,
            "mlp_sparsity": 0.5 + i / 6,
        }
        for i in range(3)
    ]
    write_json(
        path,
        {
            "method": method,
            "target_sparsity": target,
            "sparsity": sparsity,
            "params": {"dense": {"total": 1000}, "pruned": {"total": 600}},
            "distribution": dist,
            "perplexity": {
                "wikitext2": {
                    "dense": 10.0,
                    "pruned": ppl,
                    "ratio": ppl / 10.0,
                    "windows": 8,
                    "seq_len": 2048,
                    "label": "WikiText-2 test (w.txt)",
                },
                "heldout": {
                    "dense": 5.0,
                    "pruned": 2 * ppl,
                    "ratio": ppl / 2.5,
                    "windows": 16,
                    "seq_len": 256,
                    "label": "calibration held-out split",
                },
            },
            "skipped": {"zeroshot:openbookqa": "no local data and the hub is unavailable"},
            "continuations": [
                {"prompt": "The capital of France is", "dense": " Paris.", "pruned": f" {method}|{method}"}
            ],
            "zeroshot": {
                "arc_easy": {
                    "dense": {"acc": 0.6, "acc_norm": 0.55},
                    "pruned": {"acc": 0.5, "acc_norm": acc_norm},
                    "n": 100,
                }
            },
            "average": {"dense": {"acc": 0.6, "acc_norm": 0.55}, "pruned": {"acc": 0.5, "acc_norm": acc_norm}},
            "retention": {"acc": 0.5 / 0.6, "acc_norm": acc_norm / 0.55},
            "speed": {"prefill_speedup": 1.4, "decode_speedup": 1.2},
        },
    )
    return path


def _png_ok(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


def test_report_tables_and_plots(tmp_path):
    runs = []
    for method, ppl, acc in (("tyr", 14.0, 0.5), ("uniform", 19.0, 0.45)):
        run = tmp_path / "s50" / method
        (run / "eval").mkdir(parents=True)
        runs.append(
            _summary(run / "eval" / "summary.json", method=method, target=0.5, sparsity=0.4998, ppl=ppl, acc_norm=acc)
        )
        if method == "tyr":
            summary = json.loads(runs[-1].read_text())
            summary["selection"] = {
                "split": "selection",
                "sequences": 32,
                "candidates": {
                    "start": {"kl": 0.9, "se_vs_chosen": 0.01, "sparsity": 0.5, "generations": 0},
                    "iter1": {"kl": 0.7, "se_vs_chosen": 0.0, "sparsity": 0.4998, "generations": 10},
                },
            }
            write_json(runs[-1], summary)
        write_json(run / "genome.json", {"fitness": 0.0123 if method == "tyr" else 0.05, "layers": []})
    tsvs = []
    for i, best in ((1, [0.9, 0.5, 0.4]), (2, [0.4, 0.35])):
        tsv = tmp_path / "s50" / "tyr" / f"iter{i}" / "search" / "generations.tsv"
        tsv.parent.mkdir(parents=True)
        rows = "".join(f"{g + 1}\t{b}\t{b + 0.1}\t{b + 0.05 if i == 1 else 'nan'}\t16\n" for g, b in enumerate(best))
        tsv.write_text("generation\tbest_fitness\tparent_fitness\ttrack_fitness\toffspring\n" + rows)
        tsvs.append(tsv)

    out = tmp_path / "report" / "report.md"
    genomes = [tmp_path / "s50" / m / "genome.json" for m in ("uniform", "tyr")]  # order must not matter
    share = tmp_path / "s50" / "share.json"
    write_json(
        share,
        {
            "target_sparsity": 0.5,
            "text": "pydoc",
            "sequences": 32,
            "seq_len": 256,
            "chosen": 1.0,
            "candidates": [
                {"attention_kept": None, "sparsity": 0.5, "perplexity": 110.0, "nll_se_vs_chosen": 0.07},
                {"attention_kept": 1.0, "sparsity": 0.5, "perplexity": 70.0, "nll_se_vs_chosen": 0.0},
            ],
        },
    )
    report.write_report(runs, out, genomes=genomes, generations=tsvs, shares=[share])
    text = out.read_text()
    # The attention/MLP split: each candidate's perplexity, the log-ratio to the chosen one and its noise.
    assert "## Attention/MLP split: Týr @ 50%" in text and "32 × 256 tokens of `pydoc`" in text
    assert "| even split | 50.00% | 110.00 | +0.452 ± 0.07 |" in text and "| 100.0% | 50.00% | 70.00 | chosen |" in text
    # One perplexity column per data set, WikiText-2 first, each data set named and explained below.
    assert (
        "| tyr @ 50% | 49.98% | 600 / 1,000 | 10.00 → 14.00 | 5.00 → 28.00 | 0.5500 → 0.5000 | 0.909 | 1.40 | 1.20 "
        "| 0.0123 |"
    ) in text
    assert "| ppl wikitext2 (dense → pruned) | ppl heldout (dense → pruned) |" in text
    assert "- ppl wikitext2: WikiText-2 test (w.txt) (8 windows × 2048 tokens)" in text
    assert "- zeroshot:openbookqa: **skipped**: no local data and the hub is unavailable" in text
    # Greedy continuations side by side, dense first; a "|" inside a continuation cannot break the table.
    assert (
        "| dense | Paris. |" in text
        and "| tyr @ 50% | tyr\\|tyr |" in text
        and "| uniform @ 50% | uniform\\|uniform |" in text
    )
    assert "| uniform @ 50% | 49.98% |" in text and "| 0.05 |" in text
    assert "| tyr @ 50% | arc_easy | 100 | 0.6000 | 0.5000 | 0.5500 | 0.5000 |" in text
    assert "## Final choice: tyr @ 50%" in text and "| start | 0 | 50.00% | 0.9 | +0.2 ± 0.01 |" in text
    assert "| iter1 | 10 | 49.98% | 0.7 | chosen |" in text
    assert report.read_columns(tsvs[1])["track_fitness"][0] != report.read_columns(tsvs[1])["track_fitness"][0]  # nan
    plots = tmp_path / "report" / "plots"
    for name in ("tradeoff.png", "distribution_tyr_s50.png", "distribution_uniform_s50.png", "fitness.png"):
        assert _png_ok(plots / name), name
        assert f"](plots/{name})" in text


def test_read_generations_is_generic(tmp_path):
    tsv = tmp_path / "g.tsv"
    tsv.write_text("gen\tevals\tBestKL\n1\t10\t0.5\n2\t20\t0.25\n")
    assert report.read_generations(tsv) == ([1.0, 2.0], [0.5, 0.25], "BestKL")
    tsv.write_text("gen\tfitness\n1\t0.5\n")
    with pytest.raises(ValueError, match="best"):
        report.read_generations(tsv)


def test_short_labels_name_each_search():
    paths = [Path("/r/s50/tyr/iter1/search/generations.tsv"), Path("/r/s50/tyr/iter2/search/generations.tsv")]
    assert report._short_labels(paths) == ["iter1", "iter2"]
    paths.append(Path("/r/s70/tyr/iter1/search/generations.tsv"))
    assert report._short_labels(paths) == ["s50/tyr/iter1", "s50/tyr/iter2", "s70/tyr/iter1"]


def test_recovery_curve_of_every_recovered_result(tmp_path):
    plain = _summary(tmp_path / "plain.json", method="tyr", target=0.5, sparsity=0.5, ppl=14.0, acc_norm=0.5)
    rec = _summary(tmp_path / "rec.json", method="tyr+recover", target=0.5, sparsity=0.5, ppl=12.0, acc_norm=0.5)
    summary = json.loads(rec.read_text())
    curve = [{"step": 0, "seconds": 0.0, "heldout_perplexity": 28.0}, {"step": 25, "seconds": 150.0,
             "heldout_perplexity": 24.5}]  # fmt: skip
    summary["recovery"] = {"curve": curve, "seconds": 150.0}
    write_json(rec, summary)
    out = tmp_path / "report" / "report.md"
    report.write_report([plain, rec], out)
    text = out.read_text()
    assert "## Recovery: held-out perplexity during training" in text
    assert "| tyr+recover @ 50% | 0 | 0.0 | 28.00 |" in text and "| tyr+recover @ 50% | 25 | 2.5 | 24.50 |" in text
    assert "| tyr @ 50% |" not in text.split("## Recovery")[1]  # a retraining-free result has no curve
    assert _png_ok(tmp_path / "report" / "plots" / "recovery.png")
    report.write_report([plain], out)  # no recovered result: no section
    assert "## Recovery" not in out.read_text()
