"""AdaPruner (Kong et al., AAAI 2025): Bayesian optimisation of the calibration data and the
importance metric of a structured pruner.

A one-shot pruner's result hinges on two choices that are usually made at random or by
habit: which calibration samples it sees and which importance metric it ranks units by.
AdaPruner makes them the search space, calibration subset × metric, and searches it by
Bayesian optimisation: each point is evaluated by pruning with it and measuring the
pruned model; the optimiser proposes the next point from the evaluations so far.

  subset   one of `subsets` random sets of `sequences` calibration sequences
  metric   taylor     LLM-Pruner's first-order group Taylor score (element-wise)
           wanda_sp   Σ_i |W_ij| · ‖X_j‖₂ of o_proj / down_proj inputs
           flap       Var[X_j] · ‖W_:,j‖² (attention channels squared, as FLAP's code)
           magnitude  ‖W_:,j‖₂ (FLAP's structured-magnitude baseline)
  value    the pruned model's next-token loss (log perplexity) on the first
           `eval_sequences` sequences of the fitness split (never the evaluation data)

The metric set reuses the project's scores (the paper's own metric space, built on
LLM-Pruner's Taylor variants, is not public). The structure is LLM-Pruner's, which
AdaPruner extends: one ratio for every layer of LLM-Pruner's range (scaled to depth,
`budget.layer_range`), the rest dense. The optimiser is Optuna's TPE sampler (a
maintained Bayesian optimiser: Parzen-estimator densities of good and bad points),
seeded; its first third of the trials are random. Identical points are evaluated once.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from tyr.calib.stores import FITNESS, PRUNE
from tyr.core.device import placed
from tyr.methods.baselines import llm_pruner, wanda_sp
from tyr.methods.baselines.common import candidate
from tyr.methods.baselines.common.activations import calibration_tokens, dense_model, head_sums, projection_inputs
from tyr.methods.baselines.common.budget import layer_range, on_host, range_note, uniform_structure
from tyr.methods.baselines.common.single_level import DEVICE_KEY, load_spec, resolve_setting, write
from tyr.methods.baselines.flap import fluctuation

METHOD = "adapruner"
METRICS = ("taylor", "wanda_sp", "flap", "magnitude")
SETTINGS = {  # the paper's budget is not stated in its abstract; "paper" is our reading of a GPU-sized run
    "cpu": {"subsets": 4, "sequences": 4, "trials": 12, "eval_sequences": 4},
    "paper": {"subsets": 20, "sequences": 10, "trials": 50, "eval_sequences": 16},
}
log = logging.getLogger("tyr.methods.baselines")


def metric_scores(model, spec, tokens: torch.Tensor, metric: str, batch_size: int = 4) -> list[tuple]:
    """Per layer, (head scores, channel scores) of `metric` on the calibration `tokens`."""
    layers, d = model.model.layers, spec.head_dim
    if metric == "taylor":
        llm_pruner.loss_gradients(model, tokens, batch_size)
        scores = [llm_pruner.layer_scores(layer, spec) for layer in layers]
        model.zero_grad(set_to_none=True)
        model.requires_grad_(False)
        return scores
    if metric == "magnitude":
        return [
            (
                head_sums(layer.self_attn.o_proj.weight.double().norm(dim=0), d),
                layer.mlp.down_proj.weight.double().norm(dim=0),
            )
            for layer in layers
        ]
    stats = projection_inputs(model, tokens, batch_size)
    if metric == "wanda_sp":
        return [wanda_sp.layer_scores(layer, s, d) for layer, s in zip(layers, stats)]
    if metric == "flap":
        return [
            (
                head_sums(fluctuation(layer.self_attn.o_proj.weight, s["attn"].variance) ** 2, d),
                fluctuation(layer.mlp.down_proj.weight, s["mlp"].variance),
            )
            for layer, s in zip(layers, stats)
        ]
    raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")


class Objective:
    """Prune with (subset, metric) and return the pruned model's calibration loss; cached per point."""

    def __init__(self, model, spec, subsets, evaluation, target_sparsity, layers, batch_size):
        self.model, self.spec, self.subsets, self.evaluation = model, spec, subsets, evaluation
        self.target, self.layers, self.batch_size = target_sparsity, layers, batch_size
        self.states = candidate.dense_layer_states(model)
        self.values: dict[tuple, float] = {}
        self.structures: dict[tuple, object] = {}

    def structure(self, subset: int, metric: str):
        key = (subset, metric)
        if key not in self.structures:
            scores = on_host(metric_scores(self.model, self.spec, self.subsets[subset], metric, self.batch_size))
            self.structures[key] = uniform_structure(
                self.spec, self.target, [s[0] for s in scores], [s[1] for s in scores], self.layers
            )
        return self.structures[key]

    def __call__(self, trial) -> float:
        key = (
            trial.suggest_categorical("subset", list(range(len(self.subsets)))),
            trial.suggest_categorical("metric", list(METRICS)),
        )
        if key not in self.values:
            layers = candidate.pruned_layers(self.model, self.spec, self.states, self.structure(*key))
            self.values[key] = candidate.lm_loss(self.model, layers, self.evaluation, self.batch_size)
            log.info("adapruner: subset %d, metric %s: loss %.4f", *key, self.values[key])
        return self.values[key]


def run(
    model_dir,
    tokens_zarr,
    out_dir,
    *,
    target_sparsity: float,
    setting: str = "cpu",
    layers="scaled",
    seed: int = 0,
    split: str = PRUNE,
    batch_size: int = 4,
    device: str = "cpu",
    **overrides,
):
    """Bayesian optimisation over calibration subsets × metrics; returns the genome path of the best point."""
    import optuna

    opt = resolve_setting(METHOD, SETTINGS, setting, overrides)
    spec = load_spec(model_dir)
    pool = calibration_tokens(tokens_zarr, split)
    rng = np.random.default_rng(seed)  # numpy's, on the host: the same seed draws the same subsets on every device
    picks = (rng.choice(len(pool), min(opt["sequences"], len(pool)), replace=False) for _ in range(opt["subsets"]))
    subsets = [pool[torch.as_tensor(p, device=pool.device)] for p in picks]
    pruned = layer_range(spec.num_layers, layers)
    with placed(device, key=DEVICE_KEY) as dev:
        objective = Objective(
            dense_model(model_dir, dev),
            spec,
            [s.to(dev) for s in subsets],
            calibration_tokens(tokens_zarr, FITNESS, opt["eval_sequences"]).to(dev),
            target_sparsity,
            pruned,
            batch_size,
        )
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, opt["trials"] // 3))
        study = optuna.create_study(direction="minimize", sampler=sampler)
        study.optimize(objective, n_trials=opt["trials"])
        best = (study.best_params["subset"], study.best_params["metric"])
        structure = objective.structure(*best)
    structure.info = {
        "subset": best[0],
        "metric": best[1],
        "loss": objective.values[best],
        "evaluated": [{"subset": s, "metric": m, "loss": v} for (s, m), v in objective.values.items()],
        "layers": [pruned[0], pruned[-1] + 1],
        **opt,
        **range_note(spec, target_sparsity, pruned),
    }
    return write(model_dir, out_dir, structure, method=METHOD, target_sparsity=target_sparsity)
