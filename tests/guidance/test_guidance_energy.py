"""Reconstruction guidance (DPS) and TSDiff self-guidance against closed forms on Gaussian data,
where x0_hat(x_t) = alpha x_t / (alpha^2 + sigma^2) is linear, so every gradient is analytic."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from interpolant import paths, sample
from interpolant.data.oracles import GaussianMixture
from interpolant.guidance import (
    ObservationGuidance,
    ReconstructionGuidance,
    pinball,
    quantile_levels,
)
from interpolant.inverse.base import Operator
from interpolant.predictions import Model
from interpolant.solvers import FunctionHook


class CoordinateMask(Operator):
    """Keeps the coordinates ``keep`` of a 2-D signal (a tiny linear operator)."""

    def __init__(self, keep: list[int], noise_std: float = 0.0) -> None:
        super().__init__((2,), noise_std)
        self.keep = keep

    def forward(self, x: Tensor) -> Tensor:
        return x[:, self.keep]

    def adjoint(self, y: Tensor) -> Tensor:
        out = torch.zeros(y.shape[0], 2, dtype=y.dtype)
        out[:, self.keep] = y
        return out


def standard_gaussian():
    return GaussianMixture(torch.zeros(1, 2), torch.eye(2)[None])


def score_delta(model, hook, x: Tensor, t: float) -> tuple[Tensor, int]:
    """The score change the hook makes at (x, t), and the NFE of that one evaluation."""
    seen: list[Tensor] = []
    record = FunctionHook(on_prediction=lambda p, n, r: seen.append(p.score) or p)
    res = sample(
        model, x, grid=[t, 0.0], scale_noise=False, solver="euler", hooks=[record, hook, record]
    )
    return seen[1] - seen[0], res.nfe


@pytest.mark.parametrize("path", [paths.VP(), paths.EDM(), paths.Linear()], ids=str)
def test_reconstruction_guidance_gaussian_mode_closed_form(path):
    t, w, r = 0.35, 1.7, 0.3
    model = standard_gaussian().model(path)
    x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.randn(5, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    op = CoordinateMask([0], noise_std=r)
    delta, nfe = score_delta(
        model, ReconstructionGuidance(op, y, w, mode="gaussian", data_std=None), x, t
    )
    a, s = (
        float(path.alpha(torch.tensor(t, dtype=torch.float64))),
        float(path.sigma(torch.tensor(t, dtype=torch.float64))),
    )
    k = a / (a * a + s * s)
    expect = w * k * op.adjoint(y - op(k * x)) / r**2
    torch.testing.assert_close(delta, expect, rtol=0, atol=1e-10)
    assert nfe == 2  # the model call and the grad-enabled re-evaluation


def test_dps_mode_uses_the_residual_norm():
    path, t, w = paths.VP(), 0.5, 0.8
    model = standard_gaussian().model(path)
    x = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    op = CoordinateMask([0, 1])
    delta, _ = score_delta(model, ReconstructionGuidance(op, y, w), x, t)
    a, s = (
        float(path.alpha(torch.tensor(t, dtype=torch.float64))),
        float(path.sigma(torch.tensor(t, dtype=torch.float64))),
    )
    k = a / (a * a + s * s)
    resid = y - k * x
    expect = w * k * resid / resid.norm(dim=1, keepdim=True)
    torch.testing.assert_close(delta, expect, rtol=0, atol=1e-10)


def test_observation_guidance_mse_and_quantile_closed_forms():
    path, t, w = paths.VP(), 0.3, 2.0
    model = standard_gaussian().model(path)
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    y = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    a, s = (
        float(path.alpha(torch.tensor(t, dtype=torch.float64))),
        float(path.sigma(torch.tensor(t, dtype=torch.float64))),
    )
    k = a / (a * a + s * s)
    e = (y - k * x) * mask
    delta, _ = score_delta(model, ObservationGuidance(y, mask, w), x, t)
    torch.testing.assert_close(delta, w * k * 2.0 * e, rtol=0, atol=1e-10)
    q = quantile_levels(2, 3)
    hook = ObservationGuidance(y, mask, w, energy="quantile", quantiles=q)
    delta_q, _ = score_delta(model, hook, x, t)
    dq = torch.where(e > 0, q[:, None], q[:, None] - 1.0) * mask
    torch.testing.assert_close(delta_q, w * k * dq, rtol=0, atol=1e-10)


def test_pinball_and_levels():
    e = torch.tensor([-2.0, 0.0, 3.0])
    torch.testing.assert_close(pinball(e, torch.tensor(0.25)), torch.tensor([1.5, 0.0, 0.75]))
    torch.testing.assert_close(pinball(e, torch.tensor(0.5)), 0.5 * e.abs())
    torch.testing.assert_close(
        quantile_levels(2, 3), torch.tensor([0.25, 0.5, 0.75] * 2, dtype=torch.float64)
    )


@pytest.mark.parametrize("path", [paths.VP(), paths.EDM()], ids=str)
def test_gaussian_mode_is_the_exact_likelihood_for_gaussian_data(path):
    # For x0 ~ N(0, I) and y = x0[0] + r n: p(y | x_t) = N(k x_t[0], r^2 + sigma^2 / (alpha^2 +
    # sigma^2)), so the guided score at w = 1 is the exact posterior score.
    t, r = 0.4, 0.2
    model = standard_gaussian().model(path)
    x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    y = torch.randn(5, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    op = CoordinateMask([0], noise_std=r)
    delta, _ = score_delta(model, ReconstructionGuidance(op, y, 1.0, mode="gaussian"), x, t)
    a, s = (
        float(path.alpha(torch.tensor(t, dtype=torch.float64))),
        float(path.sigma(torch.tensor(t, dtype=torch.float64))),
    )
    k = a / (a * a + s * s)
    var = r**2 + s * s / (a * a + s * s)
    torch.testing.assert_close(delta, k * op.adjoint(y - k * x[:, :1]) / var, rtol=0, atol=1e-10)


def test_guided_samples_follow_the_exact_posterior():
    path, r = paths.VP(), 0.2
    model = standard_gaussian().model(path)
    noise = torch.randn(2000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    y = torch.full((2000, 1), 1.5, dtype=torch.float64)
    op = CoordinateMask([0], noise_std=r)
    hook = ReconstructionGuidance(op, y, 1.0, mode="gaussian")
    guided = sample(model, noise, hooks=[hook], solver="sde_euler", nfe=100, seed=0).x
    # Posterior of x0[0] given y: N(y / (1 + r^2), r^2 / (1 + r^2)); x0[1] keeps N(0, 1).
    assert float(guided[:, 0].mean()) == pytest.approx(1.5 / (1 + r**2), abs=0.04)
    assert float(guided[:, 0].std()) == pytest.approx((r**2 / (1 + r**2)) ** 0.5, abs=0.04)
    assert float(guided[:, 1].std()) == pytest.approx(1.0, abs=0.06)


def test_errors():
    op = CoordinateMask([0])
    y = torch.zeros(3, 1)
    with pytest.raises(ValueError, match="noise_std"):
        ReconstructionGuidance(op, y, 1.0, mode="gaussian", data_std=None)
    with pytest.raises(ValueError, match="mode"):
        ReconstructionGuidance(op, y, 1.0, mode="l1")
    with pytest.raises(ValueError, match="quantiles="):
        ObservationGuidance(torch.zeros(3, 2), torch.ones(2), 1.0, energy="quantile")
    with pytest.raises(TypeError, match="Operator"):
        ReconstructionGuidance(lambda x: x, y, 1.0)  # type: ignore[arg-type]
    model = standard_gaussian().model(paths.VP())
    hook = ReconstructionGuidance(op, torch.zeros(5, 1), 1.0)
    with pytest.raises(ValueError, match="rows"):
        sample(model, torch.zeros(3, 2, dtype=torch.float64), nfe=3, hooks=[hook])


def test_gradient_guidance_works_inside_no_grad():
    # Users often sample under torch.no_grad(); the hook turns autograd on for its own gradient.
    path = paths.EDM()
    model = standard_gaussian().model(path)
    x = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    y = torch.ones(3, 1, dtype=torch.float64)
    hook = ReconstructionGuidance(CoordinateMask([0], noise_std=0.3), y, 1.0, mode="gaussian")
    with torch.no_grad():
        inside = sample(model, x, nfe=6, solver="heun", hooks=[hook])
    outside = sample(model, x, nfe=6, solver="heun", hooks=[hook])
    assert torch.equal(inside.x, outside.x)
    assert not torch.equal(inside.x, sample(model, x, nfe=6, solver="heun").x)


def test_reported_nfe_equals_the_network_calls():
    # Each guided evaluation re-evaluates the model once (not at sigma = 0, where the term is
    # undefined): the NFE the run reports is every network call it made.
    path = paths.EDM()
    exact = standard_gaussian().model(path)
    calls: list[int] = []

    def net(x, t):
        calls.append(x.shape[0])
        return exact.net(x, t)

    x = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    hook = ObservationGuidance(torch.ones(3, 2, dtype=torch.float64), torch.ones(2), 0.5)
    res = sample(Model(net, path, "x0"), x, nfe=6, solver="heun", hooks=[hook])
    plain = sample(exact, x, nfe=6, solver="heun")
    assert res.nfe == len(calls) > plain.nfe
