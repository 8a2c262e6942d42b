"""Seed 13 reproduction: the covariance, the exact forecast law, the CRPS estimator, and the
quick run's numbers and rule."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.repro import seed13_self_guidance as seed13

S = seed13.QUICK


@pytest.fixture(scope="module")
def quick_result():
    return seed13.REPRO(quick=True, seed=0)


def test_covariance_is_positive_definite_with_the_stated_diagonal():
    cov = seed13.covariance(S)
    assert cov.shape == (96, 96)
    assert float(torch.linalg.eigvalsh(cov).min()) > 0
    expected = 1.0 + S.innovation_sd**2 / (1 - S.phi**2)
    torch.testing.assert_close(cov.diagonal(), torch.full((96,), expected, dtype=torch.float64))


def test_conditional_law_matches_a_joint_monte_carlo():
    # Gaussian conditioning on a 3-D toy covariance against the closed form by hand.
    cov = torch.tensor([[2.0, 0.5, 0.3], [0.5, 1.0, 0.2], [0.3, 0.2, 1.5]], dtype=torch.float64)
    y = torch.tensor([[1.0, -0.5]], dtype=torch.float64)
    mu, sig = seed13.conditional(cov, y, 2)
    k_cc, k_hc = cov[:2, :2], cov[2:, :2]
    torch.testing.assert_close(mu, y @ torch.linalg.inv(k_cc) @ k_hc.T)
    torch.testing.assert_close(sig, cov[2:, 2:] - k_hc @ torch.linalg.inv(k_cc) @ k_hc.T)


def test_sample_crps_of_a_gaussian_tends_to_the_closed_form():
    # CRPS(N(0, 1), y) = y (2 Phi(y) - 1) + 2 phi(y) - 1 / sqrt(pi); the estimator's bias is
    # E|X - X'| / (2S) for S samples.
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    xs = torch.randn(1, 3000, 2, generator=g, dtype=torch.float64)
    normal = torch.distributions.Normal(0.0, 1.0)
    exact = y * (2 * normal.cdf(y) - 1) + 2 * normal.log_prob(y).exp() - 1 / math.sqrt(math.pi)
    assert float(seed13.sample_crps(xs, y)) == pytest.approx(float(exact.sum()), abs=0.05)


def test_quick_numbers_are_finite_and_consistent(quick_result):
    n = quick_result.numbers
    for key in ("oracle CRPS", "seasonal naive CRPS", "unguided CRPS"):
        assert math.isfinite(n[key]) and n[key] > 0
    for scale in S.scales[1:]:
        assert math.isfinite(n[f"quantile s={scale:g} CRPS"])
        assert 0 <= n[f"quantile s={scale:g} coverage"] <= 1
    best = min(n[f"quantile s={v:g} CRPS"] for v in S.scales[1:])
    assert n["best quantile CRPS / oracle"] == pytest.approx(best / n["oracle CRPS"])
    rule = (
        best < 0.5 * n["unguided CRPS"]
        and best < n["seasonal naive CRPS"]
        and best < S.oracle_factor * n["oracle CRPS"]
    )
    assert quick_result.claim_held is rule
