"""Gaussian paths ``x_t = alpha(t) x0 + sigma(t) eps``; t = 0 is data, t = 1 the source.

Every schedule gives ``alpha, sigma`` and their time derivatives, the log signal-to-noise ratio
``logsnr = log(alpha^2 / sigma^2)`` and its inverse ``t_of_logsnr``. The EDM noise level
``edm_sigma = sigma / alpha = exp(-logsnr / 2)`` is the path-free coordinate that time grids and
foreign models (k-diffusion, EDM, diffusers) use.

Every path is a frozen dataclass on :class:`~interpolant.configurable.Configurable`: its fields
are its options, so ``config()``, ``repr``, ``==`` and ``from_config`` are derived and the
options are validated in one place.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from ..configurable import Configurable
from ..errors import UserError

# logsnr is clamped to this range so that alpha = 0 (t = 1 of some paths) or sigma = 0 (t = 0)
# give large finite values rather than inf; exp(-120) is still representable in float32.
LOGSNR_LIMIT = 120.0


def as_time(t: float | Tensor, like: Tensor | None = None) -> Tensor:
    """``t`` as a float tensor (float64 for Python numbers), validated to lie in [0, 1]."""
    if not isinstance(t, Tensor):
        t = torch.tensor(float(t), dtype=torch.float64)
    elif not t.is_floating_point():
        t = t.to(torch.float64)
    if like is not None and t.device != like.device:
        t = t.to(like.device)
    if t.device.type != "cpu":
        # An asynchronous check: a host-side test would stall the GPU queue at every call.
        torch._assert_async(((t >= 0) & (t <= 1)).all(), "t must lie in [0, 1]")
    elif t.numel() and (bool((t < 0).any()) or bool((t > 1).any())):
        bad = t[(t < 0) | (t > 1)].flatten()[:3].tolist()
        raise UserError(f"t must lie in [0, 1] (t = 0 is data, t = 1 the source); got {bad}")
    return t


def expand_like(c: Tensor | float, x: Tensor) -> Tensor | float:
    """Reshape a per-sample coefficient of shape (B,) to broadcast against x of shape (B, ...)."""
    if isinstance(c, Tensor) and c.ndim == 1 and x.ndim > 1:
        return c.reshape(-1, *([1] * (x.ndim - 1)))
    return c


class GaussianPath(Configurable, ABC):
    """``x_t = alpha(t) x0 + sigma(t) eps`` with eps ~ N(0, I); alpha(0) = 1, sigma(0) = 0.

    Subclasses are ``@dataclass(frozen=True)`` with their options as fields (see
    :mod:`interpolant.configurable`); ``paths.from_config(path.config())`` rebuilds the path.
    """

    name: ClassVar[str] = "gaussian"
    #: True when alpha(t)^2 + sigma(t)^2 = 1 (variance preserving).
    variance_preserving: ClassVar[bool] = False

    @abstractmethod
    def alpha(self, t: Tensor) -> Tensor:
        """Signal scale alpha(t)."""

    @abstractmethod
    def sigma(self, t: Tensor) -> Tensor:
        """Noise scale sigma(t)."""

    @abstractmethod
    def d_alpha(self, t: Tensor) -> Tensor:
        """d alpha / dt."""

    @abstractmethod
    def d_sigma(self, t: Tensor) -> Tensor:
        """d sigma / dt."""

    @abstractmethod
    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        """Inverse of ``logsnr``: the time at which log(alpha^2 / sigma^2) equals ``logsnr``."""

    def logsnr(self, t: Tensor) -> Tensor:
        """log(alpha^2 / sigma^2), clamped to +-LOGSNR_LIMIT at the end points."""
        a, s = self.alpha(t), self.sigma(t)
        tiny = torch.finfo(a.dtype).tiny
        out = 2.0 * (torch.log(a.abs().clamp_min(tiny)) - torch.log(s.abs().clamp_min(tiny)))
        return out.clamp(-LOGSNR_LIMIT, LOGSNR_LIMIT)

    def edm_sigma(self, t: Tensor) -> Tensor:
        """The EDM/k-diffusion noise level sigma / alpha = exp(-logsnr / 2)."""
        return torch.exp(-0.5 * self.logsnr(t))

    def t_of_edm_sigma(self, edm_sigma: Tensor) -> Tensor:
        """Inverse of ``edm_sigma``."""
        return self.t_of_logsnr(-2.0 * torch.log(edm_sigma))

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(alpha, sigma, d_alpha, d_sigma) at t."""
        return self.alpha(t), self.sigma(t), self.d_alpha(t), self.d_sigma(t)

    def noise_like(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A draw of the source variable eps for data x0 (standard Gaussian here)."""
        return torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)

    def sample_xt(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x_t = alpha(t) x0 + sigma(t) eps, with t of shape (B,) or a scalar."""
        t = as_time(t, x0)
        a = expand_like(self.alpha(t).to(x0.dtype), x0)
        s = expand_like(self.sigma(t).to(x0.dtype), x0)
        return a * x0 + s * eps


def softplus(x: Tensor) -> Tensor:
    """log(1 + e^x), stable for large |x|."""
    return torch.nn.functional.softplus(x)


def log_expm1(x: Tensor) -> Tensor:
    """log(e^x - 1) for x > 0, stable for small and large x."""
    return torch.where(x > 20.0, x, torch.log(torch.expm1(x.clamp_min(1e-300))))


PI_2 = math.pi / 2
