"""KDPM2 and KDPM2 ancestral (k-diffusion ``sample_dpm_2`` / ``sample_dpm_2_ancestral``,
diffusers ``KDPM2DiscreteScheduler`` / ``KDPM2AncestralDiscreteScheduler``, A1111 "DPM2",
"DPM2 a").

Both work in EDM coordinates x_edm = x / alpha at noise level s = sigma / alpha, where the
probability-flow ODE is dx_edm / ds = eps (Karras et al. 2022, eq. 3 with sigma(t) = t). A step
from s to s' is DPM-Solver-2 (Lu et al. 2022, Alg. 1 with r = 1/2) written as a midpoint rule in
s with the midpoint taken in log s:

    s_mid = sqrt(s s'),   x_mid = x_edm + (s_mid - s) eps(x_edm, s),
    x_edm' = x_edm + (s' - s) eps(x_mid, s_mid).

It is exact for eps constant along the trajectory and second order. The state is mapped back as
x' = alpha' x_edm'. The final step to s' = 0 is an Euler step (x_edm' = x0), so N steps cost
2N - 1 evaluations. A step from alpha = 0 (s infinite, the start of flow paths), where log s has
no midpoint, takes the midpoint in path time t, reached by the first-order move
x_mid = x0 + s_mid eps, then x_edm' = x_mid + (s' - s_mid) eps(x_mid, s_mid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..configurable import number, option
from ..predictions import Prediction
from .ancestral import TwoStageAncestral, ancestral_step
from .base import Node, Run, State, node_at, register
from .ode import Churn, at_source


def dpm2_move(x: Tensor, pred: Prediction, here: Node, s_to: float, run: Run) -> Tensor:
    """x_edm at EDM level ``s_to`` from ``x`` at ``here`` with ``pred`` there: the
    DPM-Solver-2 midpoint move above (an Euler step to s_to = 0; from s = inf, the midpoint in
    path time, reached by the first-order move x0 + s_mid eps)."""
    s = here.edm_sigma
    if s_to == 0.0:
        # Euler step to the data.
        return pred.x0
    if at_source(here):
        # From alpha = 0 (x_edm infinite): midpoint in t, reached by x_edm = x0 + s_mid eps.
        t_to = float(run.path.t_of_edm_sigma(torch.tensor(s_to, dtype=torch.float64)))
        mid = node_at(run.path, 0.5 * (here.t + t_to))
        x_mid = pred.x0 + mid.edm_sigma * pred.eps
        s, x_edm = mid.edm_sigma, x_mid
    else:
        x_edm = x / here.alpha
        # DPM-Solver-2: Euler to the midpoint in log s, then the midpoint's slope over the step.
        s_mid = math.exp(0.5 * (math.log(s) + math.log(s_to)))
        t_mid = float(run.path.t_of_edm_sigma(torch.tensor(s_mid, dtype=torch.float64)))
        mid = node_at(run.path, t_mid)
        x_mid = x_edm + (s_mid - s) * pred.eps
    eps_mid = run.evaluate(mid.alpha * x_mid, mid).eps
    return x_edm + (s_to - s) * eps_mid


@register
@dataclass(frozen=True)
class KDPM2(Churn):
    """KDPM2 (k-diffusion ``sample_dpm_2``): the DPM-Solver-2 step of the module docstring,
    with EDM's churn (s_churn, s_tmin, s_tmax, s_noise; off by default)."""

    name: ClassVar[str] = "dpm_2"

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
        x_edm = dpm2_move(x, pred, here, nxt.edm_sigma, run)
        return state.replace(x=nxt.alpha * x_edm)


@register
@dataclass(frozen=True)
class KDPM2Ancestral(TwoStageAncestral):
    """KDPM2 ancestral (k-diffusion ``sample_dpm_2_ancestral``): the DPM-Solver-2 move from s
    to s_down, then fresh noise of size s_up (``ancestral_step``: s_down^2 + s_up^2 = s'^2, so
    the marginal noise level after the step is s' again; eta = 0 is :class:`KDPM2`).

    eta is at most 1 (k-diffusion takes any), so that every step but the last evaluates twice
    (with eta > 1, s_down reaches 0 early). On flow paths with eta = 1 the first step, from
    alpha = 0, has s_down = 0 too: it is x0 + s' z, one evaluation."""

    name: ClassVar[str] = "dpm_2_ancestral"
    eta: float = option(
        1.0, help="ancestral noise in [0, 1] (0: deterministic KDPM2)", check=number(0, 1)
    )
    s_noise: float = option(1.0, help="scale of the fresh noise", check=number(0))

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        s_down, s_up = ancestral_step(now.edm_sigma, nxt.edm_sigma, self.eta)
        x_edm = dpm2_move(state.x, pred, now, s_down, run)
        # Noise addition (as k-diffusion, none after a move to s_down = 0, except from
        # alpha = 0, where eta = 1 gives s_down = 0 and the step is x0 + s' z).
        if s_up > 0 and (s_down > 0 or at_source(now)):
            x_edm = x_edm + (self.s_noise * s_up) * run.noise(x_edm)
        return state.replace(x=nxt.alpha * x_edm)


__all__ = ["KDPM2", "KDPM2Ancestral", "dpm2_move"]
