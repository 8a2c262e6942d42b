"""The validation split of the series data sets (``data.options.val_windows``, the ``series-*``
presets): validation windows sit after every training window and before the test windows,
never overlapping a test target, and the choices made on them (guidance scale, refinement
strength, t*) do not change when the test targets do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interpolant.api.presets import PRESETS
from interpolant.errors import UserError
from interpolant.timeseries import (
    TrainSettings,
    make_windows,
    refine_chosen,
    seasonal_naive,
    train_val_test_windows,
    train_window_model,
)
from interpolant.timeseries.dataset import load_series_data, series_windows
from interpolant.timeseries.forecast import choose_scale


def _options(preset: str) -> dict:
    options = dict(PRESETS[preset]["data"]["options"])
    assert options["val_windows"] >= 1  # every real-series preset has a validation split
    return options


@pytest.mark.parametrize(
    "preset", ["series-co2", "series-elnino", "series-sunspots", "series-nile"]
)
def test_validation_windows_lie_between_training_and_test(preset: str) -> None:
    options = _options(preset)
    built = series_windows(**options)
    assert built.val is not None
    h, v = built.spec.horizon, options["val_windows"]
    for j in range(len(built.data.series)):
        train_end = built.train.end[built.train.series == j]
        val_end = built.val.end[built.val.series == j]
        test_end = built.test.end[built.test.series == j]
        assert len(val_end) == v and len(test_end) == options["test_windows"]
        # No training window reaches a validation target, no validation window a test target.
        assert int(train_end.max()) <= int(val_end.min()) - h
        assert int(val_end.max()) <= int(test_end.min()) - h
        # The validation horizons are the last ones before the test: they tile the H * V
        # points just before the first test horizon.
        assert val_end.tolist() == [int(test_end.min()) - h - k * h for k in range(v - 1, -1, -1)]
    # They are the full series' windows at those ends (cut from the truncated series, same
    # values and scaling).
    again = make_windows(built.data.series, built.spec, ends=[built.val.end.tolist()])
    assert torch.equal(again.values, built.val.values)
    assert torch.equal(again.scale, built.val.scale)
    # The registry's "val" split is the same windows, in the model's dtype.
    loaded = load_series_data(None, "val", torch.Generator(), **options)
    assert torch.equal(loaded.x, built.val.values.float())
    assert loaded.info.extra["val_windows"] == v


def test_a_series_too_short_for_the_split_is_refused_with_the_numbers() -> None:
    series = np.sin(np.arange(60.0))
    from interpolant.timeseries import WindowSpec

    spec = WindowSpec(12, 4, lags=(4,))
    with pytest.raises(UserError, match=r"has 60 points; .* 4 validation and 8 test .* needs 68"):
        train_val_test_windows([series], spec, test_windows=8, val_windows=4)
    with pytest.raises(UserError, match="val_windows must be >= 1"):
        train_val_test_windows([series], spec, test_windows=2, val_windows=0)


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    """The same monthly series twice, the second with different values in its test horizons
    (the last 2 x 6 points); and a tiny model trained on the first file's training windows."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("val")
    t = np.arange(150.0)
    series = 3 + np.sin(2 * np.pi * t / 12) + 0.1 * np.random.default_rng(1).standard_normal(150)
    changed = series.copy()
    changed[-12:] = 50.0 - 4 * changed[-12:]
    paths = []
    for name, values in (("a", series), ("b", changed)):
        np.save(root / f"{name}.npy", values)
        paths.append(str(root / f"{name}.npy"))
    common = dict(context=24, horizon=6, lags=[12], period=12, test_windows=2, val_windows=3)
    a, b = (series_windows(p, **common) for p in paths)
    settings = TrainSettings(width=8, depth=1, steps=20, batch_size=16)
    model = train_window_model(a.train, root / "run", settings).model
    return a, b, model


def test_choices_made_on_validation_do_not_read_the_test_targets(two_files) -> None:
    a, b, model = two_files
    assert a.val is not None and b.val is not None
    assert not torch.equal(a.test.horizon(), b.test.horizon())  # the test targets differ
    assert torch.equal(a.val.values, b.val.values) and torch.equal(a.train.values, b.train.values)
    assert choose_scale(model, a.val, 0, 4) == choose_scale(model, b.val, 0, 4)
    # Refinement of seasonal naive: t* on training windows, strength on validation windows.
    runs = [
        refine_chosen(
            model, w.train, w.val, w.test, seasonal_naive(w.val, 4), seasonal_naive(w.test, 4)
        )
        for w in (a, b)
        if w.val is not None
    ]
    (ra, ca), (rb, cb) = runs
    assert ca == cb and ra.step == rb.step
    assert set(ca.validation_crps) == {f"s={s:g},k={k}" for s in (1, 4, 16) for k in (0, 5, 10, 20)}
    assert ca.validation_crps[f"s={ca.prior_scale:g},k={ca.iterations}"] == min(
        ca.validation_crps.values()
    )
    # The test forecasts themselves do depend on the (different) test windows' contexts.
    assert not torch.equal(ra.samples, rb.samples)
