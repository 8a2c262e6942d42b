"""Probability-flow log-likelihood against exact Gaussian and Gaussian-mixture densities."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture
from interpolant.solvers.likelihood import draw_probes, gaussian_log_prob, log_likelihood

F64 = torch.float64


def gaussian3d() -> GaussianMixture:
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 3, generator=g, dtype=F64)
    cov = A @ A.T + 0.1 * torch.eye(3, dtype=F64)  # full covariance
    return GaussianMixture(torch.tensor([[0.5, -1.0, 2.0]], dtype=F64), cov[None])


def mixture2d() -> GaussianMixture:
    means = torch.tensor([[-1.0, 0.5], [1.5, -0.5]], dtype=F64)
    covs = torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.1, 0.0], [0.0, 0.5]]], dtype=F64)
    return GaussianMixture(means, covs, torch.tensor([0.3, 0.7], dtype=F64))


@pytest.mark.parametrize("path", [paths.Linear(), paths.Trig(), paths.VPCosine()], ids=repr)
def test_gaussian_exact_with_the_default_prior(path: paths.GaussianPath) -> None:
    # alpha(1) = 0 on these paths, so N(0, sigma(1)^2 I) is the exact density at t = 1.
    oracle = gaussian3d()
    x = oracle.sample(4, torch.Generator().manual_seed(1))
    result = log_likelihood(oracle.model(path), x, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(result.log_prob, oracle.log_prob(x), rtol=0, atol=1e-5)
    torch.testing.assert_close(result.bits_per_dim, -result.log_prob / (3 * math.log(2)))


@pytest.mark.parametrize(
    "path,t_max", [(paths.VPLinear(), 1.0), (paths.EDM(), 1.0), (paths.VE(), 0.5)], ids=repr
)
def test_exact_prior_makes_any_path_exact(path: paths.GaussianPath, t_max: float) -> None:
    oracle = gaussian3d()
    x = oracle.sample(3, torch.Generator().manual_seed(2))
    result = log_likelihood(
        oracle.model(path),
        x,
        t_max=t_max,
        rtol=1e-8,
        atol=1e-8,
        prior=lambda z: oracle.log_prob(z, t_max, path),
    )
    torch.testing.assert_close(result.log_prob, oracle.log_prob(x), rtol=0, atol=1e-5)
    # The latent is the probability-flow image of x: its density at t_max is the prior term.
    torch.testing.assert_close(result.prior_log_prob, oracle.log_prob(result.x_t_max, t_max, path))


def test_default_prior_error_on_vp_is_small_but_visible() -> None:
    # VP has alpha(1) = 6.6e-3: the Gaussian prior is an approximation (see the module doc).
    oracle, path = gaussian3d(), paths.VPLinear()
    x = oracle.sample(3, torch.Generator().manual_seed(3))
    approx = log_likelihood(oracle.model(path), x, rtol=1e-7, atol=1e-7).log_prob
    error = float((approx - oracle.log_prob(x)).abs().max())
    assert 1e-5 < error < 0.1


def test_mixture_exact_divergence() -> None:
    oracle, path = mixture2d(), paths.Linear()
    x = oracle.sample(5, torch.Generator().manual_seed(4))
    result = log_likelihood(oracle.model(path), x, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(result.log_prob, oracle.log_prob(x), rtol=0, atol=1e-5)


def test_fixed_step_rk4() -> None:
    oracle, path = mixture2d(), paths.Trig()
    x = oracle.sample(3, torch.Generator().manual_seed(5))
    coarse = log_likelihood(oracle.model(path), x, method="rk4", steps=20)
    fine = log_likelihood(oracle.model(path), x, method="rk4", steps=80)
    exact = oracle.log_prob(x)
    err_coarse = float((coarse.log_prob - exact).abs().max())
    err_fine = float((fine.log_prob - exact).abs().max())
    assert err_fine < 1e-4 and err_fine < err_coarse / 8
    assert fine.nfe == 4 * 80


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(probe: str) -> None:
    # 200 independent probe draws for one point: their mean is within Monte Carlo error.
    oracle, path = mixture2d(), paths.Linear()
    x = oracle.sample(1, torch.Generator().manual_seed(6)).repeat(200, 1)
    result = log_likelihood(
        oracle.model(path), x, exact_divergence=False, probe=probe, seed=0, rtol=1e-5, atol=1e-5
    )
    exact = float(oracle.log_prob(x[:1]))
    se = float(result.log_prob.std()) / math.sqrt(200)
    assert float(result.log_prob.std()) > 1e-3  # the estimate really is random
    assert abs(float(result.log_prob.mean()) - exact) < 4 * se


def test_probes_are_per_sample() -> None:
    full = draw_probes((5, 2, 3), 4, "rademacher", seed=10)
    assert full.shape == (4, 5, 6)
    assert torch.equal(full.abs(), torch.ones_like(full))
    assert torch.equal(draw_probes((2, 2, 3), 4, "rademacher", seed=10), full[:, :2])
    gauss = draw_probes((3, 6), 2, "gaussian", seed=10)
    assert torch.equal(draw_probes((2, 6), 2, "gaussian", seed=10), gauss[:, :2])
    assert not torch.equal(draw_probes((3, 6), 2, "gaussian", seed=11), gauss)


def test_bits_per_dim_and_bin_width() -> None:
    oracle, path = mixture2d(), paths.Linear()
    x = oracle.sample(2, torch.Generator().manual_seed(7))
    model = oracle.model(path)
    continuous = log_likelihood(model, x, method="rk4", steps=10)
    binned = log_likelihood(model, x, method="rk4", steps=10, bin_width=2 / 256)
    # -log2(2/256) = 7 bits per dimension for 8-bit data on [-1, 1].
    torch.testing.assert_close(binned.bits_per_dim, continuous.bits_per_dim + 7.0)
    torch.testing.assert_close(binned.log_prob, continuous.log_prob)


def test_gaussian_log_prob_and_errors() -> None:
    x = torch.tensor([[0.0, 1.0], [2.0, -1.0]], dtype=F64)
    expected = torch.distributions.Normal(0.0, 2.0).log_prob(x).sum(1)
    torch.testing.assert_close(gaussian_log_prob(x, 2.0), expected)
    model = mixture2d().model(paths.Linear())
    with pytest.raises(ValueError, match="method"):
        log_likelihood(model, x, method="euler")
    with pytest.raises(ValueError, match="n_probes"):
        log_likelihood(model, x, exact_divergence=False, n_probes=0)
    with pytest.raises(ValueError, match="bin_width"):
        log_likelihood(model, x, bin_width=0.0)
    with pytest.raises(ValueError, match="probe must be one of"):
        log_likelihood(model, x, exact_divergence=False, probe="sphere")
    with pytest.raises(ValueError, match="t_max"):
        log_likelihood(model, x, t_max=1.5)
    with pytest.raises(TypeError, match="Model"):
        log_likelihood(lambda x, t: x, x)  # type: ignore[arg-type]
