"""The guidance scale chosen on validation windows at train time is stored in the run
(``RUN/guidance.json``) and is ``interpolant forecast``'s default; ``--scale`` overrides it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from interpolant.cli.main import main
from interpolant.timeseries import TrainSettings, WindowSpec, train_test_windows, train_window_model
from interpolant.timeseries.forecast import SCALES, choose_scale, read_chosen_scale


@pytest.fixture(scope="module")
def chosen_run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("chosen")
    t = np.arange(120.0)
    series = np.sin(2 * np.pi * t / 12) + 0.1 * np.random.default_rng(0).standard_normal(120)
    spec = WindowSpec(context=24, horizon=6, lags=(12,))
    # Validation windows: the last 2 horizons before the held-out end, after every training one.
    train, val = train_test_windows(series[:-12], spec, 2)
    settings = TrainSettings(width=8, depth=1, steps=10, batch_size=16)
    trained = train_window_model(train, root / "run", settings, validation=val)
    history = root / "history.npy"
    np.save(history, series[:-6])
    return trained, val, history


def test_the_stored_scale_is_the_argmin_of_the_validation_crps(chosen_run) -> None:
    trained, val, _ = chosen_run
    stored = json.loads((trained.run_dir / "guidance.json").read_text())
    crps = stored["validation_crps"]
    assert set(crps) == {f"{s:g}" for s in SCALES}
    assert stored["scale"] == float(min(crps, key=lambda k: crps[k]))
    assert read_chosen_scale(trained.run_dir) == stored["scale"]
    # Recomputed with the same seed, the choice and its CRPS are the same.
    assert choose_scale(trained.model, val, 0) == (stored["scale"], crps)


def test_forecast_defaults_to_the_stored_scale(chosen_run, tmp_path, capsys) -> None:
    trained, _, history = chosen_run
    run = str(trained.run_dir)
    scale = read_chosen_scale(trained.run_dir)
    # Make the default differ from the fixed 4 so the test can tell them apart.
    other = 8.0 if scale != 8.0 else 0.5
    (trained.run_dir / "guidance.json").write_text(json.dumps({"scale": other}))
    common = ["--history", str(history), "--samples", "4"]
    assert main(["forecast", run, *common, "--out", str(tmp_path / "a")]) == 0
    assert f"guidance scale {other:g} (chosen on validation windows" in capsys.readouterr().out
    assert (
        main(["forecast", run, *common, "--scale", f"{other}", "--out", str(tmp_path / "b")]) == 0
    )
    assert main(["forecast", run, *common, "--scale", "4", "--out", str(tmp_path / "c")]) == 0
    a, b, c = ((tmp_path / k / "forecast.csv").read_text() for k in "abc")
    assert a == b and a != c
    (trained.run_dir / "guidance.json").write_text("{}")
    capsys.readouterr()
    assert main(["forecast", run, *common, "--out", str(tmp_path / "d")]) == 2
    assert "holds no guidance scale" in capsys.readouterr().err
    (trained.run_dir / "guidance.json").unlink()
    assert main(["forecast", run, *common, "--out", str(tmp_path / "e")]) == 0
    assert "guidance scale 4 (4: the run has no validation windows" in capsys.readouterr().out
    assert (tmp_path / "e" / "forecast.csv").read_text() == c
