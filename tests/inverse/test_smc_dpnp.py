"""DPnP (split Gibbs with the prior's reverse chain) against exact answers: at a fixed eta its
draws follow the exact posterior with the noise inflated to s^2 + eta^2 (A with orthonormal
rows: inpainting), the likelihood step is the exact Gaussian conditional, and bad input is
refused."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import interpolant as ip
from interpolant.data.oracles import GaussianMixture
from interpolant.inverse import Inpaint, mixture_posterior, solve
from interpolant.inverse.dpnp import dpnp, eta_schedule, likelihood_step
from interpolant.randomness import Streams

torch.set_num_threads(1)
D = 3


def _problem(noise: float = 0.1):
    g = torch.Generator().manual_seed(0)
    means = torch.randn(3, D, generator=g, dtype=torch.float64) * 1.5
    covs = torch.stack([0.3 * torch.eye(D, dtype=torch.float64)] * 3)
    prior = GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2]))
    op = Inpaint(torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64), noise_std=noise)
    y = op.measure(prior.sample(1, torch.Generator().manual_seed(2)), seed=3)
    return prior, prior.model(ip.paths.VPLinear()), op, y


def test_likelihood_step_is_the_gaussian_conditional() -> None:
    # x | z, y ~ N(P (A^T y / s^2 + z / eta^2), P), P = (A^T A / s^2 + I / eta^2)^{-1}.
    a = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]], dtype=torch.float64)
    s2, eta, n = 0.04, 0.5, 20000
    z = torch.tensor([[0.3, -0.2, 1.0]], dtype=torch.float64).expand(n, -1)
    y = torch.tensor([[1.0, 0.5]], dtype=torch.float64).expand(n, -1)
    x = likelihood_step(z, y, a, s2, eta, Streams(0, n, "test"))
    prec = a.T @ a / s2 + torch.eye(3, dtype=torch.float64) / eta**2
    cov = torch.linalg.inv(prec)
    mean = cov @ (a.T @ y[0] / s2 + z[0] / eta**2)
    assert float((x.mean(0) - mean).abs().max()) < 4 * float(cov.diagonal().max().sqrt()) / n**0.5
    assert float((torch.cov(x.T) - cov).abs().max()) < 0.05 * float(cov.abs().max())


def test_fixed_eta_targets_the_inflated_noise_posterior() -> None:
    prior, model, op, y = _problem()
    n, eta = 512, 0.5
    out = dpnp(
        model, op, y.expand(n, -1), iterations=10, eta_max=eta, eta_min=eta, denoise_steps=50
    )
    post = mixture_posterior(prior, op, y, noise_std=math.sqrt(op.noise_std**2 + eta**2))
    sd = post.covariance()[0].diagonal().sqrt()
    assert bool(((out.x.mean(0) - post.mean()[0]).abs() < 4 * sd / n**0.5).all())
    ratio = out.x.std(0) / sd
    # 50 ancestral steps per prior draw: measured 0.91-0.95 (10 steps: 0.84-0.87).
    assert bool((ratio > 0.85).all() and (ratio < 1.15).all())
    assert out.nfe == 10 * 50


def test_schedule_solve_and_bad_input() -> None:
    sched = eta_schedule(5, 1.0, 0.01)
    assert sched[0] == 1.0 and abs(sched[-1] - 0.01) < 1e-12
    assert all(b < a for a, b in itertools.pairwise(sched))
    _, model, op, y = _problem()
    out = solve(model, op, y.expand(2, -1), "dpnp", iterations=2, denoise_steps=3)
    assert out.x.shape == (2, D) and out.nfe == 6
    with pytest.raises(ValueError, match="noise_std > 0"):
        dpnp(model, Inpaint(op.mask), y)
    with pytest.raises(ValueError, match="eta_min"):
        dpnp(model, op, y, eta_max=0.1, eta_min=0.2)
