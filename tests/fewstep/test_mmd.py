"""Unbiased MMD^2 against its definition, and gradients through the K-step sampler."""

from __future__ import annotations

import pytest
import torch

from interpolant.errors import UserError
from interpolant.fewstep.mmd import MMDFinetune, checkpointed, mmd2_unbiased, polynomial_kernel
from interpolant.metrics.distances import mmd as rbf_mmd
from interpolant.models import build_model
from interpolant.paths import Linear
from interpolant.predictions import Model
from interpolant.solvers import Sampler, sample


def test_polynomial_mmd_matches_the_double_sum_and_is_unbiased():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    y = torch.randn(5, 3, generator=g, dtype=torch.float64) + 0.5
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / 42
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    assert float(mmd2_unbiased(x, y)) == pytest.approx(float(xx + yy - 2 * xy), rel=1e-12)
    assert torch.allclose(polynomial_kernel(x, y)[2, 3], k(x[2], y[3]))
    assert torch.equal(mmd2_unbiased(x, y, "rbf", 1.0), rbf_mmd(x, y, 1.0))
    # same law: the U-statistic averages to 0 (the biased V-statistic would not)
    draws = torch.stack(
        [
            mmd2_unbiased(torch.randn(20, 2, generator=g), torch.randn(20, 2, generator=g))
            for _ in range(400)
        ]
    )
    assert abs(float(draws.mean())) < 3 * float(draws.std()) / 20
    with pytest.raises(UserError):
        mmd2_unbiased(x, y, "laplace")


def test_gradients_through_the_sampler_with_and_without_checkpointing():
    torch.manual_seed(0)
    model = Model(build_model("mlp", dim=4, width=16, depth=2), Linear(), predicts="velocity")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    noise = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    spec = Sampler("ddim", steps=3, grid="uniform")
    grads = []
    for wrapped in (model, checkpointed(model)):
        model.zero_grad()
        sample(wrapped, noise, spec).x.square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], grads[1], atol=1e-6)
    objective = MMDFinetune(spec, features=lambda x: x.double(), kernel="polynomial")
    model.zero_grad()
    loss = objective.loss(model, torch.randn(6, 4), torch.Generator().manual_seed(2))
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad.abs().sum() > 0 for p in model.parameters())
    with pytest.raises(UserError, match="deterministic"):
        MMDFinetune(Sampler("sde_euler", steps=3))
