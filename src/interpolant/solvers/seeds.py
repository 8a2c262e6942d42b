"""SEEDS: stochastic explicit exponential derivative-free solvers (Gonzalez et al. 2023, "SEEDS:
exponential SDE solvers for fast high-quality sampling from diffusion models"; ComfyUI's
``seeds_2`` and ``seeds_3``, VP data prediction).

With lambda = -log s (s = sigma / alpha, the EDM noise level; lambda = logsnr / 2), a step from
lambda to lambda' (h = lambda' - lambda) of the SDE family with noise level eta (eta = 1: the
reverse-time SDE, eta = 0: the probability-flow ODE) moves through stages at lambda + c h. With
H = (1 + eta) h, phi_1(z) = e^z - 1, phi_2(z) = (e^z - 1 - z) / z and z_k fresh normals, the
move from the start to a level c h is, in EDM coordinates,

    x_edm(c) = e^{-c H} x_edm - P(c) + s(c) N(c),                                       (1)

P(c) a combination of data predictions and N(c) the noise accumulated since the start, an
exact Ornstein-Uhlenbeck split of one Brownian path: N(c_1) = sqrt(1 - e^{-2 c_1 eta h}) z_1 and
N(c_{k+1}) = e^{-(c_{k+1} - c_k) eta h} N(c_k) + sqrt(1 - e^{-2 (c_{k+1} - c_k) eta h}) z_{k+1}.
With D the data prediction at the start and D_k at the k-th stage:

* SEEDS-2 (stages r, 1; r = 1 with phi_2 is ComfyUI's exponential Heun ``exp_heun_2_x0``):
  P(r) = phi_1(-r H) D; at 1, ``solver_type="phi_1"`` (ComfyUI's
  default) P = phi_1(-H) ((1 - 1 / (2 r)) D + D_1 / (2 r)), the DPM-Solver++(2S) combination;
  ``"phi_2"`` P = (phi_1(-H) - b) D + b D_1 with b = phi_2(-H) / r.
* SEEDS-3 (stages r_1, r_2, 1): P(r_1) = phi_1(-r_1 H) D;
  P(r_2) = (phi_1(-r_2 H) - a) D + a D_1 with a = (r_2 / r_1) phi_2(-r_2 H);
  P(1) = (phi_1(-H) - b) D + b D_2 with b = phi_2(-H) / r_2 (DPM-Solver++(3S) for eta = 0).

eta = 0 is the deterministic singlestep exponential integrator (SEEDS-2 with phi_1 is
DPM-Solver++(2S), the ``dpmpp_sde`` sampler at eta = 0). A step costs 2 (3) evaluations; the
final step to s' = 0 returns D (one evaluation) and a step from alpha = 0 (flow paths, lambda =
-infinity) is the first-order move (1) with c = 1 (one evaluation; ComfyUI moves the first sigma
off 1 instead). The normals come from the run's per-sample streams (ComfyUI's default noise
sampler: fresh normals per stage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from ..configurable import number, one_of, option
from ..errors import UserError
from ..predictions import Prediction
from .base import Node, Run, Solver, State, register
from .ode import at_source
from .singlestep import _node_at_lambda


def phi_1(z: float) -> float:
    """e^z - 1."""
    return math.expm1(z)


def phi_2(z: float) -> float:
    """(e^z - 1 - z) / z (ComfyUI's ``ei_h_phi_2``)."""
    return (math.expm1(z) - z) / z


class _Seeds(Solver):
    """What SEEDS-2 and SEEDS-3 share: the options eta and s_noise, the stage moves (1) and the
    noise split; subclasses give the stage levels and the combinations P."""

    eta: float
    s_noise: float

    @property
    def stochastic(self) -> bool:
        return self.eta > 0 and self.s_noise > 0

    def nfe_for_steps(self, steps: int) -> int:
        return self.evals_per_step * (steps - 1) + 1

    def steps_for_nfe(self, nfe: int) -> int:
        return max(1, (nfe - 1) // self.evals_per_step + 1)

    def levels(self) -> tuple[float, ...]:
        """The stage fractions c of the step, the last one 1."""
        raise NotImplementedError

    def combination(self, k: int, h_eta: float, d: list[Tensor]) -> Tensor:
        """P at stage ``k`` (0-based) from the data predictions ``d`` so far (d[0] = D)."""
        raise NotImplementedError

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        s, s_next, d0 = now.edm_sigma, nxt.edm_sigma, pred.x0
        if s_next == 0.0:
            # Denoising step.
            return state.replace(x=nxt.alpha * d0)
        if at_source(now):
            # From alpha = 0: e^{-H} x_edm -> 0 for eta > 0, and -> s' eps for eta = 0.
            x_edm = d0 + (s_next * pred.eps if self.eta == 0 else 0.0)
            if self.stochastic:
                x_edm = x_edm + (self.s_noise * s_next) * run.noise(d0)
            return state.replace(x=nxt.alpha * x_edm)
        lam, h = -math.log(s), math.log(s / s_next)
        h_eta = (1.0 + self.eta) * h
        x_edm, d = state.x / now.alpha, [d0]
        noise: Tensor | None = None
        c_prev, levels = 0.0, self.levels()
        for k, c in enumerate(levels):
            x_c = math.exp(-c * h_eta) * x_edm - self.combination(k, h_eta, d)
            s_c = math.exp(-(lam + c * h))
            if self.stochastic:
                # The Ornstein-Uhlenbeck split of the noise since the start (module docstring).
                part = (c - c_prev) * self.eta * h
                fresh = math.sqrt(-math.expm1(-2.0 * part)) * run.noise(x_edm)
                noise = fresh if noise is None else math.exp(-part) * noise + fresh
                x_c = x_c + (self.s_noise * s_c) * noise
            c_prev = c
            if k == len(levels) - 1:
                break
            node = _node_at_lambda(run, lam + c * h)
            d.append(run.evaluate(node.alpha * x_c.to(state.x.dtype), node).x0)
        return state.replace(x=nxt.alpha * x_c)


SOLVER_TYPES = ("phi_1", "phi_2")


@register
@dataclass(frozen=True)
class Seeds2(_Seeds):
    """SEEDS-2 (ComfyUI ``seeds_2``): two stages at r and 1 (module docstring); eta = 0 is
    DPM-Solver++(2S). 2 N - 1 evaluations for N steps ending at sigma = 0."""

    name: ClassVar[str] = "seeds_2"
    eta: float = option(1.0, help="noise level (1: the reverse SDE, 0: DPM-Solver++(2S))",
                        check=number(0))  # fmt: skip
    s_noise: float = option(1.0, help="scale of the fresh noise", check=number(0))
    r: float = option(
        0.5,
        help="position of the intermediate stage in lambda (1: at the "
        "step's end, ComfyUI's exp_heun_2_x0)",
        check=number(0, 1, open_lo=True),
    )
    solver_type: str = option(
        "phi_1",
        help="final combination: 'phi_1' (DPM-Solver++(2S)'s) or 'phi_2'",
        check=one_of(*SOLVER_TYPES),
    )

    @property
    def order(self) -> int:
        return 2

    @property
    def evals_per_step(self) -> int:
        return 2

    def levels(self) -> tuple[float, ...]:
        return (self.r, 1.0)

    def combination(self, k: int, h_eta: float, d: list[Tensor]) -> Tensor:
        if k == 0:
            return phi_1(-self.r * h_eta) * d[0]
        if self.solver_type == "phi_1":
            fac = 0.5 / self.r
            return phi_1(-h_eta) * ((1.0 - fac) * d[0] + fac * d[1])
        b = phi_2(-h_eta) / self.r
        return (phi_1(-h_eta) - b) * d[0] + b * d[1]


@register
@dataclass(frozen=True)
class Seeds3(_Seeds):
    """SEEDS-3 (ComfyUI ``seeds_3``): three stages at r_1, r_2 and 1 (module docstring); eta = 0
    is DPM-Solver++(3S). 3 N - 2 evaluations for N steps ending at sigma = 0."""

    name: ClassVar[str] = "seeds_3"
    eta: float = option(1.0, help="noise level (1: the reverse SDE, 0: DPM-Solver++(3S))",
                        check=number(0))  # fmt: skip
    s_noise: float = option(1.0, help="scale of the fresh noise", check=number(0))
    r_1: float = option(1.0 / 3.0, help="position of the first stage in lambda",
                        check=number(0, 1, open_lo=True, open_hi=True))  # fmt: skip
    r_2: float = option(2.0 / 3.0, help="position of the second stage in lambda",
                        check=number(0, 1, open_lo=True, open_hi=True))  # fmt: skip

    def validate(self) -> None:
        if not self.r_1 < self.r_2:
            raise UserError(f"seeds_3 needs r_1 < r_2, got r_1={self.r_1}, r_2={self.r_2}")

    @property
    def order(self) -> int:
        return 3

    @property
    def evals_per_step(self) -> int:
        return 3

    def levels(self) -> tuple[float, ...]:
        return (self.r_1, self.r_2, 1.0)

    def combination(self, k: int, h_eta: float, d: list[Tensor]) -> Tensor:
        if k == 0:
            return phi_1(-self.r_1 * h_eta) * d[0]
        if k == 1:
            a = (self.r_2 / self.r_1) * phi_2(-self.r_2 * h_eta)
            return (phi_1(-self.r_2 * h_eta) - a) * d[0] + a * d[1]
        b = phi_2(-h_eta) / self.r_2
        return (phi_1(-h_eta) - b) * d[0] + b * d[2]


__all__ = ["SOLVER_TYPES", "Seeds2", "Seeds3", "phi_1", "phi_2"]
