"""Standard errors of the unbiased MMD² and energy distance (jackknife over both samples).

Both are two-sample U-statistics of a kernel of the distance, k(|a - b|):

    U = Σ_{i≠i'} k(x_i, x_i') / (n (n - 1)) + Σ_{j≠j'} k(y_j, y_j') / (m (m - 1))
        − 2 Σ_{ij} k(x_i, y_j) / (n m),

with k = Σ_h exp(−d² / 2h²) for MMD² (Gretton et al. 2012, Eq. 3) and k = −d for the energy
distance (Székely & Rizzo 2013), the values :func:`~.distances.mmd` and
:func:`~.distances.energy_distance` return. Unbiased means E[U] = 0 when both samples come from
one distribution, so an estimate can be slightly negative: it is then indistinguishable from 0.

The standard error is the two-sample jackknife's (Efron & Stein 1981; Arvesen 1969 for
U-statistics): with U_(i) the estimate without x_i (and U_(j) without y_j),

    Var ≈ (n − 1)/n Σ_i (U_(i) − Ū_x)² + (m − 1)/m Σ_j (U_(j) − Ū_y)²,

and every U_(i) follows from the row sums of the kernel matrices, so the cost is that of U.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError
from .distances import _pair, _rows_per_chunk, median_bandwidth


@dataclass(frozen=True)
class Estimate:
    """An unbiased estimate and its standard error."""

    value: float
    stderr: float

    def __str__(self) -> str:
        return f"{self.value:.6g} ± {self.stderr:.2g}"


def _row_sums(a: Tensor, b: Tensor, kernel: Callable[[Tensor], Tensor]) -> Tensor:
    """Σ_j k(|a_i − b_j|) for every row i, by blocks of rows (bounded memory)."""
    step = _rows_per_chunk(b.shape[0])
    return torch.cat(
        [kernel(torch.cdist(a[i : i + step], b)).sum(1) for i in range(0, len(a), step)]
    )


def u_statistic_jackknife(x: Tensor, y: Tensor, kernel: Callable[[Tensor], Tensor]) -> Estimate:
    """The two-sample U-statistic of ``kernel`` (a function of the distance) with its jackknife
    standard error (module docstring); x (n, ...) and y (m, ...) with n, m >= 3."""
    xf, yf = _pair(x, y, min_rows=3)
    xf, yf = xf.double(), yf.double()
    n, m = xf.shape[0], yf.shape[0]
    k0 = float(kernel(torch.zeros(1, dtype=torch.float64)))
    rx = _row_sums(xf, xf, kernel) - k0  # off-diagonal row sums within x
    ry = _row_sums(yf, yf, kernel) - k0
    cx = _row_sums(xf, yf, kernel)  # row i: Σ_j k(x_i, y_j)
    cy = _row_sums(yf, xf, kernel)  # row j: Σ_i k(x_i, y_j)
    sxx, syy, sxy = rx.sum(), ry.sum(), cx.sum()
    within_x, within_y = sxx / (n * (n - 1)), syy / (m * (m - 1))
    value = within_x + within_y - 2 * sxy / (n * m)
    # Leaving x_i out removes its row and column of the x-x sums and its row of the x-y sums.
    loo_x = (sxx - 2 * rx) / ((n - 1) * (n - 2)) + within_y - 2 * (sxy - cx) / ((n - 1) * m)
    loo_y = within_x + (syy - 2 * ry) / ((m - 1) * (m - 2)) - 2 * (sxy - cy) / (n * (m - 1))
    var = (n - 1) / n * ((loo_x - loo_x.mean()) ** 2).sum()
    var = var + (m - 1) / m * ((loo_y - loo_y.mean()) ** 2).sum()
    return Estimate(float(value), math.sqrt(float(var)))


def mmd_with_stderr(
    x: Tensor, y: Tensor, bandwidth: float | Sequence[float] | str = "median"
) -> Estimate:
    """Unbiased squared MMD with a Gaussian kernel (as :func:`~.distances.mmd`) and its
    standard error."""
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise UserError(f"bandwidth must be a number, a list or 'median', got {bandwidth!r}")
        xf, yf = _pair(x, y, min_rows=3)
        widths = [median_bandwidth(xf, yf)]
    else:
        widths = [float(bandwidth)] if isinstance(bandwidth, int | float) else list(bandwidth)
    if not widths or min(widths) <= 0:
        raise UserError(f"bandwidth must be positive, got {bandwidth}")

    def kernel(dist: Tensor) -> Tensor:
        return torch.stack([torch.exp(-(dist**2) / (2 * h**2)) for h in widths]).sum(0)

    return u_statistic_jackknife(x, y, kernel)


def energy_distance_with_stderr(x: Tensor, y: Tensor) -> Estimate:
    """Unbiased energy distance (as :func:`~.distances.energy_distance`) and its standard
    error: the U-statistic of the kernel −|a − b|."""
    return u_statistic_jackknife(x, y, torch.neg)


#: The line `interpolant eval` prints under unbiased estimates.
UNBIASED_NOTE = (
    "mmd and energy_distance are unbiased estimates ± their standard error: 0 in expectation "
    "when the samples match the data, so values within about 2 standard errors of 0 (small "
    "negative ones included) mean indistinguishable at this sample size"
)

__all__ = [
    "UNBIASED_NOTE",
    "Estimate",
    "energy_distance_with_stderr",
    "mmd_with_stderr",
    "u_statistic_jackknife",
]
