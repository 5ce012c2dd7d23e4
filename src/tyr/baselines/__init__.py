"""Structured-pruning baselines, each written as a one-level supernet + genome (docs/design.md).

Every method has the entry point

    run(model_dir, tokens_zarr, out_dir, *, target_sparsity, **options) -> Path of out_dir/genome.json

reading the prepared dense model (`model_dir`, with spec.json) and the calibration
tokens (`tokens_zarr`, split "prune"), and writing `out_dir/supernet/` and
`out_dir/genome.json`; `tyr.export.export` then builds the pruned model exactly as for
Týr's own genomes. Modules are imported on use, so importing this package is cheap.
"""

from __future__ import annotations

import importlib

METHODS = {
    "shortgpt": "tyr.baselines.shortgpt",      # Men et al. 2024: drop layers by Block Influence
    "wanda_sp": "tyr.baselines.wanda_sp",      # structured Wanda (FLAP paper's baseline), uniform
    "flap": "tyr.baselines.flap",              # An et al. 2024: fluctuation, global structure, bias compensation
    "llm_pruner": "tyr.baselines.llm_pruner",  # Ma et al. 2023: first-order Taylor group importance, no LoRA
}


def run(method: str, model_dir, tokens_zarr, out_dir, *, target_sparsity: float, **options):
    """Run baseline `method` (a key of METHODS); returns the genome path."""
    if method not in METHODS:
        raise ValueError(f"unknown baseline {method!r}; expected one of {sorted(METHODS)}")
    return importlib.import_module(METHODS[method]).run(model_dir, tokens_zarr, out_dir,
                                                        target_sparsity=target_sparsity, **options)
