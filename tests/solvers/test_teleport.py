"""Gaussian teleportation: the closed-form probability-flow solution of a Gaussian against a
high-accuracy numerical solve, its exact marginals, and the hybrid sampler's contract."""

import pytest
import torch

from interpolant.data import GaussianMixture, as_gaussian, fit_gaussian, ring2d
from interpolant.paths import get_path
from interpolant.solvers import reference_sample, sample
from interpolant.solvers.teleport import teleport, teleport_sample

PATHS = ["vp", "cosine", "edm", "linear"]


def _gaussian(d: int = 4, seed: int = 0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov = a @ a.T / d + torch.diag(torch.logspace(-2, 0.5, d, dtype=torch.float64))
    return GaussianMixture(torch.randn(1, d, generator=g, dtype=torch.float64), cov[None])


@pytest.mark.parametrize("name", PATHS)
def test_flow_map_matches_numerical_ode_solve(name: str) -> None:
    path, gauss = get_path(name), _gaussian()
    noise = torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    numeric = reference_sample(gauss.model(path), noise, rtol=1e-9, atol=1e-9)
    sigma_max = float(path.sigma(torch.tensor(1.0, dtype=torch.float64)))
    exact = gauss.flow_map(noise * sigma_max, 1.0, 0.0, path)
    assert torch.allclose(exact, numeric, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", [*PATHS, "trig", "ve"])
def test_flow_map_pushes_the_marginal_exactly(name: str) -> None:
    # The map is affine, x -> alpha' mu + J (x - alpha mu); J S_from J^T must be S_to.
    path, gauss = get_path(name), _gaussian()
    eye = torch.eye(4, dtype=torch.float64)
    for t_from, t_to in [(1.0, 0.4), (0.7, 0.05), (0.3, 0.0)]:
        tt = torch.tensor([t_from, t_to], dtype=torch.float64)
        a, s = path.alpha(tt), path.sigma(tt)
        mu, cov = gauss.means[0], gauss.covs[0]
        origin = gauss.flow_map(a[0] * mu[None], t_from, t_to, path)
        assert torch.allclose(origin[0], a[1] * mu, atol=1e-12)
        jac = (gauss.flow_map(a[0] * mu + eye, t_from, t_to, path) - origin).T
        s_from, s_to = a[0] ** 2 * cov + s[0] ** 2 * eye, a[1] ** 2 * cov + s[1] ** 2 * eye
        assert torch.allclose(jac @ s_from @ jac.T, s_to, atol=1e-10)


def test_flow_map_composes_and_keeps_dtype() -> None:
    path, gauss = get_path("vp"), _gaussian()
    x = torch.randn(5, 4, dtype=torch.float64)
    two = gauss.flow_map(gauss.flow_map(x, 1.0, 0.5, path), 0.5, 0.1, path)
    assert torch.allclose(two, gauss.flow_map(x, 1.0, 0.1, path), atol=1e-12)
    assert gauss.flow_map(x.float(), 1.0, 0.5, path).dtype == torch.float32


def test_flow_map_needs_one_component() -> None:
    with pytest.raises(ValueError, match="single Gaussian"):
        ring2d().flow_map(torch.zeros(2, 2), 1.0, 0.5, get_path("vp"))
    with pytest.raises(ValueError, match="features"):
        _gaussian().flow_map(torch.zeros(2, 3), 1.0, 0.5, get_path("vp"))


def test_fit_gaussian_moments_and_constant_pixels() -> None:
    data = torch.randn(500, 3, dtype=torch.float64) @ torch.tensor(
        [[1.0, 0.2, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64
    )
    gauss = fit_gaussian(data)  # the third coordinate is constant
    assert torch.allclose(gauss.means[0], data.mean(0), atol=1e-12)
    cov = torch.cov(data.T)
    assert torch.allclose(gauss.covs[0][:2, :2], cov[:2, :2], rtol=1e-5)
    assert float(gauss.eigvals.min()) > 0
    with pytest.raises(ValueError, match="at least 2 rows"):
        fit_gaussian(data[:1])


def test_teleport_sample_skip_zero_is_plain_sampling() -> None:
    mix, path = ring2d(), get_path("edm")
    noise = torch.randn(6, 2, dtype=torch.float64)
    kwargs = {"solver": "heun", "grid": "karras"}
    plain = sample(mix.model(path), noise, steps=8, **kwargs).x
    tele = teleport_sample(
        mix.model(path), noise, as_gaussian(mix.sample(200)), skip=0, steps=8, **kwargs
    ).x
    assert torch.equal(plain, tele)


def test_teleport_of_a_gaussian_model_is_exact_over_the_skipped_steps() -> None:
    # For Gaussian data the jump is the exact flow: teleporting 5 of 6 steps and taking one Heun
    # step is closer to the exact solution than 6 Heun steps from t = 1.
    path, gauss = get_path("vp"), _gaussian()
    noise = torch.randn(4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    exact = gauss.flow_map(noise * float(path.sigma(torch.tensor(1.0))), 1.0, 0.0, path)
    kwargs = {"steps": 6, "solver": "heun", "grid": "karras"}
    plain = sample(gauss.model(path), noise, **kwargs).x
    tele = teleport_sample(gauss.model(path), noise, gauss, skip=5, **kwargs).x
    assert (tele - exact).abs().max() < 0.5 * (plain - exact).abs().max()
    # The teleported state itself is the exact flow.
    sigma_max = float(path.sigma(torch.tensor(1.0)))
    mid = teleport(gauss, noise, 0.3, path)
    assert torch.allclose(mid, gauss.flow_map(noise * sigma_max, 1.0, 0.3, path))


def test_teleport_sample_rejects_bad_arguments() -> None:
    mix, path = ring2d(), get_path("vp")
    noise = torch.randn(2, 2, dtype=torch.float64)
    data = as_gaussian(mix.sample(50))
    with pytest.raises(ValueError, match="exactly one of skip"):
        teleport_sample(mix.model(path), noise, data, steps=4)
    with pytest.raises(ValueError, match=r"skip must lie in \[0, steps\)"):
        teleport_sample(mix.model(path), noise, data, skip=4, steps=4)
    with pytest.raises(ValueError, match="skip_fraction"):
        teleport_sample(mix.model(path), noise, data, skip_fraction=1.0, steps=4)
    with pytest.raises(ValueError, match="single Gaussian"):
        teleport_sample(mix.model(path), noise, mix, skip=1, steps=4)
    with pytest.raises(ValueError, match="one component"):
        as_gaussian(mix)
    with pytest.raises(ValueError, match="closed-form flow_map"):
        teleport_sample(mix.model(path), noise, mix.sample(50), skip=1, steps=4)
    with pytest.raises(ValueError, match="t_skip"):
        teleport(data, noise, 0.0, path)
