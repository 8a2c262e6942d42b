"""Variable-step Adams predictor-corrector in the angle variable (``solver="adams"``).

Every Gaussian path is the trigonometric one in disguise: with r = sqrt(alpha^2 + sigma^2) and
theta = atan2(sigma, alpha), x_t = r (cos(theta) x0 + sin(theta) eps). For y = x / r the
probability-flow ODE reads

    dy / dtheta = -sin(theta) x0_hat + cos(theta) eps_hat = v_hat / r,          (1)

the v-prediction v = alpha eps - sigma x0 (Salimans & Ho 2022) over r, on the bounded interval
theta in [0, pi/2] (data at 0, pure noise at pi/2). The field (1) stays finite at both ends (no
1/sigma at the data end, no 1/alpha at the noise end), and for Gaussian data of covariance C it
is y(theta) = (C cos^2 theta + sin^2 theta)^(1/2) (...): smooth in theta on the scale of the data's
standard deviations. It is the variable of the reference solver (``adaptive.reference_sample``).

This solver integrates (1) with the variable-step Adams methods (Hairer, Norsett & Wanner,
"Solving ODEs I", sec. III.5):

* predictor, Adams-Bashforth of order k: y' = y + sum_j w_j f_j with
  w_j = int_theta^theta' L_j(s) ds, L_j the Lagrange basis through the last k nodes;
* corrector, Adams-Moulton: once the model has been evaluated at the predicted point (the next
  step does that anyway), the last step is redone with the interpolant through the new value as
  well. The model is not evaluated again at the corrected point (UniPC's observation, Zhao et
  al. 2023, sec. 3.2: a corrector that reuses the next step's evaluation is free), so one step
  costs one evaluation. The correction is added as a difference, so a step hook's change to x
  is kept.

The final step to theta = 0 is an ordinary step: (1) needs no special end point treatment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from ..configurable import boolean, one_of, option
from ..predictions import Prediction
from .base import History, Node, Run, Solver, State, register
from .dpm import check_multistep_nfe

#: Gauss-Legendre nodes and weights on [-1, 1], exact for polynomials of degree <= 7; the
#: Lagrange basis of at most 5 nodes has degree 4.
_GL_NODES = (-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526)
_GL_WEIGHTS = (0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538)


def angle(node: Node) -> float:
    """theta = atan2(sigma, alpha): 0 at the data, pi/2 where alpha = 0."""
    return math.atan2(node.sigma, node.alpha)


def radius(node: Node) -> float:
    """r = sqrt(alpha^2 + sigma^2) (1 on variance-preserving paths)."""
    return math.hypot(node.alpha, node.sigma)


def lagrange_integrals(nodes: list[float], a: float, b: float) -> list[float]:
    """w_j = int_a^b L_j(s) ds for the Lagrange basis L_j through ``nodes`` (distinct)."""
    half, mid = 0.5 * (b - a), 0.5 * (b + a)
    weights = []
    for j, node_j in enumerate(nodes):
        total = 0.0
        for u, gw in zip(_GL_NODES, _GL_WEIGHTS):
            s = mid + half * u
            basis = 1.0
            for k, node_k in enumerate(nodes):
                if k != j:
                    basis *= (s - node_k) / (node_j - node_k)
            total += gw * basis
        weights.append(half * total)
    return weights


def combine(weights: list[float], values: list[Tensor]) -> Tensor:
    """sum_j w_j f_j."""
    out = values[0] * weights[0]
    for w, f in zip(weights[1:], values[1:]):
        out = out.add(f, alpha=w)
    return out


@dataclass(frozen=True)
class AnglePoint(History):
    """One earlier value of the field (1): the angle and f = v_hat / r there."""

    per_sample: ClassVar[tuple[str, ...]] = ("f",)
    theta: float
    f: Tensor


@dataclass(frozen=True)
class AdamsHistory(History):
    """The last k values of the field and the angle the last step started from."""

    per_sample: ClassVar[tuple[str, ...]] = ("points",)
    points: tuple[AnglePoint, ...]
    theta_prev: float


@register
@dataclass(frozen=True)
class AdamsAngle(Solver):
    """Adams-Bashforth(k) predictor and Adams-Moulton corrector in the angle variable (see the
    module docstring), k = ``order`` in 1..4, one model evaluation per step.

    The corrector's interpolant runs through the new value and earlier ones, at most ``order``
    nodes in all ("same") or ``order + 1`` ("plus": one order more, as UniC raises UniP's).
    Warm-up: step n uses min(k, n + 1) nodes. ``history`` is an :class:`AdamsHistory`: what the
    corrector needs to redo the last step.
    """

    name: ClassVar[str] = "adams"
    order: int = option(3, help="k, the Adams-Bashforth order", check=one_of(1, 2, 3, 4))
    corrector: bool = option(True, help="Adams-Moulton correction (free)", check=boolean)
    corrector_order: str = option(
        "same", help="corrector nodes: same (k) or plus (k + 1)", check=one_of("same", "plus")
    )

    def steps_for_nfe(self, nfe: int) -> int:
        return check_multistep_nfe(self, nfe, super().steps_for_nfe(nfe))

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        theta, r = angle(now), radius(now)
        f_now = pred.v * (1.0 / r)  # eq. (1)
        y = state.x * (1.0 / r)
        pairs: tuple[AnglePoint, ...] = ()
        if isinstance(state.history, AdamsHistory):
            pairs, theta_prev = state.history.points, state.history.theta_prev
            if self.corrector:
                # Adams-Moulton: redo the last step through the new value (no new evaluation);
                # the correction is (AM increment - AB increment), as weights on each value.
                max_nodes = self.order + (1 if self.corrector_order == "plus" else 0)
                n_old = min(max_nodes, len(pairs) + 1) - 1
                am_nodes = [p.theta for p in pairs[len(pairs) - n_old :]] + [theta]
                w_am = lagrange_integrals(am_nodes, theta_prev, theta)
                w_ab = lagrange_integrals([p.theta for p in pairs], theta_prev, theta)
                w = [-wj for wj in w_ab] + [w_am[-1]]
                for j, w_old in enumerate(w_am[:-1]):
                    w[len(pairs) - n_old + j] += w_old
                y = y + combine(w, [p.f for p in pairs] + [f_now])
        pairs = (*pairs, AnglePoint(theta, f_now))[-self.order :]
        # Adams-Bashforth through the last k values.
        w = lagrange_integrals([p.theta for p in pairs], theta, angle(nxt))
        y_next = y + combine(w, [p.f for p in pairs])
        return state.replace(x=y_next * radius(nxt), history=AdamsHistory(pairs, theta))
