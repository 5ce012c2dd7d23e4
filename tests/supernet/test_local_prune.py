import pytest
import torch

from tyr.supernet.local_prune import Hessian, channels, damp, prune_levels, recon_errors, saliency

D_OUT, HEADS, HEAD_DIM, CHANNELS = 24, 4, 8, 40


def problem(d_in, seed=0, n=600):
    """Correlated calibration inputs X (as real activations are) and a random projection."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d_in, generator=g) @ (torch.eye(d_in) + 0.3 * torch.randn(d_in, d_in, generator=g))
    W = torch.randn(D_OUT, d_in, generator=g)
    H = Hessian(d_in)
    for xb in X.split(128):
        H.add(xb)
    return X, W, H.mean()


SUBLAYERS = {"head": (HEADS * HEAD_DIM, HEAD_DIM, 1), "channel": (CHANNELS, 1, 4)}


@pytest.fixture(params=sorted(SUBLAYERS))
def sublayer(request):
    return SUBLAYERS[request.param]


def error(X, W, units, What, group):
    """‖XW − XŴ‖² / ‖XW‖² computed from X itself (not from H)."""
    Wfull = torch.zeros_like(W, dtype=torch.float64)
    Wfull[:, channels(units, group)] = What.double()
    ref = X.double() @ W.double().T
    return float(((ref - X.double() @ Wfull.T) ** 2).sum() / (ref**2).sum())


def test_hessian_is_mean_gram_matrix():
    X, _, H = problem(12)
    assert torch.allclose(H, X.double().T @ X.double() / len(X), rtol=1e-5)


def test_compensation_beats_masking_at_every_level(sublayer):
    d_in, group, step = sublayer
    X, W, H = problem(d_in)
    n = d_in // group
    levels = list(range(n, -1, -1))
    comp = prune_levels(W, H, levels, group=group, per_step=step)
    mask = prune_levels(W, H, levels, group=group, per_step=step, compensate=False)
    for k in levels:
        assert torch.equal(comp[k][0], mask[k][0]), "masking must select the same units"
        e_comp, e_mask = error(X, W, *comp[k], group), error(X, W, *mask[k], group)
        if 0 < k < n:
            assert e_comp < e_mask
        else:
            assert e_comp == pytest.approx(e_mask, abs=1e-12)
        (from_h,) = recon_errors(W, [(channels(comp[k][0], group), comp[k][1])], H)
        assert from_h == pytest.approx(e_comp, rel=1e-4)


def test_refit_is_exact_least_squares(sublayer):
    d_in, group, step = sublayer
    X, W, H = problem(d_in)
    levels = prune_levels(W, H, [d_in // group // 2], group=group, per_step=step, damp_ratio=0.0)
    units, What = next(iter(levels.values()))
    K = channels(units, group)
    Xk, Y = X.double()[:, K], X.double() @ W.double().T

    def grad(Wk):
        Wk = Wk.double().clone().requires_grad_(True)
        return torch.autograd.grad(((Y - Xk @ Wk.T) ** 2).sum(), Wk)[0]

    # ≈ 0 at the refit, against the gradient at the masked dense columns for scale.
    assert grad(What).norm() < 1e-5 * grad(W[:, K]).norm()  # float32 weights


def test_progressive_path_is_monotone_and_nested(sublayer):
    d_in, group, step = sublayer
    X, W, H = problem(d_in, seed=1)
    levels = list(range(d_in // group, -1, -1))
    out = prune_levels(W, H, levels, group=group, per_step=step, damp_ratio=1e-6)
    errors = [error(X, W, *out[k], group) for k in levels]
    assert all(a <= b + 1e-9 for a, b in zip(errors, errors[1:])), errors
    assert errors[0] == pytest.approx(0, abs=1e-12) and errors[-1] == pytest.approx(1)
    for big, small in zip(levels, levels[1:]):
        assert set(out[small][0].tolist()) <= set(out[big][0].tolist())
        assert len(out[small][0]) == small


def test_endpoints_are_dense_and_empty(sublayer):
    d_in, group, step = sublayer
    _, W, H = problem(d_in)
    out = prune_levels(W, H, [0, d_in // group], group=group, per_step=step)
    assert torch.equal(out[d_in // group][1], W)
    assert out[0][0].numel() == 0 and out[0][1].shape == (D_OUT, 0)


def greedy_reference(W, H, targets, group, per_step, lam, taylor, obs):
    """Brute force: refit the kept set from scratch every step; G = H W of the current W."""
    Hd = damp(H.double(), lam)
    Wd = W.double().T
    alive, path = list(range(Wd.shape[0] // group)), {}
    for n_keep in sorted(targets, reverse=True):
        while len(alive) > n_keep:
            K = channels(torch.tensor(alive), group)
            Wk = torch.linalg.solve(Hd[K][:, K], (Hd @ Wd)[K])  # least-squares fit on the kept set
            Gk = Hd[K][:, K] @ Wk  # H W for the current W (zeros outside K)
            score = saliency(Wk, Gk, torch.linalg.inv(Hd[K][:, K]), group, taylor=taylor, obs=obs)
            drop = set(torch.argsort(score, stable=True)[: min(per_step, len(alive) - n_keep)].tolist())
            alive = [u for i, u in enumerate(alive) if i not in drop]
        path[n_keep] = alive
    return path


@pytest.mark.parametrize("taylor,obs", [(True, True), (True, False), (False, True)])
def test_downdated_path_matches_brute_force_refits(sublayer, taylor, obs):
    d_in, group, step = sublayer
    _, W, H = problem(d_in, seed=2)
    n = d_in // group
    targets = [n, n - 1, n // 2, n // 2 - 1, 1, 0]  # uneven gaps: steps clipped at each level
    out = prune_levels(W, H, targets, group=group, per_step=step, taylor=taylor, obs=obs)
    ref = greedy_reference(W, H, targets, group, step, 0.01, taylor, obs)
    assert {k: u.tolist() for k, (u, _) in out.items()} == ref


def test_saliency_terms_are_switchable():
    _, W, H = problem(HEADS * HEAD_DIM, seed=3)
    Hd = damp(H, 0.01)
    Wt = W.double().T
    G, Hinv = Hd @ Wt, torch.linalg.inv(Hd)
    both = saliency(Wt, G, Hinv, HEAD_DIM)
    first = saliency(Wt, G, Hinv, HEAD_DIM, obs=False)
    second = saliency(Wt, G, Hinv, HEAD_DIM, taylor=False)
    assert torch.allclose(both, first + second)
    # Block OBS term of head 0 written out.
    b = slice(0, HEAD_DIM)
    assert second[0] == pytest.approx(0.5 * torch.trace(Wt[b].T @ torch.linalg.inv(Hinv[b, b]) @ Wt[b]).item())
    assert first[0] == pytest.approx((G[b] * Wt[b]).sum().item())


def test_a_given_target_is_fitted_exactly_at_every_level(sublayer):
    """G = XᵀY·W (e.g. the corrected refit: Y the dense model's input) gives, at every level,
    the least-squares fit of Y·W on the kept channels of X, and G = H·W gives the default path."""
    d_in, group, _ = sublayer
    X, W, H = problem(d_in, seed=3)
    Y = X + 0.3 * torch.randn(X.shape, generator=torch.Generator().manual_seed(4))  # the input to reproduce
    C = Hessian(d_in)
    C.add(X, Y)
    C = C.mean()
    levels = [d_in // group, d_in // group - 2, 2]
    got = prune_levels(W, H, levels, group=group, G=C.double() @ W.double().T)
    target = Y.double() @ W.double().T
    Hd = damp(H.double(), 0.01)
    for units, w in got.values():
        K = channels(units, group)
        lstsq = torch.linalg.solve(Hd[K][:, K], (C.double() @ W.double().T)[K])  # ridge normal equations
        assert torch.allclose(w.double().T, lstsq, atol=1e-4)
        if len(units) == d_in // group:  # all kept: the corrected fit beats the dense weights on the target
            fitted = X.double()[:, K] @ w.double().T
            assert (fitted - target).pow(2).mean() < (X.double() @ W.double().T - target).pow(2).mean()
    default = prune_levels(W, H, levels, group=group)
    same = prune_levels(W, H, levels, group=group, G=damp(H.double(), 0.01) @ W.double().T)
    for k in levels:
        assert torch.equal(default[k][0], same[k][0]) and torch.allclose(default[k][1], same[k][1], atol=1e-5)


def test_recon_errors_of_many_levels_match_each_level_from_x(sublayer):
    """All levels in one product (and in chunks of one level) give each level's error from X."""
    d_in, group, step = sublayer
    X, W, H = problem(d_in)
    levels = list(range(d_in // group, -1, -1))
    pruned = prune_levels(W, H, levels, group=group, per_step=step)
    pairs = [(channels(pruned[k][0], group), pruned[k][1]) for k in levels]
    want = [error(X, W, *pruned[k], group) for k in levels]
    assert recon_errors(W, pairs, H) == pytest.approx(want, rel=1e-4, abs=1e-7)
    assert recon_errors(W, pairs, H, chunk_bytes=1) == pytest.approx(recon_errors(W, pairs, H), rel=1e-6)


def test_obs_term_of_a_single_channel_is_its_weight_over_the_inverse_diagonal():
    """A 1x1 block: ½ Σ_j W_pj² / [H⁻¹]_pp, the scalar form of the block solve."""
    _, W, H = problem(CHANNELS)
    Hinv = torch.linalg.inv(damp(H, 0.01)).contiguous()  # (inv returns column-major strides)
    Wt = W.double().T.contiguous()
    got = saliency(Wt, Wt, Hinv, 1, taylor=False)
    assert torch.allclose(got, 0.5 * (Wt**2).sum(1) / torch.diagonal(Hinv), rtol=1e-12)
    Wb = Wt.repeat_interleave(2, 0) / 2**0.5  # each unit as two half-weight channels: a 2x2 block
    blocks = saliency(Wb, Wb, torch.kron(Hinv, torch.eye(2, dtype=Hinv.dtype)), 2, taylor=False)
    assert torch.allclose(blocks, got, rtol=1e-10)
