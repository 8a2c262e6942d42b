"""FlowChef: the skipped-Jacobian gradient, the DPS-like gradient through the network, the
unguided limit, and steering of an exact rectified-flow oracle towards the measurement."""

from __future__ import annotations

import pytest
import torch

from interpolant.data.oracles import lowrank64
from interpolant.inverse.flowchef import FlowChef, default_gradient_scale, flowchef
from interpolant.inverse.operators import Inpaint, SuperResolution, box_mask
from interpolant.paths import Linear
from interpolant.predictions import Model
from interpolant.solvers import SampleContext, get_solver, make_generators, randn_like, sample

SHAPE = (1, 8, 8)


def _oracle():
    gm, path = lowrank64(), Linear()

    def net(x, t):
        return gm.denoiser(x.flatten(1), t, path).reshape(x.shape)

    x = gm.sample(16, torch.Generator().manual_seed(0)).reshape(16, *SHAPE)
    return Model(net, path, predicts="x0"), x


def _ctx(model: Model, n_steps: int = 10) -> SampleContext:
    grid = torch.linspace(1, 0, n_steps + 1, dtype=torch.float64)
    return SampleContext(model, {}, None, get_solver("euler"), grid)


def test_skipped_jacobian_gradient_is_the_measurement_gradient_at_x0_hat() -> None:
    model, x = _oracle()
    op = SuperResolution(SHAPE, 2)
    y = op(x)
    hook = FlowChef(FlowChef.measurement_loss(op, y), 1.0)
    x_t = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    pred = model(x_t, 0.6)
    ctx = _ctx(model)
    hook.prediction_hook(pred, None, ctx)  # type: ignore[arg-type]
    # d/dx0 mean((A x0 - y)^2) = 2 / m A^T (A x0 - y), m = entries of one measurement.
    expected = 2.0 / y[0].numel() * op.adjoint(op(pred.x0) - y)
    torch.testing.assert_close(ctx.extra["flowchef_grad"], expected)


def test_backprop_gradient_goes_through_the_network() -> None:
    model, x = _oracle()
    op = Inpaint(box_mask(SHAPE))
    y = op(x)
    loss = FlowChef.measurement_loss(op, y)
    hook = FlowChef(loss, 1.0, backprop=True)
    x_t = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    leaf = x_t.clone().requires_grad_(True)
    ctx = _ctx(model)
    hook.prediction_hook(model(leaf, 0.6), None, ctx)  # type: ignore[arg-type]
    ref = x_t.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(loss(model(ref, 0.6).x0).sum(), ref)
    torch.testing.assert_close(ctx.extra["flowchef_grad"], expected)
    skipped = 2.0 / y[0].numel() * op.adjoint(op(model(x_t, 0.6).x0) - y)
    assert float((expected - skipped).abs().max()) > 1e-6  # the Jacobian is not the identity


def test_zero_scale_is_the_unguided_sampler() -> None:
    model, x = _oracle()
    op = Inpaint(box_mask(SHAPE))
    out = flowchef(model, op, op(x), nfe=20, seed=3, gradient_scale=0.0)
    noise = randn_like(torch.empty(x.shape, dtype=x.dtype), make_generators(3, x.shape[0]))
    ref = sample(model, noise, solver="euler", nfe=20, grid="uniform")
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backprop", [False, True], ids=["flowchef", "dps"])
def test_steering_reduces_the_measurement_residual(backprop) -> None:
    model, x = _oracle()
    op = Inpaint(box_mask(SHAPE))
    y = op(x)
    unguided = flowchef(model, op, y, nfe=40, seed=0, gradient_scale=0.0)
    out, hook = flowchef(model, op, y, nfe=40, seed=0, backprop=backprop, return_hook=True)
    res_unguided = float((op(unguided) - y).square().mean())
    res = float((op(out) - y).square().mean())
    assert res < 0.2 * res_unguided
    assert len(hook.residuals) == 39  # every step but the last is corrected
    # Monotone-ish: the residual at x0_hat falls over the run (windows of 10 steps).
    windows = torch.tensor(hook.residuals[:30]).reshape(3, 10).mean(1)
    assert bool((windows[1:] < windows[:-1]).all())


def test_flowchef_reconstructs_an_inpainted_oracle_sample_closely() -> None:
    model, x = _oracle()
    op = Inpaint(box_mask(SHAPE))
    out = flowchef(model, op, op(x), nfe=100, seed=0)
    assert float((out - x).square().mean()) < 0.01 * float(x.square().mean())


def test_default_scale_is_the_official_effective_step_and_arguments_are_checked() -> None:
    assert default_gradient_scale(64 * 64 * 3) == 500.0
    assert default_gradient_scale(64) == pytest.approx(500.0 * 64 / 12288)
    with pytest.raises(ValueError, match="gradient_scale"):
        FlowChef(lambda x: x.sum(1), -1.0)
