"""A path evaluated at one time: the coefficients (alpha, sigma and their derivatives) as
floats, and grid nodes carrying them for the solvers (float64 arithmetic).

Solvers, guidance and inverse-problem code read the coefficients at a node from here; nothing
recomputes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError
from .base import GaussianPath, as_time, expand_like

Scalar = float | Tensor


@dataclass(frozen=True)
class Coefficients:
    """alpha, sigma and their time derivatives at one time (floats) or per sample (tensors
    already shaped to broadcast against x)."""

    alpha: Scalar
    sigma: Scalar
    d_alpha: Scalar
    d_sigma: Scalar

    @classmethod
    def at(cls, path: GaussianPath, t: float | Tensor, like: Tensor) -> Coefficients:
        """Coefficients of ``path`` at t, as floats for a scalar t or broadcast tensors for t of
        shape (B,), in the dtype of ``like``."""
        if isinstance(t, float | int) or (isinstance(t, Tensor) and t.ndim == 0):
            tt = as_time(torch.tensor(float(t), dtype=torch.float64))
            return cls(*(float(c) for c in path.coefficients(tt)))
        tt = as_time(t, like).to(torch.float64)
        a, s, da, ds = (expand_like(c.to(like.dtype), like) for c in path.coefficients(tt))
        return cls(a, s, da, ds)


@dataclass(frozen=True)
class Node:
    """One time-grid point with the path's coefficients as Python floats (float64 arithmetic)."""

    t: float
    alpha: float
    sigma: float
    d_alpha: float
    d_sigma: float
    logsnr: float

    @property
    def coeffs(self) -> Coefficients:
        return Coefficients(self.alpha, self.sigma, self.d_alpha, self.d_sigma)

    @property
    def edm_sigma(self) -> float:
        """sigma / alpha (inf where alpha = 0)."""
        return self.sigma / self.alpha if self.alpha > 0 else math.inf


def make_nodes(path: GaussianPath, t: Tensor) -> list[Node]:
    """Nodes for a descending time grid, all coefficients computed in one float64 pass."""
    t64 = t.detach().to("cpu", torch.float64)
    cols = [c.tolist() for c in (*path.coefficients(t64), path.logsnr(t64))]
    return [Node(ti, *vals) for ti, vals in zip(t64.tolist(), zip(*cols))]


def node_at(path: GaussianPath, t: float) -> Node:
    """A single node at time t."""
    return make_nodes(path, torch.tensor([t], dtype=torch.float64))[0]


def shift_time(t: Tensor, shift: float) -> Tensor:
    """SD3's resolution shift of time (Esser et al. 2024, eq. 23): t' = s t / (1 + (s - 1) t).

    On the linear path it lowers logsnr by 2 log s everywhere; ``shift_time(., 1 / s)`` inverts it.
    Used by the shifted time grid and the shifted training-time sampler.
    """
    if shift <= 0:
        raise UserError(f"shift must be > 0, got {shift}")
    return shift * t / (1 + (shift - 1) * t)
