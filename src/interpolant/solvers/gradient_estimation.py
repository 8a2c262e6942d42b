"""Gradient estimation (Permenter & Yuan 2023, "Interpreting and improving diffusion models from
an optimization perspective"; ComfyUI's ``gradient_estimation``).

In the EDM coordinates x_edm = x / alpha at noise level s = sigma / alpha the denoising direction
is d = (x_edm - x0_hat) / s = eps_hat. The sampler reads d as the gradient of a distance function
estimated with error and replaces it by the extrapolation

    d_bar = gamma d_i + (1 - gamma) d_{i-1},                                        (Alg. 2)
    x_edm' = x_edm + (s' - s) d_bar,

gamma = 2 by default; gamma = 1 and the first step are Euler's step, and the final step to s' = 0
is the denoising step x_edm' = x0_hat (as ComfyUI). It is a consistent first-order method: with
steps Delta = s - s' of equal length, d_{i-1} = d + Delta d' + O(Delta^2) and the local error is
(gamma - 3/2) Delta^2 d' (gamma = 3/2 is the equal-step Adams-Bashforth-2; on grids of unequal
steps the order is 1 for every gamma; measured order 1 in
tests/solvers/test_gradient_estimation.py).
The paper's point is fewer-step quality with an inexact denoiser, not order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from ..configurable import number, option
from ..predictions import Prediction
from .base import History, Node, Run, Solver, State, register


@dataclass(frozen=True)
class PreviousDirection(History):
    """The previous step's denoising direction d = eps_hat."""

    per_sample: ClassVar[tuple[str, ...]] = ("d",)
    d: Tensor


@register
@dataclass(frozen=True)
class GradientEstimation(Solver):
    """Gradient estimation (ComfyUI ``gradient_estimation``): Euler on the extrapolated
    direction gamma d_i + (1 - gamma) d_{i-1} (module docstring)."""

    name: ClassVar[str] = "gradient_estimation"
    gamma: float = option(2.0, help="weight of the newest direction (1: Euler)", check=number(0))

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        d = pred.eps
        history = PreviousDirection(d)
        if nxt.edm_sigma == 0.0:
            return state.replace(x=nxt.alpha * pred.x0, history=history)
        s, s_next = now.edm_sigma, nxt.edm_sigma
        x_edm = pred.x0 + s_next * d  # Euler's step, written so that s = infinity works
        prev = state.history
        if isinstance(prev, PreviousDirection) and self.gamma != 1.0 and math.isfinite(s):
            x_edm = x_edm.add(d - prev.d, alpha=(self.gamma - 1.0) * (s_next - s))
        return state.replace(x=nxt.alpha * x_edm, history=history)


__all__ = ["GradientEstimation", "PreviousDirection"]
