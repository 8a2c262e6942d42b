"""The exact mixture posterior against the Gaussian formula and against brute force."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.data.oracles import GaussianMixture, ring2d
from interpolant.inverse.operators import Inpaint, RandomProjection
from interpolant.inverse.posterior import mixture_posterior, posterior_error


def _random_cov(d: int, g: torch.Generator) -> torch.Tensor:
    f = torch.randn(d, d, generator=g, dtype=torch.float64)
    return f @ f.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_single_gaussian_matches_information_form() -> None:
    # Posterior precision = C^{-1} + A^T A / s^2, mean = P (C^{-1} mu + A^T y / s^2).
    g = torch.Generator().manual_seed(0)
    d, m, s = 5, 3, 0.3
    mu, cov = torch.randn(1, d, generator=g, dtype=torch.float64), _random_cov(d, g)[None]
    prior = GaussianMixture(mu, cov)
    a = torch.randn(m, d, generator=g, dtype=torch.float64)
    y = torch.randn(4, m, generator=g, dtype=torch.float64)
    post = mixture_posterior(prior, a, y, noise_std=s)
    precision = torch.linalg.inv(cov[0]) + a.T @ a / s**2
    p = torch.linalg.inv(precision)
    mean = (p @ (torch.linalg.solve(cov[0], mu[0])[:, None] + a.T @ y.T / s**2)).T
    torch.testing.assert_close(post.covs[0], p, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(post.mean(), mean, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(post.weights, torch.ones(4, 1, dtype=torch.float64))


def test_noiseless_posterior_satisfies_measurement_and_mask_rank() -> None:
    # s = 0 with a singular diagonal matrix (a mask): samples satisfy A x = y exactly.
    prior = ring2d()
    op = Inpaint(torch.tensor([1.0, 0.0]))
    x = prior.sample(3, torch.Generator().manual_seed(1))
    post = mixture_posterior(prior, op, op(x))
    draws = post.sample(100, torch.Generator().manual_seed(2))
    torch.testing.assert_close(draws[..., 0], x[:, None, 0].expand(3, 100))


@pytest.mark.parametrize("noise", [0.3, 0.8])
def test_mixture_posterior_matches_importance_sampling(noise: float) -> None:
    # Brute force: weight prior draws by N(y; A x, s^2) and compare mean and covariance.
    g = torch.Generator().manual_seed(3)
    means = torch.randn(3, 2, generator=g, dtype=torch.float64) * 2
    covs = torch.stack([_random_cov(2, g) * 0.3 for _ in range(3)])
    prior = GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2]))
    op = RandomProjection((2,), 1, noise_std=noise, seed=4)
    y = op.measure(prior.sample(2, g))
    post = mixture_posterior(prior, op, y)
    xs = prior.sample(400_000, g)
    for i in range(2):
        logw = -0.5 * ((y[i] - op(xs)) ** 2).sum(-1) / noise**2
        w = torch.softmax(logw, 0)
        mean = (w[:, None] * xs).sum(0)
        cov = (w[:, None, None] * torch.einsum("ni,nj->nij", xs - mean, xs - mean)).sum(0)
        ess = 1 / (w**2).sum()
        tol = 6 / math.sqrt(float(ess))
        torch.testing.assert_close(post.mean()[i], mean, atol=tol, rtol=0)
        torch.testing.assert_close(post.covariance()[i], cov, atol=2 * tol, rtol=0)


def test_posterior_error_orders_estimates() -> None:
    prior = ring2d()
    op = RandomProjection((2,), 1, noise_std=0.1, seed=0)
    g = torch.Generator().manual_seed(5)
    y = op.measure(prior.sample(8, g))
    post = mixture_posterior(prior, op, y)
    exact = posterior_error(post.sample(256, g), post)
    prior_only = posterior_error(prior.sample(8 * 256, g).reshape(8, 256, 2), post)
    at_mean = posterior_error(post.mean(), post)
    assert exact["sliced_w2"] < 0.5 * prior_only["sliced_w2"]
    assert at_mean["mean_rmse"] < 1e-12
    assert at_mean["expected_rmse"] == pytest.approx(at_mean["floor_rmse"])
    assert exact["mean_rmse"] < prior_only["mean_rmse"]


def test_shape_errors_name_shapes() -> None:
    prior = ring2d()
    with pytest.raises(ValueError, match=r"\(m, 2\)"):
        mixture_posterior(prior, torch.ones(1, 3), torch.zeros(1, 1), noise_std=0.1)
    with pytest.raises(ValueError, match="noise_std"):
        mixture_posterior(prior, torch.ones(1, 2), torch.zeros(1, 1))
