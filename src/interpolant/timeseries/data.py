"""Series to train and test on: the real series statsmodels ships, exact Gaussian-process
windows (seed paper 13's oracle) and a user's own CSV or ``.npy``. Nothing is downloaded.

statsmodels series (name: what, frequency, seasonal period used by seasonal naive / MASE):

- ``co2``: Mauna Loa CO2 (ppm), weekly 1958-2001 averaged to **monthly** (526 points; the
  weekly gaps become monthly means of the weeks present), period 12;
- ``elnino``: Nino 1+2 sea-surface temperature, **monthly** 1950-2010 (732 points), period 12;
- ``sunspots``: yearly sunspot numbers 1700-2008 (**yearly**, 309 points), period 11;
- ``nile``: yearly Nile flow at Aswan 1871-1970 (100 points), period 1;
- ``macrodata:COLUMN``: US macro data, **quarterly** 1959-2009 (203 points), period 4
  (e.g. ``macrodata:realgdp``, ``macrodata:cpi``, ``macrodata:unemp``).

The GP windows are y_i = a sin(2 pi i / p) + b cos(2 pi i / p) + u_i with a, b ~ N(0, 1) and u an
AR(1) (phi, innovation sd): jointly N(0, K), ``K_ij = cos(2 pi (i - j) / p) +
sd^2 phi^|i-j| / (1 - phi^2)``, so the true forecast law is known
(:func:`gaussian_conditional`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import MissingDependencyError, MissingFileError, UserError


@dataclass(frozen=True)
class SeriesSet:
    """Several series (1-D float64 arrays, NaN = missing) with their frequency and period."""

    name: str
    series: list
    freq: str
    period: int

    @property
    def channels(self) -> int:
        return 1


def _statsmodels():
    try:
        import statsmodels.api as sm
    except ImportError as err:
        raise MissingDependencyError(
            "the statsmodels series need statsmodels: pip install interpolant[series]"
        ) from err
    return sm


def _co2() -> SeriesSet:
    frame = _statsmodels().datasets.co2.load_pandas().data
    monthly = frame["co2"].resample("MS").mean().to_numpy(dtype=np.float64)
    return SeriesSet("co2", [monthly], "M", 12)


def _elnino() -> SeriesSet:
    frame = _statsmodels().datasets.elnino.load_pandas().data
    values = frame.drop(columns="YEAR").to_numpy(dtype=np.float64).reshape(-1)
    return SeriesSet("elnino", [values], "M", 12)


def _sunspots() -> SeriesSet:
    frame = _statsmodels().datasets.sunspots.load_pandas().data
    return SeriesSet("sunspots", [frame["SUNACTIVITY"].to_numpy(np.float64)], "A", 11)


def _nile() -> SeriesSet:
    frame = _statsmodels().datasets.nile.load_pandas().data
    return SeriesSet("nile", [frame["volume"].to_numpy(np.float64)], "A", 1)


def _macrodata(column: str) -> SeriesSet:
    frame = _statsmodels().datasets.macrodata.load_pandas().data
    if column not in frame.columns or column in ("year", "quarter"):
        options = [c for c in frame.columns if c not in ("year", "quarter")]
        raise UserError(f"macrodata has no series {column!r}; choose one of {options}")
    return SeriesSet(f"macrodata:{column}", [frame[column].to_numpy(np.float64)], "Q", 4)


STATSMODELS_SERIES = {"co2": _co2, "elnino": _elnino, "sunspots": _sunspots, "nile": _nile}


def load_statsmodels(name: str) -> SeriesSet:
    """One of the statsmodels series (see the module docstring)."""
    if name.startswith("macrodata:"):
        return _macrodata(name.split(":", 1)[1])
    if name not in STATSMODELS_SERIES:
        raise UserError(
            f"unknown series {name!r}; choose one of {sorted(STATSMODELS_SERIES)} or "
            "macrodata:COLUMN"
        )
    return STATSMODELS_SERIES[name]()


def seasonal_ar_covariance(length: int, period: int, phi: float, innovation_sd: float) -> Tensor:
    """K of the seasonal + AR(1) window (float64), ``(length, length)``."""
    i = torch.arange(length, dtype=torch.float64)
    lag = i[:, None] - i[None, :]
    ar = innovation_sd**2 * phi ** lag.abs() / (1 - phi**2)
    return torch.cos(2 * math.pi * lag / period) + ar


def gaussian_conditional(cov: Tensor, y_ctx: Tensor, n_ctx: int) -> tuple[Tensor, Tensor]:
    """The exact law N(mu*, Sigma*) of the rest of a N(0, cov) window given its first n_ctx
    entries (rows of y_ctx): mu* = K_hc K_cc^-1 y, Sigma* = K_hh - K_hc K_cc^-1 K_ch."""
    k_cc, k_hc, k_hh = cov[:n_ctx, :n_ctx], cov[n_ctx:, :n_ctx], cov[n_ctx:, n_ctx:]
    gain = torch.linalg.solve(k_cc, k_hc.T).T
    return y_ctx @ gain.T, k_hh - gain @ k_hc.T


def gp_windows(
    n: int,
    length: int = 96,
    period: int = 24,
    phi: float = 0.8,
    innovation_sd: float = 0.3,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """(windows (n, length) float64, their covariance K): exact draws of N(0, K)."""
    cov = seasonal_ar_covariance(length, period, phi, innovation_sd)
    z = torch.randn(n, length, dtype=torch.float64, generator=generator)
    return z @ torch.linalg.cholesky(cov).T, cov


def load_series_file(
    path: str | Path, *, id_column: str | None = None, value_column: str | None = None
) -> list:
    """Series from a file: ``.npy`` (1-D, or 2-D time x series), or a CSV in wide format (one
    numeric column per series; a non-numeric first column such as a date is ignored) or long
    format (``id_column`` names the series id column, ``value_column`` the values, default
    the last numeric column). Empty cells are missing values (NaN)."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"no series file at {str(p)!r}")
    if p.suffix == ".npy":
        arr = np.load(p, allow_pickle=False)
        if arr.ndim not in (1, 2):
            raise UserError(f"{p}: expected a 1-D or 2-D (time, series) array, got {arr.shape}")
        arr = arr.astype(np.float64)
        return [arr] if arr.ndim == 1 else [arr[:, j] for j in range(arr.shape[1])]
    if p.suffix != ".csv":
        raise UserError(f"{p}: series files are .csv or .npy, got {p.suffix!r}")
    import pandas as pd

    frame = pd.read_csv(p)
    if id_column is not None:
        if id_column not in frame.columns:
            raise UserError(f"{p}: no id column {id_column!r}; columns are {list(frame.columns)}")
        numeric = [c for c in frame.columns if c != id_column and _is_numeric(frame[c])]
        column = value_column or (numeric[-1] if numeric else None)
        if column is None or column not in frame.columns:
            raise UserError(f"{p}: no numeric value column (columns {list(frame.columns)})")
        return [
            group[column].to_numpy(np.float64) for _, group in frame.groupby(id_column, sort=False)
        ]
    columns = [c for c in frame.columns if _is_numeric(frame[c])]
    if not columns:
        raise UserError(f"{p}: no numeric column; give one column per series")
    return [frame[c].to_numpy(np.float64) for c in columns]


def _is_numeric(column) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(column))
