"""Heun++ (ComfyUI's ``heunpp2``, from the MIT-licensed sd-webui-samplers-scheduler).

In the EDM coordinates x_edm = x / alpha at noise level s = sigma / alpha the probability-flow
ODE is dx_edm / ds = d, d = eps_hat (the denoising direction (x_edm - x0_hat) / s). On the grid
s_0 > s_1 > ... > s_N, step i from s_i looks two nodes ahead: an Euler step to s_{i+1}
(direction d_2 there) and a second Euler step to s_{i+2} (direction d_3), then

    x_edm' = x_edm + (s_{i+1} - s_i) (w_1 d + w_2 d_2 + w_3 d_3),
    w_2 = s_{i+1} / (3 s_0),  w_3 = s_{i+2} / (3 s_0),  w_1 = 1 - w_2 - w_3,

with three evaluations. The second-to-last step has no s_{i+2}: w_2 = s_{i+1} / (2 s_0),
w_1 = 1 - w_2 (two evaluations); the last step is Euler's (to s = 0: x_edm' = x0_hat).

The weights are not those of a second-order method (Heun's are w_1 = w_2 = 1/2): near the
start w_2 + w_3 is about 2/3, and at low noise the step is Euler's. It is a consistent
first-order method whose error constant shrinks where the weights are close to Heun's (measured
order 1 in tests/solvers/test_heunpp.py). Its weights use the grid's first noise level s_0;
from alpha = 0 (s_0 infinite, the start of flow paths) they vanish and heunpp2 is Euler with
extra evaluations (ComfyUI on flow models weighs by the flow time instead). ComfyUI's
``s_churn`` is not offered (its default, 0, is what runs here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from ..predictions import Prediction
from .base import Node, Run, Solver, State, register


@register
@dataclass(frozen=True)
class HeunPP2(Solver):
    """Heun++ (ComfyUI ``heunpp2``): Euler with a weighted average of the directions at the
    next one or two grid nodes (module docstring); 3 N - 3 evaluations for N >= 2 steps."""

    name: ClassVar[str] = "heunpp2"

    @property
    def evals_per_step(self) -> int:
        return 3

    def nfe_for_steps(self, steps: int) -> int:
        return 1 if steps == 1 else 3 * steps - 3

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        s, s_next = now.edm_sigma, nxt.edm_sigma
        x_euler = pred.x0 + s_next * pred.eps  # Euler's x_edm' (also where s is infinite)
        ahead = run.n_steps - 1 - run.index  # grid nodes after nxt
        s_first = run.nodes[0].edm_sigma
        if ahead == 0 or not math.isfinite(s) or not math.isfinite(s_first):
            return state.replace(x=nxt.alpha * x_euler)
        d = pred.eps
        d_2 = run.evaluate(nxt.alpha * x_euler.to(state.x.dtype), nxt).eps
        if ahead == 1:
            w_2 = s_next / (2.0 * s_first)
            correction = w_2 * (d_2 - d)
        else:
            after = run.nodes[run.index + 2]
            x_3 = x_euler + (after.edm_sigma - s_next) * d_2
            d_3 = run.evaluate(after.alpha * x_3.to(state.x.dtype), after).eps
            w_2, w_3 = s_next / (3.0 * s_first), after.edm_sigma / (3.0 * s_first)
            correction = w_2 * (d_2 - d) + w_3 * (d_3 - d)
        x_edm: Tensor = x_euler + (s_next - s) * correction
        return state.replace(x=nxt.alpha * x_edm)


__all__ = ["HeunPP2"]
