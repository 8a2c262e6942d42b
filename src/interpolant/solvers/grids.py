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

from ..configurable import Configurable, Registry, number, one_of, option, optional
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


#: diffusers' ``final_sigmas_type``: "zero" ends with a step to sigma = 0 (the data), "sigma_min"
#: stops at the last nonzero noise level (the result is the noisy state there).
FINAL_SIGMAS = ("zero", "sigma_min")


def _final_option() -> Any:
    return option(
        "zero",
        help="the end: zero (a last step to the data) or sigma_min (stop at the last noise "
        "level; diffusers' final_sigmas_type)",
        check=one_of(*FINAL_SIGMAS),
    )


def _clip_option() -> Any:
    return option(
        None,
        help="start where lambda = log(alpha / sigma) = -log(edm sigma) reaches this (diffusers' "
        "lambda_min_clipped; None: at t_max)",
        check=optional(number()),
    )


class NoiseLevelGrid(Grid):
    """A grid defined by EDM noise levels between sigma_max and sigma_min (:meth:`levels`),
    mapped to t on the path, with diffusers' end options: ``final_sigmas_type`` ("zero": the
    ``steps`` steps are steps - 1 between the levels and a last one to sigma = 0; "sigma_min":
    all steps between steps + 1 levels, ending at sigma_min > 0) and ``lambda_min_clipped``
    (sigma_max at most exp(-lambda_min_clipped); the grid then starts there, not at t_max)."""

    sigma_min: float | None
    sigma_max: float | None
    final_sigmas_type: str
    lambda_min_clipped: float | None

    @abstractmethod
    def levels(self, lo: float, hi: float, n: int) -> Tensor:
        """n descending EDM noise levels from hi to lo (float64)."""

    def _times(self, path: GaussianPath, steps: int, t_max: float) -> Tensor:
        lo, hi = _edm_range(path, t_max, self.sigma_min, self.sigma_max)
        clipped = self.lambda_min_clipped is not None and hi > math.exp(-self.lambda_min_clipped)
        if clipped:
            assert self.lambda_min_clipped is not None
            hi = math.exp(-self.lambda_min_clipped)
            if not lo < hi:
                raise UserError(
                    f"lambda_min_clipped={self.lambda_min_clipped} puts the start at edm sigma "
                    f"{hi:.4g}, below sigma_min={lo:.4g}; raise it or lower sigma_min"
                )
        to_zero = self.final_sigmas_type == "zero"
        t = path.t_of_edm_sigma(self.levels(lo, hi, steps if to_zero else steps + 1))
        if self.sigma_max is None and not clipped:
            t[0] = t_max
        return _finish(t) if to_zero else t


@dataclass(frozen=True)
class Karras(NoiseLevelGrid):
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
    final_sigmas_type: str = _final_option()
    lambda_min_clipped: float | None = _clip_option()

    def levels(self, lo: float, hi: float, n: int) -> Tensor:
        rho = self.rho
        ramp = torch.linspace(0, 1, n, dtype=torch.float64)
        return (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho


@dataclass(frozen=True)
class LogSNR(NoiseLevelGrid):
    """Uniform in logSNR (DPM-Solver's "logSNR" spacing) between the end noise levels, then 0."""

    name: ClassVar[str] = "logsnr"
    sigma_min: float | None = option(
        None, help="smallest nonzero EDM sigma (default 0.002)", check=optional(number(0))
    )
    sigma_max: float | None = option(
        None, help="largest EDM sigma (default: the path's at t_max)", check=optional(number(0))
    )
    final_sigmas_type: str = _final_option()
    lambda_min_clipped: float | None = _clip_option()

    def levels(self, lo: float, hi: float, n: int) -> Tensor:
        return torch.exp(torch.linspace(math.log(hi), math.log(lo), n, dtype=torch.float64))


@dataclass(frozen=True)
class Polyexponential(NoiseLevelGrid):
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
    final_sigmas_type: str = _final_option()
    lambda_min_clipped: float | None = _clip_option()

    def levels(self, lo: float, hi: float, n: int) -> Tensor:
        ramp = torch.linspace(1, 0, n, dtype=torch.float64) ** self.rho
        return torch.exp(ramp * (math.log(hi) - math.log(lo)) + math.log(lo))


@dataclass(frozen=True)
class Beta(NoiseLevelGrid):
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
    final_sigmas_type: str = _final_option()
    lambda_min_clipped: float | None = _clip_option()

    def levels(self, lo: float, hi: float, n: int) -> Tensor:
        from scipy.stats import beta as beta_dist

        quantiles = 1 - torch.linspace(0, 1, n, dtype=torch.float64)
        ppf = beta_dist.ppf(quantiles.numpy(), self.a, self.b)
        return lo + torch.as_tensor(ppf, dtype=torch.float64) * (hi - lo)


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


#: The default rule's constants (docs/decisions.md, "The default sampler"), in units of the
#: data's standard deviation sigma_data: for N steps the last nonzero EDM noise level is
#: AUTO_SIGMA_MIN * sigma_data / N^2, and the spacing starts at most at AUTO_SPACING_MAX *
#: sigma_data (80 for sigma_data = 0.5: EDM's sigma_max). Above it the posterior mean is the data
#: mean up to (sigma_data / sigma)^2 < 4e-5, so nodes there are wasted.
AUTO_SIGMA_MIN = 10.0
AUTO_SPACING_MAX = 160.0
#: sigma_data where the model does not say (EDM's value for data scaled to [-1, 1]).
DEFAULT_SIGMA_DATA = 0.5


@dataclass(frozen=True)
class Auto(Grid):
    """The default rule's grid: uniform in logSNR from min(the path's sigma at t_max,
    160 sigma_data) down to sigma_min = 10 sigma_data / N^2 for N steps, then 0; the first node
    is t_max itself, so the start matches the source.

    Why (docs/decisions.md): the final step to sigma = 0 returns the denoiser's x0, which leaves
    an error of about sigma_min^2 / (2 s) in a direction of data standard deviation s >> sigma_min
    (and about s where s << sigma_min), while an order-p multistep error shrinks like
    (log(sigma_max / sigma_min) / N)^p; balancing the two gives sigma_min ~ N^(-p/2) up to log
    factors. The exponent 2 (p = 4, UniPC-3 with its corrector; 3.5 for UniPC-2) and the constant
    were chosen on selection draws of four oracle families and checked on separate evaluation
    draws (``benchmarks/sampler_oracle.py``). ``sigma_data`` None: the model's when it declares
    one (``Preconditioned``), else 0.5.
    """

    name: ClassVar[str] = "auto"
    sigma_data: float | None = option(
        None,
        help="the data's standard deviation (None: the model's, else 0.5)",
        check=optional(number(0, open_lo=True)),
    )

    def sigma_range(self, path: GaussianPath, steps: int, t_max: float) -> tuple[float, float]:
        """(sigma_min, sigma_max of the spacing) for ``steps`` steps from ``t_max`` on ``path``."""
        sd = DEFAULT_SIGMA_DATA if self.sigma_data is None else self.sigma_data
        start = float(path.edm_sigma(torch.tensor(t_max, dtype=torch.float64)))
        hi = min(start, AUTO_SPACING_MAX * sd)
        lo = min(AUTO_SIGMA_MIN * sd / steps**2, 0.5 * hi)
        return lo, hi

    def _times(self, path: GaussianPath, steps: int, t_max: float) -> Tensor:
        lo, hi = self.sigma_range(path, steps, t_max)
        lam = torch.linspace(-2 * math.log(hi), -2 * math.log(lo), steps, dtype=torch.float64)
        t = path.t_of_logsnr(lam)
        t[0] = t_max
        return _finish(t)


#: Align Your Steps' published 10-step EDM noise levels (Sabour et al. 2024; NVIDIA's how-to page,
#: as ComfyUI's ``AlignYourStepsScheduler``), optimised for those models' own schedules.
AYS_LEVELS: dict[str, tuple[float, ...]] = {
    "sd1": (14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
            0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582),
    "sdxl": (14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945,
             0.8620721141, 0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582),
    "svd": (700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002),
}  # fmt: skip


@dataclass(frozen=True)
class AlignYourSteps(Grid):
    """Align Your Steps (Sabour et al. 2024): a published table of 11 EDM noise levels for
    ``model`` (SD 1.5, SD-XL, SVD), interpolated linearly in log sigma over the index to
    ``steps + 1`` levels when ``steps`` is not 10; the last level is then replaced by 0, as the
    authors' ``get_sigmas`` does. The table starts at its own sigma (14.61 for SD's schedule,
    :class:`~interpolant.paths.DiscreteVP` with ``beta_schedule="scaled_linear"``), so on other
    paths the grid starts below t_max; it is refused where that level is above the path's."""

    name: ClassVar[str] = "ays"
    model: str = option("sd1", help="whose table: sd1, sdxl or svd", check=one_of(*AYS_LEVELS))

    def levels(self, steps: int) -> Tensor:
        """The ``steps + 1`` descending EDM noise levels, the last one 0."""
        table = torch.tensor(AYS_LEVELS[self.model], dtype=torch.float64)
        if steps + 1 != len(table):
            where = torch.linspace(0, len(table) - 1, steps + 1, dtype=torch.float64)
            lower = where.floor().long().clamp(max=len(table) - 2)
            frac = where - lower
            log_table = table.log()
            table = torch.exp(log_table[lower] * (1 - frac) + log_table[lower + 1] * frac)
        table[-1] = 0.0
        return table

    def _times(self, path: GaussianPath, steps: int, t_max: float) -> Tensor:
        levels = self.levels(steps)
        top = float(path.edm_sigma(torch.tensor(t_max, dtype=torch.float64)))
        if levels[0] > top * (1 + 1e-6):
            raise UserError(
                f"the Align Your Steps {self.model} grid starts at edm sigma {float(levels[0]):.4g}"
                f", above this path's {top:.4g} at t_max={t_max}; use a path that reaches it or "
                "another grid"
            )
        t = path.t_of_edm_sigma(levels[:-1]).clamp(max=t_max)
        return _finish(t)


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


for _cls in (Uniform, Shift, LogSNR, Polyexponential, Beta, Auto, AlignYourSteps, Listed):
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
    "AUTO_SIGMA_MIN",
    "AUTO_SPACING_MAX",
    "DEFAULT_SIGMA_DATA",
    "FINAL_SIGMAS",
    "GRIDS",
    "SIGMA_MAX_CAP",
    "SIGMA_MIN",
    "Auto",
    "Beta",
    "Grid",
    "Karras",
    "Listed",
    "LogSNR",
    "NoiseLevelGrid",
    "Polyexponential",
    "Shift",
    "Uniform",
    "as_grid",
    "check_grid",
    "get_grid",
    "shift_time",
    "uniform",
]
