"""The Gaussian schedules: VP-linear, VP-cosine, VE, EDM, linear (rectified flow), trigonometric.

All use t in [0, 1] with t = 0 data. Each closed form is written once here; everything else
(conversions, solvers, losses, grids) calls these methods. Each path is a frozen dataclass whose
fields are its options (``config()``, ``repr``, ``==`` and ``from_config`` are derived).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..configurable import number, option
from ..errors import UserError
from .base import LOGSNR_LIMIT, PI_2, GaussianPath, softplus


@dataclass(frozen=True)
class VPLinear(GaussianPath):
    """Continuous DDPM ("VP-SDE", Song et al. 2021): beta(t) = beta_min + t (beta_max - beta_min).

    log alpha(t) = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2,  sigma = sqrt(1 - alpha^2).
    ``vp-linear`` is an alias of its name ``vp``.
    """

    name: ClassVar[str] = "vp"
    variance_preserving: ClassVar[bool] = True
    beta_min: float = option(0.1, help="noise rate beta at t = 0", check=number(0))
    beta_max: float = option(20.0, help="noise rate beta at t = 1 (> beta_min)", check=number(0))

    def validate(self) -> None:
        if not self.beta_min < self.beta_max:
            raise UserError(
                f"VPLinear: need beta_min < beta_max, got {self.beta_min}, {self.beta_max}"
            )

    def _log_alpha(self, t: Tensor) -> Tensor:
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def beta(self, t: Tensor) -> Tensor:
        """The instantaneous noise rate beta(t) = -2 d log alpha / dt."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(self._log_alpha(t))

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(2.0 * self._log_alpha(t)))

    def d_alpha(self, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t) * self.alpha(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        # From alpha^2 + sigma^2 = 1: sigma' = -alpha alpha' / sigma.
        s = self.sigma(t)
        return -self.alpha(t) * self.d_alpha(t) / s.clamp_min(torch.finfo(s.dtype).tiny)

    def logsnr(self, t: Tensor) -> Tensor:
        la = self._log_alpha(t)
        tiny = torch.finfo(la.dtype).tiny
        out = 2.0 * la - torch.log((-torch.expm1(2.0 * la)).clamp_min(tiny))
        return out.clamp(-LOGSNR_LIMIT, LOGSNR_LIMIT)

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        # -2 log alpha = softplus(-logsnr) = t^2 (bmax - bmin) / 2 + t bmin; take the positive root.
        # Rationalised root 2c / (b_min + sqrt(b_min^2 + 2 db c)): no cancellation as t -> 0.
        db = self.beta_max - self.beta_min
        c = softplus(-logsnr)
        return 2.0 * c / (self.beta_min + torch.sqrt(self.beta_min**2 + 2.0 * db * c))


@dataclass(frozen=True)
class VPCosine(GaussianPath):
    """Improved-DDPM cosine schedule: alpha(t) = cos(theta(t)) / cos(theta(0)),
    theta(t) = (pi/2) (t + s) / (1 + s); sigma = sqrt(1 - alpha^2). alpha(1) = 0.
    ``vp-cosine`` is an alias of its name ``cosine``."""

    name: ClassVar[str] = "cosine"
    variance_preserving: ClassVar[bool] = True
    s: float = option(0.008, help="the offset s of theta(t)", check=number(0))

    @property
    def theta0(self) -> float:
        """theta(0) = (pi/2) s / (1 + s)."""
        return PI_2 * self.s / (1 + self.s)

    @property
    def cos0(self) -> float:
        """cos(theta(0)), the normaliser of alpha."""
        return math.cos(self.theta0)

    def _theta(self, t: Tensor) -> Tensor:
        return PI_2 * (t + self.s) / (1 + self.s)

    def alpha(self, t: Tensor) -> Tensor:
        # cos(theta) = sin(pi/2 - theta): exact (0) at t = 1 and precise near it.
        return (torch.sin(PI_2 * (1.0 - t) / (1 + self.s)) / self.cos0).clamp(0.0, 1.0)

    def sigma(self, t: Tensor) -> Tensor:
        # 1 - alpha^2 = sin(theta - theta0) sin(theta + theta0) / cos(theta0)^2, written so that
        # it keeps full relative precision as t -> 0 (1 - alpha^2 would cancel).
        theta0 = self.theta0
        delta = (PI_2 / (1 + self.s)) * t.clamp(0.0, 1.0)
        var = torch.sin(delta) * torch.sin(delta + 2 * theta0) / self.cos0**2
        return torch.sqrt(var.clamp(0.0, 1.0))

    def d_alpha(self, t: Tensor) -> Tensor:
        return -torch.sin(self._theta(t)) * (PI_2 / (1 + self.s)) / self.cos0

    def d_sigma(self, t: Tensor) -> Tensor:
        s = self.sigma(t)
        return -self.alpha(t) * self.d_alpha(t) / s.clamp_min(torch.finfo(s.dtype).tiny)

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        # VP: alpha^2 = sigmoid(logsnr); cos(theta) = alpha cos(theta0) and
        # sin(theta)^2 = sin(theta0)^2 + sigma^2 cos(theta0)^2. For small t, delta = theta - theta0
        # solves tan(delta)^2 (cos 2theta0 - c) + tan(delta) sin 2theta0 = c, c = sigma^2 cos^2
        # theta0 (stable root below); for large t the atan2 form is the accurate one.
        theta0, cos0 = self.theta0, self.cos0
        var, alpha = torch.sigmoid(-logsnr), torch.sqrt(torch.sigmoid(logsnr))
        c = var * cos0**2
        b = math.sin(2 * theta0)
        disc = (b * b + 4 * (math.cos(2 * theta0) - c) * c).clamp_min(0.0)
        delta_small = torch.atan(2 * c / (b + torch.sqrt(disc)))
        sin_theta = torch.sqrt(math.sin(theta0) ** 2 + c)
        delta_big = torch.atan2(sin_theta, alpha * cos0) - theta0
        delta = torch.where(logsnr > 0, delta_small, delta_big)
        return (delta * (1 + self.s) / PI_2).clamp(0.0, 1.0)


@dataclass(frozen=True)
class VE(GaussianPath):
    """Variance exploding: alpha = 1, sigma(t) = sigma_min (r^t - 1), r = 1 + sigma_max / sigma_min.

    Geometric like score_sde's VE for large t, but exactly 0 at t = 0 so that t = 0 is data.
    """

    name: ClassVar[str] = "ve"
    sigma_min: float = option(
        0.01, help="the scale sigma_min of sigma(t)", check=number(0, open_lo=True)
    )
    sigma_max: float = option(
        50.0, help="sigma at t = 1 is sigma_max (> sigma_min)", check=number(0, open_lo=True)
    )

    def validate(self) -> None:
        if not self.sigma_min < self.sigma_max:
            raise UserError(
                f"VE: need sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}"
            )

    @property
    def log_r(self) -> float:
        """log r = log(1 + sigma_max / sigma_min)."""
        return math.log1p(self.sigma_max / self.sigma_min)

    def alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.expm1(self.log_r * t)

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * self.log_r * torch.exp(self.log_r * t)

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        return torch.log1p(torch.exp(-0.5 * logsnr) / self.sigma_min) / self.log_r


def edm_sigma_max_option() -> Any:
    """The ``sigma_max`` field of EDM and PFGM++ (sigma(1))."""
    return option(
        80.0, help="sigma at t = 1 (sigma(t) = sigma_max t)", check=number(0, open_lo=True)
    )


@dataclass(frozen=True)
class EDM(GaussianPath):
    """EDM / Karras et al. (2022): alpha = 1, sigma(t) = sigma_max t (Euler in t is Euler in sigma).

    The Karras rho spacing is a time grid (``solvers.grids``), not part of the path.
    """

    name: ClassVar[str] = "edm"
    sigma_max: float = edm_sigma_max_option()

    def alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_max * t

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        return torch.full_like(t, self.sigma_max)

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        return (torch.exp(-0.5 * logsnr) / self.sigma_max).clamp(0.0, 1.0)


@dataclass(frozen=True)
class Linear(GaussianPath):
    """Rectified flow / conditional OT: alpha = 1 - t, sigma = t; velocity = eps - x0.
    ``rectified-flow`` is an alias of its name ``linear``."""

    name: ClassVar[str] = "linear"

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - t

    def sigma(self, t: Tensor) -> Tensor:
        return t

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.full_like(t, -1.0)

    def d_sigma(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        return torch.sigmoid(-0.5 * logsnr)


@dataclass(frozen=True)
class Trig(GaussianPath):
    """Trigonometric: alpha = cos(pi t / 2), sigma = sin(pi t / 2) (variance preserving)."""

    name: ClassVar[str] = "trig"
    variance_preserving: ClassVar[bool] = True

    def alpha(self, t: Tensor) -> Tensor:
        return torch.cos(PI_2 * t)

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sin(PI_2 * t)

    def d_alpha(self, t: Tensor) -> Tensor:
        return -PI_2 * torch.sin(PI_2 * t)

    def d_sigma(self, t: Tensor) -> Tensor:
        return PI_2 * torch.cos(PI_2 * t)

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        return torch.atan(torch.exp(-0.5 * logsnr)) / PI_2
