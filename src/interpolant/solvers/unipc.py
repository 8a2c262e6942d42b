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
from typing import Any

import torch
from torch import Tensor

from ..predictions import Prediction
from .base import Node, Solver, State, StepContext, exp_integrator_coeffs, register
from .dpm import check_multistep_nfe

#: One earlier data prediction: (logsnr at its node, x0 there).
Output = tuple[float, Tensor]


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
    logsnr0, m0 = outputs[-1]
    # First-order (DDIM) part, written through alpha, sigma so it is exact at the ends.
    base = ratio * x + (nxt.alpha * one_minus_exp) * m0
    earlier = outputs[-order:-1][::-1]  # m_1, m_2, ... (newest first)
    rks = [0.5 * (logsnr_i - logsnr0) / h for logsnr_i, _ in earlier]
    rho, b_h = _rho(h, rks, order, corrector=model_next is not None, variant=variant)
    residual = torch.zeros_like(x)
    for rho_i, rk, (_, m_i) in zip(rho, rks, earlier):
        residual = residual + (rho_i / rk) * (m_i - m0)
    if model_next is not None:
        residual = residual + rho[-1] * (model_next - m0)
    return base - (nxt.alpha * b_h) * residual


@register
class UniPC(Solver):
    """UniPC-p (p = ``order`` in {1, 2, 3}; diffusers' ``solver_order``) with the bh2 B(h);
    matches diffusers 0.42 step for step (tests/solvers/test_solvers_peers.py).

    ``order`` is p, the order of the predictor UniP-p; with the corrector (default) the method
    has order p + 1 (measured on an oracle: 3.0 for p = 2, 3.8 for p = 3), without it p.

    ``history`` is () before the first step, then (x at the start of the last step, the order
    that step used, the last p data predictions as (logsnr, x0) pairs, newest last, the node the
    last step started from): what UniC needs to redo the last step with the new prediction.

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

    name = "unipc"
    order = 2

    def __init__(
        self,
        order: int = 2,
        lower_order_final: bool = True,
        use_corrector: bool = True,
        variant: str = "bh2",
        max_step_ratio: float | None = None,
    ):
        if order not in (1, 2, 3) or isinstance(order, bool):
            raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
        if max_step_ratio is not None and not (
            isinstance(max_step_ratio, float | int)
            and not isinstance(max_step_ratio, bool)
            and math.isfinite(max_step_ratio)
            and max_step_ratio >= 1
        ):
            raise ValueError(
                f"max_step_ratio must be None or a number >= 1, got {max_step_ratio!r}"
            )
        self.max_step_ratio = None if max_step_ratio is None else float(max_step_ratio)
        if variant not in ("bh1", "bh2"):
            raise ValueError(f"variant must be 'bh1' or 'bh2', got {variant!r}")
        self.variant = variant
        for arg, value in (
            ("lower_order_final", lower_order_final),
            ("use_corrector", use_corrector),
        ):
            if not isinstance(value, bool):
                raise ValueError(f"{arg} must be a bool, got {value!r}")
        self.order = order  # type: ignore[misc]
        self.lower_order_final = lower_order_final
        self.use_corrector = use_corrector

    def steps_for_nfe(self, nfe: int) -> int:
        return check_multistep_nfe(self, nfe, super().steps_for_nfe(nfe))

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, ctx: StepContext) -> State:
        x, m_now = state.x, pred.x0
        outputs: tuple[Output, ...] = ()
        if state.history:
            x_prev, order_prev, outputs, prev = state.history
            if self.use_corrector:
                # UniC: correct the last step with the prediction at its result.
                x = _update(x_prev, outputs, prev, now, order_prev, m_now, self.variant)
            if self.max_step_ratio is not None and self._restarts(prev, now, nxt):
                outputs = ()  # a much longer step: extrapolate nothing from before it
        outputs = (*outputs, (now.logsnr, m_now))[-self.order :]
        order = min(self.order, len(outputs))
        if nxt.sigma == 0.0:
            order = 1
        elif self.lower_order_final:
            order = min(order, ctx.n_steps - ctx.index)
        # UniP: predict the next node from the (corrected) x.
        x_next = _update(x, outputs, now, nxt, order, None, self.variant)
        return state.replace(x=x_next, history=(x, order, outputs, now))

    def _restarts(self, prev: Node, now: Node, nxt: Node) -> bool:
        """Whether the step now -> nxt is over max_step_ratio times the step prev -> now."""
        assert self.max_step_ratio is not None
        if nxt.sigma == 0.0:
            return False  # the final step is first order anyway
        h_prev = exp_integrator_coeffs(prev, now)[2]
        return exp_integrator_coeffs(now, nxt)[2] > self.max_step_ratio * h_prev

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "order": self.order,
            "lower_order_final": self.lower_order_final,
            "use_corrector": self.use_corrector,
            "variant": self.variant,
            "max_step_ratio": self.max_step_ratio,
        }
