"""Genomes at the budget: how the kept parameters are split between attention and MLP, the
near-uniform genomes (the search's start when its centres miss the budget, and the uniform
baseline), and the repair that brings a genome within tolerance.

Constraint. Every genome keeps the backbone sparsity (`tyr.model.sparsity`, from each level's
`params`) at the target within one unit of granularity. By default attention and MLP budgets
are held separately, each at (1 − target) × its dense parameters (or a measured split,
`split_budget`), with tolerance one granule of that kind: the smallest parameter step between
adjacent levels of that kind (one head / one MLP channel group). With `trade_attn_mlp=True`
only the total is held, within the larger of the two granules, and swaps may cross kinds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tyr.core.io import read_json, write_json

if TYPE_CHECKING:
    from tyr.search.space import SearchSpace


def start_genome(space: SearchSpace, rng) -> tuple:
    """The all-centre genome when it meets the budgets (iterations > 1: the previous best).
    Otherwise (iteration 1: centres snapped per sublayer miss the budget, e.g. 9 heads at 50%)
    the near-uniform genome whose sparser sublayers are those that lose least by it (their
    levels' recorded reconstruction error), so the search starts at uniform quality, not
    at a few sublayers cut deep. `repair` then closes any gap left by KV-head steps."""
    genome = tuple(space.centre)
    if not space.feasible(genome):
        genome = near_uniform(space, least_damage(space))
    return repair(space, genome, rng)


def bracket(space: SearchSpace, i: int) -> tuple[int, int | None]:
    """(d, s): the sparsest level of position i keeping at least its share of its group's
    budget, and the next sparser level (None when d meets the share exactly or is the last)."""
    group = space.group_of(i)
    share = space.budget[group] * space.dense[i] / sum(space.dense[j] for j in space.groups[group])
    params = space.params[i]
    d = max((j for j, p in enumerate(params) if p >= share), default=0)
    return d, (d + 1 if d + 1 < len(params) and params[d] != share else None)


def near_uniform(space: SearchSpace, choose) -> tuple:
    """Every sublayer at one of the two levels bracketing its share of the budget.

    Per budget group, `choose(movable, m)` names which m sublayers take the sparser level; m
    is the count that lands the group's parameters closest to its budget.
    """
    brackets = [bracket(space, i) for i in range(space.size)]
    genome = [d for d, _ in brackets]
    for group, positions in space.groups.items():
        movable = [i for i in positions if brackets[i][1] is not None]
        options = []
        for m in range(len(movable) + 1):
            g = list(genome)
            for i in choose(movable, m):
                g[i] = brackets[i][1]
            options.append((abs(space.error(g, group)), m, g))
        genome = min(options, key=lambda o: o[:2])[2]
    return tuple(genome)


def even_spread(movable: list, m: int) -> list:
    """m of the items, evenly spaced (the uniform baseline's deterministic, documented choice)."""
    return [movable[int((j + 0.5) * len(movable) / m)] for j in range(m)]


def least_damage(space: SearchSpace):
    """A `choose` taking the sublayers whose sparser bracketing level adds the least
    reconstruction error (ties: the earlier sublayer)."""

    def damage(i):
        d, s = bracket(space, i)
        return space.recon[i][s] - space.recon[i][d], i

    return lambda movable, m: sorted(movable, key=damage)[:m]


def repair(space: SearchSpace, genome, rng) -> tuple:
    """Bring each budget group within tolerance by the fewest single-level moves (greedy, the
    move that shrinks the error most; ties by the seeded RNG). A feasible genome is returned as is."""
    genome = list(genome)
    for group, positions in space.groups.items():
        while abs(err := space.error(genome, group)) > space.tolerance[group]:
            step = 1 if err > 0 else -1  # too many parameters kept: move a sublayer sparser
            moves = []
            for i in positions:
                j = genome[i] + step
                if 0 <= j < len(space.kept[i]):
                    moves.append((abs(err - space.params[i][genome[i]] + space.params[i][j]), i))
            best = min((m for m in moves if m[0] < abs(err)), default=None)
            if best is None:
                raise ValueError(_unreachable(space, group))
            ties = [i for e, i in moves if e == best[0]]
            genome[ties[int(rng.integers(len(ties)))]] += step
    return tuple(genome)


def _unreachable(space: SearchSpace, group) -> str:
    positions = space.groups[group]
    dense = sum(space.dense[i] for i in positions)
    lo, hi = (sum(space.params[i][k] for i in positions) for k in (-1, 0))
    return (
        f"{group}: no genome of this supernet keeps {space.budget[group]} of {dense} parameters "
        f"(±{space.tolerance[group]}); its levels span {1 - hi / dense:.1%} to {1 - lo / dense:.1%} "
        f"sparsity. Choose a target in that range or build levels that reach it "
        f"(supernet.levels, supernet.delta)"
    )


def uniform_genome(supernet_json, spec_json, out_json, *, target_sparsity: float, iteration: int | None = None) -> dict:
    """The "no search" baseline at the target: every sublayer at one of the two levels
    bracketing the target (9 heads at 25% cannot all lose 2.25), the sparser one in an evenly
    spread set of layers sized so that attention and MLP each meet their budget."""
    from tyr.search.space import load_space

    space = load_space(supernet_json, spec_json, target_sparsity)
    genome = near_uniform(space, even_spread)
    doc = {
        "iteration": iteration if iteration is not None else read_json(supernet_json).get("iteration"),
        "supernet": str(supernet_json),
        "target_sparsity": target_sparsity,
        "sparsity": space.sparsity(genome),
        "fitness": None,
        "layers": space.to_layers(genome),
        "rule": "near-uniform: bracketing levels, the sparser one in evenly spread layers",
    }
    write_json(out_json, doc)
    return doc
