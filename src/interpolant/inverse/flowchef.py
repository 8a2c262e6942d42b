"""FlowChef: gradient-free steering of rectified-flow sampling (Patel et al. 2024, seed paper 34).

On the linear path x_t = (1 - t) x0 + t eps with a velocity model v, the data estimate is
x0_hat = x_t - t v (eq. 5 of the paper). FlowChef treats v as constant in x_t ("gradient
skipping": d x0_hat / d x_t = I along nearly straight trajectories, sec. 3.2), so the gradient of
a measurement loss L(x0_hat) with respect to x_t is its gradient with respect to x0_hat: no
backpropagation through the network. Each Euler step becomes (Alg. 1;
``generate_inverseproblems_flowchef.py`` of the official code)

    v = v_theta(x_t, t);  x0_hat = x_t - t v
    x_t <- x_t - s grad_{x0_hat} L(x0_hat),   L = mean((A x0_hat - y)^2)     (all but the last step)
    x_{t+dt} = x_t + dt v                                                     (the same v)

Since the Euler step adds dt v whatever x_t is, the correction commutes with it: here it is a
step hook applied after the solver's step, with the gradient taken by a prediction hook at the
step's start, so it runs inside the one sampling loop with any solver and any Gaussian path
(x0_hat is the model's data prediction, t v on the linear path).

``backprop=True`` gives the DPS-like baseline the paper compares with: the same update with the
gradient taken through the network, grad_{x_t} L(x0_hat(x_t)) (one forward with the graph
and one backward per step).

Step size: the official scripts use ``gradient_scale = 500`` on the mean over the measurement
entries of 64x64x3 images, i.e. x_t <- x_t - (1000 / 12288) A^T (A x0_hat - y). The default
here keeps that effective step for any size: ``gradient_scale = 500 m / 12288`` for m
measurement entries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..predictions import Model, Prediction
from ..solvers import Node, State, sample
from .._porting import SampleContext, make_generators, randn_like
from .base import Operator

#: The official default: gradient_scale 500 on the mean loss over 64 * 64 * 3 entries.
PAPER_SCALE, PAPER_ENTRIES = 500.0, 64 * 64 * 3


def default_gradient_scale(n_measurements: int) -> float:
    """The official step (500 on the mean over 12288 entries) rescaled to ``n_measurements``,
    so that the update x_t <- x_t - (1000 / 12288) A^T r is the same for any size."""
    return PAPER_SCALE * n_measurements / PAPER_ENTRIES


class FlowChef:
    """The FlowChef correction as a pair of hooks on the sampling loop.

    ``prediction_hook`` takes the gradient g of ``loss(x0_hat)`` at the start of each step
    (with respect to x0_hat, or with ``backprop`` to x_t through the network) and
    ``step_hook`` subtracts ``gradient_scale * g`` from the state after the step. Steps whose
    index is ``>= stop_step`` (default: the last step) are not corrected.

    ``loss`` maps x0_hat (B, ...) to per-sample losses (B,); :meth:`measurement_loss` gives the
    paper's mean squared measurement residual.
    """

    def __init__(
        self,
        loss: Callable[[Tensor], Tensor],
        gradient_scale: float,
        *,
        backprop: bool = False,
        stop_step: int | None = None,
    ) -> None:
        if not gradient_scale >= 0 or not math.isfinite(gradient_scale):
            raise ValueError(f"gradient_scale must be a finite number >= 0, got {gradient_scale}")
        self.loss, self.gradient_scale = loss, float(gradient_scale)
        self.backprop, self.stop_step = backprop, stop_step
        self.residuals: list[float] = []

    @staticmethod
    def measurement_loss(operator: Operator, y: Tensor) -> Callable[[Tensor], Tensor]:
        """L(x) = mean over entries of (A x - y)^2, per sample."""

        def loss(x: Tensor) -> Tensor:
            r = operator(x) - y.to(x)
            return r.square().flatten(1).mean(1)

        return loss

    def _active(self, ctx: SampleContext) -> bool:
        index = int(ctx.extra.get("flowchef_index", 0))
        stop = len(ctx.grid) - 2 if self.stop_step is None else self.stop_step
        return index < stop

    def prediction_hook(self, pred: Prediction, node: Node, ctx: SampleContext) -> Prediction:
        """Take the gradient at this step's start; return the prediction without a graph."""
        if not self._active(ctx):
            return pred.replace(pred.kind, pred.value.detach())
        if self.backprop:
            # DPS-like: through the network (the state carries the graph, see step_hook).
            if not pred.x.requires_grad:
                raise ValueError("backprop=True needs the state to require grad (use flowchef())")
            loss = self.loss(pred.x0)
            (grad,) = torch.autograd.grad(loss.sum(), pred.x)
        else:
            # Gradient skipping: d x0_hat / d x_t = I.
            with torch.enable_grad():
                x0 = pred.x0.detach().requires_grad_(True)
                loss = self.loss(x0)
                (grad,) = torch.autograd.grad(loss.sum(), x0)
        self.residuals.append(float(loss.detach().mean()))
        ctx.extra["flowchef_grad"] = grad.detach()
        return pred.replace(pred.kind, pred.value.detach())

    def step_hook(self, state: State, node: Node, ctx: SampleContext) -> State:
        """x_{t+dt} <- x_{t+dt} - s g (the correction commutes with the Euler step)."""
        grad = ctx.extra.pop("flowchef_grad", None)
        ctx.extra["flowchef_index"] = int(ctx.extra.get("flowchef_index", 0)) + 1
        x = state.x.detach()
        if grad is not None:
            x = x - self.gradient_scale * grad.to(x)
        if self.backprop:
            x = x.requires_grad_(True)
        return state.replace(x=x)


def flowchef(
    model: Model,
    operator: Operator,
    y: Tensor,
    *,
    nfe: int = 100,
    seed: int = 0,
    gradient_scale: float | None = None,
    backprop: bool = False,
    solver: str = "euler",
    grid: str = "uniform",
    stop_step: int | None = None,
    solver_dtype: torch.dtype | None = None,
    cond: dict[str, Any] | None = None,
    return_hook: bool = False,
) -> Tensor | tuple[Tensor, FlowChef]:
    """Solve y = A(x) + n by FlowChef-steered sampling (``backprop=True``: the DPS-like baseline).

    Defaults follow the official pixel-space scripts: Euler, uniform grid, N = ``nfe`` = 100
    steps, one gradient step per sampling step, no correction at the last step, and the
    official step size rescaled to the number of measurement entries
    (:func:`default_gradient_scale`). One noise draw per sample from ``seed``.
    With ``return_hook`` also returns the :class:`FlowChef` object (its ``residuals`` list holds
    the measurement loss at each corrected step).
    """
    operator.check(torch.empty(1, *operator.x_shape), "operator.x_shape")
    if y.ndim < 1:
        raise ValueError("y must be a batch of measurements (B, ...)")
    n_entries = math.prod(y.shape[1:])
    scale = default_gradient_scale(n_entries) if gradient_scale is None else gradient_scale
    hook = FlowChef(
        FlowChef.measurement_loss(operator, y),
        scale,
        backprop=backprop,
        stop_step=stop_step,
    )
    shape = (y.shape[0], *operator.x_shape)
    noise = randn_like(torch.empty(shape, dtype=y.dtype), make_generators(seed, shape[0]))
    if backprop:
        noise.requires_grad_(True)
    out = sample(
        model,
        noise,
        solver=solver,
        nfe=nfe,
        grid=grid,
        hooks=[hook.prediction_hook],
        step_hooks=[hook.step_hook],
        seed=seed + 10**6,
        solver_dtype=solver_dtype,
        cond=cond,
    )
    assert isinstance(out, Tensor)
    out = out.detach()
    return (out, hook) if return_hook else out
