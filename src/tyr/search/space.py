"""The search space: the levels of every sublayer of a supernet, and the parameter budget.

One concept, three forms (docs/design.md, "Names"), converted only here:
  genome   one level index per sublayer, flat in the order attn 0, mlp 0, attn 1, mlp 1, ...,
           into that sublayer's levels sorted dense → sparse (the paper's genome; the search
           mutates these)
  kept     the kept-unit counts of a genome, in the same flat order (what the fitness builds
           a candidate from: `SearchSpace.kept_units`)
  layers   a genome file's record (`best.json`, `genome.json`): layers[l] = {"attn": kept,
           "mlp": kept} (`to_layers`, `from_layers`; `kept_of` / `layers_of` without a space)
"""

from __future__ import annotations

from dataclasses import dataclass

from tyr.core.io import read_json
from tyr.model import sparsity
from tyr.model.spec import SUBLAYERS

# search.attention_kept and search.trade_attn_mlp together (checked at parse time and by run_search)
SPLIT_CONFLICT = (
    "search.attention_kept fixes (a fraction) or chooses (auto) the attention/MLP split and "
    "search.trade_attn_mlp lets the search move it: to trade, set search.attention_kept: null"
)


@dataclass(frozen=True)
class SearchSpace:
    """Levels of every sublayer (flat order attn 0, mlp 0, attn 1, ...) and the budget."""

    spec: object
    kinds: tuple  # per position: "attn" | "mlp"
    kept: tuple  # per position: kept-unit counts, dense → sparse
    params: tuple  # per position: parameters of each level
    recon: tuple  # per position: each level's relative reconstruction error
    dense: tuple  # per position: parameters of the dense sublayer
    centre: tuple  # per position: index of the centre level
    groups: dict  # budget group -> positions ("attn", "mlp", or "all" when trading)
    budget: dict  # budget group -> target kept parameters
    tolerance: dict  # budget group -> allowed |kept − budget| (one granule)

    @property
    def size(self) -> int:
        return len(self.kinds)

    def group_of(self, position: int) -> str:
        return "all" if "all" in self.groups else self.kinds[position]

    def group_params(self, genome, group: str) -> int:
        return sum(self.params[i][genome[i]] for i in self.groups[group])

    def error(self, genome, group: str) -> int:
        return self.group_params(genome, group) - self.budget[group]

    def feasible(self, genome) -> bool:
        return all(abs(self.error(genome, g)) <= self.tolerance[g] for g in self.groups)

    def kept_params(self, genome) -> int:
        return sum(self.params[i][x] for i, x in enumerate(genome))

    def sparsity(self, genome) -> float:
        return sparsity.backbone_sparsity(self.spec, self.kept_params(genome))

    def kept_units(self, genome) -> tuple:
        """The genome's kept-unit counts, flat (what the fitness builds a candidate from)."""
        return tuple(self.kept[i][x] for i, x in enumerate(genome))

    def to_layers(self, genome) -> list:
        """The genome as a genome file's `layers` record."""
        return layers_of(self.kept_units(genome))

    def from_layers(self, layers) -> tuple:
        """The genome of a `layers` record (each kept count must be a level of this space)."""
        return tuple(self.kept[i].index(k) for i, k in enumerate(kept_of(layers)))


def load_space(
    supernet_json,
    spec_json,
    target_sparsity: float,
    *,
    trade_attn_mlp: bool = False,
    attention_kept: float | None = None,
) -> SearchSpace:
    """The search space of a supernet at a target backbone sparsity (centres and reconstruction
    errors as the layers' manifests recorded them)."""
    from tyr.model.spec import ModelSpec

    spec = ModelSpec.from_json(spec_json)
    index = read_json(supernet_json)
    layers = index["layers"]
    if len(layers) != spec.num_layers:
        raise ValueError(f"{supernet_json}: {len(layers)} layers, the model has {spec.num_layers}")
    kinds, kept, params, recon, dense_params, centre = [], [], [], [], [], []
    for l, layer in enumerate(layers):
        for s in SUBLAYERS:
            levels = sorted(layer[s], key=lambda lvl: -lvl["kept"])
            kinds.append(s)
            kept.append(tuple(int(lvl["kept"]) for lvl in levels))
            params.append(tuple(int(lvl["params"]) for lvl in levels))
            recon.append(tuple(float(lvl["recon_error"]) for lvl in levels))
            dense_params.append(sparsity.dense_sublayer_params(spec, s, l))
            if layer["centre"][s] not in kept[-1]:
                raise ValueError(f"layer {l} {s}: centre {layer['centre'][s]} is not a level of the supernet")
            centre.append(kept[-1].index(layer["centre"][s]))
    dense = {s: sum(sparsity.dense_sublayer_params(spec, s, l) for l in range(spec.num_layers)) for s in SUBLAYERS}
    granule = {s: _granule([p for k, p in zip(kinds, params) if k == s]) for s in SUBLAYERS}
    positions = {s: tuple(i for i, k in enumerate(kinds) if k == s) for s in SUBLAYERS}
    if trade_attn_mlp:
        groups = {"all": tuple(range(len(kinds)))}
        budget = {"all": round((1 - target_sparsity) * (dense["attn"] + dense["mlp"]))}
        tolerance = {"all": max(granule.values())}
    else:
        groups = positions
        budget = split_budget(dense, target_sparsity, attention_kept)
        tolerance = granule
    return SearchSpace(
        spec,
        tuple(kinds),
        tuple(kept),
        tuple(params),
        tuple(recon),
        tuple(dense_params),
        tuple(centre),
        groups,
        budget,
        tolerance,
    )


def _granule(level_params) -> int:
    """Smallest parameter step between adjacent levels: one unit of the search's granularity."""
    steps = [a - b for p in level_params for a, b in zip(p, p[1:]) if a != b]
    return min(steps) if steps else 0


def kept_of(layers) -> tuple:
    """A `layers` record as flat kept-unit counts."""
    return tuple(int(layer[s]) for layer in layers for s in SUBLAYERS)


def layers_of(kept) -> list:
    """Flat kept-unit counts as a `layers` record."""
    return [{s: int(kept[2 * l + j]) for j, s in enumerate(SUBLAYERS)} for l in range(len(kept) // 2)]


def split_budget(dense: dict, target_sparsity: float, attention_kept: float | None) -> dict:
    """Kept parameters per kind. By default each kind keeps (1 − target) of its own; with
    `attention_kept` = a, attention keeps a of its parameters and the MLP the rest of the
    backbone's (1 − target), so the total is the same (`tyr.search.split` chooses a by measurement)."""
    if attention_kept is None:
        return {s: round((1 - target_sparsity) * dense[s]) for s in SUBLAYERS}
    total = (1 - target_sparsity) * (dense["attn"] + dense["mlp"])
    attn = round(attention_kept * dense["attn"])
    if not 0 <= total - attn <= dense["mlp"]:
        lo = max(0.0, (total - dense["mlp"]) / dense["attn"])
        hi = min(1.0, total / dense["attn"])
        raise ValueError(
            f"search.attention_kept {attention_kept} cannot meet target sparsity {target_sparsity}: "
            f"the MLP would keep {total - attn:.0f} of {dense['mlp']} parameters; "
            f"choose attention_kept in [{lo:.3f}, {hi:.3f}]"
        )
    return {"attn": attn, "mlp": round(total) - attn}
