"""The code's shape (issue 17): short functions and classes in src/tyr, so each reads as one idea."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tyr"
MAX_FUNCTION, MAX_CLASS = 80, 150  # lines, docstrings included


def _units():
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield path.relative_to(SRC.parent), node, node.end_lineno - node.lineno + 1


def test_no_long_functions_or_classes():
    long = [
        f"{path}:{node.lineno} {node.name} ({lines} lines)"
        for path, node, lines in _units()
        if lines > (MAX_CLASS if isinstance(node, ast.ClassDef) else MAX_FUNCTION)
    ]
    assert not long, "split these:\n" + "\n".join(long)


def test_the_check_sees_the_code():
    names = {node.name for _, node, _ in _units()}
    assert {"Evaluator", "run_search", "build_layer", "evaluate_model"} <= names
