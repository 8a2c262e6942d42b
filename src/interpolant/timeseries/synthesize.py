"""TSDiff's "synthesize" (Kollovieh et al. 2023, sec. 5.3): unconditional samples of windows as
training data for downstream forecasters.

- :func:`synthesize`: N unconditional windows (model space, i.e. already scaled) from any
  sampler, one per-sample stream each.
- :func:`tstr` (train on synthetic, test on real): fit any forecaster on synthetic windows and
  score it on real test windows (normalised CRPS; a point forecaster's CRPS is its normalised
  absolute error).
- :func:`linear_predictive_score` (LPS): TSTR with the ridge model of
  :mod:`~interpolant.timeseries.baselines` (context -> horizon in model space), next to the
  same ridge trained on the real training windows (the paper's reference).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import UserError
from ..predictions import Model
from ..randomness import Streams
from ..solvers import Sampler, sample
from .baselines import Ridge, ridge_forecast
from .forecast import ancestral
from .metrics import crps
from .windows import Windows, WindowSpec

Forecaster = Callable[[Windows], Tensor]


def synthesize(
    model: Model,
    n: int,
    spec: WindowSpec,
    sampler: Sampler | None = None,
    seed: int = 0,
) -> Windows:
    """``n`` unconditional windows from ``model`` (model space: loc 0, scale 1)."""
    if n < 1:
        raise UserError(f"n must be >= 1, got {n}")
    index = torch.arange(n)
    noise = Streams(seed, index, "timeseries-synthesize").normal((spec.channels, spec.length))
    with torch.no_grad():
        spec_ = ancestral(seed=seed) if sampler is None else sampler
        x = sample(model, noise, spec_, index=index).x
    return as_windows(x.to(torch.float64), spec)


def as_windows(values: Tensor, spec: WindowSpec) -> Windows:
    """Model-space windows (N, C, L) as fully observed :class:`Windows` with loc 0, scale 1."""
    if values.ndim != 3 or values.shape[1:] != (spec.channels, spec.length):
        raise UserError(
            f"windows must have shape (N, {spec.channels}, {spec.length}), "
            f"got {tuple(values.shape)}"
        )
    n = values.shape[0]
    ones = torch.ones(n, dtype=torch.float64)
    return Windows(
        values,
        torch.ones_like(values),
        torch.zeros(n, dtype=torch.float64),
        ones,
        torch.zeros(n, dtype=torch.long),
        torch.zeros(n, dtype=torch.long),
        spec,
    )


def ridge_trainer(lam: float = 1.0) -> Callable[[Windows], Forecaster]:
    """A trainer: windows -> the ridge point forecaster fitted on them."""

    def fit(windows: Windows) -> Forecaster:
        c = windows.spec.context
        values = windows.values[:, 0].to(torch.float64)
        model = Ridge.fit(values[:, :c], values[:, c:], lam)
        return lambda w: ridge_forecast(model, w)

    return fit


def tstr(train: Callable[[Windows], Forecaster], synthetic: Windows, test: Windows) -> float:
    """Normalised CRPS on ``test`` of a forecaster trained on ``synthetic`` windows."""
    forecaster = train(synthetic)
    return crps(forecaster(test).to(torch.float64), test.horizon(), test.horizon_observed())


def linear_predictive_score(
    synthetic: Windows, real_train: Windows, test: Windows, lam: float = 1.0
) -> dict[str, float]:
    """LPS: the test CRPS of ridge trained on synthetic windows, and trained on real ones."""
    fit = ridge_trainer(lam)
    return {"synthetic": tstr(fit, synthetic, test), "real": tstr(fit, real_train, test)}
