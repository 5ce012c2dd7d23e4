"""Sparsity levels of the supernet (Týr-the-Pruner, Sec. 3.3, coarse-to-fine iterations).

Iteration 1 spans the target sparsity S uniformly: S + kΔ, k = −n/2 … n/2, for every
sublayer. Iteration i > 1 halves the step, Δ_i = Δ / 2^(i−1), and recentres each
sublayer on the kept count the previous search chose. Sparsities are snapped to whole
heads / whole MLP channel groups by `tyr.model.sparsity.snap_units`, deduplicated and listed
from dense to sparse as kept-unit counts (the format is in docs/design.md).
"""

from __future__ import annotations

from tyr.core.io import read_json, write_json
from tyr.model.sparsity import snap_units
from tyr.model.spec import SUBLAYERS, ModelSpec


def sublayer_levels(units: int, centre_sparsity: float, delta: float, n_levels: int, group: int = 1):
    """(kept counts dense→sparse, centre kept) for sparsities centre ± kΔ, snapped to `group`."""
    half = n_levels // 2
    sparsities = [centre_sparsity + k * delta for k in range(-half, half + 1)]
    kept = {units - snap_units(s, units, group) for s in sparsities}
    centre = units - snap_units(centre_sparsity, units, group)
    return sorted(kept, reverse=True), centre


def levels_for(spec, *, target_sparsity, delta, n_levels, iteration=1, previous=None, mlp_group=16):
    """The levels.json object; `previous` is the previous iteration's genome (a dict)."""
    if iteration > 1 and previous is None:
        raise ValueError(f"iteration {iteration} needs the previous iteration's genome")
    step = delta / 2 ** (iteration - 1)
    layers = []
    for layer in range(spec.num_layers):
        entry = {}
        for sub in SUBLAYERS:
            units = spec.units(sub, layer)
            group = 1 if sub == "attn" else mlp_group
            if iteration == 1:
                centre_s = target_sparsity
            else:
                centre_s = 1.0 - previous["layers"][layer][sub] / units
            kept, centre = sublayer_levels(units, centre_s, step, n_levels, group)
            if iteration > 1:  # the previous choice is a level exactly, even off the group grid
                centre = int(previous["layers"][layer][sub])
                kept = sorted(set(kept) | {centre}, reverse=True)
            entry[sub] = {"kept": kept, "centre": centre}
        layers.append(entry)
    return {
        "iteration": iteration,
        "delta": step,
        "target_sparsity": target_sparsity,
        "n_levels": n_levels,
        "mlp_group": mlp_group,
        "layers": layers,
    }


def write_levels(
    spec_json, out_json, *, target_sparsity, delta, n_levels, iteration, previous_genome=None, mlp_group=16
) -> dict:
    """Write `levels.json` for one iteration (see `levels_for`); returns the object."""
    spec = ModelSpec.from_json(spec_json)
    previous = (
        read_json(previous_genome)
        if isinstance(previous_genome, (str, bytes)) or hasattr(previous_genome, "__fspath__")
        else previous_genome
    )
    levels = levels_for(
        spec,
        target_sparsity=target_sparsity,
        delta=delta,
        n_levels=n_levels,
        iteration=iteration,
        previous=previous,
        mlp_group=mlp_group,
    )
    write_json(out_json, levels)
    return levels
