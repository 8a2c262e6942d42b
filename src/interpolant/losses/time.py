"""Time samplers: the density pi(t) from which training draws t (t = 0 data, t = 1 source).

A time sampler only decides *where* the loss is evaluated; the weighting (``losses.weights``)
decides *how much* each t counts. The two are interchangeable in expectation,
``E_{t~pi}[L(t)] = E_{t~U}[pi(t) L(t)]`` (Esser et al. 2024, sec. 3.1), but not in variance, and
mixing them up is a known source of bugs (diffusers issues #8534, #9056). Every sampler here
draws in float64 (so t never rounds onto an end point in float32) and gives its density
``pdf(t)`` on [0, 1]. Samplers are frozen dataclasses whose fields are their options (``config()``,
``repr``, ``==`` and ``from_config`` derived; ``TIME_SAMPLERS`` builds one from a name or config).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..configurable import Configurable, Registry, number, option
from ..errors import UserError, WrongTypeError
from ..paths import GaussianPath
from ..paths import from_config as path_from_config
from ..paths.nodes import shift_time


def _uniform(n: int, generator: torch.Generator | None) -> Tensor:
    """n draws of U[0, 1) in float64 on the generator's device (CPU without one)."""
    if n < 0:
        raise UserError(f"n must be >= 0, got {n}")
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(n, generator=generator, dtype=torch.float64, device=device)


def _normal(n: int, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(n, generator=generator, dtype=torch.float64, device=device)


def _normal_pdf(z: Tensor) -> Tensor:
    return torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)


class TimeSampler(Configurable, ABC):
    """A distribution of training times on [0, 1]: ``sample`` draws, ``pdf`` is its density."""

    name: ClassVar[str] = "time"

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """n times in [0, 1] (float64), drawn with ``generator`` and moved to ``device``."""
        t = self._draw(n, generator)
        return t if device is None else t.to(device)

    @abstractmethod
    def _draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        """n float64 draws on the generator's device."""

    @abstractmethod
    def pdf(self, t: Tensor) -> Tensor:
        """The density pi(t) of the drawn times (its continuous part, for clamped samplers)."""

    def with_path(self, path: GaussianPath) -> TimeSampler:
        """This sampler for ``path`` (only noise-level samplers depend on the path)."""
        return self


@dataclass(frozen=True)
class Uniform(TimeSampler):
    """t ~ U[t_min, t_max]."""

    name: ClassVar[str] = "uniform"
    t_min: float = option(0.0, help="lowest time", check=number(0, 1))
    t_max: float = option(1.0, help="highest time (> t_min)", check=number(0, 1))

    def validate(self) -> None:
        if not self.t_min < self.t_max:
            raise UserError(
                f"Uniform: need t_min < t_max, got t_min={self.t_min}, t_max={self.t_max}"
            )

    def _draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        return self.t_min + (self.t_max - self.t_min) * _uniform(n, generator)

    def pdf(self, t: Tensor) -> Tensor:
        inside = (t >= self.t_min) & (t <= self.t_max)
        return inside.to(torch.float64) / (self.t_max - self.t_min)


@dataclass(frozen=True)
class LogitNormal(TimeSampler):
    """t = sigmoid(m + s z), z ~ N(0, 1) (SD3's ``lognorm(m, s)``, Esser et al. 2024, sec. 3.1):

    pi(t) = 1 / (s sqrt(2 pi)) / (t (1 - t)) exp(-(logit t - m)^2 / (2 s^2)).

    SD3 also has t = 1 as noise, so m > 0 favours the noisy end in both conventions.
    """

    name: ClassVar[str] = "logit-normal"
    m: float = option(0.0, help="mean of logit t", check=number())
    s: float = option(1.0, help="standard deviation of logit t", check=number(0, open_lo=True))

    def _draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        return torch.sigmoid(self.m + self.s * _normal(n, generator))

    def pdf(self, t: Tensor) -> Tensor:
        t = t.to(torch.float64)
        inside = (t > 0) & (t < 1)
        tc = t.clamp(1e-300, 1 - 1e-16)
        z = (torch.log(tc) - torch.log1p(-tc) - self.m) / self.s
        return torch.where(inside, _normal_pdf(z) / (self.s * tc * (1 - tc)), torch.zeros_like(t))


@dataclass(frozen=True)
class EDMLogNormal(TimeSampler):
    """EDM's training noise levels (Karras et al. 2022, Table 1): ln sigma ~ N(P_mean, P_std^2)
    with sigma the EDM noise level sigma / alpha, mapped to t by ``path.t_of_edm_sigma`` and
    clamped into [0, 1] (noise levels beyond the path's range land on t = 1).

    The path may be left out here (None); :class:`~interpolant.losses.Objective` fills in its
    own. A config dict for ``path`` is read with ``paths.from_config``.
    ``pdf`` is the density of the unclamped part: N(ln sigma(t)) |d ln sigma / dt|, with
    d ln sigma / dt = sigma'/sigma - alpha'/alpha.
    """

    name: ClassVar[str] = "edm-log-normal"
    P_mean: float = option(-1.2, help="mean of ln sigma", check=number())
    P_std: float = option(1.2, help="standard deviation of ln sigma", check=number(0, open_lo=True))
    path: GaussianPath | None = option(
        None, help="the path that maps sigma to t (None: the objective's)"
    )

    def __post_init__(self) -> None:
        if isinstance(self.path, Mapping):
            object.__setattr__(self, "path", path_from_config(self.path))
        super().__post_init__()

    def validate(self) -> None:
        if self.path is not None and not isinstance(self.path, GaussianPath):
            raise WrongTypeError(
                f"EDMLogNormal: path must be a GaussianPath or None, got {type(self.path).__name__}"
            )

    def _require_path(self) -> GaussianPath:
        if self.path is None:
            raise UserError(
                "EDMLogNormal needs a path to map sigma to t: pass path= or use it in an Objective"
            )
        return self.path

    def with_path(self, path: GaussianPath) -> TimeSampler:
        if self.path is not None and self.path != path:
            raise UserError(f"this EDMLogNormal maps sigma on {self.path!r}, not on {path!r}")
        return self.replace(path=path)

    def _draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        path = self._require_path()
        edm_sigma = torch.exp(self.P_mean + self.P_std * _normal(n, generator))
        return path.t_of_edm_sigma(edm_sigma).clamp(0.0, 1.0)

    def pdf(self, t: Tensor) -> Tensor:
        path = self._require_path()
        t = t.to(torch.float64)
        a, s, da, ds = path.coefficients(t)
        d_log_sigma = ds / s - da / a  # d ln(sigma / alpha) / dt
        z = (torch.log(path.edm_sigma(t)) - self.P_mean) / self.P_std
        density = _normal_pdf(z) / self.P_std * d_log_sigma.abs()
        # At sigma = 0 or alpha = 0 the log-normal density vanishes faster than 1/sigma grows.
        return torch.where((a > 0) & (s > 0), density, torch.zeros_like(density))


def _monotone_mode(value: Any) -> str | None:
    """Mode's s in [-1, 2 / (pi - 2)], where f is monotone."""
    message = number(-1.0, 2.0 / (math.pi - 2.0))(value)
    return None if message is None else f"{message} (where f is monotone)"


@dataclass(frozen=True)
class Mode(TimeSampler):
    """SD3's mode sampling with heavy tails (Esser et al. 2024, sec. 3.1), u ~ U(0, 1):

    t = f(u) = 1 - u - s (cos^2(pi u / 2) - 1 + u),   s in [-1, 2 / (pi - 2)].

    f is decreasing there, so pi(t) = 1 / |f'(f^{-1}(t))| with f'(u) = -1 - s + s (pi/2) sin(pi u).
    s = 0 is uniform; s > 0 concentrates t around 1/2.
    """

    name: ClassVar[str] = "mode"
    s: float = option(1.29, help="the scale s (0: uniform)", check=_monotone_mode)

    def _f(self, u: Tensor) -> Tensor:
        return 1 - u - self.s * (torch.cos(0.5 * math.pi * u) ** 2 - 1 + u)

    def _draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        return self._f(_uniform(n, generator)).clamp(0.0, 1.0)

    def _slope(self, u: Tensor) -> Tensor:
        return -1 - self.s + self.s * 0.5 * math.pi * torch.sin(math.pi * u)

    def pdf(self, t: Tensor) -> Tensor:
        t = t.to(torch.float64)
        lo, hi = torch.zeros_like(t), torch.ones_like(t)
        for _ in range(12):  # bisection for f(u) = t (f decreases from 1 to 0) ...
            mid = 0.5 * (lo + hi)
            above = self._f(mid) > t
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        u = 0.5 * (lo + hi)
        for _ in range(3):  # ... then Newton, quadratic from |u - u*| < 2^-13
            u = (u - (self._f(u) - t) / self._slope(u)).clamp(0.0, 1.0)
        inside = (t >= 0) & (t <= 1)
        return torch.where(inside, 1.0 / self._slope(u).abs(), torch.zeros_like(t))


@dataclass(frozen=True)
class CosMap(TimeSampler):
    """SD3's CosMap (Esser et al. 2024, sec. 3.1): t = 1 - 1 / (tan(pi u / 2) + 1), u ~ U(0, 1),
    so that logsnr on the linear path is that of the cosine schedule;
    pi(t) = 2 / (pi (1 - 2t + 2t^2))."""

    name: ClassVar[str] = "cosmap"

    def _draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        u = _uniform(n, generator)
        return 1 - 1 / (torch.tan(0.5 * math.pi * u) + 1)

    def pdf(self, t: Tensor) -> Tensor:
        t = t.to(torch.float64)
        inside = (t >= 0) & (t <= 1)
        density = 2.0 / (math.pi * (1 - 2 * t + 2 * t**2))
        return torch.where(inside, density, torch.zeros_like(t))


@dataclass(frozen=True)
class Shift(TimeSampler):
    """SD3's resolution-dependent shift applied to another sampler (Esser et al. 2024):
    t_m = alpha t_n / (1 + (alpha - 1) t_n) with t_n from ``base``; alpha > 1 moves t toward the
    source (alpha = sqrt(m / n) for m pixels instead of n, see :meth:`resolution_alpha`).

    pi(t_m) = pi_base(t_n) alpha / (alpha - (alpha - 1) t_m)^2, t_n = shift_time(t_m, 1 / alpha).
    ``base`` may be given as its config dict.
    """

    name: ClassVar[str] = "shift"
    base: TimeSampler = option(help="the sampler whose times are shifted (object or config)")
    alpha: float = option(3.0, help="the shift alpha (1: none)", check=number(0, open_lo=True))

    def __post_init__(self) -> None:
        if isinstance(self.base, Mapping):
            object.__setattr__(self, "base", time_from_config(self.base))
        super().__post_init__()

    def validate(self) -> None:
        if not isinstance(self.base, TimeSampler):
            raise WrongTypeError(
                f"Shift: base must be a TimeSampler, got {type(self.base).__name__}"
            )

    @staticmethod
    def resolution_alpha(pixels: int, base_pixels: int) -> float:
        """SD3's shift for ``pixels`` when the schedule was tuned at ``base_pixels``: sqrt(m/n)."""
        if pixels <= 0 or base_pixels <= 0:
            raise UserError(f"pixel counts must be > 0, got {pixels}, {base_pixels}")
        return math.sqrt(pixels / base_pixels)

    def with_path(self, path: GaussianPath) -> TimeSampler:
        return self.replace(base=self.base.with_path(path))

    def _draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        return shift_time(self.base._draw(n, generator), self.alpha)

    def pdf(self, t: Tensor) -> Tensor:
        t = t.to(torch.float64)
        t_base = shift_time(t, 1.0 / self.alpha)
        return self.base.pdf(t_base) * self.alpha / (self.alpha - (self.alpha - 1) * t) ** 2


#: Registry of time samplers by name.
TIME_SAMPLERS: Registry[TimeSampler] = Registry("time sampler", TimeSampler)
for _cls in (Uniform, LogitNormal, EDMLogNormal, Mode, CosMap, Shift):
    TIME_SAMPLERS.register(_cls)


def time_from_config(config: Mapping[str, Any]) -> TimeSampler:
    """Rebuild a time sampler from its ``config()`` (nested path and base configs included)."""
    if not isinstance(config, Mapping) or config.get("name") not in TIME_SAMPLERS:
        name = config.get("name") if isinstance(config, Mapping) else config
        raise UserError(f"unknown time sampler {name!r}; choose one of {sorted(TIME_SAMPLERS)}")
    return TIME_SAMPLERS.build(config)


def get_time_sampler(time: str | Mapping[str, Any] | TimeSampler | None) -> TimeSampler:
    """A sampler object from a name with default options (see ``TIME_SAMPLERS``), a config
    dict, or itself (None: U[0, 1])."""
    if time is None:
        return Uniform()
    if isinstance(time, TimeSampler):
        return time
    if isinstance(time, Mapping):
        return time_from_config(time)
    if isinstance(time, str) and time in TIME_SAMPLERS and time != "shift":
        return TIME_SAMPLERS.build(time)
    names = sorted(set(TIME_SAMPLERS) - {"shift"})
    raise UserError(f"time must be a TimeSampler, a config or one of {names}, got {time!r}")
