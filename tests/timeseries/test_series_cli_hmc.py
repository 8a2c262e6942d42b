"""HMC against a Gaussian with known moments, refine(optimiser="hmc"), the ``series`` data set
(statsmodels names, a user's CSV / .npy, inferred frequency) and the command line on it:
``interpolant train --preset series-*``, ``forecast`` and ``eval``, with their errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from interpolant.api.runs import load_run
from interpolant.cli.main import main
from interpolant.data import load_dataset
from interpolant.errors import UserError
from interpolant.randomness import Streams
from interpolant.timeseries import WindowSpec, load_statsmodels, train_test_windows
from interpolant.timeseries.dataset import check_freq, file_freq, normalise_freq, series_windows
from interpolant.timeseries.forecast import choose_scale
from interpolant.timeseries.refine import hmc, refine

MEAN = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
_A = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.2, 0.5]], dtype=torch.float64)
COV = _A @ _A.T
CHAINS = 4000


def gaussian_energy(x: torch.Tensor, k: int) -> torch.Tensor:
    d = x - MEAN
    return 0.5 * ((d @ torch.linalg.inv(COV)) * d).sum(1)


def _moments_ok(x: torch.Tensor) -> None:
    # 4 Monte Carlo standard errors: sd / sqrt(n) for the mean, sqrt((s_ii s_jj + s_ij^2) / n)
    # for the covariance entries.
    sd = COV.diagonal().sqrt()
    assert ((x.mean(0) - MEAN).abs() < 4 * sd / CHAINS**0.5).all()
    se = ((COV.diagonal()[:, None] * COV.diagonal()[None] + COV**2) / CHAINS).sqrt()
    assert ((torch.cov(x.T) - COV).abs() < 4 * se).all()


def test_hmc_samples_a_gaussian_with_its_mean_and_covariance() -> None:
    start = torch.zeros(CHAINS, 3, dtype=torch.float64)
    out = hmc(gaussian_energy, start, Streams(0, CHAINS, "test-hmc"), step_size=0.2,
              leapfrog_steps=6, iterations=30)  # fmt: skip
    _moments_ok(out.x)
    rate = float(out.acceptance.mean())
    print(f"HMC acceptance rate {rate:.3f}")
    assert 0.9 < rate < 1.0  # small steps: most proposals accepted, some refused
    assert out.evaluations == 30 * 7


def test_the_metropolis_correction_keeps_large_steps_exact() -> None:
    # Leapfrog with h = 0.7 on the narrowest direction (sd 0.41) inflates the energy error; the
    # accept/reject step must still leave N(mean, cov) invariant.
    start = MEAN + torch.randn(CHAINS, 3, generator=torch.Generator().manual_seed(1),
                               dtype=torch.float64) @ _A.T  # fmt: skip
    out = hmc(gaussian_energy, start, Streams(1, CHAINS, "test-hmc"), step_size=0.7,
              leapfrog_steps=3, iterations=15)  # fmt: skip
    rate = float(out.acceptance.mean())
    assert rate < 0.8, rate
    _moments_ok(out.x)


def test_hmc_chains_do_not_depend_on_the_batch() -> None:
    start = torch.zeros(6, 3, dtype=torch.float64)
    full = hmc(gaussian_energy, start, Streams(3, 6, "s"), step_size=0.2, iterations=4)
    part = hmc(gaussian_energy, start[2:4], Streams(3, [2, 3], "s"), step_size=0.2, iterations=4)
    torch.testing.assert_close(full.x[2:4], part.x)
    with pytest.raises(UserError, match="step_size > 0"):
        hmc(gaussian_energy, start, Streams(3, 6, "s"), step_size=0.0)


def test_frequencies_are_inferred_and_compared(tmp_path) -> None:
    assert [normalise_freq(f) for f in ("MS", "A-DEC", "YS-JAN", "QS-OCT", "W-SUN", "D")] == [
        "M", "A", "A", "Q", "W", "D"]  # fmt: skip
    daily = tmp_path / "daily.csv"
    dates = pd.date_range("2020-01-01", periods=50, freq="D")
    pd.DataFrame({"date": dates, "a": np.arange(50.0)}).to_csv(daily, index=False)
    assert file_freq(daily) == "D"
    with pytest.raises(UserError, match=r"frequency 'D' but the model is for .* 'M'"):
        check_freq(file_freq(daily), "M", "x")
    with pytest.raises(UserError, match=r"frequency 'D' but the model is for .* 'A'"):
        series_windows("sunspots", freq="D")


def test_series_data_set_matches_train_test_windows(tmp_path) -> None:
    built = series_windows("sunspots", lags=[11])
    data = load_statsmodels("sunspots")
    spec = WindowSpec(36, 12, (11,), "standard", "A", 11)
    train, test = train_test_windows(data.series, spec, 8)
    assert torch.equal(built.train.values, train.values) and torch.equal(built.test.end, test.end)
    loaded = load_dataset("series", split="test", source="sunspots", lags=[11])
    assert loaded.x.shape == (8, 2, 48) and loaded.info.extra["timeseries"] == spec.to_dict()
    with pytest.raises(UserError, match=r"data\.options\.contxt"):
        load_dataset("series", source="sunspots", contxt=3)
    # Long format with an id column: one series per id, in file order.
    long = tmp_path / "long.csv"
    rows = [f"{k},{i},{np.sin(i / 3) + j}" for j, k in enumerate("xy") for i in range(80)]
    long.write_text("store,t,sales\n" + "\n".join(rows) + "\n")
    two = series_windows(str(long), context=12, horizon=4, id_column="store", test_windows=2)
    assert two.test.series.tolist() == [0, 0, 1, 1] and two.spec.channels == 1


def test_missing_values_outside_what_the_mask_handles_are_refused(tmp_path) -> None:
    values = np.sin(np.arange(120.0) / 4) + 2
    values[-3:] = np.nan  # the last test horizon (4 points) keeps one observed value: fine
    path = tmp_path / "gaps.npy"
    np.save(path, values)
    series_windows(str(path), context=12, horizon=4, test_windows=2)
    values[-4:] = np.nan  # now it has none: nothing to score
    np.save(path, values)
    with pytest.raises(UserError, match=r"ending at \[120\] .* no observed value in their horizon"):
        series_windows(str(path), context=12, horizon=4, test_windows=2)
    mostly = np.full(200, np.nan)
    mostly[::3] = 1.0 + np.arange(67) % 5
    np.save(path, mostly)
    with pytest.raises(UserError, match="67% of the training windows' values are missing"):
        series_windows(str(path), context=12, horizon=4, test_windows=1)


@pytest.fixture(scope="module")
def series_run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("series")
    t = np.arange(160.0)
    noise = np.random.default_rng(0).standard_normal((2, 160))
    frame = pd.DataFrame({
        "month": pd.date_range("2000-01-01", periods=160, freq="MS"),
        "north": 10 + np.sin(2 * np.pi * t / 12) + 0.1 * noise[0],
        "south": 5 + np.cos(2 * np.pi * t / 12) + 0.1 * noise[1],
    })  # fmt: skip
    csv = root / "sales.csv"
    frame.to_csv(csv, index=False)
    run = root / "run"
    assert main(["train", "--preset", "series-csv", f"data.options.source={csv}",
                 "data.options.period=12", "data.options.lags=[12]", "data.options.context=24",
                 "data.options.horizon=6", "data.options.test_windows=2",
                 "train.model.width=8", "train.model.depth=1",  # channels follow the lags
                 "train.steps=10", "train.log_every=5", f"train.run_dir={run}"]) == 0  # fmt: skip
    return run, frame


def test_train_forecast_and_eval_on_a_csv_of_series(series_run, tmp_path, capsys) -> None:
    run, frame = series_run
    history = tmp_path / "history.csv"
    frame.iloc[:100].to_csv(history, index=False)
    out = tmp_path / "fc"
    assert main(["forecast", str(run), "--history", str(history), "--samples", "4",
                 "--out", str(out)]) == 0  # fmt: skip
    rows = (out / "forecast.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 6 and rows[1].startswith("series0,1,")
    # The preset's validation split (4 horizons per series before the test ones) chose the
    # guidance scale on the first forecast and stored it; eval reads the same file.
    assert "chosen on the run's 8 validation windows" in capsys.readouterr().out
    stored = json.loads((run / "guidance.json").read_text())
    loaded = load_run(run, device="cpu")
    built = series_windows(**loaded.config.data.options)
    assert built.val is not None and len(built.val) == 8
    assert choose_scale(loaded.model, built.val, 0) == (stored["scale"], stored["validation_crps"])
    assert main(["eval", str(run), "eval.samples=4"]) == 0
    printed = capsys.readouterr().out
    assert "2 test windows" not in printed and "4 test windows of" in printed  # 2 per series
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["settings"]["scale"] == stored["scale"] and metrics["validation_windows"] == 8
    choice = metrics["refine_choice"]  # the refinement strength, chosen on validation windows
    grid = choice["validation_crps"]
    assert grid[f"s={choice['prior_scale']:g},k={choice['iterations']}"] == min(grid.values())
    assert set(metrics["seasonal_naive+refine"]) == set(metrics["tsdiff"])
    # A guidance.json older than the checkpoint (an earlier training of this folder) is
    # chosen again on the validation windows, not read.
    (run / "guidance.json").write_text(json.dumps({"scale": 123.0}))
    os.utime(run / "guidance.json", (0, 0))
    assert main(["eval", str(run), "eval.samples=4", "eval.refine=off"]) == 0
    again = json.loads((run / "eval" / "metrics.json").read_text())
    assert again["settings"]["scale"] == stored["scale"] and "refine_choice" not in again
    assert json.loads((run / "guidance.json").read_text())["scale"] == stored["scale"]
    assert set(metrics["tsdiff"]) == {"crps", "wql", "mase", "coverage50", "coverage80",
                                      "coverage90"}  # fmt: skip
    # Seasonal naive by hand: test windows end at 160 and 154 (horizon 6); the forecast of
    # point e - 6 + h is the value 12 steps earlier; MASE divides by the history's mean
    # |seasonal difference|; the CRPS of a point forecast is sum |error| / sum |y|.
    errors, sizes, scaled = [], [], []
    for name in ("north", "south"):
        s = frame[name].to_numpy()
        for end in (154, 160):
            y, naive = s[end - 6 : end], s[end - 18 : end - 12]
            errors.append(np.abs(y - naive).sum())
            sizes.append(np.abs(y).sum())
            history = s[: end - 6]
            scale = np.abs(history[12:] - history[:-12]).mean()
            scaled.append(np.abs(y - naive).mean() / scale)
    naive = metrics["seasonal_naive"]
    assert naive["crps"] == pytest.approx(sum(errors) / sum(sizes), rel=1e-9)
    assert naive["mase"] == pytest.approx(np.mean(scaled), rel=1e-9)
    assert naive["coverage80"] == 0.0  # a point forecast covers nothing
    assert main(["eval", str(run), "eval.samples=1"]) == 2
    assert "eval.samples must be >= 2" in capsys.readouterr().err
    assert main(["eval", str(run), "eval.bogus=1"]) == 2
    assert "KEY one of ['energy', 'refine', 'samples', 'scale', 'seed']" in capsys.readouterr().err


def test_forecast_errors_name_the_numbers(series_run, tmp_path, capsys) -> None:
    run, frame = series_run
    short = tmp_path / "short.csv"
    frame.iloc[:30].to_csv(short, index=False)
    assert main(["forecast", str(run), "--history", str(short)]) == 2
    assert "has 30 points; the model needs at least 36 (context 24 + longest lag 12)" in (
        capsys.readouterr().err
    )
    ok = tmp_path / "ok.csv"
    frame.iloc[:60].to_csv(ok, index=False)
    assert main(["forecast", str(run), "--history", str(ok), "--horizon", "7"]) == 2
    assert "horizon 7 is longer than the trained window's horizon 6" in capsys.readouterr().err
    daily = tmp_path / "daily.csv"
    frame.iloc[:60].assign(month=pd.date_range("2000-01-01", periods=60, freq="D")).to_csv(
        daily, index=False
    )
    assert main(["forecast", str(run), "--history", str(daily)]) == 2
    assert "frequency 'D' but the model is for series of frequency 'M'" in capsys.readouterr().err
    blank = tmp_path / "blank.npy"
    arr = np.ones(60)
    arr[-24:] = np.nan
    np.save(blank, arr)
    assert main(["forecast", str(run), "--history", str(blank)]) == 2
    assert "the context has no observed value" in capsys.readouterr().err


def test_channels_follow_the_lags_and_a_contradiction_is_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "s.npy"
    np.save(path, np.sin(np.arange(100.0)))
    args = ["train", "--preset", "series-csv", f"data.options.source={path}",
            "data.options.lags=[4,8]", "data.options.context=12", "data.options.horizon=4",
            "train.model.width=8", "train.model.depth=1", "train.steps=1"]  # fmt: skip
    assert main([*args, f"train.run_dir={tmp_path / 'r'}"]) == 0
    assert load_run(tmp_path / "r", device="cpu").model.net.channels == 3  # 1 + two lags
    capsys.readouterr()
    assert main([*args, "train.model.channels=2", f"train.run_dir={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err
    assert "channels=2 but the data's windows have 3 channels" in err
    assert "set train.model.channels=3 or leave it out" in err


def test_refine_with_hmc_reports_its_acceptance(series_run) -> None:
    run, _ = series_run
    loaded = load_run(run, device="cpu")
    built = series_windows(**loaded.config.data.options)
    base = built.test.horizon()[:, None].expand(-1, 3, -1).double() + 0.1
    out = refine(loaded.model, built.test, base, optimiser="hmc", iterations=3,
                 leapfrog_steps=2, hmc_step=0.01, step=10)  # fmt: skip
    assert out.samples.shape == base.shape and out.nfe == 3 * 3
    assert out.acceptance is not None and 0.0 <= out.acceptance <= 1.0
    assert bool(out.samples.isfinite().all())
