"""Fokker-Planck residuals of learned scores and log-densities (seed paper 5, Deveney et al.).

A Gaussian path ``x_t = alpha x0 + sigma eps`` is the marginal law of the forward SDE
``dX = f(t) X dt + g(t) dW`` with

    f = alpha' / alpha,    g^2 = 2 sigma sigma' - 2 f sigma^2 = d(sigma^2)/dt - 2 f sigma^2,

so its log-density ``u = log p_t`` solves the log-form Fokker-Planck equation (paper eq. 2.6)

    d_t u = -D f - f x . grad u + g^2 / 2 (lap u + |grad u|^2),

and its score ``s = grad u`` the score form (Lai et al. 2023)

    d_t s = grad_x [ g^2 / 2 (div s + |s|^2) - f x . s ].

The residuals below are the left side minus the right side: zero for an exact density or score
on any Gaussian path (tested to 1e-5 on a Gaussian and a mixture). Time derivatives are JVPs in
t, spatial derivatives ``torch.func`` products (``analysis.derivatives``); the divergence is exact
or Hutchinson's estimate. The paper's bound: W2 between the ODE's and the SDE's samples is at most
a (Gronwall-amplified) time integral of the residual's norm, so penalising it closes the gap.

:class:`FokkerPlanckRegularized` wraps any training objective and adds ``weight * mean(R^2)`` at
collocation points drawn on the path from the batch (the paper draws them uniformly in a box;
drawing them where the data's noised samples lie is what works in any dimension).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.func import grad, jvp

from ..errors import UserError, WrongTypeError
from ..paths import GaussianPath
from ..predictions import Model
from .derivatives import EXACT_MAX_DIM, divergence, hutchinson_divergence
from .potential import ConservativeScore, check_twice_differentiable

#: log_density(x (B, D), t (B,)) -> (B,)
LogDensity = Callable[[Tensor, Tensor], Tensor]
#: score(x (B, D), t (B,)) -> (B, D)
ScoreFn = Callable[[Tensor, Tensor], Tensor]

FORMS = ("score", "log-density")


def sde_coefficients(path: GaussianPath, t: Tensor) -> tuple[Tensor, Tensor]:
    """(f(t), g(t)^2) of the forward SDE whose marginals are the path's (module docstring)."""
    a, s, da, ds = path.coefficients(t)
    if bool((a <= 0).any()):
        raise UserError("the forward SDE needs alpha(t) > 0; keep t below the path's end")
    f = da / a
    return f, 2 * s * ds - 2 * f * s * s


def _time(t: float | Tensor, x: Tensor) -> Tensor:
    tt = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    tt = tt.expand(x.shape[0]).clone() if tt.ndim == 0 else tt
    if tt.shape != (x.shape[0],):
        raise UserError(f"t must be a number or have shape ({x.shape[0]},), got {tuple(tt.shape)}")
    if bool(((tt <= 0) | (tt >= 1)).any()):
        raise UserError("Fokker-Planck residuals are defined for 0 < t < 1 (sigma > 0, alpha > 0)")
    return tt


def _div(fn: Callable[[Tensor], Tensor], x: Tensor, exact: bool, n_probes: int, seed: int):
    if exact:
        return divergence(fn, x, EXACT_MAX_DIM)
    return hutchinson_divergence(fn, x, n_probes, seed)


def log_density_residual(
    log_density: LogDensity,
    x: Tensor,
    t: float | Tensor,
    path: GaussianPath,
    *,
    exact: bool = True,
    n_probes: int = 1,
    seed: int = 0,
) -> Tensor:
    """``R = d_t u + D f + f x . grad u - g^2/2 (lap u + |grad u|^2)`` per sample (B,).

    ``log_density`` must be the normalised log p_t (a time-dependent constant c(t) adds c'(t)).
    The Laplacian is exact (D <= ``EXACT_MAX_DIM``) or Hutchinson's estimate (``exact=False``).
    """
    if isinstance(log_density, ConservativeScore):
        check_twice_differentiable(log_density.energy)
    tt = _time(t, x)
    f, g2 = (c.to(x.dtype) for c in sde_coefficients(path, tt))
    u_t = jvp(lambda s: log_density(x, s), (tt,), (torch.ones_like(tt),))[1]

    def score(y: Tensor) -> Tensor:
        return grad(lambda z: log_density(z, tt).sum())(y)

    s = score(x)
    lap = _div(score, x, exact, n_probes, seed)
    dim = x.shape[1]
    return u_t + dim * f + f * (x * s).sum(1) - 0.5 * g2 * (lap + s.square().sum(1))


def score_residual(
    score: ScoreFn,
    x: Tensor,
    t: float | Tensor,
    path: GaussianPath,
    *,
    exact: bool = True,
    n_probes: int = 1,
    seed: int = 0,
) -> Tensor:
    """``r = d_t s - grad_x [g^2/2 (div s + |s|^2) - f x . s]`` per sample (B, D)."""
    tt = _time(t, x)
    f, g2 = (c.to(x.dtype) for c in sde_coefficients(path, tt))
    s_t = jvp(lambda r: score(x, r), (tt,), (torch.ones_like(tt),))[1]

    def potential(y: Tensor) -> Tensor:
        sy = score(y, tt)
        div = _div(lambda z: score(z, tt), y, exact, n_probes, seed)
        return (0.5 * g2 * (div + sy.square().sum(1)) - f * (y * sy).sum(1)).sum()

    return s_t - grad(potential)(x)


def model_score(model: Model, **cond: Any) -> ScoreFn:
    """A model's score as a function of (x, t) (any prediction kind, converted on the path)."""
    if not isinstance(model, Model):
        raise WrongTypeError(f"model must be an interpolant.Model, got {type(model).__name__}")
    return lambda x, t: model(x, t, **cond).score


def model_log_density(model: Model) -> LogDensity:
    """The log-density ``-E`` of a model whose network is a :class:`ConservativeScore`."""
    if not isinstance(model, Model) or not isinstance(model.net, ConservativeScore):
        raise WrongTypeError(
            "the log-density form needs a potential model: Model(ConservativeScore(energy), "
            "path, predicts='score'); use form='score' for any other model"
        )
    check_twice_differentiable(model.net.energy)
    return model.net.log_density


def fp_residual(
    model: Model,
    x: Tensor,
    t: float | Tensor,
    form: str = "score",
    *,
    exact: bool = True,
    n_probes: int = 1,
    seed: int = 0,
) -> Tensor:
    """The Fokker-Planck residual of ``model`` at (x, t): (B,) for ``form="log-density"``
    (potential models), (B, D) for ``form="score"`` (any model)."""
    if form not in FORMS:
        raise UserError(f"form must be one of {FORMS}, got {form!r}")
    flat = x.reshape(x.shape[0], -1)
    if form == "log-density":
        fn = model_log_density(model)
        return log_density_residual(
            fn, flat, t, model.path, exact=exact, n_probes=n_probes, seed=seed
        )
    if isinstance(model.net, torch.nn.Module):
        check_twice_differentiable(model.net, "the score-form residual (grad of div s)")
    score = model_score(model)

    def flat_score(y: Tensor, r: Tensor) -> Tensor:
        return score(y.reshape(x.shape), r).reshape(y.shape)

    return score_residual(
        flat_score, flat, t, model.path, exact=exact, n_probes=n_probes, seed=seed
    )


class FokkerPlanckRegularized:
    """A training objective plus ``weight * mean(R^2)``, the Fokker-Planck residual's square at
    collocation points ``x_t = alpha x0 + sigma eps`` of the batch, ``t ~ U(t_min, t_max)``
    (drawn from the trainer's generator, so resuming is exact).

    Fits ``train.trainer.Objective``: ``FokkerPlanckRegularized(Objective(path, "score"), 1.0)``.
    ``form="log-density"`` (paper 5) needs a potential model; ``"score"`` works for any model.
    ``points`` limits the collocation points to the first rows of the batch (cost control).
    """

    def __init__(
        self,
        objective: Any,
        weight: float = 1.0,
        form: str = "log-density",
        t_min: float = 1e-2,
        t_max: float = 0.99,
        exact: bool = True,
        n_probes: int = 1,
        points: int | None = None,
    ) -> None:
        if not callable(getattr(objective, "loss", None)):
            raise WrongTypeError(
                f"objective needs a loss(model, x0, ...) method, got {objective!r}"
            )
        if not weight >= 0:
            raise UserError(f"weight must be >= 0, got {weight}")
        if form not in FORMS:
            raise UserError(f"form must be one of {FORMS}, got {form!r}")
        if not 0 < t_min < t_max < 1:
            raise UserError(f"need 0 < t_min < t_max < 1, got {t_min}, {t_max}")
        if points is not None and points < 1:
            raise UserError(f"points must be >= 1, got {points}")
        self.objective, self.weight, self.form = objective, float(weight), form
        self.t_min, self.t_max, self.exact, self.n_probes = t_min, t_max, exact, n_probes
        self.points = points
        self.integer_data = bool(getattr(objective, "integer_data", False))

    def residual_loss(self, model: Model, x0: Tensor, generator: torch.Generator | None) -> Tensor:
        """mean(R^2) at collocation points built from ``x0`` (per dimension for the score form)."""
        rows = x0[: self.points] if self.points else x0
        t = self.t_min + (self.t_max - self.t_min) * torch.rand(
            rows.shape[0], generator=generator, dtype=torch.float64
        ).to(rows.device)
        eps = torch.randn(rows.shape, generator=generator, dtype=torch.float64).to(rows.device)
        xt = model.path.sample_xt(rows.to(torch.float64), t, eps).to(rows.dtype)
        res = fp_residual(
            model, xt, t.to(rows.dtype), self.form, exact=self.exact, n_probes=self.n_probes
        )
        return res.square().mean()

    def loss(
        self,
        model: Any,
        x0: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        base = self.objective.loss(model, x0, generator=generator, cond=cond)
        if self.weight == 0:
            return base
        return base + self.weight * self.residual_loss(model, x0, generator)

    __call__ = loss

    def end_step(self) -> None:
        if hasattr(self.objective, "end_step"):
            self.objective.end_step()

    def state(self) -> dict[str, Tensor]:
        return dict(self.objective.state()) if hasattr(self.objective, "state") else {}

    def load_state(self, state: dict[str, Tensor]) -> None:
        if hasattr(self.objective, "load_state"):
            self.objective.load_state(state)


__all__ = [
    "FORMS",
    "FokkerPlanckRegularized",
    "fp_residual",
    "log_density_residual",
    "model_log_density",
    "model_score",
    "score_residual",
    "sde_coefficients",
]
