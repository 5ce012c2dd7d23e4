"""The suite's guards (tests/helpers/guards.py), run in process on a sample suite: an unlisted
skip or xfail fails a strict session, a stale allow-list entry fails a whole-suite one."""

from __future__ import annotations

SAMPLE = """
import pytest

def test_runs():
    pass

def test_skipped():
    pytest.skip("no cluster")

@pytest.mark.xfail(reason="an ImportError hidden as xfail")
def test_xfailed():
    raise ImportError("missing")
"""


def _run(pytester, monkeypatch, strict: bool, allowed: str):
    monkeypatch.setenv("TYR_CI_STRICT", "1" if strict else "0")
    allow = pytester.path / "allowed.txt"
    allow.write_text(allowed)
    monkeypatch.setenv("TYR_ALLOWED_SKIPS", str(allow))
    return pytester.runpytest_inprocess("-p", "helpers.guards", "-p", "no:cacheprovider")


def test_unlisted_skips_fail_only_in_strict_mode(pytester, monkeypatch):
    pytester.makepyfile(test_sample=SAMPLE)
    assert _run(pytester, monkeypatch, strict=False, allowed="# none\n").ret == 0

    strict = _run(pytester, monkeypatch, strict=True, allowed="# none\n")
    assert strict.ret != 0
    text = strict.stdout.str()
    assert "2 test(s) did not run" in text
    assert "test_sample.py::test_skipped: skipped" in text and "test_sample.py::test_xfailed: xfailed" in text

    listed = "test_sample.py::test_skipped  # no cluster here\ntest_sample.py::test_xfailed  # known\n"
    assert _run(pytester, monkeypatch, strict=True, allowed=listed).ret == 0


def test_an_allow_list_entry_that_names_no_test_fails(pytester, monkeypatch):
    pytester.makepyfile(test_sample=SAMPLE)
    listed = (
        "test_sample.py::test_skipped  # no cluster\ntest_sample.py::test_xfailed  # known\n"
        "test_sample.py::test_renamed_long_ago  # stale\n"
    )
    stale = _run(pytester, monkeypatch, strict=True, allowed=listed)
    assert stale.ret != 0 and "names no collected test: test_sample.py::test_renamed_long_ago" in stale.stdout.str()
