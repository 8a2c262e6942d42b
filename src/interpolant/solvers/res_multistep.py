"""RES multistep (ComfyUI's ``res_multistep`` and ``res_multistep_ancestral``).

The second-order multistep exponential integrator of Zhang, Tao & Chen 2023 ("Improved order
analysis and design of exponential integrator for diffusion models", the "RES" solver). In the
EDM coordinates x_edm = x / alpha at noise level s = sigma / alpha, with lambda = -log s, the
exact probability-flow step from s to s' (h = log(s / s') > 0) is

    x_edm' = (s' / s) x_edm + int_0^h e^{tau - h} x0(lambda + tau) d tau.                 (1)

RES interpolates x0 linearly in lambda through the current data prediction D (at lambda) and
the previous one D_old (at lambda - h_prev) and integrates (1) exactly with the phi functions
phi_1(z) = (e^z - 1) / z, phi_2(z) = (phi_1(z) - 1) / z:

    x_edm' = e^{-h} x_edm + h phi_1(-h) D + (h^2 phi_2(-h) / h_prev) (D - D_old),         (2)

where h phi_1(-h) = 1 - e^{-h} and h^2 phi_2(-h) = h - (1 - e^{-h}). It differs from
DPM-Solver++(2M) only in the weight of D - D_old: (h - 1 + e^{-h}) / h_prev here,
(1 - e^{-h}) h / (2 h_prev) there; both are h^2 / (2 h_prev) + O(h^3), so both have order 2.

The ancestral variant (``eta`` > 0) splits each step as k-diffusion's ``get_ancestral_step``
(see :mod:`.ancestral`): a deterministic move (2) to s_down, then fresh noise of size s_up. As
ComfyUI, the previous step's length is measured from the previous node to the previous s_down
(where the deterministic move of that step ended): h_prev = log(s_prev / s_down_prev), which is
log(s_prev / s) for eta = 0.

The first step (no history), a step from alpha = 0 or after such a start (s or s_prev
infinite) and the final step to s' = 0 (h infinite) are first order: x_edm' = D + s_down eps,
Euler's step, as in ComfyUI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from ..configurable import number, option
from ..predictions import Prediction
from .ancestral import ancestral_step
from .base import History, Node, Run, Solver, State, register


@dataclass(frozen=True)
class ResPoint(History):
    """The previous data prediction, the EDM noise level it was made at and the s_down of the
    step that followed it."""

    per_sample: ClassVar[tuple[str, ...]] = ("x0",)
    s: float
    s_down: float
    x0: Tensor


def res_weights(h: float, h_prev: float) -> tuple[float, float]:
    """The weights (h phi_1(-h), h^2 phi_2(-h) / h_prev) of D and D - D_old in eq. (2)."""
    one_minus_exp = -math.expm1(-h)
    return one_minus_exp, (h - one_minus_exp) / h_prev


@register
@dataclass(frozen=True)
class ResMultistep(Solver):
    """RES multistep, order 2 (ComfyUI ``res_multistep``; with ``eta`` > 0
    ``res_multistep_ancestral``): eq. (2) of the module docstring on the data prediction."""

    name: ClassVar[str] = "res_multistep"
    eta: float = option(
        0.0,
        help="ancestral noise (0: deterministic; 1: ComfyUI's res_multistep_ancestral)",
        check=number(0),
    )
    s_noise: float = option(1.0, help="scale of the fresh noise", check=number(0))

    @property
    def order(self) -> int:
        return 2

    @property
    def stochastic(self) -> bool:
        return self.eta > 0 and self.s_noise > 0

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        s = now.edm_sigma
        s_down, s_up = ancestral_step(s, nxt.edm_sigma, self.eta)
        prev = state.history
        second_order = (
            isinstance(prev, ResPoint)
            and s_down > 0
            and math.isfinite(s)
            and math.isfinite(prev.s)
            and prev.s_down > 0
        )
        if isinstance(prev, ResPoint) and second_order:
            h = math.log(s / s_down)
            h_prev = math.log(prev.s / prev.s_down)
            w_now, w_diff = res_weights(h, h_prev)
            x_edm = (state.x / now.alpha) * (s_down / s)
            x_edm = x_edm.add(pred.x0, alpha=w_now).add(pred.x0 - prev.x0, alpha=w_diff)
        else:  # Euler (first order): also defined where alpha = 0 (s infinite)
            x_edm = pred.x0 + s_down * pred.eps
        if s_up > 0 and self.s_noise > 0:
            x_edm = x_edm + (self.s_noise * s_up) * run.noise(x_edm)
        return state.replace(x=nxt.alpha * x_edm, history=ResPoint(s, s_down, pred.x0))


__all__ = ["ResMultistep", "ResPoint", "res_weights"]
