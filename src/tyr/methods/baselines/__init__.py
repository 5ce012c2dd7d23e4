"""Structured-pruning baselines, each written as a one-level supernet + genome (docs/design.md).

Every method has the entry point

    run(model_dir, tokens_zarr, out_dir, *, target_sparsity, device="cpu", **options) -> Path of out_dir/genome.json

reading the prepared dense model (`model_dir`, with spec.json) and the calibration
tokens (`tokens_zarr`, split "prune"; searches also read "fitness"), and writing
`out_dir/supernet/` and `out_dir/genome.json`; `tyr.export.hf.export` then builds the pruned
model exactly as for Týr's own genomes. `device` (config `devices.baselines`: auto, cpu, cuda,
cuda:N) is where the method computes, inside `tyr.core.device.placed`; the model is read and
the results written on the host; on the CPU nothing changes (the same kernels in the same
order). The list of methods is `tyr.methods.registry` (the one
registry); modules are imported on use, so importing this package is cheap.
"""

from __future__ import annotations

import importlib

from tyr.methods import registry

METHODS = {name: registry.get(name).module for name in registry.baselines()}


def run(method: str, model_dir, tokens_zarr, out_dir, *, target_sparsity: float, device: str = "cpu", **options):
    """Run baseline `method` (a key of METHODS) with its options on `device`; returns the genome path."""
    if method not in METHODS:
        raise ValueError(f"unknown baseline {method!r}; expected one of {sorted(METHODS)}")
    return importlib.import_module(METHODS[method]).run(
        model_dir, tokens_zarr, out_dir, target_sparsity=target_sparsity, device=device, **options
    )
