"""Baseline forecasters on the same windows: seasonal naive and a ridge linear model.

- Seasonal naive: y_hat_{c+h} = y_{c - p + (h mod p)}, the last observed season repeated (a
  point forecast; scored as S identical samples, its CRPS is then the normalised MAE).
- Ridge: the horizon as a linear function of the context in model space (scaled windows),
  ``W = argmin ||Y - [X, 1] W||^2 + lam ||W||^2`` (the intercept not penalised), closed form
  ``(X1^T X1 + lam D)^-1 X1^T Y``. On windows of a Gaussian process with many training windows
  and lam -> 0 it tends to the conditional-mean gain K_hc K_cc^-1 (a test checks this).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError
from .windows import Windows


def seasonal_naive(windows: Windows, samples: int = 1, period: int | None = None) -> Tensor:
    """Seasonal-naive forecasts (N, samples, H) in the series' units."""
    spec = windows.spec
    p = spec.period if period is None else period
    if not 1 <= p <= spec.context:
        raise UserError(f"period must lie in 1..context = {spec.context}, got {p}")
    ctx = windows.context_values()
    pos = spec.context - p + torch.arange(spec.horizon) % p
    return ctx[:, pos][:, None].expand(-1, samples, -1).clone()


@dataclass
class Ridge:
    """A fitted ridge map from scaled context (N, context) to scaled horizon (N, H)."""

    weight: Tensor  # (context + 1, H), the last row the intercept

    @classmethod
    def fit(cls, context: Tensor, horizon: Tensor, lam: float = 1.0) -> Ridge:
        if context.ndim != 2 or horizon.ndim != 2 or context.shape[0] != horizon.shape[0]:
            raise UserError("ridge needs context (N, C) and horizon (N, H) with the same N")
        if lam < 0:
            raise UserError(f"lam must be >= 0, got {lam}")
        x = torch.cat([context, torch.ones(context.shape[0], 1, dtype=context.dtype)], 1)
        penalty = torch.eye(x.shape[1], dtype=x.dtype) * lam
        penalty[-1, -1] = 0.0
        return cls(torch.linalg.solve(x.T @ x + penalty, x.T @ horizon))

    def predict(self, context: Tensor) -> Tensor:
        x = torch.cat([context, torch.ones(context.shape[0], 1, dtype=context.dtype)], 1)
        return x @ self.weight.to(x.dtype)


def ridge_forecast(model: Ridge, windows: Windows) -> Tensor:
    """The ridge point forecast (N, 1, H) of ``windows`` in the series' units."""
    ctx = windows.values[:, 0, : windows.spec.context].to(torch.float64)
    return windows.unscale(model.predict(ctx))[:, None]
