"""Windows of long series for a window diffusion model (TSDiff, Kollovieh et al. 2023, sec. 4).

A window is ``length = context + horizon`` consecutive points of one series. Channel 0 holds the
series; with ``lags = (l_1, ..., l_k)`` channel i holds the series ``l_i`` steps earlier (the
paper's lagged copies), so a window needs ``context + max(lags)`` points of history before its
horizon. Each window is scaled by statistics of its own context (observed points only):

- ``"mean"`` (the paper's and GluonTS's ``MeanScaler``): ``y / scale``, scale = mean |y|;
- ``"standard"``: ``(y - loc) / scale`` with the context's mean and standard deviation (better
  for series far from 0 with small relative variation, such as CO2 in ppm);
- ``"none"``.

Missing values are NaN on input and become ``observed == 0`` (their value is set to 0 so that
nothing NaN reaches a network). The forecast-time mask (:meth:`WindowSpec.known`) is 1 where a
value is known when forecasting: the context of channel 0 and every lagged entry whose source
lies in the context. Infinite values are refused (a NaN is "missing", an inf is a bug).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError

SCALINGS = ("mean", "standard", "none")


@dataclass(frozen=True)
class WindowSpec:
    """How series are cut into windows (stored with a trained model's checkpoint)."""

    context: int
    horizon: int
    lags: tuple[int, ...] = ()
    scaling: str = "mean"
    freq: str | None = None
    period: int = 1

    def __post_init__(self) -> None:
        if self.context < 1 or self.horizon < 1:
            raise UserError(f"context and horizon must be >= 1, got {self.context}, {self.horizon}")
        if any(lag < 1 for lag in self.lags):
            raise UserError(f"lags must be >= 1, got {list(self.lags)}")
        if self.scaling not in SCALINGS:
            raise UserError(f"scaling must be one of {SCALINGS}, got {self.scaling!r}")
        if self.period < 1:
            raise UserError(f"period must be >= 1, got {self.period}")
        object.__setattr__(self, "lags", tuple(int(v) for v in self.lags))

    @property
    def length(self) -> int:
        return self.context + self.horizon

    @property
    def channels(self) -> int:
        return 1 + len(self.lags)

    @property
    def history_needed(self) -> int:
        """Points of history a forecast needs: the context and the longest lag before it."""
        return self.context + max(self.lags, default=0)

    def known(self) -> Tensor:
        """(C, L) mask of what is known at forecast time (1 = known), float64."""
        pos = torch.arange(self.length)
        rows = [pos < self.context] + [pos - lag < self.context for lag in self.lags]
        return torch.stack(rows).to(torch.float64)

    def to_dict(self) -> dict:
        return {**asdict(self), "lags": list(self.lags)}

    @classmethod
    def from_dict(cls, d: dict) -> WindowSpec:
        return cls(**{**d, "lags": tuple(d.get("lags", ()))})


@dataclass
class Windows:
    """Scaled windows ``values`` (N, C, L), ``observed`` (N, C, L) 1/0, and per window its
    ``loc``, ``scale`` (N,), ``series`` id and ``end`` (index of its last point + 1 in its
    series)."""

    values: Tensor
    observed: Tensor
    loc: Tensor
    scale: Tensor
    series: Tensor
    end: Tensor
    spec: WindowSpec = field(repr=False)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def unscale(self, x: Tensor) -> Tensor:
        """Model-space values (N, ...) back to the series' units."""
        shape = (-1,) + (1,) * (x.ndim - 1)
        return x * self.scale.reshape(shape).to(x) + self.loc.reshape(shape).to(x)

    def horizon(self) -> Tensor:
        """The true horizon of channel 0 in the series' units (N, H) (0 where missing)."""
        return self.unscale(self.values[:, 0, self.spec.context :])

    def horizon_observed(self) -> Tensor:
        return self.observed[:, 0, self.spec.context :]

    def context_values(self) -> Tensor:
        """Channel 0's context in the series' units (N, context)."""
        return self.unscale(self.values[:, 0, : self.spec.context])

    def subset(self, rows: Tensor | Sequence[int]) -> Windows:
        idx = torch.as_tensor(rows, dtype=torch.long)
        return Windows(
            self.values[idx],
            self.observed[idx],
            self.loc[idx],
            self.scale[idx],
            self.series[idx],
            self.end[idx],
            self.spec,
        )


def as_series_list(series: np.ndarray | Tensor | Sequence, source: str = "series") -> list:
    """A list of 1-D float64 arrays from one array (T,), a 2-D array (one column per series) or
    a list of 1-D arrays; refuses infinite values."""
    if isinstance(series, Tensor):
        series = series.detach().cpu().numpy()
    if isinstance(series, np.ndarray):
        arr = series.astype(np.float64)
        if arr.ndim == 1:
            items = [arr]
        elif arr.ndim == 2:
            items = [arr[:, j] for j in range(arr.shape[1])]
        else:
            raise UserError(f"{source}: expected 1-D or 2-D (time, series), got {arr.shape}")
    else:
        items = [np.asarray(s, dtype=np.float64) for s in series]
    out = []
    for j, s in enumerate(items):
        if s.ndim != 1:
            raise UserError(f"{source}: series {j} has shape {s.shape}, expected 1-D")
        if bool(np.isinf(s).any()):
            raise UserError(
                f"{source}: series {j} holds infinite values at positions "
                f"{np.flatnonzero(np.isinf(s))[:5].tolist()}; only NaN marks a missing value"
            )
        out.append(s)
    if not out:
        raise UserError(f"{source}: no series given")
    return out


def _scale_stats(ctx: np.ndarray, scaling: str, where: str) -> tuple[float, float]:
    """(loc, scale) of one context (NaN = missing)."""
    obs = ctx[~np.isnan(ctx)]
    if obs.size == 0:
        raise UserError(f"{where}: the context has no observed value, so it cannot be scaled")
    if scaling == "mean":
        scale = float(np.abs(obs).mean())
        return 0.0, scale if scale > 0 else 1.0
    if scaling == "standard":
        sd = float(obs.std())
        return float(obs.mean()), sd if sd > 0 else 1.0
    return 0.0, 1.0


def window_at(series: np.ndarray, end: int, spec: WindowSpec, where: str) -> tuple:
    """(values (C, L) scaled with NaN -> 0, observed (C, L), loc, scale) of the window of
    ``series`` ending at ``end`` (exclusive); points beyond the series are missing."""
    padded = np.concatenate([series, np.full(max(0, end - series.size), np.nan)])
    start = end - spec.length
    rows = [padded[start:end]] + [padded[start - lag : end - lag] for lag in spec.lags]
    raw = np.stack(rows)
    loc, scale = _scale_stats(raw[0, : spec.context], spec.scaling, where)
    observed = ~np.isnan(raw)
    values = np.where(observed, (np.nan_to_num(raw) - loc) / scale, 0.0)
    return values, observed.astype(np.float64), loc, scale


def make_windows(
    series: np.ndarray | Tensor | Sequence,
    spec: WindowSpec,
    *,
    ends: Sequence[Sequence[int]] | None = None,
    stride: int = 1,
    last_end: Sequence[int] | int | None = None,
) -> Windows:
    """Windows of every series: at the given ``ends`` per series, or every ``stride`` points
    with the last one ending at ``last_end`` (default: the series' end)."""
    items = as_series_list(series)
    vals, obs, locs, scales, ids, window_ends = [], [], [], [], [], []
    for j, s in enumerate(items):
        first = spec.history_needed + spec.horizon
        if ends is None:
            stop = (
                s.size
                if last_end is None
                else (last_end if isinstance(last_end, int) else last_end[j])
            )
            if stop < first:
                raise UserError(
                    f"series {j} has {stop} usable points; a window needs {first} "
                    f"(context {spec.context} + longest lag {max(spec.lags, default=0)} + "
                    f"horizon {spec.horizon})"
                )
            ends_j = list(range(stop, first - 1, -stride))[::-1]
        else:
            ends_j = list(ends[j])
        for e in ends_j:
            if e < first:
                raise UserError(f"series {j}: a window ending at {e} needs {first} points")
            v, o, loc, scale = window_at(s, e, spec, f"series {j}, window ending at {e}")
            vals.append(v)
            obs.append(o)
            locs.append(loc)
            scales.append(scale)
            ids.append(j)
            window_ends.append(e)
    if not vals:
        raise UserError("no windows: give ends or longer series")
    return Windows(
        torch.tensor(np.stack(vals)),
        torch.tensor(np.stack(obs)),
        torch.tensor(locs, dtype=torch.float64),
        torch.tensor(scales, dtype=torch.float64),
        torch.tensor(ids),
        torch.tensor(window_ends),
        spec,
    )


def train_test_windows(
    series: np.ndarray | Tensor | Sequence, spec: WindowSpec, test_windows: int = 5
) -> tuple[Windows, Windows]:
    """Rolling evaluation as in GluonTS: the last ``test_windows`` horizons of each series are
    test windows (ending at T, T - H, ...); training windows (stride 1) end before the first
    test horizon starts, so no test target is ever seen in training."""
    items = as_series_list(series)
    back = range(test_windows - 1, -1, -1)
    test_ends = [[s.size - k * spec.horizon for k in back] for s in items]
    train_stop = [e[0] - spec.horizon for e in test_ends]
    train = make_windows(items, spec, last_end=train_stop)
    test = make_windows(items, spec, ends=test_ends)
    return train, test


def train_val_test_windows(
    series: np.ndarray | Tensor | Sequence,
    spec: WindowSpec,
    test_windows: int = 5,
    val_windows: int = 4,
) -> tuple[Windows, Windows, Windows]:
    """(train, validation, test) windows: the test windows of :func:`train_test_windows`; the
    ``val_windows`` horizons just before the first test horizon are validation windows (for
    choices such as a guidance scale or a refinement strength); training windows end before
    the first validation horizon starts (as the official TSDiff code's ``use_validation_set``).
    The validation windows are cut from each series truncated where its first test horizon
    starts, so no validation window holds a test target and a choice made on them cannot read
    one. Window ends index the full series."""
    if val_windows < 1:
        raise UserError(f"val_windows must be >= 1 for a validation split, got {val_windows}")
    items = as_series_list(series)
    need = spec.history_needed + spec.horizon * (1 + val_windows + test_windows)
    for j, s in enumerate(items):
        if s.size < need:
            raise UserError(
                f"series {j} has {s.size} points; one training window before {val_windows} "
                f"validation and {test_windows} test horizons of {spec.horizon} needs {need} "
                "(lower val_windows / test_windows, or use a shorter context)"
            )
    test_start = [s.size - test_windows * spec.horizon for s in items]
    _, test = train_test_windows(items, spec, test_windows)
    train, val = train_test_windows(
        [s[:stop] for s, stop in zip(items, test_start, strict=True)], spec, val_windows
    )
    return train, val, test


def forecast_windows(
    history: np.ndarray | Tensor | Sequence, spec: WindowSpec, horizon: int | None = None
) -> Windows:
    """One window per series whose context is the last ``context`` points of its history and
    whose horizon is unknown (to be forecast)."""
    if horizon is not None and horizon > spec.horizon:
        raise UserError(
            f"horizon {horizon} is longer than the trained window's horizon {spec.horizon}; "
            f"forecast at most {spec.horizon} steps (or train with a longer horizon)"
        )
    items = as_series_list(history, "history")
    for j, s in enumerate(items):
        if s.size < spec.history_needed:
            raise UserError(
                f"history of series {j} has {s.size} points; the model needs at least "
                f"{spec.history_needed} (context {spec.context} + longest lag "
                f"{max(spec.lags, default=0)})"
            )
    return make_windows(items, spec, ends=[[s.size + spec.horizon] for s in items])
