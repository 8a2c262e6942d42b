"""Linear multistep solvers on the noise prediction that users know by name: DEIS, LMS, iPNDM,
PLMS and PNDM (diffusers' ``DEISMultistepScheduler``, ``LMSDiscreteScheduler``, ``IPNDMScheduler``,
``PNDMScheduler``; k-diffusion's ``sample_lms``; ComfyUI's ``ipndm``, ``deis``).

In the path-free coordinates y = x / alpha and rho = sigma / alpha (the EDM noise level) the
probability-flow ODE of every Gaussian path is

    dy / drho = eps_hat(y, rho)                                                   (1)

(Zhang & Chen 2023, "DEIS", eq. 11 with the exponential integrator's change of variables;
Karras et al. 2022, eq. 4 with alpha = 1). The solvers are Adams-Bashforth methods for (1):
with the newest k noise predictions eps_0 (at rho_0 = the current node), eps_1, ... and
weights c_j that sum to rho' - rho_0,

    y' = y + sum_j c_j eps_j,   i.e.
    x' = alpha' x0_0 + sigma' eps_0 + alpha' sum_{j>=1} c_j (eps_j - eps_0),          (2)

the second form (the first-order part is DDIM) written through alpha and sigma so that a start
at alpha = 0 (pure noise) and an end at sigma = 0 are exact. They differ only in the weights:

* **DEIS** (``deis``, order 1-3; diffusers' "logrho" DEIS): c_j = int_rho0^rho' L_j(log r) dr,
  the Lagrange basis through the nodes' log rho (DEIS's "rho AB-DEIS", Zhang & Chen 2023,
  eq. 15), integrated exactly: with u = log r, int p(u) e^u du = e^u (p - p' + p'' - ...).
* **LMS** (``lms``, order 1-4; k-diffusion's ``sample_lms``): c_j = int L_j(r) dr, the Lagrange
  basis through the nodes' rho (exact Gauss-Legendre quadrature; k-diffusion uses
  ``scipy.integrate.quad`` on the same polynomial).
* **iPNDM** (``ipndm``, order 1-4; Zhang & Chen 2023, sec. 5, the "improved PNDM"; diffusers'
  ``IPNDMScheduler``, ComfyUI's ``ipndm``): the fixed equal-step Adams-Bashforth weights
  (1), (3, -1) / 2, (23, -16, 5) / 12, (55, -59, 37, -9) / 24 times (rho' - rho_0), whatever the
  spacing of the grid; warm-up with the lower orders.
* **PLMS** (``plms``; Liu et al. 2022, "PNDM", eq. 12 with diffusers' ``skip_prk_steps``, as
  Stable Diffusion's sampler): iPNDM's weights, but the first step is Heun's (the model is
  evaluated again at its predicted end and the two noise predictions are averaged), so N steps
  cost N + 1 evaluations.
* **PNDM** (``pndm``; Liu et al. 2022, eqs. 11-13; diffusers' ``PNDMScheduler`` default): three
  pseudo Runge-Kutta steps (4 evaluations each) warm up the same fourth-order weights.

Points at rho = infinity (alpha = 0, the pure-noise start of the linear and cosine paths) are
dropped from the interpolation of DEIS and LMS (a polynomial through infinity is undefined): the
step after such a start is first order. The final step to sigma = 0 of DEIS is first order
(log rho is -infinity there), as for DPM-Solver; LMS, iPNDM and PLMS integrate to rho = 0 with
their full order, as the peers do.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from ..configurable import boolean, one_of, option
from ..predictions import Prediction
from .adams import lagrange_integrals
from .base import History, Node, Run, Solver, State, node_at, register
from .dpm import check_multistep_nfe, multistep_order

#: Equal-step Adams-Bashforth weights, newest first (order 1..4).
ADAMS_BASHFORTH = (
    (1.0,),
    (3.0 / 2.0, -1.0 / 2.0),
    (23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0),
    (55.0 / 24.0, -59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0),
)


def edm_rho(node: Node) -> float:
    """rho = sigma / alpha, the EDM noise level of a node (infinity where alpha = 0)."""
    return node.sigma / node.alpha if node.alpha > 0 else math.inf


@dataclass(frozen=True)
class NoisePoint(History):
    """One earlier noise prediction and the noise level rho = sigma / alpha it was made at."""

    per_sample: ClassVar[tuple[str, ...]] = ("eps",)
    rho: float
    eps: Tensor


@dataclass(frozen=True)
class NoiseHistory(History):
    """The last few noise predictions, oldest first."""

    per_sample: ClassVar[tuple[str, ...]] = ("points",)
    points: tuple[NoisePoint, ...] = ()


def transfer(
    pred: Prediction, nxt: Node, weights: list[float], points: tuple[NoisePoint, ...]
) -> Tensor:
    """Eq. (2): x' = alpha' x0_0 + sigma' eps_0 + alpha' sum_{j>=1} c_j (eps_j - eps_0), with
    ``weights`` c_j newest first (c_0 is implied: the weights sum to rho' - rho_0) and ``points``
    the history oldest first, ending with the current prediction."""
    eps0 = pred.eps
    x = pred.x0 * nxt.alpha
    if nxt.sigma > 0:
        x = x.add(eps0, alpha=nxt.sigma)
    for c, point in zip(weights[1:], reversed(points[:-1])):
        if c != 0.0:
            x = x.add(point.eps - eps0, alpha=nxt.alpha * c)
    return x


def ddim_with(pred: Prediction, now: Node, to: Node, eps: Tensor) -> Tensor:
    """The DDIM transfer from ``now`` to ``to`` with the noise prediction ``eps`` in place of
    the model's (PNDM's phi, eq. 11): alpha' x0(eps) + sigma' eps with x0(eps) = (x - sigma eps)
    / alpha, written through the prediction as alpha' x0 + sigma' eps_hat + alpha' (rho' - rho)
    (eps - eps_hat). From alpha = 0, x0(eps) is undefined; its limit is the prediction's x0."""
    x = to.alpha * pred.x0 + to.sigma * pred.eps
    if now.alpha > 0:
        return x + (to.alpha * (edm_rho(to) - edm_rho(now))) * (eps - pred.eps)
    return to.alpha * pred.x0 + to.sigma * eps


def _poly_mul(p: list[float], q: list[float]) -> list[float]:
    out = [0.0] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] += a * b
    return out


def _exp_antiderivative(coeffs: list[float], u: float) -> float:
    """G(u) = e^u (p - p' + p'' - ...) (u), so that G' = p e^u; ``coeffs`` lowest degree first.
    G(-infinity) = 0."""
    if u == -math.inf:
        return 0.0
    total, sign, poly = 0.0, 1.0, list(coeffs)
    while poly:
        total += sign * sum(c * u**k for k, c in enumerate(poly))
        poly = [k * c for k, c in enumerate(poly)][1:]
        sign = -sign
    return math.exp(u) * total


def log_rho_weights(rhos: list[float], rho_next: float) -> list[float]:
    """DEIS's c_j = int_{rho_0}^{rho'} L_j(log r) dr for the Lagrange basis through the log rho of
    ``rhos`` (newest first; rho_0 = rhos[0]), exactly."""
    u = [math.log(r) for r in rhos]
    u_next = math.log(rho_next) if rho_next > 0 else -math.inf
    weights = []
    for j, u_j in enumerate(u):
        basis = [1.0]
        for k, u_k in enumerate(u):
            if k != j:
                basis = _poly_mul(basis, [-u_k / (u_j - u_k), 1.0 / (u_j - u_k)])
        weights.append(_exp_antiderivative(basis, u_next) - _exp_antiderivative(basis, u[0]))
    return weights


class _NoiseMultistep(Solver, ABC):
    """What the four share: the noise history and eq. (2); subclasses give the weights."""

    max_points: ClassVar[int] = 4

    @abstractmethod
    def _weights(self, rhos: list[float], rho_next: float, nxt: Node, run: Run) -> list[float]:
        """The weights of the history's noise predictions for the step to ``nxt``."""

    def _usable(self, points: tuple[NoisePoint, ...]) -> tuple[NoisePoint, ...]:
        """The history points the weights may use (all, by default)."""
        return points

    def _push(self, state: State, pred: Prediction, now: Node) -> tuple[NoisePoint, ...]:
        previous = state.history.points if isinstance(state.history, NoiseHistory) else ()
        return (*previous, NoisePoint(edm_rho(now), pred.eps))[-self.max_points :]

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        points = self._push(state, pred, now)
        usable = self._usable(points)
        if usable:
            rhos = [p.rho for p in reversed(usable)]  # newest first
            weights = self._weights(rhos, edm_rho(nxt), nxt, run)
        else:  # the current node is at alpha = 0: a DDIM step (eq. 2 without the sum)
            usable, weights = points[-1:], [edm_rho(nxt) - edm_rho(now)]
        x = transfer(pred, nxt, weights, usable)
        return state.replace(x=x, history=NoiseHistory(points))


def _finite(points: tuple[NoisePoint, ...]) -> tuple[NoisePoint, ...]:
    """The newest run of points at finite rho (a point at alpha = 0 ends the interpolation)."""
    kept: list[NoisePoint] = []
    for point in reversed(points):
        if not math.isfinite(point.rho):
            break
        kept.append(point)
    return tuple(reversed(kept))


@register
@dataclass(frozen=True)
class DEIS(_NoiseMultistep):
    """DEIS with the log-rho Lagrange interpolation (Zhang & Chen 2023; diffusers'
    ``DEISMultistepScheduler``, ``solver_type="logrho"``), order 1-3; order 1 is DDIM.

    Warm-up: step k uses order min(order, k + 1); with ``lower_order_final`` (default, as
    diffusers) grids of fewer than 15 steps end with orders 2 and 1; the final step to sigma = 0
    is first order. Matches diffusers 0.42 step for step (tests/solvers/test_multistep_peers.py).
    """

    name: ClassVar[str] = "deis"
    order: int = option(
        2, help="interpolation order (diffusers' solver_order)", check=one_of(1, 2, 3)
    )
    lower_order_final: bool = option(
        True, help="orders 2 and 1 for the last steps of grids under 15 steps", check=boolean
    )

    def steps_for_nfe(self, nfe: int) -> int:
        return check_multistep_nfe(self, nfe, super().steps_for_nfe(nfe))

    def _usable(self, points: tuple[NoisePoint, ...]) -> tuple[NoisePoint, ...]:
        return _finite(points)

    def _weights(self, rhos: list[float], rho_next: float, nxt: Node, run: Run) -> list[float]:
        order = multistep_order(self.order, len(rhos) - 1, nxt, run, self.lower_order_final)
        if order == 1 or not math.isfinite(rhos[0]):
            return [rho_next - rhos[0]]
        return log_rho_weights(rhos[:order], rho_next)


@register
@dataclass(frozen=True)
class LMS(_NoiseMultistep):
    """Linear multistep in rho (k-diffusion's ``sample_lms``, diffusers'
    ``LMSDiscreteScheduler``), order 1-4: Adams-Bashforth with the Lagrange basis through the
    nodes' rho, warm-up with the lower orders, full order to sigma = 0."""

    name: ClassVar[str] = "lms"
    order: int = option(
        4, help="the number of noise predictions interpolated", check=one_of(1, 2, 3, 4)
    )

    def steps_for_nfe(self, nfe: int) -> int:
        return check_multistep_nfe(self, nfe, super().steps_for_nfe(nfe))

    def _usable(self, points: tuple[NoisePoint, ...]) -> tuple[NoisePoint, ...]:
        return _finite(points)[-self.order :]

    def _weights(self, rhos: list[float], rho_next: float, nxt: Node, run: Run) -> list[float]:
        if len(rhos) == 1 or not math.isfinite(rhos[0]):
            return [rho_next - rhos[0]]
        return lagrange_integrals(rhos, rhos[0], rho_next)


@register
@dataclass(frozen=True)
class IPNDM(_NoiseMultistep):
    """iPNDM (Zhang & Chen 2023, sec. 5; diffusers' ``IPNDMScheduler``, ComfyUI's ``ipndm``):
    the equal-step Adams-Bashforth weights times rho' - rho on any grid, order 1-4."""

    name: ClassVar[str] = "ipndm"
    order: int = option(4, help="the largest Adams-Bashforth order", check=one_of(1, 2, 3, 4))

    def _usable(self, points: tuple[NoisePoint, ...]) -> tuple[NoisePoint, ...]:
        return points[-self.order :]

    def _weights(self, rhos: list[float], rho_next: float, nxt: Node, run: Run) -> list[float]:
        step = rho_next - rhos[0]
        if not math.isfinite(step):
            return [step]  # the first step from alpha = 0: DDIM (no history to weigh)
        return [b * step for b in ADAMS_BASHFORTH[len(rhos) - 1]]


@register
@dataclass(frozen=True)
class PLMS(IPNDM):
    """PLMS (Liu et al. 2022; diffusers' ``PNDMScheduler(skip_prk_steps=True)``): iPNDM's
    weights after a first Heun step (an extra evaluation at the first step's Euler end, the two
    noise predictions averaged), so ``steps`` steps cost ``steps + 1`` evaluations (one step:
    1). As diffusers, the second evaluation at the first node after the start (at the corrected
    state) is the one later steps extrapolate from."""

    name: ClassVar[str] = "plms"

    def nfe_for_steps(self, steps: int) -> int:
        return steps + 1 if steps > 1 else steps

    def steps_for_nfe(self, nfe: int) -> int:
        return max(nfe - 1, 1) if nfe >= 1 else super().steps_for_nfe(nfe)

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        if state.history is not None or run.is_last:
            return super().step(state, pred, now, nxt, run)
        # Heun first step: Euler (DDIM) to nxt, the model there, then DDIM with the mean eps.
        eps_end = run.evaluate(ddim_with(pred, now, nxt, pred.eps), nxt).eps
        x = ddim_with(pred, now, nxt, 0.5 * (pred.eps + eps_end))
        return state.replace(x=x, history=NoiseHistory((NoisePoint(edm_rho(now), pred.eps),)))


@register
@dataclass(frozen=True)
class PNDM(IPNDM):
    """Full PNDM (Liu et al. 2022, eqs. 11-13; diffusers' ``PNDMScheduler`` default): the first
    three steps are pseudo Runge-Kutta steps, the rest PLMS (iPNDM's fourth-order weights) on the
    first-stage noise predictions of those steps.

    A pseudo Runge-Kutta step from t to t' with the half node t_m = (t + t') / 2 (in path time,
    which is diffusers' half timestep on a :class:`~interpolant.paths.DiscreteVP` path) moves x
    by the DDIM transfer phi(x, eps, t -> s) with four noise predictions:

        e1 = eps(x, t),          e2 = eps(phi(x, e1, t -> t_m), t_m),
        e3 = eps(phi(x, e2, t -> t_m), t_m),   e4 = eps(phi(x, e3, t -> t'), t'),
        x' = phi(x, (e1 + 2 e2 + 2 e3 + e4) / 6, t -> t').

    The last step is never a Runge-Kutta step (it would evaluate the model at sigma = 0), so
    ``steps`` steps cost steps + 3 min(3, steps - 1) evaluations (10 steps: 19, as diffusers).
    """

    name: ClassVar[str] = "pndm"
    runge_kutta_steps: ClassVar[int] = 3

    def nfe_for_steps(self, steps: int) -> int:
        return steps + 3 * min(self.runge_kutta_steps, max(steps - 1, 0))

    def steps_for_nfe(self, nfe: int) -> int:
        warm_up = 4 * self.runge_kutta_steps + 1  # the budget of the warm-up and one step
        return nfe - 3 * self.runge_kutta_steps if nfe >= warm_up else 1 + max(nfe - 1, 0) // 4

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        done = len(state.history.points) if isinstance(state.history, NoiseHistory) else 0
        if done >= self.runge_kutta_steps or run.is_last:
            return super().step(state, pred, now, nxt, run)
        # Pseudo Runge-Kutta step (eq. 13): four noise predictions, each moved with DDIM.
        mid = node_at(run.path, 0.5 * (now.t + nxt.t))
        e1 = pred.eps
        e2 = run.evaluate(ddim_with(pred, now, mid, e1), mid).eps
        e3 = run.evaluate(ddim_with(pred, now, mid, e2), mid).eps
        e4 = run.evaluate(ddim_with(pred, now, nxt, e3), nxt).eps
        x = ddim_with(pred, now, nxt, (e1 + 2.0 * e2 + 2.0 * e3 + e4) / 6.0)
        return state.replace(x=x, history=NoiseHistory(self._push(state, pred, now)))


__all__ = [
    "ADAMS_BASHFORTH",
    "DEIS",
    "IPNDM",
    "LMS",
    "PLMS",
    "PNDM",
    "NoiseHistory",
    "NoisePoint",
    "ddim_with",
    "edm_rho",
    "log_rho_weights",
    "transfer",
]
