"""Inverse-problem solvers against exact answers: data consistency is exact, and DPS / RED-diff
land closer to the exact posterior of a Gaussian mixture than the prior does."""

from __future__ import annotations

import itertools

import pytest
import torch

from interpolant.data.oracles import GaussianMixture
from interpolant.inverse.operators import Inpaint, RandomProjection, make_operator, random_mask
from interpolant.inverse.posterior import mixture_posterior, posterior_error
from interpolant.inverse.solvers import (
    DPS,
    RED_WEIGHTINGS,
    DataConsistency,
    dps,
    red_diff,
    repaint,
    repaint_schedule,
    solve,
)
from interpolant.paths import get_path
from interpolant.solvers.loop import make_generators


def _prior(d: int = 8, k: int = 4, seed: int = 0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    means = 2 * torch.randn(k, d, generator=g, dtype=torch.float64)
    f = torch.randn(k, d, 2, generator=g, dtype=torch.float64) * 0.4
    return GaussianMixture(means, f @ f.mT + 0.01 * torch.eye(d, dtype=torch.float64))


@pytest.mark.parametrize("where", ["x0", "state"])
@pytest.mark.parametrize("spec", ["inpaint-random:0.5", "mri:2", "project:20"])
def test_hard_data_consistency_is_exact(where: str, spec: str) -> None:
    op = make_operator(spec, (1, 6, 6) if spec.startswith("mri") else (36,))
    prior = _prior(36, 3)
    model = prior.model(get_path("vp"))
    x = prior.sample(3, torch.Generator().manual_seed(1))
    x = x.reshape(3, *op.x_shape)
    y = op(x)
    flat = model if op.x_shape == (36,) else _reshaped(prior, op.x_shape)
    out = solve(flat, op, y, "dc", nfe=12, where=where)
    assert float((op(out) - y).abs().max()) < 1e-9


def _reshaped(prior: GaussianMixture, shape: tuple[int, ...]):
    from interpolant.predictions import Model

    path = get_path("vp")

    def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return prior.denoiser(x.reshape(x.shape[0], -1), t, path).reshape(x.shape)

    return Model(net, path, "x0")


def test_repaint_schedule_and_exact_known_region() -> None:
    visited = repaint_schedule(20, jump_length=5, resamples=3)
    moves = [b - a for a, b in itertools.pairwise(visited)]
    assert visited[0] == 0 and visited[-1] == 20 and set(moves) == {1, -1}
    # 3 jump points (r = 0, 5, 10) with 2 extra passes of 5 steps each.
    assert moves.count(1) == 20 + 3 * 2 * 5 and moves.count(-1) == 3 * 2 * 5
    prior = _prior(16, 3)
    op = Inpaint(random_mask((16,), 0.5, seed=2))
    x = prior.sample(2, torch.Generator().manual_seed(3))
    noise = torch.randn(2, 16, dtype=torch.float64)
    out = repaint(
        prior.model(get_path("vp")), op, op(x), noise, steps=10, jump_length=3, resamples=2
    )
    torch.testing.assert_close(op(out), op(x))


def _posterior_errors(method: str, **options) -> tuple[float, float]:
    prior = _prior()
    model = prior.model(get_path("vp"))
    op = RandomProjection((8,), 4, noise_std=0.1, seed=3)
    x = prior.sample(6, torch.Generator().manual_seed(4))
    y = op.measure(x, make_generators(50, 6))
    post = mixture_posterior(prior, op, y)
    n = 4
    out = solve(model, op, y.repeat_interleave(n, 0), method, seed=0, **options)
    err = posterior_error(out.reshape(6, n, 8), post)["expected_rmse"]
    prior_only = prior.sample(6 * n, torch.Generator().manual_seed(5)).reshape(6, n, 8)
    return err, posterior_error(prior_only, post)["expected_rmse"]


def test_dps_beats_the_prior_on_the_exact_posterior() -> None:
    err, prior_err = _posterior_errors("dps", nfe=50)
    assert err < 0.5 * prior_err


def test_red_diff_beats_the_prior_on_the_exact_posterior() -> None:
    err, prior_err = _posterior_errors("red_diff", steps=50)
    assert err < 0.5 * prior_err


def test_red_diff_regulariser_gradient_is_red() -> None:
    # With w = sigma/alpha, lam w (eps_hat - eps) = lam (mu - x0_hat(alpha mu + sigma eps)).
    prior = _prior()
    path = get_path("vp")
    model = prior.model(path)
    mu = prior.sample(3, torch.Generator().manual_seed(6))
    eps = torch.randn(3, 8, dtype=torch.float64)
    t = 0.4
    alpha, sigma = (float(c) for c in path.coefficients(torch.tensor([t], dtype=torch.float64))[:2])
    pred = model(alpha * mu + sigma * eps, t)
    lhs = RED_WEIGHTINGS["linear"](sigma / alpha) * (pred.eps - eps)
    torch.testing.assert_close(lhs, mu - pred.x0)


def test_red_diff_without_regulariser_fits_the_data() -> None:
    prior = _prior()
    op = RandomProjection((8,), 4, seed=1)
    y = op(prior.sample(2, torch.Generator().manual_seed(7)))
    out = red_diff(
        prior.model(get_path("vp")),
        op,
        y,
        steps=300,
        lam=0.0,
        lr=0.05,
        init=torch.zeros(2, 8, dtype=torch.float64),
    )
    assert float((op(out) - y).norm() / y.norm()) < 1e-2


def test_dps_is_batch_invariant_and_zeta_zero_is_the_prior_sampler() -> None:
    prior = _prior()
    model = prior.model(get_path("vp"))
    op = RandomProjection((8,), 4, noise_std=0.1, seed=3)
    y = op(prior.sample(3, torch.Generator().manual_seed(8)))
    noise = torch.randn(3, 8, dtype=torch.float64)
    both = dps(model, op, y, noise, nfe=10, seed=[0, 1, 2])
    one = dps(model, op, y[1:2], noise[1:2], nfe=10, seed=[1])
    torch.testing.assert_close(both[1:2], one)
    from interpolant.solvers.loop import sample

    free = sample(
        model,
        noise,
        solver="ddim",
        solver_options={"eta": 1.0},
        nfe=10,
        grid="uniform",
        seed=[0, 1, 2],
    )
    torch.testing.assert_close(dps(model, op, y, noise, nfe=10, zeta=0.0, seed=[0, 1, 2]), free)
    with pytest.raises(ValueError, match="zeta"):
        DPS(op, y, zeta=-1.0)


def test_solve_errors() -> None:
    prior = _prior()
    model = prior.model(get_path("vp"))
    op = RandomProjection((8,), 4)
    with pytest.raises(ValueError, match="unknown method"):
        solve(model, op, torch.zeros(1, 4), "magic")
    with pytest.raises(ValueError, match=r"y must have shape \(B, \*\(4,\)\)"):
        solve(model, op, torch.zeros(1, 5), "dps")
    with pytest.raises(ValueError, match="weighting"):
        red_diff(model, op, torch.zeros(1, 4), weighting="cubic")


def test_red_diff_adam_is_torch_adam_on_the_official_loss() -> None:
    # The official loop: torch.optim.Adam(lr 0.1, betas (0.9, 0.99)) on w_t loss_noise + loss_obs.
    prior = _prior()
    model = prior.model(get_path("vp"))
    op = RandomProjection((8,), 4, seed=2)
    y = op(prior.sample(3, torch.Generator().manual_seed(9)))
    ours = red_diff(model, op, y, steps=20, seed=0)
    gens = make_generators(0, 3)
    times = torch.linspace(0.999, 1e-3, 20, dtype=torch.float64)
    alphas, sigmas = (c.tolist() for c in model.path.coefficients(times)[:2])
    mu = op.pinv(y).clone().requires_grad_(True)
    opt = torch.optim.Adam([mu], lr=0.1, betas=(0.9, 0.99))
    for t, alpha, sigma in zip(times.tolist(), alphas, sigmas, strict=True):
        eps = torch.stack([torch.randn(8, generator=g, dtype=torch.float64) for g in gens])
        with torch.no_grad():
            eps_hat = model((alpha * mu + sigma * eps).detach(), t).eps
        noise_term = ((eps_hat - eps) * mu).sum(1) / 8
        obs_term = ((y - op(mu)) ** 2).sum(1) / (2 * 4)
        opt.zero_grad()
        (0.25 * sigma / alpha * noise_term + obs_term).sum().backward()
        opt.step()
    torch.testing.assert_close(ours, mu.detach())


@pytest.mark.parametrize("mode", ["pinv", "gradient"])
def test_soft_data_consistency_shrinks_the_residual_by_one_minus_weight(mode: str) -> None:
    # For a mask, A A^+ = A A^T = A on y's range: one soft step scales A x - y by (1 - w).
    op = Inpaint(random_mask((10,), 0.5, seed=1))
    x, y = torch.randn(3, 10, dtype=torch.float64), op(torch.randn(3, 10, dtype=torch.float64))
    out = DataConsistency(op, y, weight=0.3, mode=mode).project(x, y)
    torch.testing.assert_close(op(out) - y, 0.7 * (op(x) - y))
    torch.testing.assert_close(out - op(out), x - op(x))  # the unobserved part is untouched


def test_red_diff_is_batch_invariant() -> None:
    prior = _prior()
    model = prior.model(get_path("vp"))
    op = RandomProjection((8,), 4, noise_std=0.1, seed=3)
    y = op(prior.sample(3, torch.Generator().manual_seed(10)))
    both = red_diff(model, op, y, steps=15, seed=[4, 5, 6])
    one = red_diff(model, op, y[2:], steps=15, seed=[6])
    torch.testing.assert_close(both[2:], one)
