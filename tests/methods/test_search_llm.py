"""Search for Efficient LLMs: the initial scores are the single-weight OBS errors (checked by least
squares), mask mutation keeps α of the mask, the search returns its best evaluated candidate at the
target size, and the ADMM reformation converges to the least-squares refit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.baseline_factory import chosen_levels, dense_pass, pruned_loss, rebuild, split_tokens
from tyr.methods.baselines import search_llm
from tyr.methods.baselines.common import reformation

pytestmark = pytest.mark.usefixtures("single_thread")

FAST = {"population": 4, "parents": 2, "mutations": 2, "crossovers": 1, "epochs": 2, "eval_sequences": 2}


def test_obs_importance_is_the_output_error_of_removing_one_weight():
    """Φ_ij = W_ij² / [(2XᵀX)⁻¹]_jj = 2 · min ‖X W_i − X' β‖², the best the rest of row i can do without W_ij."""
    torch.manual_seed(0)
    W, X = torch.randn(3, 6).double(), torch.randn(40, 6).double()
    phi = search_llm.obs_importance(W, search_llm.inverse_diagonal(X.T @ X, damping=0.0))
    for i in range(3):
        for j in range(6):
            others = [k for k in range(6) if k != j]
            beta = torch.linalg.lstsq(X[:, others], X @ W[i]).solution
            error = ((X @ W[i] - X[:, others] @ beta) ** 2).sum()
            assert phi[i, j].item() == pytest.approx(2 * error.item(), rel=1e-8)


def test_mask_mutation_keeps_a_share_of_the_mask():
    rng = np.random.default_rng(0)
    kept = list(range(0, 40, 2))
    for count in (10, 20, 30):
        new = search_llm.mutate_mask(rng, kept, 40, count, p_mask=1.0)
        assert len(new) == count == len(set(new)) and all(0 <= u < 40 for u in new)
        assert len(set(new) & set(kept)) >= np.ceil(search_llm.SIMILARITY * min(count, len(kept)))
    assert search_llm.mutate_mask(rng, kept, 40, len(kept), p_mask=0.0) == kept  # no mutation drawn


@pytest.mark.parametrize("damping, iterations, exact", [(0.0, 200, True), (0.01, 30, False)])
def test_admm_reformation_converges_to_the_least_squares_refit(damping, iterations, exact):
    torch.manual_seed(1)
    X = torch.randn(300, 10).double() @ torch.randn(10, 10).double()  # correlated inputs
    W = torch.randn(10, 4).double()  # [in, out]
    cols = torch.tensor([0, 2, 3, 7, 9])
    reformed = reformation.admm(W, X.T @ X / len(X), cols, rho=1.0, iterations=iterations, damping=damping)
    best = torch.linalg.lstsq(X[:, cols], X @ W).solution.T
    if exact:
        torch.testing.assert_close(reformed, best, rtol=1e-4, atol=1e-5)  # float32 iterations
    masked_error = ((X[:, cols] @ W[cols] - X @ W) ** 2).sum()
    reformed_error = ((X[:, cols] @ reformed.T - X @ W) ** 2).sum()
    best_error = ((X[:, cols] @ best.T - X @ W) ** 2).sum()
    assert best_error <= reformed_error < 0.5 * masked_error


def test_search_returns_its_best_candidate_at_the_target_size(prepared, tmp_path):
    model_dir, tokens_zarr = prepared(num_hidden_layers=4)
    genome_json = search_llm.run(model_dir, tokens_zarr, tmp_path / "plain", target_sparsity=0.4, reform=False, **FAST)
    genome = json.loads(Path(genome_json).read_text())
    history = genome["baseline"]["history"]
    assert history == sorted(history, reverse=True) and history[-1] <= genome["baseline"]["init_loss"]
    assert abs(genome["sparsity"] - 0.4) <= 0.005
    evaluation = split_tokens(tokens_zarr, FAST["eval_sequences"], split="fitness")
    assert pruned_loss(model_dir, genome_json, evaluation) == pytest.approx(history[-1], rel=1e-4)

    # Reformation changes only the output projections' kept columns, and brings layer 0 closer to dense.
    reformed_json = search_llm.run(model_dir, tokens_zarr, tmp_path / "reformed", target_sparsity=0.4, **FAST)
    plain, reformed = chosen_levels(genome_json)[2], chosen_levels(reformed_json)[2]
    assert [a["kept_heads"].tolist() for a, _ in plain] == [a["kept_heads"].tolist() for a, _ in reformed]
    _, pos, acts = dense_pass(model_dir, split_tokens(tokens_zarr))
    x, y = acts[0]["x"], acts[0]["y"]
    errors = [((rebuild(model_dir, levels)[0](x, pos) - y) ** 2).sum().item() for levels in (plain, reformed)]
    assert errors[1] < errors[0]
