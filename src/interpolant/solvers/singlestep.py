"""Singlestep DPM-Solver: diffusers' ``DPMSolverSinglestepScheduler`` (2S, 3S on the grid's own
nodes) and k-diffusion's DPM-Solver-fast (``sample_dpm_fast``, A1111 "DPM fast").

With lambda = logsnr / 2 (= -log s, s = sigma / alpha), a singlestep solver of order k advances
from a start s_k over one long step h = lambda_t - lambda_s to t, evaluating the model at k - 1
intermediate levels (Lu et al. 2022, "DPM-Solver", Alg. 1 and 2; Lu et al. 2022b,
"DPM-Solver++", Alg. 1). The two peers place the intermediate levels differently:

* diffusers uses the grid's nodes: the steps are grouped as orders [1, 2], [1, 2], ... (2S) or
  [1, 2, 3], ... (3S); the order-1 step of a group is DDIM from the group start, and the
  order-k step is the singlestep update from the group start using the model outputs at the
  group's first k nodes. Every grid step costs one evaluation.
* DPM-fast uses intermediate levels at fixed fractions of a step (r = 1/2 for order 2;
  1/3 and 2/3 for order 3) on steps uniform in lambda; a step of order k costs k evaluations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..configurable import boolean, number, one_of, option
from ..errors import UserError
from ..paths import LOGSNR_LIMIT
from ..predictions import Prediction
from .adaptive import PIDController
from .base import (
    History,
    Node,
    Output,
    Run,
    Solver,
    State,
    exp_integrator_coeffs,
    node_at,
    register,
)
from .ode import at_source


def half_logsnr(logsnr: float) -> float:
    """lambda = logsnr / 2, clipped to +-LOGSNR_LIMIT / 2 (finite at alpha = 0 and at sigma = 0,
    as in ``exp_integrator_coeffs``)."""
    return 0.5 * min(max(logsnr, -LOGSNR_LIMIT), LOGSNR_LIMIT)


def singlestep_orders(steps: int, order: int, lower_order_final: bool) -> list[int]:
    """diffusers' ``get_order_list``: the order of each of ``steps`` grid steps."""
    if lower_order_final and order == 3:
        tail = {0: [1, 2, 1], 1: [1], 2: [1, 2]}[steps % 3]
        return [1, 2, 3] * ((steps - len(tail)) // 3) + tail
    if lower_order_final and order == 2:
        tail = [1, 1] if steps % 2 == 0 else [1]
        return [1, 2] * ((steps - len(tail)) // 2) + tail
    pattern = list(range(1, order + 1))
    return (pattern * (steps // order + 1))[:steps]


@dataclass(frozen=True)
class Group(History):
    """The current group of a singlestep solver: the state at its start node and the model
    outputs (data or noise predictions, by ``algorithm``) at its nodes so far, oldest first."""

    per_sample: ClassVar[tuple[str, ...]] = ("x", "outputs")
    start: Node
    x: Tensor
    outputs: tuple[Output, ...]


ALGORITHMS = ("dpmsolver++", "dpmsolver")
SOLVER_TYPES = ("midpoint", "heun")


@register
@dataclass(frozen=True)
class DPMSolverSinglestep(Solver):
    """diffusers' ``DPMSolverSinglestepScheduler`` (see the module docstring): orders from
    :func:`singlestep_orders`, the final step to sigma = 0 first order.

    From a group start s with the outputs m_0 (at s), m_1, m_2 (at the later nodes), the
    differences h_j = lambda_j - lambda_s, h = lambda_t - lambda_s and r_j = h_j / h:

    * order 2: D0 = m_0, D1 = (m_1 - m_0) / r_1, and for ``dpmsolver++`` (data predictions)
      x_t = (sigma_t / sigma_s) x_s + alpha_t phi1 D0 + c alpha_t D1 with phi1 = 1 - e^{-h} and
      c = phi1 / 2 (midpoint) or 1 - phi1 / h (heun); for ``dpmsolver`` (noise predictions)
      x_t = (alpha_t / alpha_s) x_s - sigma_t (e^h - 1) D0 - c sigma_t D1 with c = (e^h - 1) / 2
      (midpoint) or (e^h - 1) / h - 1 (heun).
    * order 3: D1_0 = (m_1 - m_0) / r_1, D1_1 = (m_2 - m_0) / r_2,
      D1 = (r_2 D1_0 - r_1 D1_1) / (r_2 - r_1), D2 = 2 (D1_1 - D1_0) / (r_2 - r_1); midpoint
      uses D1_1 with the heun coefficient of order 2, heun uses D1 and D2 (the third-order
      coefficient (e^{-h} - 1 + h) / h^2 - 1/2, resp. (e^h - 1 - h) / h^2 - 1/2 for noise).

    ``lower_order_final`` (diffusers forces it whenever the steps are not a multiple of the
    order or the grid ends at sigma = 0, its default) ends with lower orders.
    """

    name: ClassVar[str] = "dpmpp_singlestep"
    solver_order: int = option(2, help="1, 2 (2S) or 3 (3S)", check=one_of(1, 2, 3))
    algorithm: str = option("dpmsolver++", help="dpmsolver++ (data) or dpmsolver (noise)",
                            check=one_of(*ALGORITHMS))  # fmt: skip
    solver_type: str = option("midpoint", help="midpoint or heun (diffusers' solver_type)",
                              check=one_of(*SOLVER_TYPES))  # fmt: skip
    lower_order_final: bool = option(
        True, help="lower orders at the end (forced when steps % order != 0)", check=boolean
    )

    @property
    def order(self) -> int:
        return self.solver_order

    def orders(self, steps: int, ends_at_zero: bool) -> list[int]:
        """The order of every grid step (diffusers' rule)."""
        lower = self.lower_order_final or steps % self.solver_order != 0 or ends_at_zero
        orders = singlestep_orders(steps, self.solver_order, lower)
        if ends_at_zero:
            orders[-1] = 1
        return orders

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        ends_at_zero = run.nodes[-1].sigma == 0.0 if run.nodes else nxt.sigma == 0.0
        order = self.orders(run.n_steps, ends_at_zero)[run.index]
        if nxt.sigma == 0.0:
            order = 1
        m = pred.x0 if self.algorithm == "dpmsolver++" else pred.eps
        output = Output(now.logsnr, m)
        if order == 1:
            # A new group: DDIM from its start (= first-order DPM-Solver in either form).
            ratio, phi1, _ = exp_integrator_coeffs(now, nxt)
            x = ratio * state.x + (nxt.alpha * phi1) * pred.x0
            return state.replace(x=x, history=Group(now, state.x, (output,)))
        group = state.history
        if not isinstance(group, Group) or len(group.outputs) != order - 1:
            raise UserError(f"{self.name}: an order-{order} step needs its group's history")
        outputs = (*group.outputs, output)
        x = self._update(group.start, group.x, outputs, nxt)
        return state.replace(x=x, history=group.replace(outputs=outputs))

    def _update(self, start: Node, x: Tensor, outputs: tuple[Output, ...], nxt: Node) -> Tensor:
        """The order-len(outputs) singlestep update from ``start`` to ``nxt``."""
        lam_s = half_logsnr(start.logsnr)
        h = half_logsnr(nxt.logsnr) - lam_s
        r = [(half_logsnr(outputs[j].logsnr) - lam_s) / h for j in range(1, len(outputs))]
        m = [o.x0 for o in outputs]
        heun = self.solver_type == "heun"
        if len(outputs) == 2:
            d0, d1 = m[0], (m[1] - m[0]) / r[0]
        else:
            d0 = m[0]
            d1_0, d1_1 = (m[1] - m[0]) / r[0], (m[2] - m[0]) / r[1]
            d1 = (r[1] * d1_0 - r[0] * d1_1) / (r[1] - r[0])
            d2 = 2.0 * (d1_1 - d1_0) / (r[1] - r[0])
        if self.algorithm == "dpmsolver++":
            ratio, phi1, _ = exp_integrator_coeffs(start, nxt)
            out = ratio * x + (nxt.alpha * phi1) * d0
            c2 = 1.0 + math.expm1(-h) / h  # (e^{-h} - 1) / h + 1
            if len(outputs) == 2:
                return out + (nxt.alpha * (c2 if heun else 0.5 * phi1)) * d1
            if not heun:
                return out + (nxt.alpha * c2) * d1_1
            c3 = (math.expm1(-h) + h) / h**2 - 0.5
            return out + (nxt.alpha * c2) * d1 - (nxt.alpha * c3) * d2
        if at_source(start):
            raise UserError(
                f"{self.name} with algorithm='dpmsolver' (noise predictions) cannot take a "
                "higher-order step from alpha = 0 (a flow path at t = 1); use "
                "algorithm='dpmsolver++' or t_max < 1"
            )
        e = math.expm1(h)
        out = (nxt.alpha / start.alpha) * x - (nxt.sigma * e) * d0
        c2 = e / h - 1.0
        if len(outputs) == 2:
            return out - (nxt.sigma * (c2 if heun else 0.5 * e)) * d1
        if not heun:
            return out - (nxt.sigma * c2) * d1_1
        c3 = (e - h) / h**2 - 0.5
        return out - (nxt.sigma * c2) * d1 - (nxt.sigma * c3) * d2


def _node_at_lambda(run: Run, lam: float) -> Node:
    t = float(run.path.t_of_logsnr(torch.tensor(2.0 * lam, dtype=torch.float64)))
    return node_at(run.path, min(max(t, 0.0), 1.0))


EpsAt = Callable[[float, Tensor], Tensor]


def dpm_solver_update(
    x: Tensor, eps: Tensor, lam: float, lam_next: float, order: int, eps_at: EpsAt,
    r1: float = 0.5,
) -> Tensor:  # fmt: skip
    """One noise-prediction DPM-Solver-``order`` step (Lu et al. 2022, Alg. 1 and 2;
    k-diffusion's ``dpm_solver_{1,2,3}_step``) in EDM coordinates (x = x_edm, lambda = -log s)
    from lambda to lambda_next, with ``eps`` at the start and ``eps_at(lambda, u)`` the noise
    prediction at an intermediate level (order 2: r1; order 3: 1/3 and 2/3)."""
    h = lam_next - lam
    first = x - math.exp(-lam_next) * math.expm1(h) * eps
    if order == 1:
        return first
    if order == 2:
        lam_1 = lam + r1 * h
        u1 = x - math.exp(-lam_1) * math.expm1(r1 * h) * eps
        eps_1 = eps_at(lam_1, u1)
        return first - (math.exp(-lam_next) / (2 * r1)) * math.expm1(h) * (eps_1 - eps)
    ra, rb = 1 / 3, 2 / 3
    lam_1, lam_2 = lam + ra * h, lam + rb * h
    u1 = x - math.exp(-lam_1) * math.expm1(ra * h) * eps
    eps_1 = eps_at(lam_1, u1)
    c = math.exp(-lam_2) * (rb / ra) * (math.expm1(rb * h) / (rb * h) - 1)
    u2 = x - math.exp(-lam_2) * math.expm1(rb * h) * eps - c * (eps_1 - eps)
    eps_2 = eps_at(lam_2, u2)
    return first - (math.exp(-lam_next) / rb) * (math.expm1(h) / h - 1) * (eps_2 - eps)


def eps_evaluator(run: Run, dtype: torch.dtype) -> EpsAt:
    """``eps_at(lambda, u)``: the run's noise prediction at EDM coordinates u, level lambda
    (memoised by lambda: k-diffusion's ``eps_cache`` within one step)."""
    cache: dict[float, Tensor] = {}

    def eps_at(lam: float, u: Tensor) -> Tensor:
        if lam not in cache:
            node = _node_at_lambda(run, lam)
            cache[lam] = run.evaluate((node.alpha * u).to(dtype), node).eps
        return cache[lam]

    return eps_at


@register
@dataclass(frozen=True)
class DPMFast(Solver):
    """DPM-Solver-fast (k-diffusion ``sample_dpm_fast``; Lu et al. 2022, sec. 3.4): singlestep
    DPM-Solver-3 steps (:func:`dpm_solver_update`: noise predictions, intermediate levels at
    r = 1/3 and 2/3 of the step in lambda) with a DPM-Solver-2 (r = 1/2) and a DPM-Solver-1
    step at the end: orders [3, ..., 3, 2, 1], so m steps cost 3 (m - 1) evaluations (one
    step: 1). Use it with a grid uniform in logSNR (``grid="logsnr"``), the fast solver's own.

    k-diffusion's budget N with N % 3 != 0 ends with [3, ..., 3, N % 3] instead; here a budget
    spends the largest 3 (m - 1) within it. A step to sigma = 0 returns x0 (order 1) and a step
    from alpha = 0 (s infinite) is the first-order x0 + s' eps (one evaluation each).
    """

    name: ClassVar[str] = "dpm_fast"

    @property
    def order(self) -> int:
        # Third-order steps, but the final first-order step's O(h^2) local error makes the run
        # second order (measured in tests/solvers/test_singlestep.py).
        return 2

    @property
    def evals_per_step(self) -> int:
        return 3

    def nfe_for_steps(self, steps: int) -> int:
        return 1 if steps == 1 else 3 * (steps - 1)

    def step_order(self, run: Run) -> int:
        """3 for every step but the last two (2, then 1)."""
        remaining = run.n_steps - run.index
        return 1 if remaining == 1 else (2 if remaining == 2 else 3)

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        s, s_next = now.edm_sigma, nxt.edm_sigma
        if s_next == 0.0 or at_source(now):
            # Denoising step / first-order step from alpha = 0.
            return state.replace(x=nxt.alpha * (pred.x0 + s_next * pred.eps))
        eps_at = eps_evaluator(run, state.x.dtype)
        lam, lam_next = -math.log(s), -math.log(s_next)
        x = dpm_solver_update(
            state.x / now.alpha, pred.eps, lam, lam_next, self.step_order(run), eps_at
        )
        return state.replace(x=nxt.alpha * x)


ERROR_NORMS = ("rms", "max")


@register
@dataclass(frozen=True)
class DPMAdaptive(Solver):
    """Adaptive DPM-Solver-12 / 23 (k-diffusion ``sample_dpm_adaptive``; Lu et al. 2022,
    sec. 3.3, Alg. 4) with a PID step-size controller and an NFE budget.

    Each grid interval is integrated adaptively in lambda = -log s: a step of size h is tried
    with the pair (DPM-Solver-1, -2) (``solver_order=2``) or (DPM-Solver-2 with r = 1/3, -3)
    (``solver_order=3``), the error is

        E = || (x_low - x_high) / max(atol, rtol max(|x_low|, |x_prev|)) ||_rms

    (x_prev the previous accepted low-order solution; RMS over the whole batch as k-diffusion,
    ``error_norm="rms"``, or the largest per-sample RMS, ``"max"``: every sample meets the
    tolerance), and :class:`~interpolant.solvers.adaptive.PIDController` accepts or rejects and
    sets the next h; an accepted step keeps x_high. An interval ending at sigma = 0 is
    integrated to ``sigma_min`` and finished by a denoising step (x0, one evaluation).

    The step sizes are shared by the batch, so a sample depends (within the tolerance) on the
    others. The model evaluation at the start of a step is reused after a rejection (k-diffusion
    evaluates it again: the same samples, fewer evaluations). Budget: the whole run spends at
    most ``max_nfe`` evaluations per sample; when the next try would not fit, the rest of the
    interval is one step of the highest order that does, accepted without error control. Use
    it with ``steps=1`` (one adaptive integration from t_max); a grid of more steps integrates
    each interval adaptively, each with a budget share.
    """

    name: ClassVar[str] = "dpm_adaptive"
    #: The option that holds the NFE budget (``peer_sampler(name, nfe=N)`` sets it).
    budget_option: ClassVar[str] = "max_nfe"
    solver_order: int = option(3, help="2 (DPM-Solver-12) or 3 (DPM-Solver-23)", check=one_of(2, 3))
    rtol: float = option(0.05, help="relative tolerance", check=number(0, open_lo=True))
    atol: float = option(0.0078, help="absolute tolerance", check=number(0, open_lo=True))
    h_init: float = option(0.05, help="first step size in lambda", check=number(0, open_lo=True))
    pcoeff: float = option(0.0, help="PID proportional coefficient", check=number())
    icoeff: float = option(1.0, help="PID integral coefficient", check=number())
    dcoeff: float = option(0.0, help="PID derivative coefficient", check=number())
    accept_safety: float = option(0.81, help="accept when the step factor >= this",
                                  check=number(0))  # fmt: skip
    sigma_min: float = option(0.002, help="EDM sigma where an interval to 0 stops adapting",
                              check=number(0, open_lo=True))  # fmt: skip
    max_nfe: int = option(500, help="model evaluations per sample, at most (the budget)",
                          check=number(2, integer=True))  # fmt: skip
    error_norm: str = option("rms", help="rms (over the batch, k-diffusion) or max (per sample)",
                             check=one_of(*ERROR_NORMS))  # fmt: skip

    @property
    def order(self) -> int:
        return self.solver_order

    @property
    def evals_per_step(self) -> int:
        return self.max_nfe

    def nfe_for_steps(self, steps: int) -> int:
        return steps * self.max_nfe

    def steps_for_nfe(self, nfe: int) -> int:
        if nfe < self.max_nfe:
            raise UserError(
                f"{self.name} chooses its own steps within its budget max_nfe={self.max_nfe}: "
                f"for nfe={nfe} give solver={{'name': '{self.name}', 'max_nfe': {nfe}}} with "
                "steps=1"
            )
        return nfe // self.max_nfe

    def _error(self, x_low: Tensor, x_high: Tensor, x_prev: Tensor) -> float:
        delta = torch.clamp(self.rtol * torch.maximum(x_low.abs(), x_prev.abs()), min=self.atol)
        ratio = ((x_low - x_high) / delta).reshape(x_low.shape[0], -1)
        if self.error_norm == "rms":
            return float(torch.linalg.vector_norm(ratio) / math.sqrt(ratio.numel()))
        return float(ratio.square().mean(dim=1).sqrt().max())

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        s = now.edm_sigma
        if at_source(now):
            raise UserError(
                f"{self.name} adapts its steps in log sigma and cannot start where alpha = 0 "
                "(a flow path at t = 1): sample with t_max < 1"
            )
        to_zero = nxt.sigma == 0.0
        s_end = min(self.sigma_min, s) if to_zero else nxt.edm_sigma
        # This interval's share of the budget (the rest of the run keeps its own shares).
        budget = self.max_nfe // run.n_steps - (1 if to_zero else 0)
        x, used, dtype = state.x / now.alpha, 1, state.x.dtype
        lam, lam_end = -math.log(s), -math.log(s_end)
        eps = pred.eps
        x_prev = x
        pid = PIDController(self.h_init, self.pcoeff, self.icoeff, self.dcoeff,
                            self.solver_order, self.accept_safety)  # fmt: skip
        low_order, low_r1 = (1, 0.5) if self.solver_order == 2 else (2, 1 / 3)
        while lam < lam_end - 1e-5:
            if used + self.solver_order - 1 + 1 > budget:
                # Out of budget: the rest of the interval in one step of the order that fits.
                order = max(1, min(self.solver_order, budget - used + 1))
                eps_at = eps_evaluator(run, dtype)
                x = dpm_solver_update(x, eps, lam, lam_end, order, eps_at)
                lam = lam_end
                break
            lam_next = min(lam_end, lam + pid.h)
            eps_at = eps_evaluator(run, dtype)
            before = run.nfe
            x_low = dpm_solver_update(x, eps, lam, lam_next, low_order, eps_at, low_r1)
            x_high = dpm_solver_update(x, eps, lam, lam_next, self.solver_order, eps_at)
            used += run.nfe - before
            if pid.propose(self._error(x_low, x_high, x_prev)):
                x_prev, x, lam = x_low, x_high, lam_next
                if lam < lam_end - 1e-5:
                    # The model at the accepted point: the next step's start.
                    node = _node_at_lambda(run, lam)
                    eps = run.evaluate((node.alpha * x).to(dtype), node).eps
                    used += 1
        if to_zero:
            # Denoising step from sigma_min.
            node = _node_at_lambda(run, lam)
            return state.replace(x=nxt.alpha * run.evaluate((node.alpha * x).to(dtype), node).x0)
        return state.replace(x=nxt.alpha * x)


__all__ = [
    "DPMAdaptive",
    "DPMFast",
    "DPMSolverSinglestep",
    "Group",
    "dpm_solver_update",
    "singlestep_orders",
]
