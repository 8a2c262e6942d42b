"""Sample-based distances between distributions: sliced Wasserstein, MMD, energy distance, and
k-NN precision/recall.

All take two batches ``x`` (N, ...) and ``y`` (M, ...), flatten each sample, and compute in
float64. The distances return 0-d float64 tensors that carry gradients (an MMD can be a loss);
precision/recall returns plain floats.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError


def _flat(x: Tensor, name: str, min_rows: int = 1) -> Tensor:
    """(N, ...) -> float64 (N, D)."""
    if not isinstance(x, Tensor) or x.ndim < 1 or x.shape[0] < min_rows:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise UserError(
            f"{name} must be a tensor of shape (N, ...) with N >= {min_rows}, got {shape}"
        )
    return x.reshape(x.shape[0], -1).to(torch.float64)


def _pair(x: Tensor, y: Tensor, min_rows: int = 1) -> tuple[Tensor, Tensor]:
    xf, yf = _flat(x, "x", min_rows), _flat(y, "y", min_rows)
    if xf.shape[1] != yf.shape[1]:
        raise UserError(
            f"x and y must have the same sample size, got {xf.shape[1]} and {yf.shape[1]}"
        )
    return xf, yf.to(xf.device)


def _rows_per_chunk(cols: int, budget: int = 1 << 22) -> int:
    """Rows of a (rows, cols) distance block that fit ``budget`` entries (32 MiB in float64)."""
    return max(1, budget // max(cols, 1))


def _pairwise_sum(a: Tensor, b: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """sum_ij fn(|a_i - b_j|), by blocks of rows so memory stays bounded (differentiable)."""
    step = _rows_per_chunk(b.shape[0])
    return torch.stack(
        [fn(torch.cdist(a[i : i + step], b)).sum() for i in range(0, len(a), step)]
    ).sum()


# ----------------------------------------------------------------------------- Wasserstein


def wasserstein_1d(u: Tensor, v: Tensor, p: int = 2) -> Tensor:
    """Exact W_p^p between the empirical measures of the columns of ``u`` (n, P) and ``v`` (m, P).

    W_p^p = int_0^1 |F_u^{-1}(q) - F_v^{-1}(q)|^p dq; both quantile functions are steps, constant
    between consecutive levels of the merged grid {i/n} U {j/m} (integers i m and j n over n m).
    """
    n, m = u.shape[0], v.shape[0]
    us, vs = u.T.contiguous().sort(1).values, v.T.contiguous().sort(1).values  # (P, n): fast sort
    grid = torch.cat([torch.arange(1, n + 1) * m, torch.arange(1, m + 1) * n]).unique()  # sorted
    lower = torch.cat([grid.new_zeros(1), grid[:-1]])
    weight = ((grid - lower).to(u.dtype) / (n * m)).to(u.device)
    iu, iv = (lower // m).to(u.device), (lower // n).to(u.device)  # quantile index on each step
    return ((us[:, iu] - vs[:, iv]).abs() ** p) @ weight


def sliced_wasserstein(
    x: Tensor,
    y: Tensor,
    p: int = 2,
    n_projections: int = 256,
    seed: int = 0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sliced Wasserstein distance ``SW_p = (E_theta W_p^p(theta.x, theta.y))^(1/p)``.

    theta is uniform on the unit sphere (normalised Gaussians), ``n_projections`` of them drawn
    on the CPU from ``generator`` or from a fresh generator seeded with ``seed``, so the value
    never depends on the global RNG, the device or the samples. Each 1-D distance is exact
    (:func:`wasserstein_1d`); in one dimension SW_p equals W_p. N and M may differ.
    """
    if p not in (1, 2):
        raise UserError(f"p must be 1 or 2, got {p}")
    if n_projections < 1:
        raise UserError(f"n_projections must be >= 1, got {n_projections}")
    xf, yf = _pair(x, y)
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    theta = torch.randn(xf.shape[1], n_projections, generator=g, dtype=torch.float64)
    theta = (theta / theta.norm(dim=0, keepdim=True)).to(xf.device)
    return wasserstein_1d(xf @ theta, yf @ theta, p).mean() ** (1 / p)


# ----------------------------------------------------------------------------- kernels


def median_bandwidth(x: Tensor, y: Tensor, max_points: int = 2000) -> float:
    """Median heuristic (Gretton et al. 2012): the median distance between distinct pooled
    samples, using at most ``max_points`` evenly strided points of the pooled set."""
    pooled = torch.cat(_pair(x, y)).detach()
    if pooled.shape[0] > max_points:
        pooled = pooled[:: -(-pooled.shape[0] // max_points)]
    d = torch.cdist(pooled, pooled)
    i, j = torch.triu_indices(d.shape[0], d.shape[0], offset=1)
    h = float(d[i, j].median())
    if not h > 0:
        raise UserError("median bandwidth is 0 (most samples coincide); pass bandwidth=")
    return h


def mmd(
    x: Tensor,
    y: Tensor,
    bandwidth: float | Sequence[float] | str = "median",
    unbiased: bool = True,
) -> Tensor:
    """Squared maximum mean discrepancy with a Gaussian kernel (Gretton et al. 2012, Eq. 3-5).

    ``k(a, b) = sum_h exp(-|a - b|^2 / (2 h^2))`` over the bandwidth(s) h ("median": the median
    heuristic). The unbiased U-statistic drops the i = j terms of the within-set sums (it can be
    slightly negative); ``unbiased=False`` gives the V-statistic.
    """
    xf, yf = _pair(x, y, min_rows=2 if unbiased else 1)
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise UserError(f"bandwidth must be a number, a list or 'median', got {bandwidth!r}")
        widths = [median_bandwidth(xf, yf)]
    else:
        widths = [float(bandwidth)] if isinstance(bandwidth, (int, float)) else list(bandwidth)
    if not widths or min(widths) <= 0:
        raise UserError(f"bandwidth must be positive, got {bandwidth}")

    def kernel(dist: Tensor) -> Tensor:
        return torch.stack([torch.exp(-(dist**2) / (2 * h**2)) for h in widths]).sum(0)

    n, m = xf.shape[0], yf.shape[0]
    sxx, syy = _pairwise_sum(xf, xf, kernel), _pairwise_sum(yf, yf, kernel)
    if unbiased:  # drop the diagonal, where k(a, a) = number of bandwidths
        within_x = (sxx - n * len(widths)) / (n * (n - 1))
        within_y = (syy - m * len(widths)) / (m * (m - 1))
    else:
        within_x, within_y = sxx / n**2, syy / m**2
    return within_x + within_y - 2 * _pairwise_sum(xf, yf, kernel) / (n * m)


def energy_distance(x: Tensor, y: Tensor, unbiased: bool = True) -> Tensor:
    """Energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (Szekely & Rizzo 2013).

    Zero iff the distributions agree. (scipy.stats.energy_distance returns the square root of
    this in 1-D.) ``unbiased`` divides the within-set sums by n (n - 1) instead of n^2.
    """
    xf, yf = _pair(x, y, min_rows=2 if unbiased else 1)
    n, m = xf.shape[0], yf.shape[0]
    dxx, dyy = _pairwise_sum(xf, xf, torch.clone), _pairwise_sum(yf, yf, torch.clone)
    within_x = dxx / (n * (n - 1) if unbiased else n * n)
    within_y = dyy / (m * (m - 1) if unbiased else m * m)
    return 2 * _pairwise_sum(xf, yf, torch.clone) / (n * m) - within_x - within_y


# ----------------------------------------------------------------------------- precision/recall


@dataclass(frozen=True)
class PrecisionRecall:
    """Fraction of generated samples on the real manifold and of real ones on the generated."""

    precision: float
    recall: float


def knn_radii(x: Tensor, k: int) -> Tensor:
    """Distance from each row of x to its k-th nearest other row."""
    if not 1 <= k < x.shape[0]:
        raise UserError(f"k must be in [1, {x.shape[0] - 1}] for {x.shape[0]} samples, got {k}")
    # The k+1 smallest distances include the point itself (distance 0).
    chunk = _rows_per_chunk(x.shape[0])
    parts = [
        torch.cdist(x[i : i + chunk], x).kthvalue(k + 1, dim=1).values
        for i in range(0, len(x), chunk)
    ]
    return torch.cat(parts)


def _coverage(queries: Tensor, centres: Tensor, radii: Tensor) -> float:
    """Fraction of queries inside at least one ball (centre, radius)."""
    chunk = _rows_per_chunk(centres.shape[0])
    inside = [
        (torch.cdist(queries[i : i + chunk], centres) <= radii[None]).any(1)
        for i in range(0, len(queries), chunk)
    ]
    return float(torch.cat(inside).to(torch.float64).mean())


@torch.no_grad()
def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> PrecisionRecall:
    """Improved precision and recall (Kynkaanniemi et al. 2019, Eq. 1-2).

    Each set's manifold is the union of balls around its samples with radius the distance to the
    k-th nearest neighbour (k = 3 in the paper). Precision: fraction of ``fake`` inside the real
    manifold; recall: fraction of ``real`` inside the fake manifold. Use features (e.g.
    :func:`~interpolant.metrics.classifier.digits_features`) for images.
    """
    rf, ff = _pair(real, fake, min_rows=2)
    precision = _coverage(ff, rf, knn_radii(rf, k))
    recall = _coverage(rf, ff, knn_radii(ff, k))
    return PrecisionRecall(precision, recall)
