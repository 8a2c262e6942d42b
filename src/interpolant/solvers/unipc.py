"""UniPC (Zhao et al. 2023): the unified predictor UniP-p and corrector UniC-p, data prediction,
B(h) = e^h - 1 ("bh2"), as diffusers' ``UniPCMultistepScheduler`` (predict_x0=True).

In lambda = logsnr / 2, with h = lambda' - lambda_0, the data predictions m_i at earlier nodes
(r_i = (lambda_i - lambda_0) / h < 0, D_i = (m_i - m_0) / r_i) and B(h) = e^{-h} - 1 (the paper's
B(h) for the data prediction, whose h_hat = -h):

    UniP-p:  x' = (sigma' / sigma_0) x - alpha' (e^{-h} - 1) m_0 - alpha' B(h) sum_i rho_i D_i
    UniC-p:  x'_c = (same first two terms) - alpha' B(h) (sum_i rho^c_i D_i + rho^c_p (m' - m_0))

(Zhao et al. 2023, Alg. 1-2 and eq. 8), where m' is the model's data prediction at the
predictor's x'. The rho solve ``R rho = b`` with R_kj = r_j^(k-1) and
b_k = h_hat phi_{k+1}(h_hat) k! / B(h) (phi the exponential-integrator functions); UniP-2 uses
rho = 1/2 and UniC-1 rho^c = 1/2 (the paper's simplifications, as in diffusers).

The corrector needs m' = the model at x', which the loop evaluates anyway at the start of the
next step: so each step first corrects the previous step's result with the prediction it is
given (UniC), then predicts from the corrected x with that same prediction (UniP) - the model
is never evaluated at the corrected point, so UniPC-p costs one evaluation per step and, by the
paper's Theorem 3.3, has order p + 1. The final step's result is not corrected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..configurable import boolean, number, one_of, option, optional
from ..predictions import Prediction
from .base import History, Node, Output, Run, Solver, State, exp_integrator_coeffs, register
from .dpm import check_multistep_nfe


@dataclass(frozen=True)
class UniPCHistory(History):
    """What UniC needs to redo the last step: the x it started from, the order it used, the
    last p data predictions (newest last) and the node it started from."""

    per_sample: ClassVar[tuple[str, ...]] = ("x", "outputs")
    x: Tensor
    order: int
    outputs: tuple[Output, ...]
    node: Node


def _rho(
    h: float, rks: list[float], order: int, corrector: bool, variant: str = "bh2"
) -> tuple[list[float], float]:
    """The UniP (``corrector=False``) or UniC coefficients rho and B(h) for one step.

    ``rks`` are r_i = (lambda_i - lambda_0) / h of the order - 1 earlier outputs; UniC has one
    more coefficient, for the new output (m' - m_0). ``variant`` picks B(h): "bh2" is
    e^{h_hat} - 1, "bh1" is h_hat (Zhao et al. 2023, sec. 3.3; both keep the order).
    """
    hh = -h  # h_hat: the data-prediction form integrates in -lambda
    h_phi_1 = math.expm1(hh)  # h_hat phi_1(h_hat) = e^{h_hat} - 1
    b_h = h_phi_1 if variant == "bh2" else hh
    h_phi_k = h_phi_1 / hh - 1.0  # h_hat phi_2(h_hat), then the next phi_k by recursion
    factorial = 1
    b = []
    for i in range(1, order + 1):
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    r = torch.tensor([*rks, 1.0], dtype=torch.float64)
    big_r = torch.stack([r ** (k - 1) for k in range(1, order + 1)])
    b_vec = torch.tensor(b, dtype=torch.float64)
    if corrector:
        rho = [0.5] if order == 1 else torch.linalg.solve(big_r, b_vec).tolist()
    elif order == 1:
        rho = []
    elif order == 2:
        rho = [0.5]
    else:
        rho = torch.linalg.solve(big_r[:-1, :-1], b_vec[:-1]).tolist()
    return rho, b_h


def _update(
    x: Tensor,
    outputs: tuple[Output, ...],
    now: Node,
    nxt: Node,
    order: int,
    model_next: Tensor | None,
    variant: str = "bh2",
) -> Tensor:
    """UniP-order from (x, now) to nxt (``model_next`` None) or UniC-order (``model_next`` the
    data prediction at nxt at the predictor's result); ``outputs[-1]`` is the prediction at now."""
    ratio, one_minus_exp, h = exp_integrator_coeffs(now, nxt)
    logsnr0, m0 = outputs[-1].logsnr, outputs[-1].x0
    # First-order (DDIM) part, written through alpha, sigma so it is exact at the ends.
    base = ratio * x + (nxt.alpha * one_minus_exp) * m0
    earlier = outputs[-order:-1][::-1]  # m_1, m_2, ... (newest first)
    rks = [0.5 * (out.logsnr - logsnr0) / h for out in earlier]
    rho, b_h = _rho(h, rks, order, corrector=model_next is not None, variant=variant)
    residual = torch.zeros_like(x)
    for rho_i, rk, out in zip(rho, rks, earlier):
        residual = residual + (rho_i / rk) * (out.x0 - m0)
    if model_next is not None:
        residual = residual + rho[-1] * (model_next - m0)
    return base - (nxt.alpha * b_h) * residual


@register
@dataclass(frozen=True)
class UniPC(Solver):
    """UniPC-p (p = ``order`` in {1, 2, 3}; diffusers' ``solver_order``) with the bh2 B(h);
    matches diffusers 0.42 step for step (tests/solvers/test_solvers_peers.py).

    ``order`` is p, the order of the predictor UniP-p; with the corrector (default) the method
    has order p + 1 (measured on an oracle: 3.0 for p = 2, 3.8 for p = 3), without it p.

    ``history`` is None before the first step, then a :class:`UniPCHistory`: what UniC needs
    to redo the last step with the new prediction.

    Warm-up: step k uses order min(p, k + 1). With ``lower_order_final`` (default, as diffusers)
    the order is also at most the number of steps left, so the last step is first order; the
    final step to sigma = 0 is always first order (h is infinite there: x' = x0).

    ``max_step_ratio`` (default None: off, as diffusers): a step more than this many times
    longer in lambda than the one before restarts the history, so its predictor is first order
    (its corrector UniC-1 still uses the new prediction). Extrapolating the earlier data
    predictions over such a step multiplies their differences by ~h / h_prev, and x0 is not a
    polynomial in lambda over long spans (it saturates as sigma -> 0); searched few-step grids
    that jump from the mode decision straight to a small noise level need this (measured in
    ``benchmarks/sampler_oracle.py``).
    """

    name: ClassVar[str] = "unipc"
    order: int = option(2, help="p, the order of the predictor UniP-p", check=one_of(1, 2, 3))
    lower_order_final: bool = option(
        True, help="at most the steps left as the order (last step first order)", check=boolean
    )
    use_corrector: bool = option(True, help="UniC after every step but the last", check=boolean)
    variant: str = option("bh2", help="B(h): bh2 = e^h - 1, bh1 = h", check=one_of("bh1", "bh2"))
    max_step_ratio: float | None = option(
        None,
        help="restart the history before a step this many times longer (None: off)",
        check=optional(number(1)),
    )
    euler_at_final: bool = option(
        False,
        help="first order for the last step on any grid (diffusers' euler_at_final; matters "
        "where the grid ends above sigma = 0)",
        check=boolean,
    )

    def steps_for_nfe(self, nfe: int) -> int:
        return check_multistep_nfe(self, nfe, super().steps_for_nfe(nfe))

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        x, m_now = state.x, pred.x0
        outputs: tuple[Output, ...] = ()
        last = state.history
        if isinstance(last, UniPCHistory):
            outputs = last.outputs
            if self.use_corrector:
                # UniC: correct the last step with the prediction at its result.
                x = _update(last.x, outputs, last.node, now, last.order, m_now, self.variant)
            if self.max_step_ratio is not None and self._restarts(last.node, now, nxt):
                outputs = ()  # a much longer step: extrapolate nothing from before it
        outputs = (*outputs, Output(now.logsnr, m_now))[-self.order :]
        order = min(self.order, len(outputs))
        if nxt.sigma == 0.0:
            order = 1
        elif self.lower_order_final:
            order = min(order, run.n_steps - run.index)
        if self.euler_at_final and run.is_last:
            order = 1
        # UniP: predict the next node from the (corrected) x.
        x_next = _update(x, outputs, now, nxt, order, None, self.variant)
        return state.replace(x=x_next, history=UniPCHistory(x, order, outputs, now))

    def _restarts(self, prev: Node, now: Node, nxt: Node) -> bool:
        """Whether the step now -> nxt is over max_step_ratio times the step prev -> now."""
        assert self.max_step_ratio is not None
        if nxt.sigma == 0.0:
            return False  # the final step is first order anyway
        h_prev = exp_integrator_coeffs(prev, now)[2]
        return exp_integrator_coeffs(now, nxt)[2] > self.max_step_ratio * h_prev
