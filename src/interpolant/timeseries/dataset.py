"""Series as a registered data set: ``data.name=series`` with ``data.options.source`` one of the
statsmodels series (``co2``, ``elnino``, ``sunspots``, ``nile``, ``macrodata:COLUMN``) or a
user's ``.csv`` / ``.npy`` file, so ``interpolant train`` writes a normal run folder whose
checkpoint stores the window spec (``data_info["extra"]["timeseries"]``).

Splits are those of :func:`~.windows.train_test_windows`: ``"test"`` holds the last
``test_windows`` horizons of every series (rolling, GluonTS style), ``"train"`` the windows
(every ``stride`` points) that end before the first test horizon, ``"all"`` the windows of the
whole series. With ``val_windows = V > 0`` (the ``series-*`` presets: 4) the V horizons just
before the test horizons are the ``"val"`` split and the training windows end before them
(:func:`~.windows.train_val_test_windows`); the choices ``interpolant eval`` / ``forecast``
make (guidance scale, refinement strength) are made on them, never on the test windows. The
same options rebuild the same windows (:func:`series_windows`), which is how
``interpolant eval RUN`` scores a run on its test windows.

A CSV whose first column holds dates has its frequency inferred (pandas ``infer_freq``) and
compared with the run's (``M`` monthly, ``Q`` quarterly, ``A`` yearly, ``W`` weekly, ``D``
daily, ``H`` hourly, ...), so a daily file fed to a monthly model is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from .data import STATSMODELS_SERIES, SeriesSet, load_series_file, load_statsmodels
from .windows import (
    Windows,
    WindowSpec,
    make_windows,
    train_test_windows,
    train_val_test_windows,
)

#: The keys ``data.options`` may hold for ``data.name=series``.
SERIES_OPTIONS = (
    "source",
    "context",
    "horizon",
    "lags",
    "scaling",
    "freq",
    "period",
    "test_windows",
    "val_windows",
    "stride",
    "id_column",
    "value_column",
)

#: pandas offset aliases -> the one-letter frequency the runs record.
_FREQ_ALIASES = {
    "MS": "M",
    "ME": "M",
    "M": "M",
    "QS": "Q",
    "QE": "Q",
    "Q": "Q",
    "AS": "A",
    "YS": "A",
    "YE": "A",
    "Y": "A",
    "A": "A",
    "W": "W",
    "D": "D",
    "B": "D",
    "H": "H",
    "h": "H",
}


def normalise_freq(freq: str | None) -> str | None:
    """``"MS"``, ``"M"``, ``"ME"`` -> ``"M"``; ``"A-DEC"``, ``"YS-JAN"``, ``"Y"`` -> ``"A"``;
    ``"W-SUN"`` -> ``"W"``; others unchanged (None stays None)."""
    if freq is None:
        return None
    head = freq.split("-")[0]
    head = head.lstrip("0123456789") or head
    return _FREQ_ALIASES.get(head, _FREQ_ALIASES.get(head.upper(), head))


def file_freq(path: str | Path) -> str | None:
    """The frequency of a CSV whose first column holds dates (None when it holds none, or
    when pandas cannot infer one)."""
    p = Path(path)
    if p.suffix != ".csv":
        return None
    import pandas as pd

    frame = pd.read_csv(p, nrows=400)
    if frame.empty or pd.api.types.is_numeric_dtype(frame.iloc[:, 0]):
        return None
    try:
        dates = pd.to_datetime(frame.iloc[:, 0], format="mixed")
    except (ValueError, TypeError):
        return None
    if dates.duplicated().any():  # long format: the dates repeat per series
        dates = pd.Series(dates.unique())
    if len(dates) < 3:
        return None
    try:
        return normalise_freq(pd.infer_freq(pd.DatetimeIndex(dates)))
    except (ValueError, TypeError):
        return None


def check_freq(found: str | None, expected: str | None, where: str) -> None:
    """Refuse series of frequency ``found`` for a model of frequency ``expected``."""
    a, b = normalise_freq(found), normalise_freq(expected)
    if a is not None and b is not None and a != b:
        raise UserError(
            f"{where} has frequency {a!r} but the model is for series of frequency {b!r}; "
            "resample the series or train a model on this frequency"
        )


def load_source(
    source: str,
    *,
    freq: str | None = None,
    period: int | None = None,
    id_column: str | None = None,
    value_column: str | None = None,
) -> SeriesSet:
    """The series of ``source``: a statsmodels name (its own frequency and period; a ``freq``
    that contradicts it is refused) or a ``.csv`` / ``.npy`` path (``freq`` and ``period`` as
    given, default: the CSV's inferred frequency and period 1)."""
    if not source:
        raise UserError(
            "data.options.source is empty: give a statsmodels series "
            f"({', '.join(sorted(STATSMODELS_SERIES))}, macrodata:COLUMN) or a .csv/.npy file"
        )
    if source in STATSMODELS_SERIES or source.startswith("macrodata:"):
        data = load_statsmodels(source)
        check_freq(freq, data.freq, f"statsmodels series {source!r}")
        return SeriesSet(data.name, data.series, data.freq, period or data.period)
    series = load_series_file(source, id_column=id_column, value_column=value_column)
    found = file_freq(source)
    check_freq(found, freq, str(source))
    return SeriesSet(str(source), series, normalise_freq(freq or found) or "", period or 1)


@dataclass
class SeriesWindows:
    """A data set's series, window spec and its train / (validation) / test windows."""

    data: SeriesSet
    spec: WindowSpec
    train: Windows
    test: Windows
    test_windows: int
    #: The validation windows (None when ``val_windows`` is 0) and horizons per series.
    val: Windows | None = None
    val_windows: int = 0

    def histories(self) -> list[np.ndarray]:
        """Per test window, its series up to the forecast start (for MASE's in-sample scale)."""
        return [
            self.data.series[int(j)][: int(e) - self.spec.horizon]
            for j, e in zip(self.test.series, self.test.end, strict=True)
        ]


def series_windows(
    source: str = "",
    context: int = 36,
    horizon: int = 12,
    lags: list[int] | tuple[int, ...] | None = None,
    scaling: str = "standard",
    freq: str | None = None,
    period: int | None = None,
    test_windows: int = 8,
    val_windows: int = 0,
    stride: int = 1,
    id_column: str | None = None,
    value_column: str | None = None,
) -> SeriesWindows:
    """Windows of ``source`` (see the module docstring); ``lags`` default to ``[period]`` when
    the period exceeds 1, else none; ``val_windows`` > 0 adds the validation split."""
    data = load_source(
        source, freq=freq, period=period, id_column=id_column, value_column=value_column
    )
    lag_list = tuple(lags) if lags is not None else ((data.period,) if data.period > 1 else ())
    spec = WindowSpec(context, horizon, lag_list, scaling, data.freq or None, data.period)
    if test_windows < 1:
        raise UserError(f"data.options.test_windows must be >= 1, got {test_windows}")
    if stride < 1:
        raise UserError(f"data.options.stride must be >= 1, got {stride}")
    if val_windows < 0:
        raise UserError(f"data.options.val_windows must be >= 0, got {val_windows}")
    val = None
    if val_windows:
        train, val, test = train_val_test_windows(data.series, spec, test_windows, val_windows)
    else:
        train, test = train_test_windows(data.series, spec, test_windows)
    if stride > 1:
        train = train.subset(range(0, len(train), stride))
    _check_missing(train, test, "test")
    if val is not None:
        _check_missing(train, val, "validation")
    return SeriesWindows(data, spec, train, test, test_windows, val, val_windows)


def series_metrics(samples: torch.Tensor, built: SeriesWindows) -> dict[str, float]:
    """CRPS and weighted quantile loss (normalised), MASE of the median and the 50 / 80 / 90 %
    coverage of forecasts (N, S, H) of ``built.test``; missing horizon values are left out,
    MASE is averaged over the windows whose horizon and history are complete."""
    from .metrics import coverage, crps, mase, weighted_quantile_loss

    y = built.test.horizon().to(samples.dtype)
    mask = built.test.horizon_observed().to(samples.dtype)
    out = {
        "crps": crps(samples, y, mask),
        "wql": weighted_quantile_loss(samples, y, mask=mask),
    }
    period = built.spec.period
    errors = []
    for n, history in enumerate(built.histories()):
        if bool(mask[n].all()) and not np.isnan(history).any() and history.size > period:
            hist = torch.tensor(history, dtype=samples.dtype)[None]
            errors.append(mase(samples[n : n + 1], y[n : n + 1], hist, period))
    out["mase"] = float(np.mean(errors)) if errors else float("nan")
    for level in (0.5, 0.8, 0.9):
        out[f"coverage{round(100 * level)}"] = coverage(samples, y, level, mask)
    return out


def _check_missing(train: Windows, test: Windows, kind: str) -> None:
    """NaNs the mask handles: gaps inside windows. Refused: a test (or validation) horizon
    with no observed value (nothing to score) and training windows that are mostly missing."""
    empty = (test.horizon_observed().sum(1) == 0).nonzero().flatten().tolist()
    if empty:
        ends = [int(test.end[i]) for i in empty]
        raise UserError(
            f"{kind} windows ending at {ends} (series {[int(test.series[i]) for i in empty]}) "
            "have no observed value in their horizon; trim the trailing NaNs of those series"
            + ("" if kind == "test" else " or set data.options.val_windows=0")
        )
    share = 1 - float(train.observed[:, 0].mean())
    if share > 0.5:
        raise UserError(
            f"{share:.0%} of the training windows' values are missing (NaN); the masks handle "
            "gaps, not series that are mostly empty: drop those series or fill them"
        )


def load_series_data(n: int | None, split: str, generator: torch.Generator, **options: Any) -> Any:
    """The registry's loader for ``data.name=series``: LoadedData of windows (N, C, L)."""
    from ..configurable import refuse_unknown
    from ..data.base import DataInfo, LoadedData

    refuse_unknown("'series'", options, SERIES_OPTIONS, key="data.options")
    built = series_windows(**options)
    if split == "all":
        windows = make_windows(built.data.series, built.spec)
    elif split == "val":
        if built.val is None:
            raise UserError("the split 'val' needs data.options.val_windows >= 1")
        windows = built.val
    else:
        windows = built.train if split == "train" else built.test
    info = DataInfo(
        name="series",
        shape=tuple(windows.values.shape[1:]),
        n=len(windows),
        split=split,
        classes=None,
        source=f"interpolant.timeseries:{built.data.name}",
        extra={
            "timeseries": built.spec.to_dict(),
            "series_source": built.data.name,
            "test_windows": built.test_windows,
            "val_windows": built.val_windows,
        },
    )
    return LoadedData(windows.values.float(), None, info)


__all__ = [
    "SERIES_OPTIONS",
    "SeriesWindows",
    "check_freq",
    "file_freq",
    "load_series_data",
    "load_source",
    "normalise_freq",
    "series_metrics",
    "series_windows",
]
