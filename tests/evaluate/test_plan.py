"""The evaluation plan: decided before any job, offline and online, and never silent about a skip."""

from __future__ import annotations

import pytest

from tyr.evaluate import plan as evalplan

EVALUATE = {"wikitext": "auto", "zeroshot_tasks": ["arc_easy", "arc_challenge", "openbookqa"], "zeroshot_dir": "auto"}
DATA = {"source": "pydoc", "seq_len": 256, "heldout_sequences": 16}


def offline():
    return "offline mode is on"


def online():
    return None


def never():
    raise AssertionError("the hub was asked although a local copy decides")


@pytest.fixture
def data_dir(tmp_path):
    (tmp_path / "wikitext-2").mkdir()
    (tmp_path / "wikitext-2" / "test.txt").write_text("text")
    (tmp_path / "zeroshot").mkdir()
    for name in ("arc_easy_dev.jsonl", "arc_challenge_dev.jsonl", "openbookqa_test.jsonl"):
        (tmp_path / "zeroshot" / name).write_text("{}\n")
    return tmp_path


def test_offline_without_copies_scores_the_heldout_split_and_says_what_it_skipped(monkeypatch):
    monkeypatch.delenv("TYR_DATA_DIR", raising=False)
    plan = evalplan.resolve(EVALUATE, DATA, hub=offline)
    assert list(plan["perplexity"]) == ["heldout"]
    assert "16 × 256 tokens" in plan["perplexity"]["heldout"]["label"]
    assert plan["zeroshot"]["tasks"] == []
    assert set(plan["skipped"]) == {"wikitext2", "zeroshot:arc_easy", "zeroshot:arc_challenge", "zeroshot:openbookqa"}
    assert all("offline mode is on" in why for why in plan["skipped"].values())
    line = evalplan.describe(plan)
    assert line.startswith("evaluation: perplexity on calibration held-out split") and "skipped" in line


def test_local_copies_come_from_tyr_data_dir_only(monkeypatch, data_dir):
    monkeypatch.setenv("TYR_DATA_DIR", str(data_dir))
    plan = evalplan.resolve(EVALUATE, DATA, hub=never)
    assert plan["perplexity"]["wikitext2"]["source"] == str(data_dir / "wikitext-2" / "test.txt")
    assert plan["zeroshot"] == {"tasks": EVALUATE["zeroshot_tasks"], "dir": str(data_dir / "zeroshot")}
    assert plan["skipped"] == {}


def test_a_missing_task_file_is_skipped_offline_and_taken_from_the_hub_online(monkeypatch, data_dir):
    (data_dir / "zeroshot" / "openbookqa_test.jsonl").unlink()
    monkeypatch.setenv("TYR_DATA_DIR", str(data_dir))
    plan = evalplan.resolve(EVALUATE, DATA, hub=offline)
    assert plan["zeroshot"]["tasks"] == ["arc_easy", "arc_challenge"] and list(plan["skipped"]) == [
        "zeroshot:openbookqa"
    ]
    assert evalplan.resolve(EVALUATE, DATA, hub=online)["zeroshot"]["tasks"] == EVALUATE["zeroshot_tasks"]


def test_online_without_copies_uses_the_standard_hub_data(monkeypatch):
    monkeypatch.delenv("TYR_DATA_DIR", raising=False)
    plan = evalplan.resolve(EVALUATE, DATA, hub=online)
    assert (
        plan["perplexity"]["wikitext2"]["source"] == "wikitext2" and "raw" in plan["perplexity"]["wikitext2"]["label"]
    )
    assert plan["zeroshot"] == {"tasks": EVALUATE["zeroshot_tasks"], "dir": None}  # lm-eval's own tasks


def test_explicit_choices_are_kept_and_an_explicit_hub_name_offline_stops_before_any_work(monkeypatch):
    monkeypatch.delenv("TYR_DATA_DIR", raising=False)
    plan = evalplan.resolve(
        {**EVALUATE, "wikitext": "/data/w.txt", "zeroshot_dir": "none", "heldout": False}, DATA, hub=never
    )
    assert list(plan["perplexity"]) == ["wikitext2"] and plan["perplexity"]["wikitext2"]["source"] == "/data/w.txt"
    assert plan["zeroshot"]["tasks"] == [] and plan["skipped"] == {}
    with pytest.raises(evalplan.PlanError, match="evaluate.wikitext: 'wikitext2' needs the hub"):
        evalplan.resolve({**EVALUATE, "wikitext": "wikitext2"}, DATA, hub=offline)


def test_no_heldout_split_no_heldout_perplexity(monkeypatch):
    monkeypatch.delenv("TYR_DATA_DIR", raising=False)
    plan = evalplan.resolve({**EVALUATE, "wikitext": "none"}, {**DATA, "heldout_sequences": 0}, hub=offline)
    assert plan["perplexity"] == {}
