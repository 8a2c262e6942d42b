"""Metrics against closed forms; windows, data loaders and their errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from interpolant.errors import UserError
from interpolant.timeseries import (
    WindowSpec,
    coverage,
    crps,
    forecast_windows,
    gaussian_crps,
    load_series_file,
    load_statsmodels,
    make_windows,
    mase,
    seasonal_naive,
    train_test_windows,
    weighted_quantile_loss,
)
from interpolant.timeseries.metrics import crps_per_point


def _normal_samples(n: int, s: int, h: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, s, h, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_gaussian_crps_closed_form_matches_the_integral_definition() -> None:
    # CRPS(F, y) = int (F(x) - 1{x >= y})^2 dx, by quadrature.
    mu, sd, y = 0.3, 1.7, -0.9
    f64 = torch.float64
    normal = torch.distributions.Normal(torch.tensor(mu, dtype=f64), torch.tensor(sd, dtype=f64))
    # Split at y, where the step function jumps, so the trapezoid rule stays second order.
    below = torch.linspace(-30, y, 200001, dtype=f64)
    above = torch.linspace(y, 30, 200001, dtype=f64)
    integral = float(
        torch.trapezoid(normal.cdf(below) ** 2, below)
        + torch.trapezoid((1 - normal.cdf(above)) ** 2, above)
    )
    closed = float(
        gaussian_crps(
            torch.tensor(mu, dtype=f64), torch.tensor(sd, dtype=f64), torch.tensor(y, dtype=f64)
        )
    )
    assert closed == pytest.approx(integral, rel=1e-5)


def test_sample_crps_estimates_the_gaussian_closed_form() -> None:
    samples = _normal_samples(1, 2000, 5)  # N(0, 1)
    y = torch.tensor([[-2.0, -0.5, 0.0, 0.7, 1.9]], dtype=torch.float64)
    est = crps_per_point(samples, y)
    exact = gaussian_crps(torch.zeros_like(y), torch.ones_like(y), y)
    assert torch.allclose(est, exact, atol=0.04)
    # The normalised CRPS is the per-point sum over sum |y|.
    assert crps(samples, y) == pytest.approx(float(est.sum() / y.abs().sum()))


def test_point_forecast_crps_is_the_normalised_absolute_error() -> None:
    y = torch.tensor([[1.0, -2.0, 3.0]], dtype=torch.float64)
    point = torch.tensor([[[0.5, -1.0, 5.0]]], dtype=torch.float64).expand(1, 7, 3)
    assert crps(point, y) == pytest.approx((0.5 + 1.0 + 2.0) / 6.0)


def test_quantile_loss_over_dense_levels_approximates_crps() -> None:
    # CRPS = 2 int_0^1 pinball_q(y - F^-1(q)) dq (Laio and Tamea 2007).
    samples = _normal_samples(3, 2000, 4, seed=1)
    y = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) + 2
    levels = [k / 100 for k in range(1, 100)]
    assert weighted_quantile_loss(samples, y, levels) == pytest.approx(crps(samples, y), rel=0.03)


def test_coverage_of_the_true_law_is_the_level() -> None:
    samples = _normal_samples(200, 400, 1, seed=3)
    y = torch.randn(200, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert coverage(samples, y, 0.8) == pytest.approx(0.8, abs=0.07)


def test_mase_by_hand() -> None:
    history = torch.tensor([[1.0, 2.0, 4.0, 7.0]], dtype=torch.float64)  # |diffs| mean 2
    y = torch.tensor([[8.0, 9.0]], dtype=torch.float64)
    point = torch.tensor([[[7.0, 12.0]]], dtype=torch.float64)
    assert mase(point, y, history) == pytest.approx(((1 + 3) / 2) / 2)


def test_windows_lags_scaling_and_missing_values() -> None:
    series = np.arange(1.0, 31.0)
    series[20] = np.nan
    spec = WindowSpec(context=6, horizon=2, lags=(3,), scaling="mean")
    w = make_windows(series, spec, ends=[[25]])
    ctx = series[17:23]
    scale = np.nanmean(np.abs(ctx))
    assert float(w.scale[0]) == pytest.approx(scale)
    raw = w.unscale(w.values)[0]
    # Channel 0 is series[17:25], channel 1 series[14:22] (lag 3); NaN -> value 0, observed 0.
    expected = torch.tensor(np.stack([series[17:25], series[14:22]]))
    assert torch.equal(w.observed[0] > 0, ~expected.isnan())
    assert torch.allclose(raw[w.observed[0] > 0], expected[~expected.isnan()])
    assert float(w.values[0, 0, 3]) == 0.0 and float(w.values[0, 1, 6]) == 0.0
    # Known at forecast time: the context of channel 0 and lag entries from the context.
    known = spec.known()
    assert known[0].tolist() == [1.0] * 6 + [0.0] * 2
    assert known[1].tolist() == [1.0] * 8  # sources 14..21 all precede the horizon


def test_standard_scaling_round_trip_and_seasonal_naive() -> None:
    t = np.arange(60.0)
    series = 100 + np.sin(2 * np.pi * t / 12)
    spec = WindowSpec(24, 12, scaling="standard", period=12)
    w = make_windows(series, spec, ends=[[60]])
    assert torch.allclose(w.horizon()[0], torch.tensor(series[48:60]))
    ctx_std = w.values[0, 0, :24]
    assert float(ctx_std.mean()) == pytest.approx(0.0, abs=1e-12)
    naive = seasonal_naive(w, 3)
    assert naive.shape == (1, 3, 12)
    assert torch.allclose(naive[0, 0], torch.tensor(series[36:48]))  # a pure season repeats


def test_train_test_split_never_shows_test_targets() -> None:
    series = [np.arange(100.0), np.arange(80.0)]
    spec = WindowSpec(10, 5)
    train, test = train_test_windows(series, spec, test_windows=3)
    assert test.end[test.series == 0].tolist() == [90, 95, 100]
    for j in (0, 1):
        first_test_target = int(test.end[test.series == j].min()) - spec.horizon
        assert int(train.end[train.series == j].max()) <= first_test_target


def test_clear_errors() -> None:
    spec = WindowSpec(24, 12, lags=(12,))
    with pytest.raises(UserError, match="needs at least 36"):
        forecast_windows(np.arange(30.0), spec)
    with pytest.raises(UserError, match="longer than the trained window's horizon 12"):
        forecast_windows(np.arange(40.0), spec, horizon=13)
    with pytest.raises(UserError, match="infinite"):
        make_windows(np.array([1.0, np.inf] + [1.0] * 60), spec)
    ctx_missing = np.full(48, np.nan)
    with pytest.raises(UserError, match="no observed value"):
        make_windows(ctx_missing, spec, ends=[[48]])


def test_series_files_wide_long_and_npy(tmp_path) -> None:
    wide = tmp_path / "wide.csv"
    wide.write_text("date,a,b\n2020-01,1,4\n2020-02,,5\n2020-03,3,6\n")
    a, b = load_series_file(wide)
    assert np.isnan(a[1]) and b.tolist() == [4.0, 5.0, 6.0]
    long = tmp_path / "long.csv"
    long.write_text("id,value\nx,1\nx,2\ny,7\ny,8\ny,9\n")
    x, y = load_series_file(long, id_column="id")
    assert x.tolist() == [1.0, 2.0] and y.tolist() == [7.0, 8.0, 9.0]
    arr = tmp_path / "s.npy"
    np.save(arr, np.ones((5, 3)))
    assert len(load_series_file(arr)) == 3
    with pytest.raises(UserError, match="no id column"):
        load_series_file(long, id_column="series")


def test_statsmodels_series_lengths_and_frequencies() -> None:
    expected = {"co2": (526, "M", 12), "elnino": (732, "M", 12), "sunspots": (309, "A", 11)}
    for name, (length, freq, period) in expected.items():
        data = load_statsmodels(name)
        assert (data.series[0].size, data.freq, data.period) == (length, freq, period)
    assert load_statsmodels("macrodata:realgdp").freq == "Q"
    with pytest.raises(UserError, match="choose one of"):
        load_statsmodels("airline")
    assert not math.isnan(float(np.nanmean(load_statsmodels("co2").series[0])))
