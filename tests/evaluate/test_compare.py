"""The comparison table: rows from each method's summary, honest verdicts, wall time per method."""

import json

from tyr.evaluate.compare import compare_table, verdict


def summary(method, target, sparsity, ppl, avg):
    return {
        "method": method,
        "target_sparsity": target,
        "sparsity": sparsity,
        "params": {"pruned": {"total": int(100 * (1 - sparsity))}, "dense": {"total": 100}},
        "perplexity": {
            "wikitext2": {"pruned": ppl, "dense": 10.0, "label": "WikiText-2 test"},
            "heldout": {"pruned": ppl / 2, "dense": 5.0, "label": "held-out split"},
        },
        "average": {"pruned": {"acc": avg}, "dense": {"acc": 0.5}},
        "retention": {"acc": avg / 0.5},
    }


def write_run(tmp_path, rows):
    run = tmp_path / "run"
    paths, benchmarks = [], []
    for method, target, *rest in rows:
        path = run / f"s{round(target * 100)}" / method / "eval" / "summary.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(summary(method, target, *rest)))
        paths.append(path)
        bench = run / "benchmarks" / f"s{round(target * 100)}"
        jobs = (
            [bench / "iter1" / "supernet_layer0.tsv", bench / "iter2" / "search.tsv"]
            if method == "tyr"
            else [bench / "iter1" / "supernet_layer0.tsv"]
            if method == "uniform"
            else [bench / method / "baseline.tsv"]
        )
        for j in jobs:
            j.parent.mkdir(parents=True, exist_ok=True)
            j.write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t100\n")
        benchmarks.append(jobs)
    dense = run / "dense" / "eval.json"
    dense.parent.mkdir(parents=True)
    dense.write_text(
        json.dumps(
            {
                "perplexity": {"wikitext2": {"perplexity": 10.0}, "heldout": {"perplexity": 5.0}},
                "average": {"acc": 0.5},
                "params": {"total": 100},
            }
        )
    )
    return paths, benchmarks, dense


def test_table_rows_times_and_verdicts(tmp_path):
    paths, benchmarks, dense = write_run(
        tmp_path,
        [
            ("tyr", 0.5, 0.50, 30.0, 0.40),
            ("uniform", 0.5, 0.49, 25.0, 0.38),
            ("shortgpt", 0.5, 0.50, 900.0, 0.45),
            ("tyr", 0.25, 0.25, 15.0, 0.45),
        ],
    )
    benchmarks[-1] = benchmarks[-1] + [tmp_path / "run" / "benchmarks" / "s25" / "select_tyr.tsv"]  # never written
    out = tmp_path / "compare"
    rows = compare_table(paths, benchmarks, dense, out / "table.md", out / "table.json", out / "plot.png")
    by = {(r["method"], r["target_sparsity"]): r for r in rows}
    assert by[("tyr", 0.5)]["seconds"] == 25.0  # its supernet and search jobs
    assert by[("uniform", 0.5)]["seconds"] == 12.5 and by[("shortgpt", 0.5)]["seconds"] == 12.5
    assert by[("tyr", 0.25)]["seconds"] is None  # a missing record: unknown, not a partial sum
    table = json.loads((out / "table.json").read_text())
    # A win of a method that prunes less is named as such, per data set.
    less = ", but it prunes 1.0 pp less of the backbone: not a like-for-like win"
    assert sorted(table["verdict"]) == [
        "at 50%, shortgpt has a higher zero-shot average than tyr (0.4500 vs 0.4000)",
        "at 50%, uniform has lower heldout perplexity than tyr (12.50 vs 15.00)" + less,
        "at 50%, uniform has lower wikitext2 perplexity than tyr (25.00 vs 30.00)" + less,
    ]
    text = (out / "table.md").read_text()
    assert "Where Týr does not win" in text and "| shortgpt | 50% |" in text
    assert "| ppl wikitext2 | ppl heldout |" in text and "ppl heldout: held-out split." in text
    assert "| uniform | 50% | 0.4900 | -1.0 pp (not matched) |" in text and "| tyr | 50% | 0.5000 | +0.0 pp |" in text
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"


def test_no_verdict_when_tyr_wins_everywhere():
    rows = [
        {
            "method": "tyr",
            "target_sparsity": 0.5,
            "sparsity": 0.5,
            "perplexity": {"heldout": 20.0},
            "zeroshot_average": 0.5,
        },
        {
            "method": "flap",
            "target_sparsity": 0.5,
            "sparsity": 0.5,
            "perplexity": {"heldout": 40.0},
            "zeroshot_average": 0.4,
        },
    ]
    assert verdict(rows) == []
