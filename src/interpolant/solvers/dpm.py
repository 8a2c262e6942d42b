"""Exponential-integrator solvers on the data prediction: DDIM(eta) and DPM-Solver++ (2M).

With lambda = logsnr / 2 and h = lambda_next - lambda_now, the exact solution of the
probability-flow ODE is x_next = (sigma_next / sigma) x + alpha_next int e^{-(lambda_next -
lambda)} x0(lambda) d lambda (Lu et al. 2022, "DPM-Solver++", eq. 9); the solvers differ in how
they approximate x0 over the step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from ..configurable import boolean, number, option
from ..errors import UserError
from ..predictions import Prediction
from .base import Multistep, Node, Output, Run, Solver, State, exp_integrator_coeffs, register


def _x0_variance_table(value: Any) -> str | None:
    """Check of DDIM's ``x0_var``: None or a sequence of finite numbers >= 0."""
    if value is None:
        return None
    entry = number(0)
    if isinstance(value, tuple | list) and value and all(entry(v) is None for v in value):
        return None
    return "None or a non-empty sequence of finite numbers >= 0 (one per step)"


@register
@dataclass(frozen=True)
class DDIM(Solver):
    """DDIM (Song et al. 2021, eq. 12) with eta in [0, 1]; eta = 1 is ancestral DDPM.

    x_next = alpha' x0 + sqrt(sigma'^2 - c^2) eps + c z with c = eta sigma' sqrt(1 - e^{-2h}),
    the posterior noise of q(x_next | x, x0) scaled by eta, valid on any Gaussian path.

    ``x0_var`` (Analytic-DPM, Bao et al. 2022, eq. 7): one number per step, the average
    Var[x0 | x_t] per coordinate at the step's start (:func:`~interpolant.solvers.analytic_dpm.
    analytic_x0_variance` estimates it). The step's noise variance becomes c^2 + k^2 Var with
    k = d x_next / d x0 at fixed x_t, the term a kernel built on the point estimate x0 leaves
    out; with it the chain is exact on Gaussian data at any step count. The last step (to
    sigma' = 0) then draws x0 + sqrt(Var) z too (the official code returns the mean there: set
    the last entry to 0 for that). With eta = 0 it is Analytic-DDIM (stochastic).
    """

    name: ClassVar[str] = "ddim"
    eta: float = option(0.0, help="posterior noise scale (1: ancestral DDPM)", check=number(0, 1))
    x0_var: tuple[float, ...] | None = option(
        None,
        help="Analytic-DPM: average Var[x0 | x_t] per coordinate at each step's start "
        "(analytic_x0_variance), added to the step's noise",
        check=_x0_variance_table,
    )

    def __post_init__(self) -> None:
        if isinstance(self.x0_var, list):  # from a JSON config
            object.__setattr__(self, "x0_var", tuple(float(v) for v in self.x0_var))
        super().__post_init__()

    @property
    def stochastic(self) -> bool:
        return self.eta > 0 or (self.x0_var is not None and any(v > 0 for v in self.x0_var))

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        ratio, one_minus_exp, _ = exp_integrator_coeffs(now, nxt)
        c = 0.0
        if self.eta > 0.0 and nxt.sigma > 0.0:
            exp_m2h = (1.0 - one_minus_exp) ** 2  # e^{-2h} = (alpha sigma' / (sigma alpha'))^2
            c = self.eta * nxt.sigma * math.sqrt(max(1.0 - exp_m2h, 0.0))
        keep = math.sqrt(max(nxt.sigma**2 - c**2, 0.0))
        extra = 0.0
        if self.x0_var is not None:
            if len(self.x0_var) != run.n_steps:
                raise UserError(
                    f"DDIM x0_var has {len(self.x0_var)} entries but the run has {run.n_steps} "
                    "steps: estimate it on the sampler's own grid (analytic_x0_variance)"
                )
            # k = d x_next / d x0 at fixed x_t (eps = (x - alpha x0) / sigma moves with x0).
            k = nxt.alpha - keep * now.alpha / now.sigma
            extra = k * k * self.x0_var[run.index]
        if c == 0.0 and extra == 0.0:
            # Deterministic DDIM step (= first-order DPM-Solver++).
            return state.replace(x=ratio * state.x + nxt.alpha * one_minus_exp * pred.x0)
        std = c if extra == 0.0 else math.sqrt(c * c + extra)
        x = nxt.alpha * pred.x0 + keep * pred.eps + std * run.noise(state.x)
        return state.replace(x=x)


@register
@dataclass(frozen=True)
class DPMSolverPP2M(Solver):
    """DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2): multistep, second order, data prediction.

    D = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}, r = h_{i-1} / h_i, and
    x_{i+1} = (sigma_{i+1} / sigma_i) x_i + alpha_{i+1} (1 - e^{-h_i}) D. The first step and the
    final step to sigma = 0 are first order (there h is infinite).
    """

    name: ClassVar[str] = "dpmpp_2m"
    euler_at_final: bool = option(
        False,
        help="first order for the last step on any grid (diffusers' euler_at_final; matters "
        "where the grid ends above sigma = 0)",
        check=boolean,
    )

    @property
    def order(self) -> int:
        return 2

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        ratio, one_minus_exp, h = exp_integrator_coeffs(now, nxt)
        x0 = pred.x0
        coef = nxt.alpha * one_minus_exp
        # Float coefficients and in-place updates of the one new tensor: three passes over x
        # instead of six (the step is memory-bound for large batches).
        x = state.x * ratio
        prev = state.history
        if isinstance(prev, Output) and nxt.sigma > 0 and not (self.euler_at_final and run.is_last):
            # Second-order multistep correction from the previous data prediction:
            # D = (1 + c) x0 - c x0_prev with c = 1 / (2r).
            c = 0.5 / (0.5 * (now.logsnr - prev.logsnr) / h)
            x.add_(x0, alpha=coef * (1.0 + c)).sub_(prev.x0, alpha=coef * c)
        else:
            x.add_(x0, alpha=coef)
        return state.replace(x=x, history=Output(now.logsnr, x0))


def check_multistep_nfe(solver: Solver, nfe: int, steps: int) -> int:
    """``steps`` unless they are too few for a multistep solver to reach its order (it needs
    ``order`` steps: the first ones start with lower orders)."""
    if steps < solver.order:
        raise UserError(
            f"nfe={nfe} is too small for solver {solver.name!r} of order {solver.order}: it needs "
            f"at least {solver.nfe_for_steps(solver.order)} model evaluations ({solver.order} "
            f"steps); use a lower-order solver or a larger nfe"
        )
    return steps


def multistep_order(
    max_order: int, n_previous: int, nxt: Node, run: Run, lower_order_final: bool
) -> int:
    """The order of one multistep step: limited by the history (warm-up), 1 for the final step
    to sigma = 0 (h is infinite there), and with ``lower_order_final`` on grids of fewer than 15
    steps, 1 for the last step and at most 2 for the one before (diffusers' rule for DPM-Solver)."""
    order = min(max_order, n_previous + 1)
    if nxt.sigma == 0.0:
        return 1
    if lower_order_final and run.n_steps < 15:
        order = min(order, run.n_steps - run.index)
    return order


@register
@dataclass(frozen=True)
class DPMSolverPP3M(Solver):
    """DPM-Solver++(3M) (Lu et al. 2022b): multistep, third order, data prediction.

    The exact step is x' = (sigma' / sigma) x + alpha' int_0^h e^{tau - h} x0(lambda + tau) dtau
    (eq. 9). With the Taylor expansion x0(lambda + tau) = m0 + tau x0' + tau^2 / 2 x0'' + ..., the
    integrals of the terms are phi1 = 1 - e^{-h}, h - phi1 and h^2 / 2 - h + phi1, and with
    r0 = h_0 / h, r1 = h_1 / h (h_0, h_1 the previous two steps) and the data predictions
    m0, m1, m2 (newest first) the divided differences of diffusers'
    ``multistep_dpm_solver_third_order_update`` estimate h x0' and h^2 x0'' / 2:

        D1_0 = (m0 - m1) / r0,  D1_1 = (m1 - m2) / r1
        D1 = D1_0 + r0 / (r0 + r1) (D1_0 - D1_1) = h x0' + O(h^3)
        D2 = (D1_0 - D1_1) / (r0 + r1) = h^2 x0'' / 2 + O(h^3)
        x' = (sigma' / sigma) x + alpha' (phi1 m0 - phi2 D1 - 2 phi3 D2)

    with phi2 = phi1 / h - 1 and phi3 = (h - phi1) / h^2 - 1/2, which is exact for x0 quadratic
    in lambda (local error O(h^4)). Note: diffusers, k-diffusion (``sample_dpmpp_3m_sde``,
    eta = 0) and the reference dpm-solver code use ``- phi3 D2``, half the Taylor coefficient,
    which leaves an O(h^3) local error: their "3M" converges with order 2 (measured in
    tests/solvers); this solver is theirs with that coefficient doubled.

    The first step is first order and the second second order (warm-up), the final step to
    sigma = 0 is first order (h is infinite there: x' = x0), and with ``lower_order_final``
    (default) grids of fewer than 15 steps end with orders 2 and 1, as in diffusers.
    """

    name: ClassVar[str] = "dpmpp_3m"
    lower_order_final: bool = option(
        True, help="orders 2 and 1 for the last steps of grids under 15 steps", check=boolean
    )
    euler_at_final: bool = option(
        False,
        help="first order for the last step on any grid (diffusers' euler_at_final; matters "
        "where the grid ends above sigma = 0)",
        check=boolean,
    )

    @property
    def order(self) -> int:
        return 3

    def steps_for_nfe(self, nfe: int) -> int:
        return check_multistep_nfe(self, nfe, super().steps_for_nfe(nfe))

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        ratio, phi1, h = exp_integrator_coeffs(now, nxt)
        m0 = pred.x0
        previous = state.history.outputs if isinstance(state.history, Multistep) else ()
        history = (*previous, Output(now.logsnr, m0))[-3:]
        kept = Multistep(history[-2:])
        order = multistep_order(3, len(previous), nxt, run, self.lower_order_final)
        if self.euler_at_final and run.is_last:
            order = 1
        x = ratio * state.x + (nxt.alpha * phi1) * m0
        if order == 1:
            return state.replace(x=x, history=kept)
        # Divided difference of the data prediction in lambda = logsnr / 2.
        logsnr0, logsnr1, m1 = now.logsnr, history[-2].logsnr, history[-2].x0
        r0 = 0.5 * (logsnr0 - logsnr1) / h
        d1_0 = (m0 - m1) / r0
        if order == 2:
            # Second-order (midpoint) update, as DPM-Solver++(2M).
            return state.replace(x=x + (nxt.alpha * 0.5 * phi1) * d1_0, history=kept)
        # Second divided difference from the step before: third-order update.
        logsnr2, m2 = history[-3].logsnr, history[-3].x0
        r1 = 0.5 * (logsnr1 - logsnr2) / h
        d1_1 = (m1 - m2) / r1
        d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        phi1_h = -math.expm1(-h)  # = phi1, from h so that the differences below stay accurate
        phi2 = phi1_h / h - 1.0
        phi3 = (h - phi1_h) / h**2 - 0.5
        x = x - (nxt.alpha * phi2) * d1 - (nxt.alpha * 2.0 * phi3) * d2
        return state.replace(x=x, history=kept)
