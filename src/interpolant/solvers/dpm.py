"""Exponential-integrator solvers on the data prediction: DDIM(eta) and DPM-Solver++ (2M).

With lambda = logsnr / 2 and h = lambda_next - lambda_now, the exact solution of the
probability-flow ODE is x_next = (sigma_next / sigma) x + alpha_next int e^{-(lambda_next -
lambda)} x0(lambda) d lambda (Lu et al. 2022, "DPM-Solver++", eq. 9); the solvers differ in how
they approximate x0 over the step.
"""

from __future__ import annotations

import math
from typing import Any

from ..predictions import Prediction
from .base import Node, Solver, State, StepContext, exp_integrator_coeffs, register


@register
class DDIM(Solver):
    """DDIM (Song et al. 2021, eq. 12) with eta in [0, 1]; eta = 1 is ancestral DDPM.

    x_next = alpha' x0 + sqrt(sigma'^2 - c^2) eps + c z with c = eta sigma' sqrt(1 - e^{-2h}),
    the posterior noise of q(x_next | x, x0) scaled by eta, valid on any Gaussian path.
    """

    name = "ddim"
    order = 1

    def __init__(self, eta: float = 0.0) -> None:
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1], got {eta}")
        self.eta = float(eta)
        self.stochastic = eta > 0  # type: ignore[misc]

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, ctx: StepContext) -> State:
        ratio, one_minus_exp, _ = exp_integrator_coeffs(now, nxt)
        if self.eta == 0.0 or nxt.sigma == 0.0:
            # Deterministic DDIM step (= first-order DPM-Solver++).
            return state.replace(x=ratio * state.x + nxt.alpha * one_minus_exp * pred.x0)
        exp_m2h = (1.0 - one_minus_exp) ** 2  # e^{-2h} = (alpha sigma' / (sigma alpha'))^2
        c = self.eta * nxt.sigma * math.sqrt(max(1.0 - exp_m2h, 0.0))
        keep = math.sqrt(max(nxt.sigma**2 - c**2, 0.0))
        x = nxt.alpha * pred.x0 + keep * pred.eps + c * ctx.noise(state.x)
        return state.replace(x=x)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "eta": self.eta}


@register
class DPMSolverPP2M(Solver):
    """DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2): multistep, second order, data prediction.

    D = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}, r = h_{i-1} / h_i, and
    x_{i+1} = (sigma_{i+1} / sigma_i) x_i + alpha_{i+1} (1 - e^{-h_i}) D. The first step and the
    final step to sigma = 0 are first order (there h is infinite).
    """

    name = "dpmpp_2m"
    order = 2

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, ctx: StepContext) -> State:
        ratio, one_minus_exp, h = exp_integrator_coeffs(now, nxt)
        x0 = pred.x0
        d = x0
        if state.history and nxt.sigma > 0:
            # Second-order multistep correction from the previous data prediction.
            prev_logsnr, prev_x0 = state.history[-1]
            r = 0.5 * (now.logsnr - prev_logsnr) / h
            d = x0 + (0.5 / r) * (x0 - prev_x0)
        x = ratio * state.x + (nxt.alpha * one_minus_exp) * d
        return state.replace(x=x, history=((now.logsnr, x0),))
