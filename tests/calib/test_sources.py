"""Text sources: local formats, pydoc, hub names; every refusal names the file or key."""

import json
import time

import pytest

from tyr.calib import sources


def test_bad_sources_are_refused_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.source: .*nope.jsonl.*does not exist"):
        sources.check_source("data.source", str(tmp_path / "nope.jsonl"))
    with pytest.raises(FileNotFoundError, match="wikitext2"):  # the message lists the known names
        sources.check_source("data.source", "wikitxt2")
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unsupported file type"):
        sources.check_source("data.source", str(tmp_path / "d.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="folder holds no"):
        sources.check_source("data.source", str(tmp_path / "empty"))
    for ok in ("self", "pydoc", "wikitext2", "c4", "fineweb-edu"):
        sources.check_source("data.source", ok)  # no network, no model


def test_missing_text_field_is_named(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text(json.dumps({"content": "hello"}) + "\n")
    with pytest.raises(KeyError, match="no field 'text'.*content"):
        sources.read_texts(str(src))
    assert sources.read_texts(str(src), text_field="content") == ["hello"]


def test_read_texts_lists_and_pydoc(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.jsonl"
    a.write_text("alpha")
    b.write_text('{"text": "beta"}\n\n{"text": ""}\n{"text": "gamma"}\n')
    assert sources.read_texts([str(a), str(b)]) == ["alpha", "beta", "gamma"]  # empty documents dropped
    pydoc = sources.read_texts("pydoc")
    assert len(pydoc) > 50 and sum(map(len, pydoc)) > 100_000 and "assert" in " ".join(pydoc)
    with pytest.raises(ValueError, match="sampled from the model"):
        sources.read_texts("self")


def test_hub_names_fail_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="point data.source at local files"):
        sources.read_texts("wikitext2")
    assert time.perf_counter() - start < 10


def test_hub_names_fail_fast_without_network(monkeypatch):
    from huggingface_hub import constants

    # Online mode but nothing listening: the probe must stop it before the clients' retries.
    monkeypatch.setattr("tyr.core.hub.hub_offline", lambda datasets=False: False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="unreachable.*point data.source at local files"):
        list(sources.iter_texts("c4"))
    assert time.perf_counter() - start < 10


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    from tyr.calib.sources import read_texts

    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait".encode("latin1"))
    with pytest.raises(ValueError, match=r"latin1.txt: not UTF-8 text \(byte 3"):
        read_texts(bad)
    jsonl = bad.with_suffix(".jsonl")
    jsonl.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match="latin1.jsonl: not UTF-8 text"):
        read_texts(jsonl)


def test_a_malformed_jsonl_line_is_named_with_its_number(tmp_path):
    from tyr.calib.sources import read_texts

    bad = tmp_path / "corpus.jsonl"
    bad.write_text('{"text": "fine"}\n\n{"text": "cut off\n')
    with pytest.raises(ValueError, match=r"corpus.jsonl:3: not a JSON record"):
        read_texts(bad)
