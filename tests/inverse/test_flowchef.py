"""FlowChef: the skipped-Jacobian gradient, the DPS-like gradient through the network, the
unguided limit, and steering of an exact rectified-flow oracle towards the measurement."""

from __future__ import annotations

import pytest
import torch

from interpolant.data.oracles import lowrank64
from interpolant.inverse.base import START_STREAM
from interpolant.inverse.flowchef import FlowChef, default_gradient_scale, flowchef
from interpolant.inverse.operators import Inpaint, SuperResolution, box_mask
from interpolant.paths import Linear
from interpolant.predictions import Evaluations, Model
from interpolant.randomness import normal
from interpolant.solvers import Run, fixed_run, node_at, sample

SHAPE = (1, 8, 8)


def _oracle():
    gm, path = lowrank64(), Linear()

    def net(x, t):
        return gm.denoiser(x.flatten(1), t, path).reshape(x.shape)

    x = gm.sample(16, torch.Generator().manual_seed(0)).reshape(16, *SHAPE)
    return Model(net, path, predicts="x0"), x


def _run(model: Model, n_steps: int = 10) -> Run:
    counter = Evaluations()
    return fixed_run(
        model.path, n_steps, 0, lambda x, node: model.at(x, node, counter), torch.randn_like
    )


def test_skipped_jacobian_gradient_is_the_measurement_gradient_at_x0_hat() -> None:
    model, x = _oracle()
    op = SuperResolution(SHAPE, 2)
    y = op(x)
    hook = FlowChef(FlowChef.measurement_loss(op, y), 1.0)
    x_t = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    pred = model(x_t, 0.6)
    run = _run(model)
    state = hook.start(run)
    hook.on_prediction(pred, node_at(model.path, 0.6), run, state)
    # d/dx0 mean((A x0 - y)^2) = 2 / m A^T (A x0 - y), m = entries of one measurement.
    expected = 2.0 / y[0].numel() * op.adjoint(op(pred.x0) - y)
    torch.testing.assert_close(state.grad, expected)


def test_backprop_gradient_goes_through_the_network() -> None:
    model, x = _oracle()
    op = Inpaint(box_mask(SHAPE))
    y = op(x)
    loss = FlowChef.measurement_loss(op, y)
    hook = FlowChef(loss, 1.0, backprop=True)
    x_t = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    leaf = x_t.clone().requires_grad_(True)
    run = _run(model)
    state = hook.start(run)
    hook.on_prediction(model(leaf, 0.6), node_at(model.path, 0.6), run, state)
    ref = x_t.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(loss(model(ref, 0.6).x0).sum(), ref)
    torch.testing.assert_close(state.grad, expected)
    skipped = 2.0 / y[0].numel() * op.adjoint(op(model(x_t, 0.6).x0) - y)
    assert float((expected - skipped).abs().max()) > 1e-6  # the Jacobian is not the identity


def test_zero_scale_is_the_unguided_sampler() -> None:
    model, x = _oracle()
    op = Inpaint(box_mask(SHAPE))
    out = flowchef(model, op, op(x), nfe=20, seed=3, gradient_scale=0.0)
    noise = normal(SHAPE, 3, range(x.shape[0]), START_STREAM, dtype=x.dtype)
    ref = sample(model, noise, solver="euler", nfe=20, grid="uniform")
    torch.testing.assert_close(out.x, ref.x, rtol=0, atol=1e-12)
    assert out.nfe == ref.nfe == 20


@pytest.mark.parametrize("backprop", [False, True], ids=["flowchef", "dps"])
def test_steering_reduces_the_measurement_residual(backprop) -> None:
    model, x = _oracle()
    op = Inpaint(box_mask(SHAPE))
    y = op(x)
    unguided = flowchef(model, op, y, nfe=40, seed=0, gradient_scale=0.0)
    out = flowchef(model, op, y, nfe=40, seed=0, backprop=backprop)
    res_unguided = float((op(unguided.x) - y).square().mean())
    res = float((op(out.x) - y).square().mean())
    assert res < 0.2 * res_unguided
    assert out.nfe == 40  # the gradient through the network reuses the sampler's forward pass
    assert len(out.residuals) == 39  # every step but the last is corrected
    # Monotone-ish: the residual at x0_hat falls over the run (windows of 10 steps).
    windows = torch.tensor(out.residuals[:30]).reshape(3, 10).mean(1)
    assert bool((windows[1:] < windows[:-1]).all())


def test_flowchef_reconstructs_an_inpainted_oracle_sample_closely() -> None:
    model, x = _oracle()
    op = Inpaint(box_mask(SHAPE))
    out = flowchef(model, op, op(x), nfe=100, seed=0).x
    assert float((out - x).square().mean()) < 0.01 * float(x.square().mean())


def test_flowchef_samples_do_not_depend_on_the_batch() -> None:
    model, x = _oracle()
    op = Inpaint(box_mask(SHAPE))
    y = op(x[:4])
    full = flowchef(model, op, y, nfe=10, seed=1, backprop=True).x
    one = flowchef(model, op, y[2:3], nfe=10, seed=1, backprop=True, index=[2]).x
    torch.testing.assert_close(full[2:3], one)


def test_default_scale_is_the_official_effective_step_and_arguments_are_checked() -> None:
    assert default_gradient_scale(64 * 64 * 3) == 500.0
    assert default_gradient_scale(64) == pytest.approx(500.0 * 64 / 12288)
    with pytest.raises(ValueError, match="gradient_scale"):
        FlowChef(lambda x: x.sum(1), -1.0)
