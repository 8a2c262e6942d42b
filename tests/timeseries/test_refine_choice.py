"""The refinement strength chosen on validation windows: snapshots are prefixes of one run, and
the choice keeps forecasts that refinement cannot improve (k = 0) while refining poor ones."""

from __future__ import annotations

import pytest
import torch

from interpolant.data.oracles import GaussianMixture
from interpolant.errors import UserError
from interpolant.timeseries import (
    WindowSpec,
    choose_refinement,
    crps,
    gp_windows,
    make_windows,
    refine,
    seasonal_naive,
    tsdiff_path,
)

SPEC = WindowSpec(context=36, horizon=12, scaling="none", period=12)


def _exact(n: int, seed: int):
    raw, cov = gp_windows(n, SPEC.length, period=12, generator=torch.Generator().manual_seed(seed))
    windows = make_windows(list(raw.numpy()), SPEC, ends=[[SPEC.length]] * n)
    model = GaussianMixture(torch.zeros(1, cov.shape[0]), cov[None]).model(tsdiff_path())
    return windows, model


@pytest.mark.parametrize("optimiser", ["most_likely", "mcmc"])
def test_snapshots_equal_shorter_runs(optimiser: str) -> None:
    windows, model = _exact(4, seed=5)
    naive = seasonal_naive(windows, 4)
    long = refine(model, windows, naive, optimiser=optimiser, iterations=6, snapshots=(0, 3, 6))
    short = refine(model, windows, naive, optimiser=optimiser, iterations=3, step=long.step)
    torch.testing.assert_close(long.snapshots[3], short.samples, rtol=0, atol=1e-5)
    torch.testing.assert_close(long.snapshots[6], long.samples, rtol=0, atol=0)
    torch.testing.assert_close(long.snapshots[0], naive.sort(1).values.float(), rtol=0, atol=1e-5)


def test_choice_refines_poor_forecasts_and_keeps_exact_ones() -> None:
    windows, model = _exact(12, seed=6)
    y = windows.horizon()
    naive = seasonal_naive(windows, 8)
    choice = choose_refinement(model, windows, naive, iterations=(0, 10), prior_scales=(1.0,))
    assert choice.iterations == 10 and set(choice.validation_crps) == {"s=1,k=0", "s=1,k=10"}
    assert choice.validation_crps["s=1,k=0"] == pytest.approx(crps(naive, y), rel=1e-5)
    assert choice.validation_crps["s=1,k=10"] < choice.validation_crps["s=1,k=0"]
    truth = y[:, None].expand(-1, 8, -1).clone()  # CRPS 0: any move makes it worse
    kept = choose_refinement(model, windows, truth, iterations=(0, 5), prior_scales=(1.0, 4.0))
    assert kept.iterations == 0 and kept.validation_crps["s=1,k=0"] == pytest.approx(0, abs=1e-6)


def test_bad_grids_are_refused() -> None:
    windows, model = _exact(2, seed=7)
    naive = seasonal_naive(windows, 2)
    with pytest.raises(UserError, match="iteration counts >= 0"):
        choose_refinement(model, windows, naive, iterations=(-1,))
    with pytest.raises(UserError, match="snapshots must lie"):
        refine(model, windows, naive, iterations=3, snapshots=(4,))
    with pytest.raises(UserError, match="snapshots must lie"):
        refine(model, windows, naive, optimiser="hmc", iterations=3, snapshots=(1,))
