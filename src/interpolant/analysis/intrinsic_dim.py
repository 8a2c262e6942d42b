"""Intrinsic dimension from a diffusion model (seed paper 10, Horvat & Pfister 2024).

Two estimators, both reading the local geometry from derivatives of the learned field:

* **normal bundle** (Stanczuk et al. 2024): at a small noise level the score of points
  ``x = alpha a + sigma eps`` near an anchor a points along the normal space of the data manifold,
  so the matrix of n such scores (centred: their mean is the density's drift along the manifold)
  has rank D - d up to O(sigma). Its singular values drop at the largest gap;
  ``ID = D - (number of singular values before the gap)``.
* **Jacobian flow** (the paper): integrate the probability-flow ODE ``dx/dt = u(x, t)`` together
  with its variational equation ``dY/dt = (d u / d x) Y`` (Y(t_from) = I); near a d-dimensional
  manifold the d tangent singular values of Y stay of order one while the D - d normal ones
  shrink like sigma(t_to). ``ID = number of singular values before the largest gap``.

Gaps are measured between consecutive log singular values. A non-conservative field's
antisymmetric part rotates tangent into normal directions and blurs both spectra (the paper's
point; ``repro.seed10_gauge`` measures it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError
from ..paths import GaussianPath
from ..randomness import Streams
from .derivatives import jacobian

ScoreFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class DimensionEstimate:
    """Per-anchor intrinsic dimensions (A,) and the singular values they were read from."""

    dims: Tensor
    singular_values: Tensor


def _check_t(t: float, name: str = "t") -> float:
    if not isinstance(t, float | int) or not 0 < float(t) < 1:
        raise UserError(
            f"{name} = {t!r} is outside the path's noise range: estimate at 0 < t < 1 (a small "
            "t, where sigma(t) is a few percent of the data's scale, for the normal bundle)"
        )
    return float(t)


def _at(fn: ScoreFn, t: Tensor) -> Callable[[Tensor], Tensor]:
    """``fn`` at the fixed times ``t``, as a field of x."""
    return lambda x: fn(x, t)


def gap_index(singular_values: Tensor) -> Tensor:
    """How many (descending) singular values come before the largest log-gap, per row."""
    logs = singular_values.clamp_min(torch.finfo(singular_values.dtype).tiny).log()
    return (logs[:, :-1] - logs[:, 1:]).argmax(1) + 1


def normal_bundle_dim(
    score: ScoreFn,
    anchors: Tensor,
    t: float,
    path: GaussianPath,
    n_perturb: int = 64,
    seed: int = 0,
) -> DimensionEstimate:
    """The normal-bundle estimate at each anchor (A, D); perturbations from the stream
    ``"normal-bundle"`` (anchor i's from its own key)."""
    t = _check_t(t)
    if anchors.ndim != 2:
        raise UserError(f"anchors must be (A, D), got {tuple(anchors.shape)}")
    n, dim = anchors.shape
    if n_perturb < dim:
        raise UserError(f"n_perturb must be >= D = {dim} to see every normal direction")
    tt = torch.tensor(t, dtype=torch.float64)
    a, s = float(path.alpha(tt)), float(path.sigma(tt))
    eps = Streams(seed, n, "normal-bundle").normal((n_perturb, dim), dtype=torch.float64)
    x = (a * anchors.to(torch.float64)[:, None] + s * eps).reshape(n * n_perturb, dim)
    x = x.to(anchors.dtype)
    scores = score(x, torch.full((x.shape[0],), t, dtype=x.dtype)).reshape(n, n_perturb, dim)
    # Centred: the mean score is the density's drift along the manifold (tangent), not normal.
    sv = torch.linalg.svdvals((scores - scores.mean(1, keepdim=True)).double())
    return DimensionEstimate(dim - gap_index(sv), sv)


def jacobian_flow_dim(
    velocity: ScoreFn,
    start: Tensor,
    t_from: float,
    t_to: float,
    steps: int = 50,
) -> DimensionEstimate:
    """The Jacobian-flow estimate: Euler steps of the ODE and its variational equation from
    ``t_from`` down to ``t_to`` (both in (0, 1]; t_to > 0), started at ``start`` (A, D)."""
    t_to = _check_t(t_to, "t_to")
    if not t_to < t_from <= 1:
        raise UserError(f"need t_to < t_from <= 1, got t_from = {t_from}, t_to = {t_to}")
    if steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}")
    x = start.to(torch.float64)
    y = torch.eye(x.shape[1], dtype=torch.float64).expand(x.shape[0], -1, -1).clone()
    times = torch.linspace(float(t_from), t_to, steps + 1, dtype=torch.float64)
    for i in range(steps):
        h = float(times[i] - times[i + 1])
        tt = torch.full((x.shape[0],), float(times[i]), dtype=torch.float64)
        jac = jacobian(_at(velocity, tt), x)
        # Euler step back in time of dx/dt = u and dY/dt = (du/dx) Y.
        x = x - h * velocity(x, tt)
        y = y - h * jac @ y
    sv = torch.linalg.svdvals(y)
    return DimensionEstimate(gap_index(sv), sv)


__all__ = ["DimensionEstimate", "gap_index", "jacobian_flow_dim", "normal_bundle_dim"]
