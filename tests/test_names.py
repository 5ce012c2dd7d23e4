"""Every name the code imports and every `tyr.x.y` the docs name resolves.

Most of tyr's imports are lazy (inside functions, so the Snakefile parses without torch): a
renamed module or function breaks them only when that job runs. This checks them all at once,
without running anything: each `from tyr... import name` in src/, tests/, bench/, .ci/ and
rules/, and each dotted `tyr.` name in README.md, CONTRIBUTING.md, docs/ and src/ docstrings.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = [*ROOT.glob("src/tyr/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/**/*.py"), *ROOT.glob(".ci/*.py")]
RULES = [ROOT / "Snakefile", *ROOT.glob("rules/*.smk")]
PROSE = [
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    *ROOT.glob("docs/*.md"),
    *ROOT.glob("config/*.yaml"),
    *ROOT.glob("profiles/*/config.yaml"),
    *RULES,
    *(p for p in CODE if p.name != "test_names.py"),
]
DOTTED = re.compile(r"(?<![\w./-])tyr(?:\.[A-Za-z_]\w*)+")
FROM_IMPORT = re.compile(r"^\s*from (tyr[\w.]*) import ([^\n#(]+|\([^)]*\))", re.M)


def _imports(path: Path):
    """(module, name) of every `from tyr... import name` in a file (Snakemake files as text)."""
    text = path.read_text()
    if path.suffix == ".py":
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tyr"):
                yield from ((node.module, a.name) for a in node.names)
        return
    for module, names in FROM_IMPORT.findall(text):
        yield from ((module, n.split(" as ")[0].strip()) for n in names.strip("()").split(",") if n.strip())


def _resolves(dotted: str) -> bool:
    """An importable module followed by attributes of it (`tyr.search.evolve.run_search`)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_every_import_of_tyr_resolves():
    broken = []
    for path in CODE + RULES:
        for module, name in _imports(path):
            mod = importlib.import_module(module)
            if not hasattr(mod, name):
                try:
                    importlib.import_module(f"{module}.{name}")
                except ImportError:
                    broken.append(f"{path.relative_to(ROOT)}: from {module} import {name}")
    assert not broken, "\n".join(broken)


def test_every_tyr_name_in_the_docs_resolves():
    broken = sorted(
        {
            f"{path.relative_to(ROOT)}: {name}"
            for path in PROSE
            for name in DOTTED.findall(path.read_text())
            if not _resolves(name.rstrip("."))
        }
    )
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize(
    "name, ok",
    [
        ("tyr.search.evolve.run_search", True),
        ("tyr.search.run_search", False),
        ("tyr.model.spec.ModelSpec.from_json", True),
        ("tyr.nowhere", False),
    ],
)
def test_the_resolver_itself(name, ok):
    assert _resolves(name) is ok
