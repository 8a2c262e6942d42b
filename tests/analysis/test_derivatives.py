"""Jacobian, divergence and conservativity utilities against closed forms."""

from __future__ import annotations

import pytest
import torch

from interpolant.analysis import (
    ConservativeScore,
    PotentialNet,
    asymmetry,
    divergence,
    hutchinson_divergence,
    jacobian,
)
from interpolant.analysis.derivatives import divergence_loop, jacobian_loop
from interpolant.errors import UserError

torch.set_num_threads(1)


def test_jacobian_of_linear_and_quadratic_fields() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    x = torch.randn(5, 6, generator=g, dtype=torch.float64)
    assert torch.allclose(jacobian(lambda y: y @ a.T, x), a.expand(5, 6, 6), atol=1e-12)
    # f(x) = x * |x|^2: J = |x|^2 I + 2 x x^T, div = (D + 2) |x|^2.
    field = lambda y: y * y.square().sum(1, keepdim=True)  # noqa: E731
    r2 = x.square().sum(1)
    expected = (
        r2[:, None, None] * torch.eye(6, dtype=torch.float64) + 2 * x[:, :, None] * x[:, None]
    )
    assert torch.allclose(jacobian(field, x), expected, atol=1e-12)
    assert torch.allclose(divergence(field, x), 8 * r2, atol=1e-12)
    assert torch.allclose(jacobian_loop(field, x), expected, atol=1e-12)
    assert torch.allclose(divergence_loop(field, x), 8 * r2, atol=1e-12)


def test_hutchinson_is_unbiased_and_batch_independent() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, 4, generator=g, dtype=torch.float64)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    est = hutchinson_divergence(lambda y: y @ a.T, x, n_probes=4000, seed=0)
    assert torch.allclose(est, torch.trace(a).expand(3), atol=0.15)
    # Sample 0's estimate does not depend on the rest of the batch.
    alone = hutchinson_divergence(lambda y: y @ a.T, x[:1], n_probes=7, seed=3)
    assert torch.allclose(alone, hutchinson_divergence(lambda y: y @ a.T, x, 7, 3)[:1])


def test_exact_divergence_refuses_large_dimension() -> None:
    with pytest.raises(UserError, match="hutchinson_divergence"):
        divergence(lambda y: y, torch.zeros(2, 300))


def test_asymmetry_zero_for_conservative_and_not_for_rotation() -> None:
    torch.manual_seed(0)
    score = ConservativeScore(PotentialNet(3, width=16, depth=2)).double()
    x = torch.randn(8, 3, dtype=torch.float64)
    t = torch.full((8,), 0.3, dtype=torch.float64)
    assert float(asymmetry(lambda y: score(y, t), x).max()) < 1e-10
    rot = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(
        asymmetry(lambda y: 3.0 * y @ rot.T, x), torch.full((8,), 2.0, dtype=torch.float64)
    )
    mixed = asymmetry(lambda y: score(y, t) + 0.5 * y @ rot.T, x)
    assert float(mixed.min()) > 1e-3
