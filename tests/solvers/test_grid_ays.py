"""Align Your Steps grids: the published tables, the authors' log-linear interpolation, and the
start at Stable Diffusion's own largest noise level."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import ring2d
from interpolant.errors import UserError
from interpolant.solvers import get_grid, sample
from interpolant.solvers.grids import AYS_LEVELS, AlignYourSteps


def _sd_path() -> paths.DiscreteVP:
    # diffusers' "scaled_linear" betas of Stable Diffusion, in float32 as diffusers builds them.
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float32) ** 2
    return paths.DiscreteVP(alphas_cumprod=torch.cumprod(1.0 - betas, dim=0))


def _reference_levels(table, steps):
    # The authors' recipe (AYS how-to): interpolate log sigma linearly over the index, last -> 0.
    xs = np.linspace(0, 1, len(table))
    ys = np.log(np.asarray(table)[::-1])
    out = np.exp(np.interp(np.linspace(0, 1, steps + 1), xs, ys))[::-1].copy()
    out[-1] = 0.0
    return out


@pytest.mark.parametrize("model", sorted(AYS_LEVELS))
@pytest.mark.parametrize("steps", [4, 10, 25])
def test_levels_follow_the_authors_interpolation(model, steps):
    ours = AlignYourSteps(model=model).levels(steps).numpy()
    np.testing.assert_allclose(ours, _reference_levels(AYS_LEVELS[model], steps), rtol=1e-12)
    if steps == 10:  # the table itself, with its last level replaced by 0
        np.testing.assert_array_equal(ours[:-1], np.asarray(AYS_LEVELS[model][:-1]))


def test_sd_grid_starts_at_the_models_own_largest_noise_level():
    path = _sd_path()
    t = get_grid({"name": "ays", "model": "sd1"}, path, 10)
    assert len(t) == 11 and float(t[-1]) == 0.0
    # 14.6146 is SD's sigma at its last training timestep: the grid starts at t = 1 there.
    assert abs(float(t[0]) - 1.0) < 1e-6
    sigmas = path.edm_sigma(t[:-1])
    np.testing.assert_allclose(sigmas.numpy(), np.asarray(AYS_LEVELS["sd1"][:-1]), rtol=1e-6)


def test_samples_and_refuses_a_path_that_does_not_reach_the_table():
    gm = ring2d()
    noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = sample(gm.model(paths.EDM()), noise, solver="dpmpp_2m", grid="ays", steps=10)
    assert out.grid[0] < 1.0 and out.nfe == 10 and bool(torch.isfinite(out.x).all())
    with pytest.raises(UserError, match="above this path's"):
        get_grid({"name": "ays", "model": "svd"}, paths.EDM(), 10)  # 700 > 80
