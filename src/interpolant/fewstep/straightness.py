"""Straightness of a flow (Liu et al. 2023, rectified flow, Eq. 7):

    S(u) = E_eps int_0^1 |(x_1 - x_0) - u(x_t, t)|^2 dt,

along the model's own ODE trajectory x_t from x_1 = eps (t = 1, the source) to x_0 (t = 0),
u = dx_t/dt the model's velocity on its path and |.|^2 the squared norm over all features. A
flow whose trajectories are straight lines has S = 0 and is solved exactly by one Euler step.

:func:`straightness` runs the one sampling loop (Euler on a uniform grid of ``steps`` steps),
records the velocity the loop evaluated at every node with a step hook (no extra network call),
and integrates with the left Riemann sum that matches the Euler trajectory; the error is
O(1/steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import UserError
from ..predictions import Model
from ..solvers import Sampler, sample
from ..solvers.base import Run, State
from ..solvers.hooks import Hook, Step


@dataclass
class VelocityRecord:
    """Per-step times (t_now, t_next) and the velocity evaluated at t_now."""

    times: list[tuple[float, float]] = field(default_factory=list)
    velocities: list[Tensor] = field(default_factory=list)


class RecordVelocity(Hook[VelocityRecord]):
    """Keeps the velocity of every step's prediction (a step hook; no model evaluation)."""

    def start(self, run: Run) -> VelocityRecord:
        return VelocityRecord()

    def on_step(self, x_state: State, step: Step, run: Run, state: VelocityRecord) -> State:
        if step.pred is None:
            raise UserError("straightness needs a solver that evaluates before it moves (Euler)")
        state.times.append((step.now.t, step.nxt.t))
        state.velocities.append(step.pred.velocity.detach())
        return x_state


def straightness(
    model: Model,
    noise: Tensor,
    steps: int = 100,
    cond: dict[str, object] | None = None,
) -> float:
    """S(u) of ``model`` from the source draws ``noise`` (the module docstring's estimate)."""
    if not (isinstance(steps, int) and steps >= 1):
        raise UserError(f"steps must be a positive integer, got {steps!r}")
    recorder = RecordVelocity()
    with torch.no_grad():
        result = sample(
            model, noise, Sampler("euler", steps=steps, grid="uniform"), hooks=[recorder], cond=cond
        )
    record = result.state(recorder)
    x1 = noise.to(torch.float64) * float(model.path.sigma(torch.tensor([1.0], dtype=torch.float64)))
    displacement = x1 - result.x.to(torch.float64)
    total = torch.zeros((), dtype=torch.float64)
    for (now, nxt), u in zip(record.times, record.velocities, strict=True):
        gap = (displacement - u.to(torch.float64)).flatten(1).square().sum(dim=1).mean()
        total = total + (now - nxt) * gap
    return float(total)
