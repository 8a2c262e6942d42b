"""Guided forecasting, imputation, refinement and LPS against the exact Gaussian-process law
(the exact unconditional model isolates each method's own error), and the Conv1D backbone."""

from __future__ import annotations

import pytest
import torch

from interpolant.data.oracles import GaussianMixture
from interpolant.errors import UserError
from interpolant.models import build_model
from interpolant.solvers import Sampler
from interpolant.solvers.dpm import DDIM
from interpolant.solvers.grids import Uniform
from interpolant.timeseries import (
    Ridge,
    WindowSpec,
    as_windows,
    best_step,
    crps,
    forecast,
    gaussian_conditional,
    gp_windows,
    impute,
    linear_predictive_score,
    make_windows,
    missing_mask,
    refine,
    seasonal_naive,
    tsdiff_path,
)

SPEC = WindowSpec(context=36, horizon=12, scaling="none", period=12)


def _gp(n: int, seed: int):
    raw, cov = gp_windows(n, SPEC.length, period=12, generator=torch.Generator().manual_seed(seed))
    return make_windows(list(raw.numpy()), SPEC, ends=[[SPEC.length]] * n), raw, cov


def _exact_model(cov: torch.Tensor):
    return GaussianMixture(torch.zeros(1, cov.shape[0]), cov[None]).model(tsdiff_path())


def test_conv1d_shapes_zero_init_and_registry() -> None:
    net = build_model("conv1d", channels=2, width=16, depth=3)
    x = torch.randn(4, 2, 40)
    out = net(x, torch.rand(4))
    assert (
        out.shape == x.shape and float(out.detach().abs().max()) == 0.0
    )  # zero-initialised output
    assert build_model(**net.model_config()).model_config() == net.model_config()
    with pytest.raises(UserError, match=r"\(B, 2, length\)"):
        net(torch.randn(4, 3, 40), torch.rand(4))


def test_quantile_guided_forecast_is_close_to_the_exact_conditional() -> None:
    windows, raw, cov = _gp(12, seed=0)
    model = _exact_model(cov)
    y = windows.horizon()
    sampler = Sampler(DDIM(eta=1.0), steps=50, grid=Uniform(), seed=0)
    guided = forecast(model, windows, 16, 4.0, sampler=sampler)
    unguided = forecast(model, windows, 16, 0.0, sampler=sampler)
    mu, sig = gaussian_conditional(cov, raw[:, : SPEC.context], SPEC.context)
    z = torch.randn(12, 16, SPEC.horizon, dtype=torch.float64, generator=torch.Generator())
    oracle = crps(mu[:, None] + z @ torch.linalg.cholesky(sig).T, y)
    assert crps(guided.double(), y) < 0.6 * crps(unguided.double(), y)
    assert crps(guided.double(), y) < 1.6 * oracle


def test_forecast_sample_does_not_depend_on_the_batch() -> None:
    windows, _, cov = _gp(3, seed=1)
    model = _exact_model(cov)
    sampler = Sampler(DDIM(eta=0.0), steps=10, grid=Uniform(), seed=3)
    together = forecast(model, windows, 2, 2.0, energy="mse", sampler=sampler)
    # Row 0 alone has stream indices 0, 1 -- the same as in the batch.
    alone = forecast(model, windows.subset([0]), 2, 2.0, energy="mse", sampler=sampler)
    assert torch.allclose(together[:1], alone, atol=1e-5)


def test_imputation_of_a_missing_block_beats_the_unconditional_spread() -> None:
    windows, raw, cov = _gp(8, seed=2)
    model = _exact_model(cov)
    mask = missing_mask(SPEC, 8, "block-end", fraction=0.25)
    gap = mask[:, 0] == 0
    gap[:, SPEC.context :] = False  # score the context gap only
    sampler = Sampler(DDIM(eta=1.0), steps=100, grid=Uniform(), seed=0)
    filled = impute(model, windows, mask, 8, 1.0, energy="mse", sampler=sampler)
    err = (filled.mean(1) - raw.float())[gap].abs().mean()
    free = impute(model, windows, mask, 8, 0.0, sampler=sampler)
    err_free = (free.mean(1) - raw.float())[gap].abs().mean()
    assert float(err) < 0.6 * float(err_free)
    assert missing_mask(SPEC, 2, "random", 0.5)[:, 0, : SPEC.context].mean() == pytest.approx(
        0.5, abs=0.2
    )


@pytest.mark.parametrize("optimiser", ["most_likely", "mcmc"])
def test_refinement_lowers_the_crps_of_seasonal_naive(optimiser: str) -> None:
    windows, _, cov = _gp(16, seed=3)
    model = _exact_model(cov)
    y = windows.horizon()
    naive = seasonal_naive(windows, 8)
    refined = refine(model, windows, naive, optimiser=optimiser, iterations=20)
    assert refined.nfe == 20 and 0 <= refined.step < 100
    assert crps(refined.samples.double(), y) < crps(naive, y)


def test_best_step_is_the_loss_closest_to_the_mean() -> None:
    losses = torch.tensor([4.0, 3.0, 2.6, 1.0, 0.5], dtype=torch.float64)  # mean 2.22
    assert best_step(losses) == 2
    windows, _, cov = _gp(2, seed=4)
    with pytest.raises(UserError, match="base forecasts must have shape"):
        refine(_exact_model(cov), windows, torch.zeros(2, 4, 5))


def test_ridge_on_exact_windows_recovers_the_conditional_mean_and_lps() -> None:
    train, raw, cov = _gp(6000, seed=5)
    model = Ridge.fit(raw[:, : SPEC.context], raw[:, SPEC.context :], lam=1e-6)
    gain = torch.linalg.solve(
        cov[: SPEC.context, : SPEC.context], cov[: SPEC.context, SPEC.context :]
    )
    assert torch.allclose(model.weight[:-1], gain, atol=0.08)
    test, _, _ = _gp(200, seed=6)
    # LPS of exact synthetic windows equals training on real ones (same law), up to noise.
    synthetic, _, _ = _gp(6000, seed=7)
    lps = linear_predictive_score(as_windows(synthetic.values, SPEC), train, test, lam=1e-3)
    assert lps["synthetic"] == pytest.approx(lps["real"], rel=0.05)
    # Windows from the wrong law (white noise) score worse.
    noise = torch.randn(6000, 1, SPEC.length, dtype=torch.float64)
    bad = linear_predictive_score(as_windows(noise, SPEC), train, test, lam=1e-3)
    assert bad["synthetic"] > 1.2 * lps["real"]
