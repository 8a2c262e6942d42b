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

:class:`FokkerPlanck` is the penalty as a loss term (``LOSS_TERMS["fokker-planck"]``): it adds
``weight * mean(R^2)`` at collocation points drawn on the path from the batch (the paper draws
them uniformly in a box; drawing them where the data's noised samples lie is what works in any
dimension) to any ``losses.Objective``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.func import grad, jvp

from ..configurable import boolean, number, one_of, option, optional
from ..errors import UserError, WrongTypeError
from ..losses.terms import LOSS_TERMS, LossInputs, LossTerm
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
    net = getattr(model, "net", None)
    if isinstance(net, torch.nn.parallel.DistributedDataParallel):
        net = net.module  # the trainer's DDP wrapper around the potential (same parameters)
    if not isinstance(model, Model) or not isinstance(net, ConservativeScore):
        raise WrongTypeError(
            "the log-density form needs a potential model: Model(ConservativeScore(energy), "
            "path, predicts='score'); use form='score' for any other model"
        )
    check_twice_differentiable(net.energy)
    return net.log_density


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


@LOSS_TERMS.register
@dataclass(frozen=True)
class FokkerPlanck(LossTerm):
    """The Fokker-Planck residual penalty of seed paper 5 as a loss term, ``"fokker-planck"``:

        L = L_DSM + weight * E_{t_c ~ U(t_min, t_max)} [ mean R(x_c, t_c)^2 ],
        x_c = alpha(t_c) x0 + sigma(t_c) eps,

    with R the residual of :func:`fp_residual` (paper eq. 2.6 for ``form="log-density"``, which
    needs a potential model ``Model(ConservativeScore(energy), path, predicts="score")``; the
    score form works for any model; mean over dimensions for it). The collocation points reuse
    the batch's x0 and eps at a fresh time drawn from the objective's generator (so resuming is
    exact); the paper draws them uniformly in a box, the batch's noised points are what works in
    any dimension. ``points`` evaluates the residual on the first rows only (cost control): those
    rows' penalties are scaled by B / points, so the batch mean is the mean over the points.

    ``Objective(path, target="eps", terms=[FokkerPlanck(0.1)])``, or by name in configs:
    ``terms=["fokker-planck:0.1"]``.
    """

    name: ClassVar[str] = "fokker-planck"

    form: str = option("log-density", help="residual form", check=one_of(*FORMS))
    t_min: float = option(1e-2, help="smallest collocation time", check=number(0, 1, open_lo=True))
    t_max: float = option(0.99, help="largest collocation time", check=number(0, 1, open_hi=True))
    exact: bool = option(True, help="exact divergence (else Hutchinson's)", check=boolean)
    n_probes: int = option(1, help="Hutchinson probes", check=number(1, integer=True))
    points: int | None = option(
        None, help="collocation rows per batch (None: all)", check=optional(number(1, integer=True))
    )

    def validate(self) -> None:
        if not self.t_min < self.t_max:
            raise UserError(f"fokker-planck: need t_min < t_max, got {self.t_min}, {self.t_max}")

    def residual_square(self, model: Model, x0: Tensor, eps: Tensor, generator: Any) -> Tensor:
        """mean_j R_j^2 at ``(alpha x0 + sigma eps, t_c)`` per row, t_c ~ U(t_min, t_max)."""
        if not isinstance(model, Model):
            raise WrongTypeError(
                "the fokker-planck term needs the objective to be called with an "
                f"interpolant.Model (its path and network), got {type(model).__name__}"
            )
        device = generator.device if generator is not None else x0.device
        u = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64, device=device)
        t = (self.t_min + (self.t_max - self.t_min) * u).to(device=x0.device, dtype=x0.dtype)
        # Fresh Hutchinson probes every batch, from the same generator (exact on resume).
        seed = 0
        if not self.exact:
            seed = int(torch.randint(2**62, (1,), generator=generator, device=device))
        xc = model.path.sample_xt(x0, t, eps.detach())
        res = fp_residual(
            model, xc, t, self.form, exact=self.exact, n_probes=self.n_probes, seed=seed
        )
        return res.square().reshape(x0.shape[0], -1).mean(1)

    def penalty(self, inputs: LossInputs) -> Tensor:
        batch = inputs.x0.shape[0]
        rows = batch if self.points is None else min(self.points, batch)
        r2 = self.residual_square(
            inputs.model, inputs.x0[:rows], inputs.eps[:rows], inputs.generator
        )
        if rows == batch:
            return r2
        return torch.cat([r2 * (batch / rows), r2.new_zeros(batch - rows)])


__all__ = [
    "FORMS",
    "FokkerPlanck",
    "fp_residual",
    "log_density_residual",
    "model_log_density",
    "model_score",
    "score_residual",
    "sde_coefficients",
]
