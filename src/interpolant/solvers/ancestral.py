"""Ancestral samplers of k-diffusion / A1111 / ComfyUI: Euler a and DPM++ 2S a.

Both work in the EDM coordinates x_edm = x / alpha at noise level s = sigma / alpha and split
each step from s to s' into a deterministic move to s_down and fresh noise of size s_up
(k-diffusion's ``get_ancestral_step``):

    s_up = min(s', eta sqrt(s'^2 (s^2 - s'^2) / s^2)),    s_down = sqrt(s'^2 - s_up^2),

so the marginal noise level after the step is s' again; eta = 0 is the deterministic sampler,
eta = 1 the ancestral one. On any path the state is mapped back as x' = alpha' x_edm'. The
deterministic move uses the prediction's eps (x_edm - x0 = s eps), which is also defined where
alpha = 0 (s infinite) at the start of flow paths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..configurable import number, option
from ..paths.nodes import node_at
from ..predictions import Prediction
from .base import Node, Run, Solver, State, register


def ancestral_step(s: float, s_next: float, eta: float) -> tuple[float, float]:
    """(s_down, s_up) of a step from EDM noise level s to s_next (k-diffusion's rule)."""
    if s_next == 0.0 or eta == 0.0:
        return s_next, 0.0
    if math.isinf(s):
        s_up = s_next * eta  # the limit of the formula as s -> infinity
    else:
        s_up = eta * math.sqrt(max(s_next**2 * (s**2 - s_next**2) / s**2, 0.0))
    s_up = min(s_next, s_up)
    return math.sqrt(max(s_next**2 - s_up**2, 0.0)), s_up


@register
@dataclass(frozen=True)
class EulerAncestral(Solver):
    """Euler ancestral (k-diffusion ``sample_euler_ancestral``, A1111 "Euler a"):
    x_edm' = x0 + s_down eps + s_up z, then x' = alpha' x_edm'."""

    name: ClassVar[str] = "euler_ancestral"
    eta: float = option(1.0, help="ancestral noise (0: deterministic Euler)", check=number(0))
    s_noise: float = option(1.0, help="scale of the fresh noise", check=number(0))

    @property
    def stochastic(self) -> bool:
        return self.eta > 0 and self.s_noise > 0

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        s_down, s_up = ancestral_step(now.edm_sigma, nxt.edm_sigma, self.eta)
        x_edm = pred.x0 + s_down * pred.eps
        if s_up > 0:
            x_edm = x_edm + (self.s_noise * s_up) * run.noise(x_edm)
        return state.replace(x=nxt.alpha * x_edm)


class TwoStageAncestral(Solver):
    """What the two-evaluation ancestral samplers share (DPM++ 2S a, KDPM2 a, DPM++ SDE): order
    2, two evaluations per step but one for the last (denoising) step, so 2 N - 1 NFE for N
    steps; stochastic while ``eta`` and ``s_noise`` are positive (subclasses declare both)."""

    eta: float
    s_noise: float

    @property
    def order(self) -> int:
        return 2

    @property
    def evals_per_step(self) -> int:
        return 2

    @property
    def stochastic(self) -> bool:
        return self.eta > 0 and self.s_noise > 0

    def nfe_for_steps(self, steps: int) -> int:
        return 2 * steps - 1

    def steps_for_nfe(self, nfe: int) -> int:
        return max(1, (nfe + 1) // 2)


@register
@dataclass(frozen=True)
class DPMSolverPP2SAncestral(TwoStageAncestral):
    """DPM++ 2S ancestral (k-diffusion ``sample_dpmpp_2s_ancestral``): a singlestep
    second-order DPM-Solver++ move from s to s_down through the midpoint in log s
    (s_mid = sqrt(s s_down)), then fresh noise of size s_up. With lambda = -log s and
    h = lambda_down - lambda (Lu et al. 2022b, Alg. 1, r = 1/2):

        u     = (s_mid / s) x_edm - expm1(-h / 2) x0,
        x_edm' = (s_down / s) x_edm - expm1(-h) x0(u, s_mid) + s_up z.

    The final step to s' = 0 is a denoising step (x0), so N steps cost 2N - 1 evaluations; a
    step from alpha = 0 (s infinite) is first order (its midpoint is at infinity too).
    """

    name: ClassVar[str] = "dpmpp_2s_ancestral"
    eta: float = option(
        1.0, help="ancestral noise (0: deterministic DPM-Solver++(2S))", check=number(0)
    )
    s_noise: float = option(1.0, help="scale of the fresh noise", check=number(0))

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        s = now.edm_sigma
        s_down, s_up = ancestral_step(s, nxt.edm_sigma, self.eta)
        if s_down == 0.0 or math.isinf(s):
            x_edm = pred.x0 + s_down * pred.eps  # denoising step / first-order step
        else:
            x_edm_now = state.x / now.alpha
            h = math.log(s) - math.log(s_down)
            s_mid = math.sqrt(s * s_down)
            u = (s_mid / s) * x_edm_now - math.expm1(-0.5 * h) * pred.x0
            mid = node_at(
                run.path, float(run.path.t_of_edm_sigma(torch.tensor(s_mid, dtype=torch.float64)))
            )
            x0_mid = run.evaluate(mid.alpha * u.to(state.x.dtype), mid).x0
            x_edm = (s_down / s) * x_edm_now - math.expm1(-h) * x0_mid
        if s_up > 0:
            x_edm = x_edm + (self.s_noise * s_up) * run.noise(x_edm)
        return state.replace(x=nxt.alpha * x_edm)


__all__ = ["DPMSolverPP2SAncestral", "EulerAncestral", "ancestral_step"]
