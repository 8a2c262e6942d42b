"""Frechet distance: the closed form for Gaussians, agreement with scipy's sqrtm, estimates."""

import math

import numpy as np
import pytest
import torch

from interpolant.metrics import frechet_distance, frechet_distance_from_stats, gaussian_stats


def _random_spd(d, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_commuting_covariances_closed_form():
    # Diagonal covariances: FD = |mu1 - mu2|^2 + sum (sqrt a_i - sqrt b_i)^2.
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, -1.0, 2.0])
    expected = 1 + 4 + (1 - 3) ** 2 + (2 - 1) ** 2
    got = frechet_distance_from_stats(mu1, torch.diag(a), mu2, torch.diag(b))
    assert got == pytest.approx(expected, rel=1e-12)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2, the squared 2-Wasserstein distance.
    f64 = dict(dtype=torch.float64)
    one = frechet_distance_from_stats(
        torch.tensor([0.5], **f64),
        torch.tensor([[4.0]], **f64),
        torch.tensor([-1.0], **f64),
        torch.tensor([[0.09]], **f64),
    )
    assert one == pytest.approx(1.5**2 + (2 - 0.3) ** 2, rel=1e-12)


def test_general_covariances_match_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    c1, c2 = _random_spd(6, 0), _random_spd(6, 1)
    mu1 = torch.linspace(-1, 1, 6, dtype=torch.float64)
    mu2 = torch.zeros(6, dtype=torch.float64)
    cross = linalg.sqrtm(c1.numpy() @ c2.numpy())
    expected = float(((mu1 - mu2) ** 2).sum()) + float(
        np.trace(c1.numpy() + c2.numpy() - 2 * cross.real)
    )
    got = frechet_distance_from_stats(mu1, c1, mu2, c2)
    assert got == pytest.approx(expected, rel=1e-9)
    # Symmetric, zero on the diagonal, positive otherwise.
    assert got == pytest.approx(frechet_distance_from_stats(mu2, c2, mu1, c1), rel=1e-9)
    assert frechet_distance_from_stats(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-10)


def test_sample_estimate_approaches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    d = 4
    c1, c2 = _random_spd(d, 2), _random_spd(d, 3)
    mu2 = torch.full((d,), 0.5, dtype=torch.float64)
    x = torch.randn(20_000, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(c1).T
    y = mu2 + torch.randn(20_000, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(c2).T
    expected = frechet_distance_from_stats(torch.zeros(d), c1, mu2, c2)
    # Seed-to-seed std of the estimate is ~0.03 here (mostly the mean term).
    assert frechet_distance(x, y, features="raw") == pytest.approx(expected, abs=0.12)
    mu, cov = gaussian_stats(x)
    torch.testing.assert_close(cov, torch.from_numpy(np.cov(x.numpy(), rowvar=False)))
    assert mu.abs().max() < 0.05


def test_feature_callables_and_errors():
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert frechet_distance(x, x, features="raw") == pytest.approx(0.0, abs=1e-10)
    doubled = frechet_distance(x, x + 1, features=lambda z: 2 * z)
    assert doubled == pytest.approx(4 * 3, rel=1e-10)  # shift by 2 in 3 coordinates
    with pytest.raises(ValueError, match="features must be"):
        frechet_distance(x, x, features="inception")
    with pytest.raises(ValueError, match="cov2 must have shape"):
        frechet_distance_from_stats(torch.zeros(2), torch.eye(2), torch.zeros(2), torch.eye(3))
    with pytest.raises(ValueError, match="at least 2 samples"):
        gaussian_stats(x[:1])
    assert math.isfinite(frechet_distance(x, x[:10], features="raw"))
