"""Unstructured and N:M post-training pruning of every projection (issue 14), stackable after Týr.

Each method zeroes individual weights of a Linear layer W [d_out, d_in] (rows = outputs) from
its calibration Hessian H = XᵀX/N, and has the entry point

    prune(W, H, pattern, *, blocksize, damp) -> Pruned(weight, mask, loss)

`mask` is True where a weight was removed; `loss` is the per-row increase of the layer-wise
error ‖XW − XŴ‖²/N the method predicts (None when it has no model of it). Layers are pruned
one after another on the already pruned model's inputs (`tyr.methods.unstructured.layer`).

This module imports nothing heavy: the Snakefile reads METHODS at parse time.
"""

from __future__ import annotations

import importlib

from tyr.methods import registry

METHODS = {name: registry.get(name).module for name in registry.unstructured()}  # the one registry


class UnstructuredConfigError(ValueError):
    pass


def method(name: str):
    """The module of method `name` (a key of METHODS)."""
    if name not in METHODS:
        raise ValueError(f"unknown unstructured method {name!r}; expected one of {sorted(METHODS)}")
    return importlib.import_module(METHODS[name])


def prune(name: str, W, H, pattern, **options):
    """Prune W [d_out, d_in] with method `name`; see the module docstring."""
    return method(name).prune(W, H, pattern, **options)


def check_config(u: dict) -> None:
    """Semantic checks of the `unstructured:` section (the schema has passed); errors name the key."""
    from tyr.methods.unstructured.patterns import Pattern

    for name in u["methods"]:
        if name not in METHODS:
            raise UnstructuredConfigError(f"unstructured.methods: {name!r} is not one of {sorted(METHODS)}")
    for value in u["patterns"]:
        try:
            p = Pattern.parse(value)
        except ValueError as e:
            raise UnstructuredConfigError(f"unstructured.patterns: {e}") from None
        if p.m and u["blocksize"] % p.m:
            raise UnstructuredConfigError(
                f"unstructured.patterns: {value!r} needs a blocksize that is a multiple of {p.m} "
                f"(unstructured.blocksize is {u['blocksize']})"
            )
