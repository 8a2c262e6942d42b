"""Time grids are data: descending tensors of t from t_max to 0 (float64).

A grid for ``steps`` steps has ``steps + 1`` points. Grids defined in noise-level space (Karras,
uniform logSNR) are built in the path-free EDM coordinate ``edm_sigma = sigma / alpha`` and mapped
to t with the path's ``t_of_logsnr``, so one grid means the same noise levels on every path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..paths import GaussianPath

#: Default smallest nonzero EDM noise level of the noise-space grids (EDM's sigma_min).
SIGMA_MIN = 0.002
#: Where alpha(t_max) is (nearly) 0 the noise-space grids start their spacing here; the first
#: node is still t_max, so the start matches the source.
SIGMA_MAX_CAP = 1000.0
GRIDS = ("uniform", "karras", "logsnr", "shift", "edm")


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
        raise ValueError(f"need 0 < sigma_min < sigma_max for the grid, got {lo}, {hi}")
    return lo, hi


def uniform(steps: int, t_max: float = 1.0, t_min: float = 0.0) -> Tensor:
    """Uniform in t from t_max to t_min, then 0 (when t_min > 0)."""
    t = torch.linspace(t_max, t_min, steps + 1 if t_min == 0 else steps, dtype=torch.float64)
    return t if t_min == 0 else _finish(t)


def karras(
    path: GaussianPath,
    steps: int,
    rho: float = 7.0,
    t_max: float = 1.0,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
) -> Tensor:
    """Karras et al. (2022) eq. 5: edm_sigma_i = (s_max^(1/rho) + i/(n-1) (s_min^(1/rho) -
    s_max^(1/rho)))^rho for i < n, then 0."""
    lo, hi = _edm_range(path, t_max, sigma_min, sigma_max)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    s = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    t = path.t_of_edm_sigma(s)
    if sigma_max is None:
        t[0] = t_max
    return _finish(t)


def logsnr(
    path: GaussianPath,
    steps: int,
    t_max: float = 1.0,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
) -> Tensor:
    """Uniform in logSNR (DPM-Solver's "logSNR" spacing) between the end noise levels, then 0."""
    lo, hi = _edm_range(path, t_max, sigma_min, sigma_max)
    lam = torch.linspace(-2 * math.log(hi), -2 * math.log(lo), steps, dtype=torch.float64)
    t = path.t_of_logsnr(lam)
    if sigma_max is None:
        t[0] = t_max
    return _finish(t)


def shift_time(t: Tensor, shift: float) -> Tensor:
    """SD3's resolution shift of time (Esser et al. 2024, eq. 23): t' = s t / (1 + (s - 1) t).

    On the linear path it lowers logsnr by 2 log s everywhere; ``shift_time(., 1 / s)`` inverts it.
    """
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return shift * t / (1 + (shift - 1) * t)


def shift(steps: int, shift: float = 3.0, t_max: float = 1.0) -> Tensor:
    """SD3's shifted uniform grid (Esser et al. 2024, eq. 23): t' = s t / (1 + (s - 1) t)."""
    return shift_time(uniform(steps, t_max), shift)


def get_grid(
    grid: str | Sequence[float] | Tensor,
    path: GaussianPath,
    steps: int,
    t_max: float = 1.0,
    **options: float,
) -> Tensor:
    """A descending float64 grid of ``steps + 1`` times ending at 0.

    ``grid`` is a name from ``GRIDS`` ("edm" is "karras" with rho = 7) or the user's own list of
    times (descending, in [0, 1]); options go to the named grid (rho, sigma_min, sigma_max, shift).
    """
    if not isinstance(grid, str):
        t = torch.as_tensor(grid, dtype=torch.float64).flatten()
        check_grid(t)
        return t
    name = grid.lower()
    if name not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; choose one of {GRIDS} or pass a list of times")
    if steps < 1:
        raise ValueError(f"a grid needs at least one step, got steps={steps}")
    if name == "uniform":
        t = uniform(steps, t_max, options.get("t_min", 0.0))
    elif name in ("karras", "edm"):
        t = karras(path, steps, t_max=t_max, **options)
    elif name == "logsnr":
        t = logsnr(path, steps, t_max=t_max, **options)
    else:
        t = shift(steps, t_max=t_max, **options)
    check_grid(t)
    return t


def check_grid(t: Tensor) -> None:
    """Raise a ValueError unless t is a descending grid of at least two times in [0, 1]."""
    if t.ndim != 1 or t.numel() < 2:
        raise ValueError(f"a time grid needs at least two times, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or float(t.min()) < 0 or float(t.max()) > 1:
        raise ValueError(f"grid times must lie in [0, 1] (t = 0 is data); got {t.tolist()}")
    if not bool((t[1:] < t[:-1]).all()):
        raise ValueError(
            f"grid times must strictly decrease (from source to data); got {t.tolist()}"
        )
