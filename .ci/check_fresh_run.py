"""Assert what a newcomer's offline run must show: every figure named by its data set, every skip explained."""

import json
import sys
from pathlib import Path

run = Path(sys.argv[1])
for method in ("tyr", "uniform"):
    summary = json.loads((run / "s50" / method / "eval" / "summary.json").read_text())
    assert set(summary["perplexity"]) == {"heldout"}, summary["perplexity"]
    assert "held-out split" in summary["perplexity"]["heldout"]["label"], summary["perplexity"]["heldout"]
    assert {"wikitext2", "zeroshot:arc_easy"} <= set(summary["skipped"]), summary["skipped"]
    assert "zeroshot" not in summary and summary["continuations"], sorted(summary)
    card = (run / "s50" / method / "pruned" / "README.md").read_text()
    assert "perplexity `heldout`" in card and "wikitext2: skipped" in card and "greedy continuations" in card, card[
        -800:
    ]
report = (run / "report" / "report.md").read_text()
assert "ppl heldout" in report and "**skipped**" in report and "greedy continuations" in report
print(f"fresh-clone run OK: {run}")
