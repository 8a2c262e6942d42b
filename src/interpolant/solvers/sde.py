"""Stochastic samplers in the path's time t: Euler-Maruyama for the marginal-preserving reverse
SDEs (Albergo et al. 2023) and the predictor-corrector sampler (Song et al. 2021).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..configurable import number, number_or_callable, one_of, option, optional
from ..errors import UserError
from ..predictions import Prediction
from .base import Node, Run, Solver, State, get_solver, register

Schedule = float | Callable[[float], float]


@register
@dataclass(frozen=True)
class SDEEuler(Solver):
    """Euler-Maruyama on the reverse SDEs that keep the marginals of the path
    (Albergo et al. 2023, sec. 2: the backward SDE, run from t = 1 to t = 0):

        dX = (u - eps(t) s) dt + sqrt(2 eps(t)) dW,   i.e. from t to t - dt:
        X <- X - (u - eps(t) s) dt + sqrt(2 eps(t) dt) z

    with u = ``pred.velocity`` and s = ``pred.score`` read separately, so that a prediction with
    decoupled fields (``Prediction.override(velocity=...)``: separately learned b and s) is used
    as given. ``eps`` >= 0 is a float or a callable of t; eps = 0 is the probability-flow ODE and
    this solver is then :class:`~interpolant.solvers.ode.Euler` exactly. ``g`` (a float or a
    callable) is the same choice in RBF's parametrisation (Kim et al. 2025): eps = g^2 / 2.

    Near t = 1 where alpha = 0 (Linear, Trig) the score -eps_hat / sigma is finite for x0, eps
    and velocity models alike (sigma > 0 there). The final step to t = 0 (sigma = 0, where the
    score blows up) is the noise-free probability-flow Euler step X - u dt; on paths whose
    alpha and sigma are linear in t (Linear, EDM) that is exactly Tweedie's x0_hat.

    Explicit EM is stable only while eps dt is below about twice the smallest variance of p_t;
    near the data that variance is small, so use fine grids or an eps(t) that vanishes at t = 0.
    """

    name: ClassVar[str] = "sde_euler"
    eps: Schedule | None = option(
        None,
        help="diffusion eps(t) >= 0, a number or a callable (default 1)",
        check=optional(number_or_callable(0.0)),
    )
    g: Schedule | None = option(
        None,
        help="RBF's g(t) instead of eps (eps = g^2 / 2)",
        check=optional(number_or_callable(0.0)),
    )

    def __post_init__(self) -> None:
        if self.eps is None and self.g is None:
            object.__setattr__(self, "eps", 1.0)
        super().__post_init__()

    def validate(self) -> None:
        if self.eps is not None and self.g is not None:
            raise UserError("SDEEuler: give eps= or g= (eps = g^2 / 2), not both")

    @property
    def stochastic(self) -> bool:
        value = self.eps if self.g is None else self.g
        return callable(value) or bool(value)

    def eps_at(self, t: float) -> float:
        """eps(t) (from g(t) when g is given), checked to be a finite number >= 0."""
        if self.g is not None:
            g = float(self.g(t)) if callable(self.g) else float(self.g)
            value = 0.5 * g * g
        else:
            value = float(self.eps(t)) if callable(self.eps) else float(self.eps or 0.0)
        if not (math.isfinite(value) and value >= 0):
            raise UserError(f"eps(t) must be a finite number >= 0, got eps({t}) = {value}")
        return value

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        dt = now.t - nxt.t
        eps = 0.0 if nxt.sigma == 0.0 else self.eps_at(now.t)
        if eps == 0.0:
            # Probability-flow Euler step (and the deterministic final step to t = 0).
            return state.replace(x=state.x - dt * pred.velocity)
        # Euler-Maruyama step of the backward SDE.
        drift = pred.velocity - eps * pred.score
        x = state.x - dt * drift + math.sqrt(2.0 * eps * dt) * run.noise(state.x)
        return state.replace(x=x)


def _per_sample_norm(v: Tensor) -> Tensor:
    """Euclidean norm of each sample, shaped to broadcast against v."""
    return torch.linalg.vector_norm(v.reshape(v.shape[0], -1), dim=1).reshape(
        -1, *([1] * (v.ndim - 1))
    )


CORRECTORS = ("langevin", "ald")


def langevin_move(x: Tensor, step_size: Tensor | float, drift: Tensor, z: Tensor) -> Tensor:
    """One Langevin step ``x + e drift + sqrt(2 e) z`` (e a float or per-sample tensor)."""
    if isinstance(step_size, Tensor):
        return x + step_size * drift + torch.sqrt(2.0 * step_size) * z
    return x + step_size * drift + math.sqrt(2.0 * step_size) * z


@register
@dataclass(frozen=True)
class PredictorCorrector(Solver):
    """Predictor-corrector sampling (Song et al. 2021, Alg. 1 and App. G; score_sde's
    ``pc_sampler``): one predictor step, then ``n_corrector`` Langevin steps at the new node,

        x <- x + e s(x) + sqrt(2 e) z,   z ~ N(0, I), s the score (one model evaluation each)

    with the step size e of score_sde's correctors, ``a`` their alpha-scaling:

    * ``"langevin"`` (``LangevinCorrector``, default): e = 2 a (snr ||z|| / ||s(x)||)^2.
    * ``"ald"`` (``AnnealedLangevinDynamics``): e = 2 a (snr sigma(t))^2, the same in expectation
      where the score is noise-dominated (||s|| ~ ||z|| / sigma), but independent of x.

    ``a`` is the one-step signal retention (alpha(t_prev) / alpha(t))^2 of the step just taken:
    score_sde's ``sde.alphas = 1 - beta_i`` for VP, 1 on VE/EDM paths.

    Departures from score_sde, both for per-sample independence: the norms are per sample
    (score_sde averages them over the batch, which couples the samples), and the corrector runs
    after the predictor at the new node (score_sde corrects at a node, then predicts: the same
    chain shifted by one node). With per-sample norms the "langevin" step size depends on x, so
    it no longer leaves p_t exactly invariant as the step shrinks: negligible in high dimension,
    where ||z|| and ||s(x)|| concentrate, but in 2-D (a three-mode mixture, snr 0.16) it moves
    the mode weights by ~0.1 (sliced W2 1.3 against 0.07 for "ald"); use "ald" in low dimension.
    The result of the final step is not corrected, so N steps cost N + n_corrector (N - 1)
    evaluations.

    The default predictor is DDIM with eta = 1, i.e. ancestral sampling (score_sde's
    ``AncestralSamplingPredictor``), exact in distribution per step for an exact x0 on any
    Gaussian path; any registered first-order single-evaluation solver may replace it
    (``"euler"``, ``"sde_euler"`` = score_sde's reverse-diffusion predictor with a chosen eps,
    ``"ddim"`` with another eta).
    """

    name: ClassVar[str] = "pc"
    predictor: Solver = option("ddim", help="a first-order one-evaluation solver (name/config)")
    predictor_options: dict[str, Any] | None = option(
        None, help="options of a predictor given by name (ddim: eta = 1 by default)"
    )
    n_corrector: int = option(1, help="Langevin steps per level", check=number(0, integer=True))
    snr: float = option(
        0.16, help="the corrector's signal-to-noise ratio", check=number(0, open_lo=True)
    )
    corrector: str = option("langevin", help="step-size rule", check=one_of(*CORRECTORS))

    def __post_init__(self) -> None:
        options = self.predictor_options
        if self.predictor == "ddim" and options is None:
            options = {"eta": 1.0}
        if not isinstance(self.predictor, Solver):
            object.__setattr__(self, "predictor", get_solver(self.predictor, **(options or {})))
        elif options:
            raise UserError("predictor_options are only used with a predictor name")
        object.__setattr__(self, "predictor_options", None)
        super().__post_init__()

    def validate(self) -> None:
        p = self.predictor
        if isinstance(p, PredictorCorrector) or p.order != 1 or p.evals_per_step != 1:
            raise UserError(
                f"predictor must be a first-order solver with one evaluation per step, got {p!r}"
            )

    @property
    def evals_per_step(self) -> int:
        return 1 + self.n_corrector

    @property
    def stochastic(self) -> bool:
        return self.n_corrector > 0 or self.predictor.stochastic

    def nfe_for_steps(self, steps: int) -> int:
        return steps + self.n_corrector * (steps - 1)

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        # Predictor step.
        state = self.predictor.step(state, pred, now, nxt, run)
        if run.is_last or nxt.sigma == 0.0:
            return state
        x = state.x
        retention = (now.alpha / nxt.alpha) ** 2
        for _ in range(self.n_corrector):
            # Langevin corrector step at the new node.
            score = run.evaluate(x, nxt).score
            z = run.noise(x)
            x = langevin_move(x, self.corrector_step_size(score, z, nxt, retention), score, z)
        return state.replace(x=x)

    def corrector_step_size(
        self, score: Tensor, z: Tensor, node: Node, retention: float
    ) -> Tensor | float:
        """The Langevin step size e at ``node`` (per sample for "langevin", see the class doc)."""
        if self.corrector == "langevin":
            ratio = _per_sample_norm(z) / _per_sample_norm(score).clamp_min(1e-30)
            return 2.0 * retention * (self.snr * ratio) ** 2
        return 2.0 * retention * (self.snr * node.sigma) ** 2
