"""DPM-Solver++ SDE samplers with Brownian-tree noise: DPM++ SDE (k-diffusion
``sample_dpmpp_sde``, A1111 "DPM++ SDE", diffusers ``DPMSolverSDEScheduler``), DPM++ 2M SDE
(``sample_dpmpp_2m_sde``) and DPM++ 3M SDE (``sample_dpmpp_3m_sde``).

They draw their noise as increments of one Brownian path per sample over path time t
(:class:`~interpolant.solvers.brownian.BrownianTree` on the run's seed and sample numbers): the
noise of sample i over [t, t'] is a function of (seed, i, t, t') only, so a finer grid refines
the same path, as k-diffusion's ``BrownianTreeNoiseSampler`` (which is built over sigma; on the
EDM path t = sigma / sigma_max and the two give the same joint law of the increments).

They work in EDM coordinates x_edm = x / alpha, s = sigma / alpha, lambda = -log s (k-diffusion's
t), and map back as x' = alpha' x_edm'; the final step to s' = 0 returns x0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..configurable import number, one_of, option
from ..predictions import Prediction
from .ancestral import TwoStageAncestral, ancestral_step
from .base import (
    History,
    Multistep,
    Node,
    Output,
    Run,
    Solver,
    State,
    exp_integrator_coeffs,
    register,
)
from .brownian import STREAM, BrownianTree
from .ode import at_source


def brownian_tree(run: Run, like: Tensor, memo: BrownianMemo | None = None) -> BrownianTree:
    """The run's per-sample Brownian paths (stream ``"brownian"`` of its seed and rows), with
    the value at the previous step's end carried over in ``memo``."""
    tree = BrownianTree.like(run.streams_for(STREAM), like)
    if memo is not None:
        tree.remember(memo.t, memo.w)
    return tree


@dataclass(frozen=True)
class BrownianMemo(History):
    """W(t) at the end of the last step (a cache: W is a function of (seed, row, t), so it is
    not per-sample: after resampling, row r still follows its own path)."""

    t: float = 0.0
    w: Tensor | None = None


@dataclass(frozen=True)
class BrownianMultistep(Multistep):
    """:class:`Multistep` outputs with the Brownian cache of the last step."""

    memo: BrownianMemo | None = None


@register
@dataclass(frozen=True)
class DPMSolverPPSDE(TwoStageAncestral):
    """DPM++ SDE (k-diffusion ``sample_dpmpp_sde``): a singlestep second-order stochastic
    DPM-Solver++ step through an intermediate level lambda_r = lambda + r h (h = lambda' -
    lambda), each stage an ancestral move (``ancestral_step``: s_down, s_up) with Brownian
    noise. With D(x, s) the data prediction and z_{a,b} the normalised Brownian increment:

        stage 1: (d1, u1) = ancestral_step(s, s_r, eta),
                 x_r = (d1 / s) x_edm + (1 - d1 / s) D(x_edm, s) + u1 z_{t, t_r}
        stage 2: (d2, u2) = ancestral_step(s, s', eta),  f = 1 / (2 r),
                 D_r = (1 - f) D(x_edm, s) + f D(x_r, s_r)
                 x_edm' = (d2 / s) x_edm + (1 - d2 / s) D_r + u2 z_{t, t'}

    (both moves are exponential-integrator moves, -expm1(lambda - lambda_down) = 1 - d / s).
    eta = 0 is the deterministic DPM-Solver++(2S) with r. N steps cost 2N - 1 evaluations (the
    last, to s' = 0, returns x0); a step from alpha = 0 (s infinite, flow paths) is a first-order
    ancestral step x_edm' = x0 + d2 eps + u2 z (one evaluation).
    """

    name: ClassVar[str] = "dpmpp_sde"
    eta: float = option(1.0, help="ancestral noise (0: deterministic DPM-Solver++(2S))",
                        check=number(0))  # fmt: skip
    s_noise: float = option(1.0, help="scale of the fresh noise", check=number(0))
    r: float = option(0.5, help="position of the intermediate level in lambda",
                      check=number(0, 1, open_lo=True, open_hi=True))  # fmt: skip

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        s, s_next = now.edm_sigma, nxt.edm_sigma
        if s_next == 0.0:
            # Denoising step.
            return state.replace(x=nxt.alpha * pred.x0, history=None)
        memo = state.history if isinstance(state.history, BrownianMemo) else None
        tree = brownian_tree(run, state.x, memo)
        kept = BrownianMemo(nxt.t)
        if at_source(now):
            # From alpha = 0: a first-order ancestral step (the level lambda_r is -inf too).
            down, up = ancestral_step(s, s_next, self.eta)
            x_edm = pred.x0 + down * pred.eps
            if up > 0:
                x_edm = x_edm + (self.s_noise * up) * tree.normal(now.t, nxt.t)
            return state.replace(x=nxt.alpha * x_edm, history=kept.replace(w=tree.known(nxt.t)))
        x_edm, x0 = state.x / now.alpha, pred.x0
        lam, lam_next = -math.log(s), -math.log(s_next)
        s_r = math.exp(-(lam + self.r * (lam_next - lam)))
        mid = _node_at_edm_sigma(run, s_r)
        # Stage 1: ancestral move to s_r.
        down, up = ancestral_step(s, s_r, self.eta)
        x_r = (down / s) * x_edm + (1.0 - down / s) * x0
        if up > 0:
            x_r = x_r + (self.s_noise * up) * tree.normal(now.t, mid.t)
        x0_r = run.evaluate(mid.alpha * x_r, mid).x0
        # Stage 2: ancestral move to s' with the combined data prediction.
        fac = 0.5 / self.r
        x0_d = (1.0 - fac) * x0 + fac * x0_r
        down, up = ancestral_step(s, s_next, self.eta)
        x_edm = (down / s) * x_edm + (1.0 - down / s) * x0_d
        if up > 0:
            x_edm = x_edm + (self.s_noise * up) * tree.normal(now.t, nxt.t)
        return state.replace(x=nxt.alpha * x_edm, history=kept.replace(w=tree.known(nxt.t)))


def _node_at_edm_sigma(run: Run, s: float) -> Node:
    from .base import node_at

    t = float(run.path.t_of_edm_sigma(torch.tensor(s, dtype=torch.float64)))
    return node_at(run.path, min(t, 1.0))


THIRD_ORDER = ("taylor", "k-diffusion")


NOISE_KINDS = ("brownian", "independent")


def noise_option() -> Any:
    """The ``noise`` option of the multistep SDE solvers."""
    return option(
        "brownian",
        help="'brownian' (one Brownian path per sample) or 'independent' normals per step",
        check=one_of(*NOISE_KINDS),
    )


def sde_noise(
    run: Run, x: Tensor, now: Node, nxt: Node, kind: str, memo: BrownianMemo | None
) -> tuple[Tensor, BrownianMemo | None]:
    """The normalised noise z of the step now -> nxt and the Brownian cache to keep: an increment
    of the run's per-sample Brownian paths (k-diffusion's default noise sampler for its SDE
    samplers) or, for ``"independent"``, a fresh draw of the run's noise streams."""
    if kind == "independent":
        return run.noise(x), None
    tree = brownian_tree(run, x, memo)
    return tree.normal(now.t, nxt.t), BrownianMemo(nxt.t, tree.known(nxt.t))


@register
@dataclass(frozen=True)
class DPMSolverPP3MSDE(Solver):
    """DPM++ 3M SDE (k-diffusion ``sample_dpmpp_3m_sde``), any Gaussian path.

    With h = lambda' - lambda, H = (1 + eta) h, the data predictions m0, m1, m2 (newest first)
    and r0 = h_1 / h, r1 = h_2 / h (the previous two steps):

        x_edm' = e^{-H} x_edm + (1 - e^{-H}) m0 + phi2 D1 + c phi3 D2
                 + s' sqrt(1 - e^{-2 eta h}) s_noise z_{t, t'}
        D1_0 = (m0 - m1) / r0,  D1_1 = (m1 - m2) / r1,
        D1 = D1_0 + r0 / (r0 + r1) (D1_0 - D1_1),  D2 = (D1_0 - D1_1) / (r0 + r1),
        phi2 = expm1(-H) / H + 1,  phi3 = phi2 / H - 1/2,

    with Brownian-tree noise z (``noise="independent"``: fresh normals per step). The integral
    of the quadratic Taylor term is -2 phi3 D2
    (as for :class:`~interpolant.solvers.dpm.DPMSolverPP3M`, now with H = (1 + eta) h), so
    ``third_order="taylor"`` (default) uses c = -2; ``"k-diffusion"`` uses its c = -1, which
    leaves an O(h^3) local error (order 2), for comparisons with the peer. eta = 0 is
    DPM-Solver++(3M). The first step is first order, the second second order; the final step to
    s' = 0 returns x0. Written in path coordinates through ``exp_integrator_coeffs``, so a
    start where alpha = 0 (flow paths) is exact: there e^{-h} = 0.
    """

    name: ClassVar[str] = "dpmpp_3m_sde"
    eta: float = option(1.0, help="noise level (1: the reverse SDE, 0: the 3M ODE solver)",
                        check=number(0))  # fmt: skip
    s_noise: float = option(1.0, help="scale of the fresh noise", check=number(0))
    third_order: str = option(
        "taylor",
        help="coefficient of D2: 'taylor' (order 3) or 'k-diffusion' (theirs, order 2)",
        check=one_of(*THIRD_ORDER),
    )
    noise: str = noise_option()

    @property
    def order(self) -> int:
        return 3 if self.third_order == "taylor" else 2

    @property
    def stochastic(self) -> bool:
        return self.eta > 0 and self.s_noise > 0

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        ratio, one_minus_exp, h = exp_integrator_coeffs(now, nxt)
        m0 = pred.x0
        history = state.history if isinstance(state.history, BrownianMultistep) else None
        previous = history.outputs if history is not None else ()
        kept = BrownianMultistep((*previous, Output(now.logsnr, m0))[-2:])
        if nxt.sigma == 0.0:
            # Denoising step.
            return state.replace(x=nxt.alpha * m0, history=kept)
        exp_mh = 1.0 - one_minus_exp  # e^{-h}, exactly 0 where alpha = 0 at the start
        exp_m_eta_h = exp_mh**self.eta
        x = (ratio * exp_m_eta_h) * state.x + (nxt.alpha * (1.0 - exp_mh * exp_m_eta_h)) * m0
        if previous:
            h_eta = (1.0 + self.eta) * h
            phi2 = math.expm1(-h_eta) / h_eta + 1.0
            m1, h1 = previous[-1].x0, 0.5 * (now.logsnr - previous[-1].logsnr)
            d1_0 = (m0 - m1) / (h1 / h)
            if len(previous) == 1:
                x = x + (nxt.alpha * phi2) * d1_0
            else:
                m2, h2 = previous[-2].x0, 0.5 * (previous[-1].logsnr - previous[-2].logsnr)
                r0, r1 = h1 / h, h2 / h
                d1_1 = (m1 - m2) / r1
                d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi3 = phi2 / h_eta - 0.5
                c = -2.0 if self.third_order == "taylor" else -1.0
                x = x + (nxt.alpha * phi2) * d1 + (nxt.alpha * c * phi3) * d2
        if self.eta > 0 and self.s_noise > 0:
            # Brownian noise of the exact Ornstein-Uhlenbeck part of the step.
            scale = nxt.sigma * math.sqrt(max(-math.expm1(-2.0 * self.eta * h), 0.0))
            memo = None if history is None else history.memo
            z, kept_memo = sde_noise(run, x, now, nxt, self.noise, memo)
            x = x + (self.s_noise * scale) * z
            kept = kept.replace(memo=kept_memo)
        return state.replace(x=x, history=kept)


SOLVER_TYPES = ("midpoint", "heun")


@register
@dataclass(frozen=True)
class DPMSolverPP2MSDE(Solver):
    """DPM-Solver++(2M) SDE (k-diffusion ``sample_dpmpp_2m_sde``), any Gaussian path.

    With h = lambda' - lambda, H = (1 + eta) h, r = h_prev / h, the data predictions m0 (now) and
    m1 (the step before) and z the noise of the step (eta = 1 is the reverse SDE's exponential
    integrator, eta = 0 the 2M ODE solver):

        x_edm' = (s' / s) e^{-eta h} x_edm + (1 - e^{-H}) m0 + c (m0 - m1) / r
                 + s' sqrt(1 - e^{-2 eta h}) s_noise z,
        c = (1 - e^{-H}) / 2                 (``solver_type="midpoint"``, k-diffusion's default),
        c = 1 - (1 - e^{-H}) / H             (``"heun"``),

    mapped back by x' = alpha' x_edm'. The noise is an increment of the run's per-sample Brownian
    path by default, as k-diffusion's ``BrownianTreeNoiseSampler``; ``noise="independent"``
    draws fresh normals per step (its ``default_noise_sampler``). The first step has no
    correction (DDIM(eta = 1) for eta = 1); the final step to sigma = 0 returns x0.
    """

    name: ClassVar[str] = "dpmpp_2m_sde"
    eta: float = option(1.0, help="noise level (1: the reverse SDE, 0: the ODE)", check=number(0))
    s_noise: float = option(1.0, help="scale of the fresh noise", check=number(0))
    solver_type: str = option(
        "midpoint",
        help="second-order correction: 'midpoint' or 'heun'",
        check=one_of(*SOLVER_TYPES),
    )
    noise: str = noise_option()

    @property
    def order(self) -> int:
        return 2

    @property
    def stochastic(self) -> bool:
        return self.eta > 0 and self.s_noise > 0

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        ratio, one_minus_exp, h = exp_integrator_coeffs(now, nxt)
        m0 = pred.x0
        history = state.history if isinstance(state.history, BrownianMultistep) else None
        kept = BrownianMultistep((Output(now.logsnr, m0),))
        if nxt.sigma == 0.0:
            # Denoising step.
            return state.replace(x=nxt.alpha * m0, history=kept)
        exp_mh = 1.0 - one_minus_exp  # e^{-h}, exactly 0 where alpha = 0 at the start
        phi = 1.0 - exp_mh ** (1.0 + self.eta)  # 1 - e^{-H}
        x = (ratio * exp_mh**self.eta) * state.x + (nxt.alpha * phi) * m0
        if history is not None and history.outputs:
            # Second-order correction from the previous data prediction.
            prev = history.outputs[-1]
            r = 0.5 * (now.logsnr - prev.logsnr) / h
            h_eta = (1.0 + self.eta) * h
            c = 0.5 * phi if self.solver_type == "midpoint" else 1.0 - phi / h_eta
            x = x + (nxt.alpha * c / r) * (m0 - prev.x0)
        if self.stochastic:
            # Noise of the exact Ornstein-Uhlenbeck part of the step.
            scale = nxt.sigma * math.sqrt(max(-math.expm1(-2.0 * self.eta * h), 0.0))
            memo = None if history is None else history.memo
            z, kept_memo = sde_noise(run, x, now, nxt, self.noise, memo)
            x = x + (self.s_noise * scale) * z
            kept = kept.replace(memo=kept_memo)
        return state.replace(x=x, history=kept)


__all__ = [
    "BrownianMemo",
    "BrownianMultistep",
    "DPMSolverPP2MSDE",
    "DPMSolverPP3MSDE",
    "DPMSolverPPSDE",
    "brownian_tree",
    "sde_noise",
]
