"""``interpolant forecast`` (outputs and its errors) and the seed 13 refine/synthesize row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interpolant.cli.main import main
from interpolant.timeseries import TrainSettings, WindowSpec, make_windows, train_window_model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    torch.set_num_threads(1)
    t = np.arange(200.0)
    series = 10 + np.sin(2 * np.pi * t / 12)
    spec = WindowSpec(24, 6, lags=(12,), scaling="standard", freq="M", period=12)
    windows = make_windows(series, spec, stride=2)
    root = tmp_path_factory.mktemp("ts") / "run"
    train_window_model(windows, root, TrainSettings(width=8, depth=1, steps=5))
    return root


def test_forecast_writes_quantiles_and_a_fan_chart(run_dir, tmp_path) -> None:
    history = tmp_path / "h.csv"
    history.write_text("a,b\n" + "\n".join(f"{v},{2 * v}" for v in np.linspace(0, 1, 40)) + "\n")
    out = tmp_path / "out"
    assert main(["forecast", str(run_dir), "--history", str(history), "--horizon", "4",
                 "--samples", "4", "--out", str(out)]) == 0  # fmt: skip
    rows = (out / "forecast.csv").read_text().splitlines()
    assert rows[0].startswith("series,step,mean,q0.05") and len(rows) == 1 + 2 * 4
    cells = [float(c) for c in rows[1].split(",")[3:]]
    assert cells == sorted(cells)  # quantiles are monotone in the level
    assert (out / "fan.png").stat().st_size > 1000


def test_forecast_errors_are_one_line(run_dir, tmp_path, capsys) -> None:
    short = tmp_path / "short.npy"
    np.save(short, np.ones(30))
    assert main(["forecast", str(run_dir), "--history", str(short)]) == 2
    assert "needs at least 36" in capsys.readouterr().err
    ok = tmp_path / "ok.npy"
    np.save(ok, np.ones(50))
    assert main(["forecast", str(run_dir), "--history", str(ok), "--horizon", "7"]) == 2
    assert "longer than the trained window's horizon 6" in capsys.readouterr().err
    assert main(["forecast", str(run_dir), "--history", str(ok), "--freq", "D"]) == 2
    assert "frequency 'M'" in capsys.readouterr().err


@pytest.mark.slow
def test_refine_synthesize_quick_row() -> None:
    from interpolant.repro import seed13_refine_synthesize as repro

    result = repro.REPRO(quick=True)
    n = result.numbers
    assert n["refined (most_likely) CRPS"] < n["seasonal naive CRPS"]
    assert n["LPS synthetic"] < n["LPS white noise"]
