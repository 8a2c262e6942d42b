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

Since the Euler step adds dt v whatever x_t is, the correction commutes with it: here it is one
hook that takes the gradient at each prediction and subtracts it from the state after the
solver's step, so it runs inside the one sampling loop with any solver and any Gaussian path
(x0_hat is the model's data prediction, t v on the linear path).

``backprop=True`` gives the DPS-like baseline the paper compares with: the same update with the
gradient taken through the network, grad_{x_t} L(x0_hat(x_t)) (the run's model is taped, so
one forward with the graph and one backward per step; no second evaluation).

Step size: the official scripts use ``gradient_scale = 500`` on the mean over the measurement
entries of 64x64x3 images, i.e. x_t <- x_t - (1000 / 12288) A^T (A x0_hat - y). The default
here keeps that effective step for any size: ``gradient_scale = 500 m / 12288`` for m
measurement entries.

The measurement's noise level: FlowChef's loss is the plain mean squared residual (Alg. 1; the
official scripts use the same gradient_scale at noise 0 and 0.05), with no likelihood weight,
so the step does not read ``operator.noise_std`` and the same y gives the same samples at any
noise (pinned in ``tests/inverse/test_noise_aware.py``). For a noise-aware gradient step use
DPS with ``likelihood="gaussian"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from typing_extensions import Unpack

from ..errors import UserError
from ..predictions import Model, Prediction
from ..solvers import Hook, Node, Plan, Run, Sampler, State, Step, as_sampler, sample
from ..solvers.grids import Uniform
from ..solvers.ode import Euler
from ..solvers.spec import SamplerOptions
from .base import (
    Operator,
    Reconstruction,
    Rows,
    detached,
    model_gradient,
    seeded,
    start_noise,
    taped,
)

#: The official default: gradient_scale 500 on the mean loss over 64 * 64 * 3 entries.
PAPER_SCALE, PAPER_ENTRIES = 500.0, 64 * 64 * 3
#: The official sampler: Euler on a uniform grid of 100 steps.
FLOWCHEF_SAMPLER = Sampler(Euler(), nfe=100, grid=Uniform(), seed=0)


def default_gradient_scale(n_measurements: int) -> float:
    """The official step (500 on the mean over 12288 entries) rescaled to ``n_measurements``,
    so that the update x_t <- x_t - (1000 / 12288) A^T r is the same for any size."""
    return PAPER_SCALE * n_measurements / PAPER_ENTRIES


def x0_gradient(x0: Tensor, loss: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
    """(grad_{x0} sum_i loss(x0)_i, the per-sample loss): the skipped-Jacobian gradient."""
    with torch.enable_grad():
        leaf = x0.detach().requires_grad_(True)
        value = loss(leaf)
        (grad,) = torch.autograd.grad(value.sum(), leaf)
    return grad, value.detach()


@dataclass
class FlowChefState:
    """Per-run state of :class:`FlowChef`: the newest gradient g (consumed by the step) and
    the measurement loss at x0_hat of every corrected step."""

    grad: Tensor | None = None
    residuals: list[float] = field(default_factory=list)


class FlowChef(Hook[FlowChefState]):
    """The FlowChef correction as one hook on the sampling loop.

    At each prediction of a step it takes the gradient g of ``loss(x0_hat)`` (with respect to
    x0_hat, or with ``backprop`` to x_t through the network) and after the step it subtracts
    ``gradient_scale * g`` from the state. Steps whose index is ``>= stop_step`` (default: the
    last step) are not corrected; ``result.state(hook).residuals`` holds the loss at each
    corrected step.

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
            raise UserError(f"gradient_scale must be a finite number >= 0, got {gradient_scale}")
        self.loss, self.gradient_scale = loss, float(gradient_scale)
        self.backprop, self.stop_step = backprop, stop_step

    @staticmethod
    def measurement_loss(operator: Operator, y: Tensor) -> Callable[[Tensor], Tensor]:
        """L(x) = mean over entries of (A x - y)^2, per sample."""

        def loss(x: Tensor) -> Tensor:
            r = operator(x) - y.to(x)
            return r.square().flatten(1).mean(1)

        return loss

    def prepare(self, plan: Plan) -> Plan:
        return Plan(taped(plan.model), plan.grid, plan.x) if self.backprop else plan

    def start(self, run: Run) -> FlowChefState:
        return FlowChefState()

    def on_prediction(
        self, pred: Prediction, node: Node, run: Run, state: FlowChefState
    ) -> Prediction:
        stop = run.n_steps - 1 if self.stop_step is None else self.stop_step
        if run.index < stop:
            if self.backprop:
                # DPS-like: through the network.
                state.grad, loss = model_gradient(pred, node, run, self.loss)
            else:
                # Gradient skipping: d x0_hat / d x_t = I.
                state.grad, loss = x0_gradient(pred.x0, self.loss)
            state.residuals.append(float(loss.mean()))
        return detached(pred)

    def on_step(self, x_state: State, step: Step, run: Run, state: FlowChefState) -> State:
        """x_{t+dt} <- x_{t+dt} - s g (the correction commutes with the Euler step)."""
        if state.grad is None:
            return x_state
        grad, state.grad = state.grad, None
        return x_state.replace(x=x_state.x - self.gradient_scale * grad.to(x_state.x))

    def __repr__(self) -> str:
        return f"FlowChef(scale={self.gradient_scale:g}, backprop={self.backprop})"


@dataclass(frozen=True)
class FlowChefResult(Reconstruction):
    """The steered samples, the NFE per sample and the measurement loss at each corrected
    step."""

    residuals: list[float] = field(default_factory=list)


def flowchef(
    model: Model,
    operator: Operator,
    y: Tensor,
    sampler: Sampler | None = None,
    *,
    gradient_scale: float | None = None,
    backprop: bool = False,
    stop_step: int | None = None,
    cond: dict[str, Any] | None = None,
    index: Rows | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> FlowChefResult:
    """Solve y = A(x) + n by FlowChef-steered sampling (``backprop=True``: the DPS-like baseline).

    Defaults follow the official pixel-space scripts (:data:`FLOWCHEF_SAMPLER`: Euler, uniform
    grid, N = 100 steps; ``shortcuts`` change it), one gradient step per sampling step, no
    correction at the last step, and the official step size rescaled to the number of
    measurement entries (:func:`default_gradient_scale`). The start noise comes from the
    ``inverse-start`` stream of the spec's seed (row r: sample ``index[r]``).
    """
    operator.check(torch.empty(1, *operator.x_shape), "operator.x_shape")
    if y.ndim < 1:
        raise UserError("y must be a batch of measurements (B, ...)")
    base = FLOWCHEF_SAMPLER if sampler is None else sampler
    spec, seed = seeded(as_sampler(base, **shortcuts))
    n_entries = math.prod(y.shape[1:])
    scale = default_gradient_scale(n_entries) if gradient_scale is None else gradient_scale
    loss = FlowChef.measurement_loss(operator, y)
    hook = FlowChef(loss, scale, backprop=backprop, stop_step=stop_step)
    noise = start_noise(seed, (y.shape[0], *operator.x_shape), y, index)
    out = sample(model, noise, spec, hooks=[hook], cond=cond, index=index)
    return FlowChefResult(out.x, out.nfe, out.state(hook).residuals)


__all__ = [
    "FLOWCHEF_SAMPLER",
    "FlowChef",
    "FlowChefResult",
    "FlowChefState",
    "default_gradient_scale",
    "flowchef",
    "x0_gradient",
]
