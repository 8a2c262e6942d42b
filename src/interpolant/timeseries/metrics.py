"""Probabilistic forecast metrics, as GluonTS and the TSDiff paper report them.

All take sample forecasts ``samples`` of shape (N, S, H) (N series, S samples, H horizon steps)
and the truth ``y`` (N, H); an optional ``mask`` (N, H) of 1 = observed restricts every sum to
observed points.

- CRPS (Gneiting and Raftery 2007, eq. 21): ``CRPS(F, y) = E|X - y| - E|X - X'| / 2``, estimated
  with the S samples (the "energy form" estimator, all S^2 pairs), summed over points and
  normalised by ``sum |y|`` (Kollovieh et al. 2023, sec. 5; GluonTS's ``mean_wQuantileLoss``
  approximates the same number through quantiles).
- Weighted quantile loss at levels q: ``2 sum pinball_q(y - Q_q) / sum |y|`` with Q_q the
  sample quantile, averaged over levels (GluonTS ``wQuantileLoss``; its mean over
  q = 0.1 .. 0.9 approximates the normalised CRPS).
- MASE (Hyndman and Koehler 2006): mean |median - y| over the horizon divided by the in-sample
  mean absolute seasonal difference of the history, per series, then averaged.
- Coverage of the central interval [Q_{(1-level)/2}, Q_{(1+level)/2}].
- ``gaussian_crps``: the closed form for N(mu, sd^2) (Gneiting et al. 2005, eq. 5),
  ``sd [z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)]``, z = (y - mu) / sd, used by the tests and
  the oracle rows of the benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import UserError
from ..guidance.energy import pinball


def _check(samples: Tensor, y: Tensor, mask: Tensor | None) -> Tensor:
    """The (N, H) float mask (ones when None) after checking the shapes."""
    if samples.ndim != 3 or y.ndim != 2 or samples.shape[0] != y.shape[0]:
        raise UserError(
            f"samples must be (N, S, H) and y (N, H); got {tuple(samples.shape)}, {tuple(y.shape)}"
        )
    if samples.shape[2] != y.shape[1]:
        raise UserError(f"samples cover {samples.shape[2]} steps, y {y.shape[1]}")
    if mask is None:
        return torch.ones_like(y, dtype=samples.dtype)
    if mask.shape != y.shape:
        raise UserError(f"mask must have y's shape {tuple(y.shape)}, got {tuple(mask.shape)}")
    return mask.to(samples.dtype)


def crps_per_point(samples: Tensor, y: Tensor) -> Tensor:
    """E|X - y| - E|X - X'| / 2 per point, shape (N, H), from samples (N, S, H)."""
    first = (samples - y[:, None]).abs().mean(1)
    second = (samples[:, :, None] - samples[:, None]).abs().mean((1, 2))
    return first - 0.5 * second


def crps(samples: Tensor, y: Tensor, mask: Tensor | None = None) -> float:
    """Normalised sample CRPS: sum over points of the per-point CRPS / sum |y|."""
    m = _check(samples, y, mask)
    return float((crps_per_point(samples, y) * m).sum() / (y.abs() * m).sum())


def gaussian_crps(mu: Tensor, sd: Tensor, y: Tensor) -> Tensor:
    """The CRPS of N(mu, sd^2) at y, elementwise (closed form; sd > 0)."""
    z = (y - mu) / sd
    normal = torch.distributions.Normal(torch.zeros_like(z), torch.ones_like(z))
    pdf = normal.log_prob(z).exp()
    return sd * (z * (2 * normal.cdf(z) - 1) + 2 * pdf - 1 / math.sqrt(math.pi))


def weighted_quantile_loss(
    samples: Tensor,
    y: Tensor,
    levels: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    mask: Tensor | None = None,
) -> float:
    """Mean over ``levels`` of 2 sum pinball_q(y - Q_q) / sum |y| (GluonTS mean_wQuantileLoss)."""
    m = _check(samples, y, mask)
    if not levels or any(not 0 < q < 1 for q in levels):
        raise UserError(f"levels must lie strictly between 0 and 1, got {list(levels)}")
    total = (y.abs() * m).sum()
    losses = []
    for q in levels:
        quant = samples.quantile(q, dim=1)
        losses.append(2 * (pinball(y - quant, torch.tensor(q, dtype=y.dtype)) * m).sum() / total)
    return float(torch.stack(losses).mean())


def mase(samples: Tensor, y: Tensor, history: Tensor, period: int = 1) -> float:
    """Mean absolute scaled error of the sample median; ``history`` (N, T) with T > period is the
    in-sample series each forecast follows."""
    _check(samples, y, None)
    if history.ndim != 2 or history.shape[0] != y.shape[0] or history.shape[1] <= period:
        raise UserError(
            f"history must be (N, T) with T > period = {period}, got {tuple(history.shape)}"
        )
    scale = (history[:, period:] - history[:, :-period]).abs().mean(1)
    if bool((scale == 0).any()):
        raise UserError("MASE is undefined for a history whose seasonal differences are all 0")
    error = (samples.median(1).values - y).abs().mean(1)
    return float((error / scale).mean())


def coverage(samples: Tensor, y: Tensor, level: float = 0.8, mask: Tensor | None = None) -> float:
    """Fraction of points inside the central ``level`` sample interval."""
    m = _check(samples, y, mask)
    if not 0 < level < 1:
        raise UserError(f"level must lie strictly between 0 and 1, got {level}")
    lo = samples.quantile((1 - level) / 2, dim=1)
    hi = samples.quantile((1 + level) / 2, dim=1)
    inside = ((y >= lo) & (y <= hi)).to(samples.dtype)
    return float((inside * m).sum() / m.sum())


def scores(samples: Tensor, y: Tensor, mask: Tensor | None = None) -> dict[str, float]:
    """CRPS, weighted quantile loss and 80 % coverage in one dict; a forecast with non-finite
    samples scores CRPS = inf (a diverged run must not look good)."""
    if not bool(samples.isfinite().all()):
        return {"crps": math.inf, "wql": math.inf, "coverage80": math.nan}
    return {
        "crps": crps(samples, y, mask),
        "wql": weighted_quantile_loss(samples, y, mask=mask),
        "coverage80": coverage(samples, y, 0.8, mask),
    }
