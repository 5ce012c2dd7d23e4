"""Two session guards of the suite, as a pytest plugin (tests/conftest.py loads it).

CI cannot hide a skip: with TYR_CI_STRICT=1 (set by .ci/run) a skipped or xfailed test fails the
session unless its node id is listed, with a reason, in the allow-list (tests/allowed_skips.txt,
or $TYR_ALLOWED_SKIPS); and when the whole suite runs, an entry that names no collected test
fails it too, so the list cannot go stale.

No test writes into the checkout: files that appear in the repository during the suite's
session (outside .git, .venv, caches) fail it, naming them; tests work in their tmp_path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IGNORED = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}


def allowed_skips() -> dict[str, str]:
    """{node id: reason} from the allow-list (`node-id  # reason` per line; blank and # lines ignored)."""
    path = Path(os.environ.get("TYR_ALLOWED_SKIPS") or Path(__file__).resolve().parents[1] / "allowed_skips.txt")
    allowed = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            node, _, reason = line.partition("#")
            allowed[node.strip()] = reason.strip()
    return allowed


def checkout_files(root: Path = ROOT) -> set:
    found = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in IGNORED and not d.endswith(".egg-info")]
        found.update(os.path.relpath(os.path.join(folder, f), root) for f in files)
    return found


def pytest_configure(config):
    config.pluginmanager.register(Guards(config), "tyr-guards")  # one per session (pytester nests sessions)


class Guards:
    def __init__(self, config):
        self.config, self.not_run, self.collected = config, {}, set()
        self.files = checkout_files() if Path(config.rootpath) == ROOT else None  # the suite's own session only

    def pytest_collection_modifyitems(self, items):
        self.collected = {item.nodeid for item in items}

    def pytest_runtest_logreport(self, report):
        if report.skipped:
            kind = "xfailed" if hasattr(report, "wasxfail") else "skipped"
            why = report.longrepr[-1] if isinstance(report.longrepr, tuple) else getattr(report, "wasxfail", "")
            self.not_run[report.nodeid] = f"{kind}: {why}"

    def pytest_sessionfinish(self, session):
        problems = self.written() + (self.hidden_skips() if os.environ.get("TYR_CI_STRICT") == "1" else [])
        if problems:
            session.config.get_terminal_writer().line("\n" + "\n".join(problems), red=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def written(self) -> list[str]:
        new = sorted(checkout_files() - self.files) if self.files is not None else []
        return [f"{len(new)} file(s) written into the checkout by the tests: {', '.join(new[:10])}"] if new else []

    def hidden_skips(self) -> list[str]:
        allowed, out = allowed_skips(), []
        hidden = {node: why for node, why in self.not_run.items() if node not in allowed}
        if hidden:
            lines = "\n".join(f"  {node}: {why}" for node, why in sorted(hidden.items()))
            out.append(f"TYR_CI_STRICT: {len(hidden)} test(s) did not run and are not allowed to skip:\n{lines}")
        stale = sorted(set(allowed) - self.collected) if self.whole_suite() else []
        if stale:
            out.append("TYR_CI_STRICT: the allow-list names no collected test: " + ", ".join(stale))
        return out

    def whole_suite(self) -> bool:
        """Whether every test was collected (no -k, -m, --deselect, and the default paths), so that an
        entry matching no collected test is stale rather than merely not selected."""
        opt, root = self.config.option, Path(self.config.rootpath)
        if opt.keyword or opt.markexpr or getattr(opt, "deselect", None):
            return False
        default = [(root / p).resolve() for p in self.config.getini("testpaths")] or [root.resolve()]
        return [Path(a).resolve() for a in self.config.args] in ([], default)
