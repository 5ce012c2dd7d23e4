"""Numerical Pruning: the Newton scores minimise the paper's objective (checked by autograd), one
global threshold ranks them, and the compensation is the least-squares fit on each layer's own
(already compensated) inputs (checked by lstsq)."""

from __future__ import annotations

import pytest
import torch

from helpers.baseline_factory import chosen_levels, dense_pass, flat, layer_pieces, prune_tokens, rebuild, spec_of
from tyr.methods.baselines import numerical
from tyr.model import adapter
from tyr.supernet.local_prune import channels

pytestmark = pytest.mark.usefixtures("single_thread")


def paper_objective(z, weight, X, ratio, lam, damping):
    """½ Σ_i ‖X W_:,i − X (z ∘ W_:,i)‖² / N + ½ λ (⟨1, z⟩ − r)² (+ the 1% damping, ½ δ m ‖z − 1‖²)."""
    N, D = X.shape
    diff = (X * (1 - z)) @ weight.T.double()
    H_diag = (weight.double() ** 2).sum(0) * (X**2).sum(0) / N
    lam_abs = lam * H_diag.mean()
    return (
        0.5 * (diff**2).sum() / N
        + 0.5 * lam_abs * (z.sum() - (1 - ratio) * D) ** 2
        + 0.5 * damping * H_diag.mean() * ((z - 1) ** 2).sum()
    )


@pytest.mark.parametrize("iterations", [1, 50])
def test_newton_scores_minimise_the_papers_objective(iterations):
    torch.manual_seed(0)
    weight, X = torch.randn(5, 12), torch.randn(200, 12).double() * torch.linspace(0.1, 2, 12).double()
    z = numerical.numerical_score(weight, X.T @ X / len(X), 0.5, lam=1.0, iterations=iterations)
    z = z.clone().requires_grad_(True)
    paper_objective(z, weight, X, 0.5, 1.0, 0.01).backward()
    one = torch.ones(12, dtype=torch.float64, requires_grad=True)
    paper_objective(one, weight, X, 0.5, 1.0, 0.01).backward()
    assert z.grad.norm() < 1e-8 * one.grad.norm(), "a minimiser: one Newton step is exact on this quadratic"
    assert z.detach().sum().item() == pytest.approx(6.0, rel=0.05), "the penalty holds ⟨1, z⟩ near r = (1 − ρ) D"


def ridge(X, W, cols, damping=0.01):
    """argmin_B ‖X_K B − X W‖² / N + δ · mean diag(XᵀX / N) · ‖B − W_K‖², by lstsq on the stacked system."""
    N = len(X)
    m = (X**2).sum(0).mean() / N
    A = torch.cat([X[:, cols] / N**0.5, (damping * m) ** 0.5 * torch.eye(len(cols), dtype=X.dtype)])
    b = torch.cat([X @ W / N**0.5, (damping * m) ** 0.5 * W[cols]])
    return torch.linalg.lstsq(A, b).solution.T


def test_global_ranking_and_sequential_least_squares_compensation(prepared, tmp_path):
    model_dir, tokens_zarr = prepared(num_hidden_layers=3)
    spec = spec_of(model_dir)
    genome_json = numerical.run(model_dir, tokens_zarr, tmp_path / "num", target_sparsity=0.4)
    genome, _, levels = chosen_levels(genome_json)
    tokens = prune_tokens(tokens_zarr)

    # One threshold over α·(head mean of z) and channel z, z from the dense model's inputs.
    alpha, kept, removed = numerical.head_scale(spec), [], []
    for a, (attn, mlp) in zip(dense_pass(model_dir, tokens)[2], levels):
        z_heads = numerical.numerical_score(a["layer"].self_attn.o_proj.weight, a["z"].T @ a["z"] / len(a["z"]), 0.4)
        z_chans = numerical.numerical_score(a["layer"].mlp.down_proj.weight, a["u"].T @ a["u"] / len(a["u"]), 0.4)
        for h, s in enumerate(alpha * z_heads.reshape(spec.num_heads, -1).mean(1)):
            (kept if h in attn["kept_heads"].tolist() else removed).append(s.item())
        for c, s in enumerate(z_chans):
            (kept if c in mlp["kept_channels"].tolist() else removed).append(s.item())
    assert removed and kept and max(removed) < min(kept)

    # Compensation: each layer refit on the outputs of the compensated layers before it.
    model = adapter.load_model(model_dir, dtype=torch.float32)
    pruned = rebuild(model_dir, levels)
    with torch.no_grad():
        x = model.model.embed_tokens(tokens)
        pos = model.model.position_embeddings(x)
        for layer, new, (attn, mlp) in zip(model.model.layers, pruned, levels):
            p = layer_pieces(layer, x, pos)
            cols = channels(attn["kept_heads"], spec.head_dim)
            expected = ridge(flat(p["z"]), layer.self_attn.o_proj.weight.double().T, cols)
            torch.testing.assert_close(attn["o_proj.weight"].double(), expected, rtol=1e-4, atol=1e-6)
            h = x + new.self_attn.o_proj(p["z"][..., cols]) if len(cols) else x  # the compensated attention
            u = flat(layer.mlp.channels(layer.post_attention_layernorm(h)))
            expected = ridge(u, layer.mlp.down_proj.weight.double().T, mlp["kept_channels"])
            torch.testing.assert_close(mlp["down_proj.weight"].double(), expected, rtol=1e-4, atol=1e-6)
            x = new(x, pos)
