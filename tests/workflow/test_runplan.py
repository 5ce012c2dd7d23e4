"""tyr.workflow.runplan: the plan a run resolves once, freezes, and its jobs read."""

from __future__ import annotations

import json

import pytest
import yaml

from helpers.runs import ROOT
from tyr.workflow import runplan


@pytest.fixture
def config(tiny_model_dir):
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["model"]["source"] = str(tiny_model_dir("llama"))
    cfg["data"]["source"] = "pydoc"
    cfg["evaluate"].update(wikitext="none", zeroshot_dir="none")
    return cfg


def test_resolve_freeze_load_round_trip(config, tmp_path):
    plan = runplan.resolve(config, tmp_path / "run")
    assert plan["model"] == {"source": config["model"]["source"], "num_layers": 3}
    assert set(plan["evaluation"]["perplexity"]) == {"heldout"}
    runplan.freeze(tmp_path / "run", plan)
    assert runplan.load(tmp_path / "run") == plan
    mtime = runplan.path(tmp_path / "run").stat().st_mtime_ns
    runplan.freeze(tmp_path / "run", plan)  # the same plan: the file is left as it is
    assert runplan.path(tmp_path / "run").stat().st_mtime_ns == mtime


def test_a_job_without_the_frozen_plan_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run/plan.json is missing: a job reads the plan"):
        runplan.load(tmp_path / "run")


def test_a_prepared_model_of_another_depth_is_refused(config, tmp_path):
    """A folder from before plan.json existed: its prepared model's depth gives it away."""
    spec = tmp_path / "run" / "model" / "spec.json"
    spec.parent.mkdir(parents=True)
    spec.write_text(json.dumps({"num_layers": 30}))
    with pytest.raises(runplan.StaleFolder, match=r"spec.json\) has 30 layers, but model.source .* has 3"):
        runplan.resolve(config, tmp_path / "run")


def test_another_source_is_refused_naming_both(config, tmp_path):
    runplan.freeze(tmp_path / "run", runplan.resolve(config, tmp_path / "run"))
    config["model"]["source"] = "embedded"
    with pytest.raises(runplan.StaleFolder, match=r"holds a run of model '.*tiny.*', but model.source is 'embedded'"):
        runplan.resolve(config, tmp_path / "run")


def test_differences_name_each_changed_leaf():
    old = {"evaluation": {"perplexity": {"heldout": {"source": "heldout"}}, "skipped": {"wikitext2": "offline"}}}
    new = {"evaluation": {"perplexity": {"heldout": {"source": "heldout"}, "wikitext2": {"source": "/d/test.txt"}}}}
    assert runplan.differences(old, new) == [
        "evaluation.perplexity.wikitext2.source: (none) -> /d/test.txt",
        "evaluation.skipped.wikitext2: offline -> (none)",
    ]
    assert runplan.differences(None, new) == [] and runplan.differences(new, new) == []
