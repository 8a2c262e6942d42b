"""W2 between two sample sets: exact on a grid by linear programming (POT) and sliced.

``w2_grid`` is the paper-5 metric: both sample sets are binned to the nearest point of a
``bins x bins`` grid on a box (samples outside are clipped to it), and W2 between the two weight
vectors is the exact optimal-transport cost with squared Euclidean ground cost (``ot.emd2``,
the network simplex). ``w2_samples`` is the exact W2 between the empirical measures themselves.
The sliced estimate is ``metrics.sliced_wasserstein`` (one place for that formula).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import MissingDependencyError, UserError
from ..metrics.distances import sliced_wasserstein


def _ot() -> Any:
    try:
        import ot
    except ImportError as err:
        raise MissingDependencyError(
            "exact W2 needs POT, an optional dependency: pip install 'interpolant[analysis]'"
        ) from err
    return ot


def _rows(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[0] < 1:
        raise UserError(f"{name} must be a (N, D) tensor of samples")
    return x.detach().to("cpu", torch.float64)


def grid_histogram(x: Tensor, bins: int, low: float, high: float) -> tuple[Tensor, Tensor]:
    """(weights (bins^D,), grid points (bins^D, D)): each sample counts at its nearest point."""
    x = _rows(x, "x")
    centres = torch.linspace(low, high, bins, dtype=torch.float64)
    cell = (high - low) / (bins - 1)
    idx = ((x.clamp(low, high) - low) / cell).round().long()  # (N, D)
    flat = torch.zeros(x.shape[0], dtype=torch.long)
    for j in range(x.shape[1]):
        flat = flat * bins + idx[:, j]
    weights = torch.bincount(flat, minlength=bins ** x.shape[1]).to(torch.float64)
    mesh = torch.stack(torch.meshgrid(*[centres] * x.shape[1], indexing="ij"), -1)
    return weights / weights.sum(), mesh.reshape(-1, x.shape[1])


def w2_grid(x: Tensor, y: Tensor, bins: int = 40, low: float = -4.0, high: float = 4.0) -> float:
    """Exact W2 between the grid histograms of x and y (paper 5: a 40 x 40 grid on [-4, 4]^2)."""
    if bins < 2 or not high > low:
        raise UserError(f"need bins >= 2 and high > low, got {bins}, {low}, {high}")
    if x.shape[1] != y.shape[1] or bins ** x.shape[1] > 10**5:
        raise UserError(f"w2_grid needs equal, small dimensions (bins^D <= 1e5), got {x.shape[1]}")
    ot = _ot()
    wx, points = grid_histogram(x, bins, low, high)
    wy, _ = grid_histogram(y, bins, low, high)
    keep = (wx > 0) | (wy > 0)  # the LP only needs occupied cells
    p, a, b = points[keep], wx[keep], wy[keep]
    cost = torch.cdist(p, p).square()
    return float(ot.emd2(a.numpy(), b.numpy(), cost.numpy(), numItermax=10**7)) ** 0.5


def w2_samples(x: Tensor, y: Tensor) -> float:
    """Exact W2 between the empirical measures of x (N, D) and y (M, D) (uniform weights)."""
    ot = _ot()
    x, y = _rows(x, "x"), _rows(y, "y")
    a = torch.full((x.shape[0],), 1.0 / x.shape[0], dtype=torch.float64)
    b = torch.full((y.shape[0],), 1.0 / y.shape[0], dtype=torch.float64)
    cost = torch.cdist(x, y).square()
    return float(ot.emd2(a.numpy(), b.numpy(), cost.numpy(), numItermax=10**7)) ** 0.5


def w2_sliced(x: Tensor, y: Tensor, n_projections: int = 256, seed: int = 0) -> float:
    """The sliced W2 estimate (``metrics.sliced_wasserstein`` with p = 2)."""
    return float(sliced_wasserstein(x, y, p=2, n_projections=n_projections, seed=seed))


__all__ = ["grid_histogram", "w2_grid", "w2_samples", "w2_sliced"]
