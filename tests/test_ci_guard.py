"""CI cannot hide a skip: with TYR_CI_STRICT=1 an unlisted skip or xfail fails the session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

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


def _pytest(folder: Path, strict: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ, TYR_CI_STRICT="1" if strict else "0")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_unlisted_skips_fail_only_in_strict_mode(tmp_path):
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    shutil.copytree(HERE / "helpers", tmp_path / "helpers")
    (tmp_path / "allowed_skips.txt").write_text("# none\n")
    (tmp_path / "test_sample.py").write_text(SAMPLE)

    lenient = _pytest(tmp_path, strict=False)
    assert lenient.returncode == 0, lenient.stdout[-2000:]

    strict = _pytest(tmp_path, strict=True)
    assert strict.returncode != 0
    assert "2 test(s) did not run" in strict.stdout
    assert (
        "test_sample.py::test_skipped: skipped" in strict.stdout
        and "test_sample.py::test_xfailed: xfailed" in strict.stdout
    )

    (tmp_path / "allowed_skips.txt").write_text(
        "test_sample.py::test_skipped  # no cluster here\ntest_sample.py::test_xfailed  # known\n"
    )
    listed = _pytest(tmp_path, strict=True)
    assert listed.returncode == 0, listed.stdout[-2000:]
