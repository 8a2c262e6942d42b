"""Searched grids: the density grid family, the Nelder-Mead optimiser and the search itself on an
exact oracle (it must reduce the error on the calibration noise and transfer to fresh noise)."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import ring2d
from interpolant.solvers import Sampler, get_grid, sample
from interpolant.solvers.adaptive import reference_sample
from interpolant.solvers.search import DensityGrid, nelder_mead, search_grid


@pytest.mark.parametrize("path", [paths.EDM(), paths.VPLinear(), paths.Linear()])
def test_constant_density_is_the_uniform_logsnr_grid(path):
    steps, sigma_min = 7, 0.01
    t = DensityGrid((0.0, 0.0, 0.0), sigma_min).times(path, steps)
    expected = get_grid("logsnr", path, steps, sigma_min=sigma_min)
    torch.testing.assert_close(t, expected, rtol=1e-7, atol=1e-9)


def test_density_grid_shape_and_ends():
    path = paths.EDM()
    t = DensityGrid((2.0, -1.0, 0.5, 1.5), 0.005).times(path, 12)
    assert t.shape == (13,) and t.dtype == torch.float64
    assert float(t[0]) == 1.0 and float(t[-1]) == 0.0
    assert bool((t[1:] < t[:-1]).all())
    assert float(path.edm_sigma(t[-2:-1])[0]) == pytest.approx(0.005, rel=1e-9)


def test_density_concentrates_points():
    # A density 10x higher on the low-noise half puts most points there.
    path = paths.EDM()
    low_heavy = DensityGrid((0.0, 0.0, math.log(10.0), math.log(10.0)), 0.002).times(path, 20)
    sigma = path.edm_sigma(low_heavy[:-1])
    middle = math.sqrt(80.0 * 0.002)  # the logsnr midpoint
    assert int((sigma < middle).sum()) >= 15


def test_density_grid_bad_input():
    with pytest.raises(ValueError, match="sigma_min"):
        DensityGrid((0.0, 0.0), 200.0).times(paths.EDM(), 5)
    with pytest.raises(ValueError, match="steps"):
        DensityGrid((0.0, 0.0), 0.01).times(paths.EDM(), 0)


def test_nelder_mead_minimises_a_quadratic():
    def f(p: list[float]) -> float:
        return (p[0] - 1.0) ** 2 + 10.0 * (p[1] + 2.0) ** 2 + 0.5 * (p[2] - 0.3) ** 2

    x, value, runs = nelder_mead(f, [0.0, 0.0, 0.0], step=0.5, budget=400)
    assert runs <= 400 + 3
    assert value < 1e-8
    assert x == pytest.approx([1.0, -2.0, 0.3], abs=1e-4)


@pytest.fixture(scope="module")
def ring():
    torch.set_num_threads(1)
    oracle = ring2d()
    model = oracle.model(paths.EDM())
    noise = torch.randn(128, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fresh = torch.randn(128, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return model, noise, reference_sample(model, noise), fresh, reference_sample(model, fresh)


def _rmse(model, noise, reference, grid) -> float:
    x = sample(model, noise, solver="adams", grid=grid).x
    return float((x - reference).square().mean().sqrt())


def test_search_improves_and_transfers(ring):
    model, noise, reference, fresh, fresh_reference = ring
    result = search_grid(
        model,
        noise,
        Sampler("adams", nfe=8, solver_dtype="float64"),
        reference=reference,
        budget=60,
    )
    assert result.runs <= 60 + 8
    assert result.grid.shape == (9,)
    assert result.rmse <= result.start_rmse
    assert result.rmse < 0.5 * result.start_rmse  # the uniform-logsnr start is far from optimal
    # The reported error is the error of the returned grid on the calibration noise.
    assert _rmse(model, noise, reference, result.grid) == pytest.approx(result.rmse, rel=1e-9)
    # On fresh noise the searched grid still beats the best uniform-logsnr grid it started from.
    start = DensityGrid((0.0,) * 6, 0.002).times(model.path, 8)
    candidates = [
        DensityGrid((0.0,) * 6, s).times(model.path, 8) for s in (0.002, 0.005, 0.01, 0.02)
    ]
    best_start = min(_rmse(model, fresh, fresh_reference, g) for g in [start, *candidates])
    assert _rmse(model, fresh, fresh_reference, result.grid) < best_start


def test_search_family_gives_grids_for_other_budgets(ring):
    model, noise, reference, _, _ = ring
    result = search_grid(
        model,
        noise,
        Sampler("adams", nfe=6, solver_dtype="float64"),
        reference=reference,
        budget=20,
    )
    t = result.density.times(model.path, 15)
    assert t.shape == (16,) and float(t[0]) == 1.0 and float(t[-1]) == 0.0


def test_search_bad_input(ring):
    model, noise, reference, _, _ = ring
    with pytest.raises(ValueError, match="knots"):
        search_grid(
            model,
            noise,
            Sampler("adams", nfe=6, solver_dtype="float64"),
            reference=reference,
            knots=1,
        )
    with pytest.raises(ValueError, match="budget"):
        search_grid(
            model,
            noise,
            Sampler("adams", nfe=6, solver_dtype="float64"),
            reference=reference,
            budget=3,
        )
    with pytest.raises(ValueError, match="reference"):
        search_grid(
            model, noise, Sampler("adams", nfe=6, solver_dtype="float64"), reference=reference[:5]
        )
