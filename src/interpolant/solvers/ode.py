"""Single-step solvers in the path's own time t: Euler and Heun with EDM churn."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..configurable import number, option
from ..predictions import Prediction
from .base import Node, Run, Solver, State, node_at, register


@register
@dataclass(frozen=True)
class Euler(Solver):
    """Euler on the probability-flow ODE dx/dt = u(x, t) (u the velocity)."""

    name: ClassVar[str] = "euler"

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        # Euler step.
        return state.replace(x=state.x + (nxt.t - now.t) * pred.velocity)


@register
@dataclass(frozen=True)
class Heun(Solver):
    """EDM's 2nd-order sampler (Karras et al. 2022, Alg. 2) in path time t, any Gaussian path.

    Churn (S_churn > 0) first raises the EDM noise level by gamma = min(S_churn / N, sqrt(2) - 1)
    with fresh noise (the exact forward transition of the path), then takes a Heun step. The last
    step, to t = 0, is an Euler step, so N steps cost 2N - 1 evaluations.
    """

    name: ClassVar[str] = "heun"
    s_churn: float = option(0.0, help="EDM's S_churn (0: deterministic)", check=number(0))
    s_tmin: float = option(0.0, help="churn only at EDM sigma >= this", check=number(0))
    s_tmax: float = option(
        math.inf, help="churn only at EDM sigma <= this", check=number(0, allow_inf=True)
    )
    s_noise: float = option(1.0, help="EDM's S_noise (scale of the churn noise)", check=number(0))

    @property
    def order(self) -> int:
        return 2

    @property
    def evals_per_step(self) -> int:
        return 2

    @property
    def stochastic(self) -> bool:
        return self.s_churn > 0

    def nfe_for_steps(self, steps: int) -> int:
        return 2 * steps - 1

    def _gamma(self, now: Node, run: Run) -> float:
        # No churn where alpha = 0 (sigma/alpha infinite): there is no more noise to add.
        sigma = now.edm_sigma
        if self.s_churn > 0 and math.isfinite(sigma) and self.s_tmin <= sigma <= self.s_tmax:
            return min(self.s_churn / run.n_steps, math.sqrt(2) - 1)
        return 0.0

    def needs_prediction(self, state: State, now: Node, run: Run) -> bool:
        return self._gamma(now, run) == 0.0

    def step(self, state: State, pred: Prediction | None, now: Node, nxt: Node, run: Run) -> State:
        x, here = state.x, now
        gamma = self._gamma(now, run)
        if gamma > 0:
            # Increase noise temporarily (Alg. 2, lines 4-6), exactly along the path.
            t_hat = float(
                run.path.t_of_edm_sigma(
                    torch.tensor(now.edm_sigma * (1 + gamma), dtype=torch.float64)
                )
            )
            here = node_at(run.path, min(t_hat, 1.0))
            scale = here.alpha / now.alpha
            extra_var = max(here.sigma**2 - (scale * now.sigma) ** 2, 0.0)
            x = scale * x + math.sqrt(extra_var) * self.s_noise * run.noise(x)
            pred = run.evaluate(x, here)
        assert pred is not None
        d = pred.velocity
        # Euler step.
        x_next = x + (nxt.t - here.t) * d
        if nxt.sigma > 0:
            # Apply 2nd order correction.
            d_next = run.evaluate(x_next, nxt).velocity
            x_next = x + (nxt.t - here.t) * 0.5 * (d + d_next)
        return state.replace(x=x_next)


@register
@dataclass(frozen=True)
class Midpoint(Solver):
    """Explicit midpoint rule (2nd-order Runge-Kutta) on dx/dt = u(x, t), 2 evaluations a step:

        x_mid = x + (h / 2) u(x, t),    x_next = x + h u(x_mid, t + h / 2),    h = t_next - t.

    The midpoint time is inside (t_next, t), so the last step to t = 0 needs no special case.
    """

    name: ClassVar[str] = "midpoint"

    @property
    def order(self) -> int:
        return 2

    @property
    def evals_per_step(self) -> int:
        return 2

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        x, h = state.x, nxt.t - now.t
        # Half Euler step to the midpoint.
        mid = node_at(run.path, now.t + 0.5 * h)
        x_mid = x + 0.5 * h * pred.velocity
        # Full step with the midpoint's velocity.
        return state.replace(x=x + h * run.evaluate(x_mid, mid).velocity)
