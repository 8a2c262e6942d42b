"""Single-step solvers in the path's own time t: Euler and Heun with EDM churn.

:class:`Churn` holds EDM's churn options (Karras et al. 2022, Alg. 2, lines 4-6) and the one
implementation of the churn move, shared by Euler, Heun and KDPM2 (``solvers.kdpm``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..configurable import number, option
from ..predictions import Prediction
from .base import Node, Run, Solver, State, node_at, register

#: sigma / alpha beyond which a node counts as the pure source (alpha = 0): there x / alpha
#: carries no usable digits (the trig path's alpha(1) = cos(pi / 2) is 6e-17 in floating point).
SOURCE_EDM_SIGMA = 1e8


def at_source(node: Node) -> bool:
    """Whether ``node`` is (numerically) the source, alpha = 0: EDM sigma >= SOURCE_EDM_SIGMA."""
    return node.alpha <= node.sigma / SOURCE_EDM_SIGMA


@dataclass(frozen=True)
class Churn(Solver):
    """EDM's churn (Karras et al. 2022, Alg. 2): before a step from EDM noise level s, raise it
    to s_hat = (1 + gamma) s with gamma = min(S_churn / N, sqrt(2) - 1) where
    S_tmin <= s <= S_tmax, by adding fresh noise of the exact forward transition of the path
    (x_edm += sqrt(s_hat^2 - s^2) S_noise z in EDM coordinates), then evaluate the model there.

    A base of solvers with these four options; the churned solver evaluates the model itself
    (``needs_prediction`` is False where gamma > 0).
    """

    s_churn: float = option(0.0, help="EDM's S_churn (0: deterministic)", check=number(0))
    s_tmin: float = option(0.0, help="churn only at EDM sigma >= this", check=number(0))
    s_tmax: float = option(
        math.inf, help="churn only at EDM sigma <= this", check=number(0, allow_inf=True)
    )
    s_noise: float = option(1.0, help="EDM's S_noise (scale of the churn noise)", check=number(0))

    @property
    def stochastic(self) -> bool:
        return self.s_churn > 0

    def _gamma(self, now: Node, run: Run) -> float:
        # No churn where alpha = 0 (sigma/alpha infinite): there is no more noise to add.
        sigma = now.edm_sigma
        if self.s_churn > 0 and not at_source(now) and self.s_tmin <= sigma <= self.s_tmax:
            return min(self.s_churn / run.n_steps, math.sqrt(2) - 1)
        return 0.0

    def needs_prediction(self, state: State, now: Node, run: Run) -> bool:
        return self._gamma(now, run) == 0.0

    def churn(
        self, x: Tensor, pred: Prediction | None, now: Node, run: Run
    ) -> tuple[Tensor, Prediction, Node]:
        """(x_hat, the prediction there, the node of s_hat): the churned start of a step, or
        (x, pred, now) unchanged where gamma = 0."""
        gamma = self._gamma(now, run)
        if gamma == 0.0:
            assert pred is not None  # the loop evaluated it (needs_prediction)
            return x, pred, now
        # Increase noise temporarily (Alg. 2, lines 4-6), exactly along the path.
        t_hat = float(
            run.path.t_of_edm_sigma(torch.tensor(now.edm_sigma * (1 + gamma), dtype=torch.float64))
        )
        here = node_at(run.path, min(t_hat, 1.0))
        scale = here.alpha / now.alpha
        extra_var = max(here.sigma**2 - (scale * now.sigma) ** 2, 0.0)
        x = scale * x + math.sqrt(extra_var) * self.s_noise * run.noise(x)
        return x, run.evaluate(x, here), here


@register
@dataclass(frozen=True)
class Euler(Churn):
    """Euler on the probability-flow ODE dx/dt = u(x, t) (u the velocity), with EDM's churn
    (k-diffusion ``sample_euler``'s s_churn, s_tmin, s_tmax, s_noise; off by default)."""

    name: ClassVar[str] = "euler"

    def step(self, state: State, pred: Prediction | None, now: Node, nxt: Node, run: Run) -> State:
        x, pred, here = self.churn(state.x, pred, now, run)
        # Euler step.
        return state.replace(x=x + (nxt.t - here.t) * pred.velocity)


@register
@dataclass(frozen=True)
class Heun(Churn):
    """EDM's 2nd-order sampler (Karras et al. 2022, Alg. 2) in path time t, any Gaussian path.

    Churn (S_churn > 0) first raises the EDM noise level by gamma = min(S_churn / N, sqrt(2) - 1)
    with fresh noise (the exact forward transition of the path), then takes a Heun step. The last
    step, to t = 0, is an Euler step, so N steps cost 2N - 1 evaluations.
    """

    name: ClassVar[str] = "heun"

    @property
    def order(self) -> int:
        return 2

    @property
    def evals_per_step(self) -> int:
        return 2

    def nfe_for_steps(self, steps: int) -> int:
        return 2 * steps - 1

    def step(self, state: State, pred: Prediction | None, now: Node, nxt: Node, run: Run) -> State:
        x, pred, here = self.churn(state.x, pred, now, run)
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
