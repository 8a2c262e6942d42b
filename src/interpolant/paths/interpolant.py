"""Stochastic interpolants (Albergo, Boffi & Vanden-Eijnden 2023, arXiv 2303.08797).

In the one convention (t = 0 data, t = 1 the source)::

    x_t = alpha(t) x0 + beta(t) x1 + gamma(t) z,     z ~ N(0, I) independent of (x0, x1),

with alpha(0) = beta(1) = 1, alpha(1) = beta(0) = 0 and gamma(0) = gamma(1) = 0. ``x0`` is the
data and ``x1`` a second data set (a bridge) or Gaussian noise (one-sided). The paper's fields
are conditional expectations given x_t = x:

* velocity ``b = E[d_alpha x0 + d_beta x1 + d_gamma z | x_t]`` (the probability-flow drift),
* denoiser ``eta_z = E[z | x_t]`` and score ``s = grad log rho_t = -eta_z / gamma``,

each the unique minimiser of a quadratic objective. Generation runs from x1 at t = 1 to t = 0
along the ODE ``dx = b dt`` or the paper's backward SDE ``dx = (b - eps s) dt + sqrt(2 eps) dW``
(integrated backwards in time; see :func:`interpolant.solvers.bridge.sample_bridge`).

:class:`Interpolant` and :class:`OneSided` are frozen dataclasses whose fields are their options
(``config()``, ``repr``, ``==`` and ``from_config`` are derived).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..configurable import Configurable, number, one_of, option
from ..errors import UserError
from .base import GaussianPath, as_time, expand_like

#: Coefficient families for (alpha, beta) and for gamma.
INTERPOLANTS = ("linear", "trig", "encoder-decoder")
GAMMAS = ("brownian", "quadratic", "sin2", "zero")
FIELDS = ("velocity", "eta", "score")

Field = Callable[[Tensor, Tensor], Tensor]


# The options Interpolant and OneSided share, declared once.


def _family_option() -> Any:
    """The (alpha, beta) family."""
    return option(
        "linear",
        help="(alpha, beta) family: linear, trig or encoder-decoder",
        check=one_of(*INTERPOLANTS),
    )


def _gamma_option(default: str) -> Any:
    """The gamma family (its default differs: brownian for bridges, zero for one-sided)."""
    return option(
        default, help="gamma family: brownian, quadratic, sin2 or zero", check=one_of(*GAMMAS)
    )


def _scale_option() -> Any:
    """The scale a of gamma."""
    return option(1.0, help="the scale a of gamma", check=number(0, open_lo=True))


@dataclass(frozen=True)
class Interpolant(Configurable):
    """``x_t = alpha(t) x0 + beta(t) x1 + gamma(t) z`` with named coefficient families.

    Args:
        interpolant: ``"linear"`` (alpha = 1 - t, beta = t), ``"trig"`` (alpha = cos(pi t / 2),
            beta = sin(pi t / 2)) or ``"encoder-decoder"`` (alpha = cos^2(pi t) for t < 1/2,
            beta = cos^2(pi t) for t > 1/2, both 0 elsewhere; the paper's encoder-decoder example).
        gamma_kind: ``"brownian"`` sqrt(a t (1 - t)), ``"quadratic"`` a t (1 - t), ``"sin2"``
            a sin^2(pi t) or ``"zero"`` (a deterministic interpolant). (Not ``gamma``: that is
            the coefficient gamma(t); configs written with a ``gamma`` key still load.)
        a: the scale of gamma.

    ``d_gamma`` is infinite at t = 0, 1 for the Brownian gamma; ``gamma_d_gamma`` (gamma times
    gamma', i.e. (gamma^2)' / 2) is finite everywhere and is what the fields need.
    """

    name: ClassVar[str] = "interpolant"
    interpolant: str = _family_option()
    gamma_kind: str = _gamma_option("brownian")
    a: float = _scale_option()

    def validate(self) -> None:
        if self.interpolant == "encoder-decoder" and self.gamma_kind == "zero":
            raise UserError("the encoder-decoder interpolant needs gamma != 'zero' (x_1/2 = 0)")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Interpolant:
        """The interpolant ``config()`` describes (an older ``gamma`` key reads as
        ``gamma_kind``)."""
        values = dict(config)
        if "gamma" in values:
            values["gamma_kind"] = values.pop("gamma")
        return super().from_config(values)

    # Coefficients -------------------------------------------------------------------------

    def alpha(self, t: Tensor) -> Tensor:
        """Weight of the data x0."""
        if self.interpolant == "linear":
            return 1.0 - t
        if self.interpolant == "trig":
            return torch.sin(0.5 * math.pi * (1.0 - t))  # = cos(pi t / 2), exactly 0 at t = 1
        return torch.where(t < 0.5, torch.cos(math.pi * t) ** 2, torch.zeros_like(t))

    def beta(self, t: Tensor) -> Tensor:
        """Weight of the second endpoint x1."""
        if self.interpolant == "linear":
            return t
        if self.interpolant == "trig":
            return torch.sin(0.5 * math.pi * t)
        return torch.where(t > 0.5, torch.cos(math.pi * t) ** 2, torch.zeros_like(t))

    def d_alpha(self, t: Tensor) -> Tensor:
        if self.interpolant == "linear":
            return torch.full_like(t, -1.0)
        if self.interpolant == "trig":
            return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)
        return torch.where(t < 0.5, -math.pi * torch.sin(2 * math.pi * t), torch.zeros_like(t))

    def d_beta(self, t: Tensor) -> Tensor:
        if self.interpolant == "linear":
            return torch.ones_like(t)
        if self.interpolant == "trig":
            return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)
        return torch.where(t > 0.5, -math.pi * torch.sin(2 * math.pi * t), torch.zeros_like(t))

    def gamma(self, t: Tensor) -> Tensor:
        """Scale of the latent noise z; 0 at both ends."""
        a, kind = self.a, self.gamma_kind
        if kind == "brownian":
            return torch.sqrt((a * t * (1.0 - t)).clamp_min(0.0))
        if kind == "quadratic":
            return a * t * (1.0 - t)
        if kind == "sin2":
            # sin(pi t) = sin(pi (1 - t)); the nearer end keeps gamma(1) = 0 exactly.
            return a * torch.sin(math.pi * torch.minimum(t, 1.0 - t)) ** 2
        return torch.zeros_like(t)

    def d_gamma(self, t: Tensor) -> Tensor:
        """gamma'(t) (infinite at the ends for the Brownian gamma)."""
        a, kind = self.a, self.gamma_kind
        if kind == "brownian":
            return 0.5 * a * (1.0 - 2.0 * t) / self.gamma(t)
        if kind == "quadratic":
            return a * (1.0 - 2.0 * t)
        if kind == "sin2":
            return a * math.pi * torch.sin(2 * math.pi * t)
        return torch.zeros_like(t)

    def gamma_d_gamma(self, t: Tensor) -> Tensor:
        """gamma gamma' = (gamma^2)' / 2, finite at the ends for every family."""
        if self.gamma_kind == "brownian":
            return 0.5 * self.a * (1.0 - 2.0 * t)
        return self.gamma(t) * self.d_gamma(t)

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(alpha, beta, gamma, d_alpha, d_beta, d_gamma) at t."""
        return (
            self.alpha(t),
            self.beta(t),
            self.gamma(t),
            self.d_alpha(t),
            self.d_beta(t),
            self.d_gamma(t),
        )

    def _at(self, t: Tensor | float, like: Tensor) -> list[Tensor | float]:
        """The six coefficients at t, broadcast against ``like`` (t scalar or of shape (B,))."""
        tt = as_time(t, like).to(torch.float64)
        return [expand_like(c.to(like.dtype), like) for c in self.coefficients(tt)]

    # Training quantities --------------------------------------------------------------------

    def sample_xt(self, x0: Tensor, x1: Tensor, t: Tensor | float, z: Tensor) -> Tensor:
        """x_t = alpha x0 + beta x1 + gamma z."""
        a, b, g, _, _, _ = self._at(t, x0)
        return a * x0 + b * x1 + g * z

    def antithetic(
        self, x0: Tensor, x1: Tensor, t: Tensor | float, z: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The antithetic pair x_t^{+-} = alpha x0 + beta x1 +- gamma z."""
        a, b, g, _, _, _ = self._at(t, x0)
        mean = a * x0 + b * x1
        return mean + g * z, mean - g * z

    def velocity_target(self, x0: Tensor, x1: Tensor, t: Tensor | float, z: Tensor) -> Tensor:
        """d/dt I + gamma' z = d_alpha x0 + d_beta x1 + d_gamma z, the regression target of b."""
        _, _, _, da, db, dg = self._at(t, x0)
        return da * x0 + db * x1 + dg * z

    def score_from_eta(self, eta: Tensor, x: Tensor, t: Tensor | float) -> Tensor:
        """s = -eta_z / gamma; undefined where gamma = 0."""
        g = self._at(t, x)[2]
        return -eta / g

    def objective(
        self,
        field: str,
        fn: Field,
        x0: Tensor,
        x1: Tensor,
        t: Tensor,
        z: Tensor,
        antithetic: bool = False,
    ) -> Tensor:
        """Per-sample loss of the paper's quadratic objectives for ``fn(x_t, t)``.

        * velocity: 1/2 |b|^2 - (d_alpha x0 + d_beta x1 + d_gamma z) . b
        * eta:      1/2 |eta|^2 - z . eta
        * score:    1/2 |s|^2 + z . s / gamma

        Each equals 1/2 |fn - target|^2 minus a term free of fn, so its minimiser is the
        conditional expectation of the target. ``antithetic=True`` averages the terms at
        x_t^+ (with z) and x_t^- (with -z): an unbiased estimate of the same expectation, whose
        z / gamma terms no longer blow up as gamma -> 0 (the score) or gamma' -> inf (velocity).
        Sample t inside (0, 1): at the ends 1 / gamma (and the Brownian gamma') are infinite.
        """
        if field not in FIELDS:
            raise UserError(f"field must be one of {FIELDS}, got {field!r}")
        if not isinstance(t, Tensor) or t.ndim != 1 or t.shape[0] != x0.shape[0]:
            raise UserError(f"t must be a tensor of shape ({x0.shape[0]},), one time per sample")
        a, b, g, da, db, dg = self._at(t, x0)
        drift = da * x0 + db * x1
        mean = a * x0 + b * x1

        def term(sign: float) -> Tensor:
            out = fn(mean + sign * g * z, t)
            if out.shape != x0.shape:
                raise UserError(f"fn returned shape {tuple(out.shape)}, expected {tuple(x0.shape)}")
            if field == "velocity":
                linear = (drift + sign * dg * z) * out
            elif field == "eta":
                linear = sign * z * out
            else:
                linear = -sign * z * out / g
            return (0.5 * out * out - linear).flatten(1).sum(1)

        if not antithetic:
            return term(1.0)
        return 0.5 * (term(1.0) + term(-1.0))

    # One-sided interpolants are Gaussian paths -----------------------------------------------

    def gaussian_path(self) -> OneSided:
        """The one-sided interpolant (x1 ~ N(0, I)) as a :class:`GaussianPath`:
        sigma = sqrt(beta^2 + gamma^2), so every Gaussian-path solver and conversion applies."""
        return OneSided(self.interpolant, self.gamma_kind, self.a)


@dataclass(frozen=True)
class OneSided(GaussianPath):
    """A one-sided interpolant ``x_t = alpha x0 + beta x1 + gamma z`` with x1 ~ N(0, I).

    beta x1 + gamma z is N(0, (beta^2 + gamma^2) I), so this is the Gaussian path alpha(t),
    sigma(t) = sqrt(beta^2 + gamma^2), and the interpolant's velocity b equals the path's
    probability-flow velocity. ``t_of_logsnr`` inverts the logSNR by bisection. ``interp`` is
    the :class:`Interpolant` it is made of.
    """

    name: ClassVar[str] = "one-sided"
    interpolant: str = _family_option()
    gamma: str = _gamma_option("zero")
    a: float = _scale_option()
    interp: Interpolant = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "interp", Interpolant(self.interpolant, self.gamma, self.a))
        super().__post_init__()

    def validate(self) -> None:
        t = torch.linspace(1e-3, 0.999, 999, dtype=torch.float64)
        if not bool((self.logsnr(t).diff() < 0).all()):
            raise UserError(
                f"the logSNR of {self.interp!r} is not strictly decreasing (for encoder-decoder "
                "alpha = 0 on [1/2, 1]), so it is no Gaussian path; use Interpolant directly"
            )

    def alpha(self, t: Tensor) -> Tensor:
        return self.interp.alpha(t)

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(self.interp.beta(t) ** 2 + self.interp.gamma(t) ** 2)

    def d_alpha(self, t: Tensor) -> Tensor:
        return self.interp.d_alpha(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        # sigma' = (beta beta' + gamma gamma') / sigma; where sigma = 0 (t = 0) its limit is
        # sqrt(beta'^2 + gamma'^2), as beta, gamma ~ (beta', gamma') t there.
        i, s = self.interp, self.sigma(t)
        num = i.beta(t) * i.d_beta(t) + i.gamma_d_gamma(t)
        at_zero = torch.sqrt(i.d_beta(t) ** 2 + i.d_gamma(t) ** 2)
        return torch.where(s > 0, num / s.clamp_min(torch.finfo(s.dtype).tiny), at_zero)

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        # Bisection on the decreasing logsnr(t): 60 halvings reach float64 resolution.
        lo = torch.zeros_like(logsnr, dtype=torch.float64)
        hi = torch.ones_like(lo)
        target = logsnr.to(torch.float64)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            above = self.logsnr(mid) > target
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return (0.5 * (lo + hi)).to(logsnr.dtype)


class GaussianEndpoints:
    """Exact fields for Gaussian endpoints x0 ~ N(m0, S0), x1 ~ N(m1, S1), independent.

    x_t is Gaussian with mean m_t = alpha m0 + beta m1 and covariance
    S_t = alpha^2 S0 + beta^2 S1 + gamma^2 I; the target T = d_alpha x0 + d_beta x1 + d_gamma z
    has Cov(T, x_t) = C_t = alpha alpha' S0 + beta beta' S1 + gamma gamma' I (= S_t' / 2), so

        b(x) = m_t' + C_t S_t^{-1} (x - m_t),  eta_z(x) = gamma S_t^{-1} (x - m_t),
        s(x) = -S_t^{-1} (x - m_t).

    Everything in float64; t is a scalar or has shape (B,).
    """

    def __init__(self, interpolant: Interpolant, m0: Tensor, s0: Tensor, m1: Tensor, s1: Tensor):
        self.interp = interpolant
        self.m0, self.m1 = (torch.as_tensor(m, dtype=torch.float64) for m in (m0, m1))
        self.s0, self.s1 = (torch.as_tensor(s, dtype=torch.float64) for s in (s0, s1))
        d = self.m0.shape[0]
        if self.m0.shape != (d,) or self.m1.shape != (d,):
            raise UserError("m0 and m1 must be vectors of one length d")
        if self.s0.shape != (d, d) or self.s1.shape != (d, d):
            raise UserError(f"s0 and s1 must be covariance matrices of shape {(d, d)}")

    def _moments(self, t: Tensor | float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(m_t, m_t', S_t, C_t, gamma) with a leading batch axis (size 1 for a scalar t)."""
        tt = as_time(t).to(torch.float64).reshape(-1)
        i = self.interp
        a, b, g, da, db, _ = (c[:, None, None] for c in i.coefficients(tt))
        gdg = i.gamma_d_gamma(tt)[:, None, None]
        eye = torch.eye(self.m0.shape[0], dtype=torch.float64)
        mean = a[..., 0] * self.m0 + b[..., 0] * self.m1
        d_mean = da[..., 0] * self.m0 + db[..., 0] * self.m1
        cov = a**2 * self.s0 + b**2 * self.s1 + g**2 * eye
        cross = a * da * self.s0 + b * db * self.s1 + gdg * eye
        return mean, d_mean, cov, cross, g[:, 0, 0]

    def marginal(self, t: float) -> tuple[Tensor, Tensor]:
        """Mean and covariance of x_t."""
        mean, _, cov, _, _ = self._moments(t)
        return mean[0], cov[0]

    def _whitened(self, x: Tensor, t: Tensor | float) -> tuple[Tensor, tuple[Tensor, ...]]:
        parts = self._moments(t)
        resid = x.to(torch.float64) - parts[0]
        return torch.linalg.solve(parts[2], resid.unsqueeze(-1)).squeeze(-1), parts

    def velocity(self, x: Tensor, t: Tensor | float) -> Tensor:
        """b(t, x) = E[d_alpha x0 + d_beta x1 + d_gamma z | x_t = x]."""
        w, (_, d_mean, _, cross, _) = self._whitened(x, t)
        return d_mean + (cross @ w.unsqueeze(-1)).squeeze(-1)

    def eta(self, x: Tensor, t: Tensor | float) -> Tensor:
        """eta_z(t, x) = E[z | x_t = x]."""
        w, parts = self._whitened(x, t)
        return parts[4][:, None] * w

    def score(self, x: Tensor, t: Tensor | float) -> Tensor:
        """grad log rho_t(x)."""
        return -self._whitened(x, t)[0]
