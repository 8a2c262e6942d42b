"""Gaussian-mixture oracles: Tweedie, autograd scores, the continuity equation, normalisation,
posterior means by Monte Carlo and samples against the density."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import ORACLES, GaussianMixture, lowrank64, ring2d
from interpolant.predictions import Model

F64 = torch.float64


def mixture2d() -> GaussianMixture:
    """Three well-overlapping components with full covariances and unequal weights."""
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.2]], dtype=F64)
    covs = torch.tensor(
        [[[0.3, 0.1], [0.1, 0.2]], [[0.2, -0.05], [-0.05, 0.4]], [[0.5, 0.0], [0.0, 0.1]]],
        dtype=F64,
    )
    return GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2], dtype=F64))


PATHS = [paths.Linear(), paths.VPLinear(), paths.VPCosine(), paths.EDM(), paths.VE()]
ORACLE_CASES = [("mixture2d", mixture2d), ("ring2d", ring2d), ("lowrank64", lowrank64)]


@pytest.mark.parametrize("name,make", ORACLE_CASES, ids=[c[0] for c in ORACLE_CASES])
@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_tweedie_and_autograd_score(name: str, make, path: paths.GaussianPath) -> None:
    oracle = make()
    g = torch.Generator().manual_seed(0)
    x0 = oracle.sample(6, g)
    t = torch.tensor([0.05, 0.2, 0.4, 0.6, 0.8, 0.95], dtype=F64)
    x = path.sample_xt(x0, t, torch.randn(x0.shape, generator=g, dtype=F64))
    alpha, sigma = path.alpha(t)[:, None], path.sigma(t)[:, None]
    score = oracle.score(x, t, path)
    torch.testing.assert_close(oracle.denoiser(x, t, path), (x + sigma**2 * score) / alpha)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(oracle.log_prob(xg, t, path).sum(), xg)
    torch.testing.assert_close(score, grad, rtol=1e-8, atol=1e-8)
    # The Model view gives the same denoiser, and the oracle velocity is its conversion.
    model = oracle.model(path)
    assert isinstance(model, Model)
    torch.testing.assert_close(model(x, t).x0, oracle.denoiser(x, t, path))
    torch.testing.assert_close(model(x, t).velocity, oracle.velocity(x, t, path))


@pytest.mark.parametrize("path", [paths.Linear(), paths.VPLinear(), paths.EDM()], ids=repr)
def test_velocity_solves_the_continuity_equation(path: paths.GaussianPath) -> None:
    # d/dt log p + div u + u . grad log p = 0 for the probability-flow velocity u.
    oracle = mixture2d()
    g = torch.Generator().manual_seed(1)
    x = 1.5 * torch.randn(8, 2, generator=g, dtype=F64)
    t = torch.linspace(0.1, 0.9, 8, dtype=F64).requires_grad_(True)
    (dlogp_dt,) = torch.autograd.grad(oracle.log_prob(x, t, path).sum(), t)
    xg = x.clone().requires_grad_(True)
    u = oracle.velocity(xg, t.detach(), path)
    div = sum(torch.autograd.grad(u[:, i].sum(), xg, retain_graph=True)[0][:, i] for i in range(2))
    transport = (u * oracle.score(x, t.detach(), path)).sum(1)
    torch.testing.assert_close(
        dlogp_dt + div + transport, torch.zeros(8, dtype=F64), atol=1e-9, rtol=0
    )


def test_denoiser_matches_monte_carlo_posterior_mean() -> None:
    # E[x0 | x_t] by self-normalised importance sampling with the prior as proposal.
    oracle, path = mixture2d(), paths.Linear()
    g = torch.Generator().manual_seed(2)
    prior = oracle.sample(400_000, g)
    x = torch.tensor([[0.3, -0.2], [-1.0, 0.6], [0.8, -1.0]], dtype=F64)
    for t in (0.3, 0.6):
        a, s = 1 - t, t
        logw = -((x[:, None, :] - a * prior[None]) ** 2).sum(-1) / (2 * s**2)
        w = torch.softmax(logw, dim=1)
        mc_mean = w @ prior
        ess = 1 / (w**2).sum(1)
        se = torch.sqrt(
            (w[..., None] * (prior[None] - mc_mean[:, None]) ** 2).sum(1) / ess[:, None]
        )
        err = (oracle.denoiser(x, t, path) - mc_mean).abs()
        assert bool((err < 5 * se + 1e-4).all()), (err, se)


@pytest.mark.parametrize("t", [0.0, 0.3, 0.7])
def test_log_prob_normalises_on_a_grid(t: float) -> None:
    oracle, path = mixture2d(), paths.VPLinear()
    n = 801
    u = torch.linspace(-6.0, 6.0, n, dtype=F64)
    grid = torch.stack(torch.meshgrid(u, u, indexing="ij"), dim=-1).reshape(-1, 2)
    density = oracle.log_prob(grid, t, path).exp().reshape(n, n)
    h = float(u[1] - u[0])
    total = torch.trapezoid(torch.trapezoid(density, dx=h, dim=1), dx=h)
    assert float(total) == pytest.approx(1.0, abs=1e-6)


def test_samples_match_the_density() -> None:
    oracle = mixture2d()
    g = torch.Generator().manual_seed(3)
    x = oracle.sample(100_000, g)
    # Moments: mixture mean and covariance (law of total covariance).
    w, mu = oracle.weights, oracle.means
    mean = w @ mu
    cov = (w[:, None, None] * (oracle.covs + mu[:, :, None] * mu[:, None, :])).sum(0) - torch.outer(
        mean, mean
    )
    torch.testing.assert_close(x.mean(0), mean, atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.015, rtol=0)
    # Mean log density of the samples is -entropy, computed independently by quadrature.
    logp = oracle.log_prob(x)
    n = 801
    u = torch.linspace(-6.0, 6.0, n, dtype=F64)
    grid = torch.stack(torch.meshgrid(u, u, indexing="ij"), dim=-1).reshape(-1, 2)
    lp = oracle.log_prob(grid).reshape(n, n)
    h = float(u[1] - u[0])
    neg_entropy = torch.trapezoid(torch.trapezoid(lp.exp() * lp, dx=h, dim=1), dx=h)
    se = float(logp.std()) / math.sqrt(x.shape[0])
    assert abs(float(logp.mean()) - float(neg_entropy)) < 4 * se
    # Component frequencies match the weights.
    post = oracle.posterior_weights(x, 0.0, paths.Linear()).mean(0)
    torch.testing.assert_close(post, w, atol=0.01, rtol=0)


def test_named_oracles_and_bad_input() -> None:
    ring = ring2d()
    assert ring.means.shape == (8, 2)
    torch.testing.assert_close(ring.means.norm(dim=1), torch.full((8,), 2.0, dtype=F64))
    torch.testing.assert_close(ring.eigvals, torch.full((8, 2), 0.05**2, dtype=F64))
    low = lowrank64()
    assert low.dim == 64 and low.means.shape[0] == 10
    assert float(low.eigvals.min()) > 0.99e-4
    torch.testing.assert_close(lowrank64().means, low.means)  # fixed seed
    assert set(ORACLES) >= {"ring2d", "lowrank64"}
    eye = torch.eye(2, dtype=F64)[None]
    with pytest.raises(ValueError, match="means must have shape"):
        GaussianMixture(torch.zeros(2, dtype=F64), eye)
    with pytest.raises(ValueError, match="covs must have shape"):
        GaussianMixture(torch.zeros(1, 2, dtype=F64), torch.eye(3, dtype=F64)[None])
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(torch.zeros(1, 2, dtype=F64), eye, torch.tensor([-1.0]))
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixture(torch.zeros(1, 2, dtype=F64), torch.zeros(1, 2, 2, dtype=F64))
