"""PFGM++ (Xu et al. 2023): the radial law of the perturbation kernel, and D -> infinity is EDM."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from interpolant import paths, sample
from interpolant.data.oracles import GaussianMixture
from interpolant.solvers import Sampler, get_solver

integrate = pytest.importorskip("scipy.integrate")
special = pytest.importorskip("scipy.special")
stats = pytest.importorskip("scipy.stats")

F64 = torch.float64


def radial_cdf(N: int, D: float):
    """CDF of u = R / r, density ~ u^(N-1) (1 + u^2)^(-(N+D)/2) (R^(N-1) (R^2 + r^2)^(-(N+D)/2)
    in R), by quadrature on a log grid; also returns the normaliser."""

    def density(u: float) -> float:
        return math.exp((N - 1) * math.log(u) - 0.5 * (N + D) * math.log1p(u * u)) if u > 0 else 0.0

    knots = np.concatenate([[0.0], np.logspace(-4, 4, 1601)])
    pieces = [
        integrate.quad(density, a, b, epsabs=1e-14, epsrel=1e-10)[0]
        for a, b in itertools.pairwise(knots)
    ]
    cumulative = np.concatenate([[0.0], np.cumsum(pieces)])
    tail = integrate.quad(density, knots[-1], np.inf)[0]
    total = cumulative[-1] + tail
    return (lambda u: np.interp(u, knots, cumulative / total)), total


def radii(path: paths.PFGM, n: int, shape: tuple[int, ...], t: float, seed: int) -> torch.Tensor:
    """u = ||x - y|| / r for x drawn from the kernel around data y."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(n, *shape, generator=g, dtype=F64)
    x = path.sample_xt(y, torch.full((n,), t, dtype=F64), path.noise_like(y, g))
    sigma = path.sigma(torch.tensor(t, dtype=F64))
    return path.radius(x - y) / path.r_of_sigma(sigma)


@pytest.mark.parametrize("D", [1.0, 4.0, 7.5, 128.0, 4096.0, 5000.5])
def test_radius_follows_the_pfgmpp_law(D: float) -> None:
    N, path = 6, paths.PFGM(D=D)
    cdf, total = radial_cdf(N, D)
    # The quadrature normaliser is B(N/2, D/2) / 2 (u^2 is beta-prime(N/2, D/2)).
    assert total == pytest.approx(0.5 * special.beta(N / 2, D / 2), rel=1e-7)
    u = radii(path, 4000, (2, 3), t=0.4, seed=int(D))
    result = stats.kstest(u.numpy(), cdf)
    assert result.pvalue > 1e-3, result
    # The path's own radial log-density is the same law up to a constant.
    R = torch.tensor([0.5, 1.0, 3.0], dtype=F64)
    r = torch.tensor(2.0, dtype=F64)
    ours = path.radial_log_density(R, r, N)
    direct = (N - 1) * torch.log(R) - 0.5 * (N + D) * torch.log(R**2 + r**2)
    torch.testing.assert_close(ours - ours[0], direct - direct[0])


def test_the_ks_test_can_tell_dimensions_apart() -> None:
    # The same draws against the law of a different D must be rejected (the test has power).
    cdf, _ = radial_cdf(6, 8.0)
    u = radii(paths.PFGM(D=4.0), 4000, (6,), t=0.4, seed=0)
    assert stats.kstest(u.numpy(), cdf).pvalue < 1e-6


@pytest.mark.parametrize("D", [1e7, math.inf])
def test_large_D_is_the_gaussian_kernel(D: float) -> None:
    N, path = 64, paths.PFGM(D=D)
    g = torch.Generator().manual_seed(1)
    y = torch.zeros(2000, N, dtype=F64)
    x = path.sample_xt(y, torch.full((2000,), 0.5, dtype=F64), path.noise_like(y, g))
    ratio = path.radius(x - y) / (path.sigma(torch.tensor(0.5, dtype=F64)) * math.sqrt(N))
    assert float(ratio.mean()) == pytest.approx(1.0, abs=1e-2)


@pytest.mark.parametrize(
    "solver,options",
    [("euler", {}), ("heun", {}), ("dpmpp_2m", {}), ("heun", {"s_churn": 20.0})],
)
def test_infinite_D_pipeline_is_edm_bit_for_bit(solver: str, options: dict) -> None:
    means = torch.tensor([[1.0, -1.0, 0.5, 0.0], [-1.0, 0.5, 0.0, 1.0]], dtype=F64)
    covs = 0.1 * torch.eye(4, dtype=F64).expand(2, 4, 4)
    oracle = GaussianMixture(means, covs)
    edm, pfgm = paths.EDM(), paths.PFGM(D=math.inf)
    shape = torch.zeros(5, 4, dtype=F64)
    noise_edm = edm.noise_like(shape, torch.Generator().manual_seed(7))
    noise_pfgm = pfgm.noise_like(shape, torch.Generator().manual_seed(7))
    assert torch.equal(noise_edm, noise_pfgm)
    t = torch.full((5,), 0.3, dtype=F64)
    assert torch.equal(
        edm.sample_xt(means[[0, 1, 0, 1, 0]], t, noise_edm),
        pfgm.sample_xt(means[[0, 1, 0, 1, 0]], t, noise_pfgm),
    )
    spec = Sampler(get_solver(solver, **options), steps=12, seed=3)
    out = [
        sample(oracle.model(path), noise, spec).x
        for path, noise in ((edm, noise_edm), (pfgm, noise_pfgm))
    ]
    assert torch.equal(out[0], out[1])


def test_bad_D_rejected() -> None:
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="D must be a number > 0"):
            paths.PFGM(D=bad)
    assert float(paths.PFGM(D=9.0).r_of_sigma(torch.tensor(2.0))) == pytest.approx(6.0)
    # D = None (a config's infinity) is EDM's D = inf; configs write inf as None (JSON).
    edm_like = paths.PFGM(D=None)
    assert edm_like.D == math.inf and edm_like.config() == {
        "name": "pfgm",
        "sigma_max": 80.0,
        "D": None,
    }
    assert paths.from_config(edm_like.config()) == edm_like
    with pytest.raises(TypeError):
        paths.PFGM(16.0)  # keyword-only: PFGM(D=16.0), not sigma_max by position
