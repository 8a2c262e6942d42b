"""Time grids are data: descending tensors of t from t_max to 0 (float64).

A grid for ``steps`` steps has ``steps + 1`` points. Grids defined in noise-level space (Karras,
uniform logSNR) are built in the path-free EDM coordinate ``edm_sigma = sigma / alpha`` and mapped
to t with the path's ``t_of_logsnr``, so one grid means the same noise levels on every path.

Each grid is a frozen dataclass (:class:`Grid`) whose fields are its options; ``get_grid``
builds the times from a name, a config, a grid object or the user's own list of times.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..configurable import Configurable, Registry, number, option, optional
from ..errors import UserError
from ..paths import GaussianPath
from ..paths.nodes import shift_time

#: Default smallest nonzero EDM noise level of the noise-space grids (EDM's sigma_min).
SIGMA_MIN = 0.002
#: Where alpha(t_max) is (nearly) 0 the noise-space grids start their spacing here; the first
#: node is still t_max, so the start matches the source.
SIGMA_MAX_CAP = 1000.0


def _finish(t: Tensor) -> Tensor:
    return torch.cat([t, t.new_zeros(1)])


def _edm_range(
    path: GaussianPath, t_max: float, sigma_min: float | None, sigma_max: float | None
) -> tuple[float, float]:
    if sigma_max is not None:
        hi = sigma_max
    else:
        hi = min(float(path.edm_sigma(torch.tensor(t_max, dtype=torch.float64))), SIGMA_MAX_CAP)
    lo = sigma_min if sigma_min is not None else SIGMA_MIN
    if not 0 < lo < hi:
        raise UserError(f"need 0 < sigma_min < sigma_max for the grid, got {lo}, {hi}")
    return lo, hi


class Grid(Configurable, ABC):
    """Base of the named grids: :meth:`times` gives ``steps + 1`` descending times."""

    name: ClassVar[str] = "grid"

    def times(self, path: GaussianPath, steps: int, t_max: float = 1.0) -> Tensor:
        """The grid from ``t_max`` to 0 for ``steps`` steps on ``path`` (float64, checked)."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise UserError(f"a grid needs an int number of steps >= 1, got {steps!r}")
        t = self._times(path, steps, t_max)
        check_grid(t)
        return t

    @abstractmethod
    def _times(self, path: GaussianPath, steps: int, t_max: float) -> Tensor:
        """The times, before the checks."""

    @property
    def fixed_steps(self) -> int | None:
        """The number of steps a listed grid fixes (None: set by nfe or steps)."""
        return None


GRIDS: Registry[Grid] = Registry("grid", Grid)


@dataclass(frozen=True)
class Uniform(Grid):
    """Uniform in t from t_max to t_min, then 0 (when t_min > 0)."""

    name: ClassVar[str] = "uniform"
    t_min: float = option(0.0, help="last nonzero time (0: end at t = 0)", check=number(0, 1))

    def _times(self, path: GaussianPath, steps: int, t_max: float) -> Tensor:
        return uniform(steps, t_max, self.t_min)


@dataclass(frozen=True)
class Karras(Grid):
    """Karras et al. (2022) eq. 5: edm_sigma_i = (s_max^(1/rho) + i/(n-1) (s_min^(1/rho) -
    s_max^(1/rho)))^rho for i < n, then 0 (``edm`` is an alias)."""

    name: ClassVar[str] = "karras"
    rho: float = option(7.0, help="the spacing exponent rho", check=number(0, open_lo=True))
    sigma_min: float | None = option(
        None, help="smallest nonzero EDM sigma (default 0.002)", check=optional(number(0))
    )
    sigma_max: float | None = option(
        None, help="largest EDM sigma (default: the path's at t_max)", check=optional(number(0))
    )

    def _times(self, path: GaussianPath, steps: int, t_max: float) -> Tensor:
        lo, hi = _edm_range(path, t_max, self.sigma_min, self.sigma_max)
        rho = self.rho
        ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
        s = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
        t = path.t_of_edm_sigma(s)
        if self.sigma_max is None:
            t[0] = t_max
        return _finish(t)


@dataclass(frozen=True)
class LogSNR(Grid):
    """Uniform in logSNR (DPM-Solver's "logSNR" spacing) between the end noise levels, then 0."""

    name: ClassVar[str] = "logsnr"
    sigma_min: float | None = option(
        None, help="smallest nonzero EDM sigma (default 0.002)", check=optional(number(0))
    )
    sigma_max: float | None = option(
        None, help="largest EDM sigma (default: the path's at t_max)", check=optional(number(0))
    )

    def _times(self, path: GaussianPath, steps: int, t_max: float) -> Tensor:
        lo, hi = _edm_range(path, t_max, self.sigma_min, self.sigma_max)
        lam = torch.linspace(-2 * math.log(hi), -2 * math.log(lo), steps, dtype=torch.float64)
        t = path.t_of_logsnr(lam)
        if self.sigma_max is None:
            t[0] = t_max
        return _finish(t)


@dataclass(frozen=True)
class Polyexponential(Grid):
    """k-diffusion's polyexponential spacing: log edm_sigma_i = log s_min + (1 - i/(n-1))^rho
    (log s_max - log s_min) for i < n, then 0 (rho = 1: uniform in log sigma)."""

    name: ClassVar[str] = "polyexponential"
    rho: float = option(1.0, help="the exponent rho on the ramp", check=number(0, open_lo=True))
    sigma_min: float | None = option(
        None, help="smallest nonzero EDM sigma (default 0.002)", check=optional(number(0))
    )
    sigma_max: float | None = option(
        None, help="largest EDM sigma (default: the path's at t_max)", check=optional(number(0))
    )

    def _times(self, path: GaussianPath, steps: int, t_max: float) -> Tensor:
        lo, hi = _edm_range(path, t_max, self.sigma_min, self.sigma_max)
        ramp = torch.linspace(1, 0, steps, dtype=torch.float64) ** self.rho
        s = torch.exp(ramp * (math.log(hi) - math.log(lo)) + math.log(lo))
        t = path.t_of_edm_sigma(s)
        if self.sigma_max is None:
            t[0] = t_max
        return _finish(t)


@dataclass(frozen=True)
class Beta(Grid):
    """Beta spacing (Lee et al. 2024, "Beta Sampling is All You Need", as diffusers'
    ``use_beta_sigmas``): edm_sigma_i = s_min + F^-1(1 - i/(n-1)) (s_max - s_min) for i < n,
    F the Beta(a, b) CDF, then 0; a = b = 0.6 crowds the steps at both ends."""

    name: ClassVar[str] = "beta"
    a: float = option(0.6, help="the Beta distribution's alpha", check=number(0, open_lo=True))
    b: float = option(0.6, help="the Beta distribution's beta", check=number(0, open_lo=True))
    sigma_min: float | None = option(
        None, help="smallest nonzero EDM sigma (default 0.002)", check=optional(number(0))
    )
    sigma_max: float | None = option(
        None, help="largest EDM sigma (default: the path's at t_max)", check=optional(number(0))
    )

    def _times(self, path: GaussianPath, steps: int, t_max: float) -> Tensor:
        from scipy.stats import beta as beta_dist

        lo, hi = _edm_range(path, t_max, self.sigma_min, self.sigma_max)
        levels = 1 - torch.linspace(0, 1, steps, dtype=torch.float64)
        ppf = torch.as_tensor(beta_dist.ppf(levels.numpy(), self.a, self.b), dtype=torch.float64)
        t = path.t_of_edm_sigma(lo + ppf * (hi - lo))
        if self.sigma_max is None:
            t[0] = t_max
        return _finish(t)


@dataclass(frozen=True)
class Shift(Grid):
    """SD3's shifted uniform grid (Esser et al. 2024, eq. 23): t' = s t / (1 + (s - 1) t).

    For t_max < 1 (a converted path) the uniform grid runs up to shift^-1(t_max), so the shifted
    grid starts at t_max itself rather than above it."""

    name: ClassVar[str] = "shift"
    shift: float = option(3.0, help="the shift s (1: uniform)", check=number(0, open_lo=True))

    def _times(self, path: GaussianPath, steps: int, t_max: float) -> Tensor:
        u_max = float(shift_time(torch.tensor(t_max, dtype=torch.float64), 1 / self.shift))
        t = shift_time(uniform(steps, u_max), self.shift)
        t[0] = t_max  # exact, not up to the rounding of the two maps
        return t


@dataclass(frozen=True)
class Listed(Grid):
    """The user's own descending times in [0, 1] (a searched grid, a grid file)."""

    name: ClassVar[str] = "listed"
    t: tuple[float, ...] = option((), help="the times, descending from t_max to 0")

    def __post_init__(self) -> None:
        object.__setattr__(self, "t", tuple(float(v) for v in self.t))
        super().__post_init__()

    def validate(self) -> None:
        check_grid(torch.tensor(self.t, dtype=torch.float64))

    def times(self, path: GaussianPath, steps: int | None = None, t_max: float = 1.0) -> Tensor:
        if steps is not None and steps != len(self.t) - 1:
            raise UserError(
                f"a listed grid of {len(self.t)} times has {len(self.t) - 1} steps, not {steps}"
            )
        return self._times(path, len(self.t) - 1, t_max)

    def _times(self, path: GaussianPath, steps: int, t_max: float) -> Tensor:
        return torch.tensor(self.t, dtype=torch.float64)

    @property
    def fixed_steps(self) -> int | None:
        return len(self.t) - 1


for _cls in (Uniform, Shift, LogSNR, Polyexponential, Beta, Listed):
    GRIDS.register(_cls)
GRIDS.register(Karras, "edm")


def uniform(steps: int, t_max: float = 1.0, t_min: float = 0.0) -> Tensor:
    """Uniform in t from t_max to t_min, then 0 (when t_min > 0)."""
    t = torch.linspace(t_max, t_min, steps + 1 if t_min == 0 else steps, dtype=torch.float64)
    return t if t_min == 0 else _finish(t)


def as_grid(
    grid: str | Mapping[str, Any] | Grid | Sequence[float] | Tensor, **options: Any
) -> Grid:
    """A :class:`Grid` from a name (with options), a config dict, a grid or a list of times."""
    if isinstance(grid, Tensor) or (isinstance(grid, Sequence) and not isinstance(grid, str)):
        if options:
            raise UserError("grid options are only used with a grid name")
        values = torch.as_tensor(grid, dtype=torch.float64).flatten().tolist()
        return Listed(tuple(values))
    return GRIDS.build(grid, **options)


def get_grid(
    grid: str | Mapping[str, Any] | Grid | Sequence[float] | Tensor,
    path: GaussianPath,
    steps: int | None = None,
    t_max: float = 1.0,
    **options: Any,
) -> Tensor:
    """A descending float64 grid of ``steps + 1`` times ending at 0.

    ``grid`` is a name from ``GRIDS`` ("edm" is "karras" with rho = 7), a config dict, a
    :class:`Grid`, or the user's own list of times (descending, in [0, 1]); ``options`` go to a
    named grid (rho, sigma_min, sigma_max, shift, t_min).
    """
    spec = as_grid(grid, **options)
    if isinstance(spec, Listed):
        return spec.times(path, None)
    if steps is None:
        raise UserError(f"the {spec.name} grid needs a number of steps")
    return spec.times(path, steps, t_max)


def check_grid(t: Tensor) -> None:
    """Raise a UserError unless t is a descending grid of at least two times in [0, 1]."""
    if t.ndim != 1 or t.numel() < 2:
        raise UserError(f"a time grid needs at least two times, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or float(t.min()) < 0 or float(t.max()) > 1:
        raise UserError(f"grid times must lie in [0, 1] (t = 0 is data); got {t.tolist()}")
    if not bool((t[1:] < t[:-1]).all()):
        raise UserError(
            f"grid times must strictly decrease (from source to data); got {t.tolist()}"
        )


__all__ = [
    "GRIDS",
    "SIGMA_MAX_CAP",
    "SIGMA_MIN",
    "Beta",
    "Grid",
    "Karras",
    "Listed",
    "LogSNR",
    "Polyexponential",
    "Shift",
    "Uniform",
    "as_grid",
    "check_grid",
    "get_grid",
    "shift_time",
    "uniform",
]
