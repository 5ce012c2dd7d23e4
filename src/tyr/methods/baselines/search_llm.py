"""Search for Efficient LLMs (Shen et al., NeurIPS 2024): training-free evolutionary search of
per-layer masks, initialised from importance scores, then reformation of the kept weights.

1. Initialisation (Sec. 3.2). Every weight is scored by the layer-output error of removing
   it alone (WoodFisher / SparseGPT), Φ_ij = W_ij² / [(2 X Xᵀ)⁻¹]_jj with X the layer's
   input; a unit sums the rows it owns in q/k/v (gate/up) and the columns in o (down):

       S_attn = Φʳ_Q + Φʳ_K + Φʳ_V + Φᶜ_O          S_mlp = Φʳ_U + Φʳ_G + Φᶜ_D

   The initial subnet keeps the highest-scoring units at the same inheriting ratio in
   every layer (`budget.uniform_structure`).
2. Search (Sec. 3.3). A candidate is a mask per layer and module; its inheriting ratios
   vary per layer inside the paper's Table 1 ranges. Generation 0 mutates the initial
   subnet (ratio probability 0.3, mask 0.6); each following generation mutates the top
   `parents` (0.1, 0.3), crosses them over layer by layer, and adds mutations with the
   initial randomness. Candidates whose size misses the target (here: by more than
   ±0.5 pp) are dropped unevaluated; the others are ranked by perplexity on a few
   calibration sequences (here: of the fitness split).
3. Reformation (Sec. 3.4, `reformation.admm`): o_proj and down_proj keep their columns
   but are refit by ADMM to the dense layer output, layer by layer on the reformed
   model's own outputs (the released code's `llama_sequential`), 30 iterations, ρ = 1.

Deviations. The paper's attention masks select dimensions inside every head and never
drop a head; our export (and unit accounting) has whole heads only, so attention masks
here select heads. The model-depth dimension of its search space (dropping the last
layers) is not searched. Mask mutation (Algorithm 1) draws uniform subsets until one
shares α = 0.8 of the units with the current mask; read literally (α·N of all N units)
no mask below 80% could ever change, and by rejection the draw almost never succeeds
for 1536 channels, so we draw directly: keep a random α share of the current kept units
(of the smaller of the old and new counts) and fill the rest uniformly.
"""

from __future__ import annotations

import logging
import math
from functools import partial

import numpy as np
import torch

from tyr.calib.stores import FITNESS, PRUNE
from tyr.core.device import placed
from tyr.methods.baselines.common import candidate, layerwise
from tyr.methods.baselines.common.activations import calibration_tokens, dense_model
from tyr.methods.baselines.common.budget import on_host, uniform_structure
from tyr.methods.baselines.common.reformation import admm
from tyr.methods.baselines.common.single_level import (
    DEVICE_KEY,
    TOLERANCE,
    Structure,
    load_spec,
    resolve_setting,
    write,
)
from tyr.supernet.local_prune import Hessian, damp

METHOD = "search_llm"
SETTINGS = {  # the paper's (Sec. 4.1): population 100, 50 mutations, 30 crossovers, top 10, 50 epochs
    "cpu": {"population": 10, "parents": 3, "mutations": 5, "crossovers": 3, "epochs": 4, "eval_sequences": 2},
    "paper": {"population": 100, "parents": 10, "mutations": 50, "crossovers": 30, "epochs": 50, "eval_sequences": 8},
}
INITIAL, FOLLOWING = (0.3, 0.6), (0.1, 0.3)  # (ratio, mask) mutation probabilities: generation 0, then
SIMILARITY = 0.8  # α of Algorithm 1
# Table 1 (LLaMA family): inheriting ratio -> lowest inheriting ratio searched for (attention, MLP)
SPACE = {0.9: (0.9, 0.6), 0.8: (0.8, 0.4), 0.7: (0.3, 0.2), 0.6: (0.6, 0.1), 0.5: (0.6, 0.1)}
log = logging.getLogger("tyr.methods.baselines")


def inverse_diagonal(H: torch.Tensor, damping: float = 0.01) -> torch.Tensor:
    """[(2H)⁻¹]_jj of an input Gram matrix H [in, in] (damped by 1% of its mean diagonal)."""
    return torch.diagonal(torch.cholesky_inverse(torch.linalg.cholesky(2 * damp(H.double(), damping))))


def obs_importance(weight: torch.Tensor, inv_diag: torch.Tensor) -> torch.Tensor:
    """Φ_ij = W_ij² / [(2H)⁻¹]_jj for a torch weight [out, in] (Eq. 1)."""
    return weight.double() ** 2 / inv_diag[None, :]


def layer_importance(layer, x, pos, spec, batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(score of each query head, score of each MLP channel) of one layer, Eqs. 1-3."""
    at, mlp, d, g = layer.self_attn, layer.mlp, spec.head_dim, spec.group_size
    grams = {
        k: Hessian(n)
        for k, n in (
            ("attn", at.q_proj.in_features),
            ("heads", at.o_proj.in_features),
            ("mlp", mlp.gate_proj.in_features),
            ("channels", mlp.down_proj.in_features),
        )
    }
    for inputs in layerwise.sublayer_inputs(layer, x, pos, batch_size):
        for key, gram in grams.items():
            gram.add(inputs[key])
    inv = {k: inverse_diagonal(gram.mean()) for k, gram in grams.items()}
    rows = {
        name: obs_importance(getattr(at, name).weight, inv["attn"]).sum(1) for name in ("q_proj", "k_proj", "v_proj")
    }
    heads = (rows["q_proj"] + obs_importance(at.o_proj.weight, inv["heads"]).sum(0)).reshape(-1, d).sum(1)
    kv = (rows["k_proj"] + rows["v_proj"]).reshape(-1, d).sum(1)
    heads = heads + kv[torch.arange(spec.num_heads) // g] / g  # a KV head is shared by g query heads
    chans = (
        obs_importance(mlp.up_proj.weight, inv["mlp"]).sum(1)
        + obs_importance(mlp.gate_proj.weight, inv["mlp"]).sum(1)
        + obs_importance(mlp.down_proj.weight, inv["channels"]).sum(0)
    )
    return heads, chans


def search_space(spec, target_sparsity: float) -> tuple[list[int], list[list[int]]]:
    """Allowed kept counts: heads (ratios [γ_attn, 1], every count) and per-layer MLP widths ([γ_mlp, 1] by 0.05)."""
    inheriting = 1.0 - target_sparsity
    row = max((k for k in SPACE if k <= inheriting + 1e-9), default=min(SPACE))
    attn_min, mlp_min = SPACE[row]
    heads = list(range(math.ceil(attn_min * spec.num_heads - 1e-9), spec.num_heads + 1))
    ratios = np.arange(mlp_min, 1.0 + 1e-9, 0.05)
    widths = [sorted({int(round(r * size)) for r in ratios}) for size in spec.intermediate_size]
    return heads, widths


def mutate_mask(rng, kept: list[int], n_units: int, count: int, p_mask: float) -> list[int]:
    """Algorithm 1 (direct draw): a new mask of `count` units sharing α of the smaller mask with `kept`."""
    if count == len(kept) and rng.random() > p_mask:
        return kept
    stay = rng.choice(kept, size=min(len(kept), math.ceil(SIMILARITY * min(len(kept), count))), replace=False)
    others = np.setdiff1d(np.arange(n_units), stay)
    fill = rng.choice(others, size=count - len(stay), replace=False)
    return sorted(int(u) for u in np.concatenate([stay, fill]))


class Evolution:
    """Candidates (Structures), their validity, mutation, crossover and a loss cache."""

    def __init__(self, spec, target_sparsity: float, evaluate, rng):
        self.spec, self.target, self.evaluate, self.rng = spec, target_sparsity, evaluate, rng
        self.heads, self.widths = search_space(spec, target_sparsity)
        self.loss: dict[tuple, float] = {}

    @staticmethod
    def key(s: Structure) -> tuple:
        return tuple(tuple(h) for h in s.heads) + tuple(tuple(c) for c in s.channels)

    def mutate(self, s: Structure, p_ratio: float, p_mask: float) -> Structure:
        heads, chans, rng = [], [], self.rng
        for l, (h, c) in enumerate(zip(s.heads, s.channels)):
            q = int(rng.choice(self.heads)) if rng.random() < p_ratio else len(h)
            m = int(rng.choice(self.widths[l])) if rng.random() < p_ratio else len(c)
            heads.append(mutate_mask(rng, h, self.spec.num_heads, q, p_mask))
            chans.append(mutate_mask(rng, c, self.spec.intermediate_size[l], m, p_mask))
        return Structure(heads, chans)

    def crossover(self, a: Structure, b: Structure) -> Structure:
        pick = lambda: a if self.rng.random() < 0.5 else b  # noqa: E731
        return Structure(
            [pick().heads[l] for l in range(len(a.heads))], [pick().channels[l] for l in range(len(a.heads))]
        )

    def offspring(self, make, n: int) -> list[Structure]:
        """Up to `n` new candidates of the target size (others are dropped unevaluated), evaluated."""
        out, tries = [], 0
        while len(out) < n and tries < 200 * max(n, 1):
            tries += 1
            s = make()
            if abs(s.sparsity(self.spec) - self.target) <= TOLERANCE and self.key(s) not in self.loss:
                self.loss[self.key(s)] = self.evaluate(s)
                out.append(s)
        return out

    def best(self, candidates, k: int) -> list[Structure]:
        return sorted(candidates, key=lambda s: self.loss[self.key(s)])[:k]


def children(evo: Evolution, parents: list[Structure], opt: dict) -> list[Structure]:
    """One generation's new candidates: mutants and crossovers of the parents, and fresh mutants."""

    def pick():
        return parents[int(evo.rng.integers(len(parents)))]

    new = evo.offspring(lambda: evo.mutate(pick(), *FOLLOWING), opt["mutations"])
    new += evo.offspring(lambda: evo.crossover(pick(), pick()), opt["crossovers"])
    rest = opt["population"] - opt["mutations"] - opt["crossovers"]
    return new + evo.offspring(lambda: evo.mutate(pick(), *INITIAL), rest)


def search(evo: Evolution, init: Structure, opt: dict) -> tuple[Structure, list[float]]:
    """The generations of Sec. 3.3.3; returns the best candidate and the best loss per generation."""
    evo.loss[evo.key(init)] = evo.evaluate(init)
    population = [init] + evo.offspring(lambda: evo.mutate(init, *INITIAL), opt["population"] - 1)
    parents = evo.best(population, opt["parents"])
    history = [evo.loss[evo.key(parents[0])]]
    for _ in range(opt["epochs"]):
        parents = evo.best(parents + children(evo, parents, opt), opt["parents"])
        history.append(evo.loss[evo.key(parents[0])])
        log.info(
            "search_llm: generation %d, best loss %.4f (%d evaluated)", len(history) - 1, history[-1], len(evo.loss)
        )
    return parents[0], history


def run(
    model_dir,
    tokens_zarr,
    out_dir,
    *,
    target_sparsity: float,
    setting: str = "cpu",
    rho: float = 1.0,
    admm_iterations: int = 30,
    reform: bool = True,
    seed: int = 0,
    split: str = PRUNE,
    batch_size: int = 8,
    device: str = "cpu",
    **overrides,
):
    """Importance initialisation, evolutionary search, ADMM reformation; returns the genome path."""
    opt = resolve_setting(METHOD, SETTINGS, setting, overrides)
    spec = load_spec(model_dir)
    tokens = calibration_tokens(tokens_zarr, split)
    with placed(device, key=DEVICE_KEY) as dev:  # candidates are whole models: the dense one is held on `dev`
        model = dense_model(model_dir, dev)
        scores = on_host(
            layer_importance(layer, x, pos, spec, batch_size)
            for _, layer, x, pos in layerwise.layers(model, tokens, batch_size)
        )
        init = uniform_structure(spec, target_sparsity, [s[0] for s in scores], [s[1] for s in scores])
        states = candidate.dense_layer_states(model)
        evaluation = calibration_tokens(tokens_zarr, FITNESS, opt["eval_sequences"]).to(dev)

        def evaluate(s):
            return candidate.lm_loss(model, candidate.pruned_layers(model, spec, states, s), evaluation)

        evo = Evolution(spec, target_sparsity, evaluate, np.random.default_rng(seed))
        best, history = search(evo, init, opt)
        if reform:
            solve = partial(admm, rho=rho, iterations=admm_iterations)
            layerwise.compensate(model, spec, tokens, best, solve, batch_size)
    info = {
        "history": history,
        "init_loss": evo.loss[evo.key(init)],
        "evaluated": len(evo.loss),
        "reform": reform,
        **opt,
    }
    if reform:
        info.update(rho=rho, admm_iterations=admm_iterations)
    best.info = info
    return write(model_dir, out_dir, best, method=METHOD, target_sparsity=target_sparsity)
