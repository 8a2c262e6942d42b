"""Grid families: polyexponential and beta against the peers' own functions, and the shift grid
on a converted path (t_max < 1) starting at t_max."""

from __future__ import annotations

import pytest
import torch

import interpolant as ip
from interpolant.adapters import PathConverted
from interpolant.data.oracles import GaussianMixture
from interpolant.errors import UserError
from interpolant.paths import EDM, VP, Linear
from interpolant.solvers.grids import Beta, Polyexponential, Shift, get_grid
from peers_util import k_diffusion_sampling


def _edm_sigmas(path, t):
    return path.edm_sigma(t[:-1])


@pytest.mark.parametrize("rho", [1.0, 0.5, 2.0])
def test_polyexponential_matches_k_diffusion(rho):
    k_diffusion = k_diffusion_sampling()
    path = EDM()
    t = Polyexponential(rho=rho, sigma_min=0.01, sigma_max=50.0).times(path, 12)
    theirs = k_diffusion.get_sigmas_polyexponential(12, 0.01, 50.0, rho=rho).double()
    torch.testing.assert_close(_edm_sigmas(path, t), theirs[:-1], rtol=1e-6, atol=0)
    assert float(t[-1]) == 0.0


def test_beta_grid_is_diffusers_formula_and_crowds_both_ends():
    from scipy.stats import beta as beta_dist

    path = EDM()
    t = Beta(sigma_min=0.01, sigma_max=80.0).times(path, 10)
    levels = 1 - torch.linspace(0, 1, 10, dtype=torch.float64)
    expected = 0.01 + torch.as_tensor(beta_dist.ppf(levels.numpy(), 0.6, 0.6)) * (80.0 - 0.01)
    torch.testing.assert_close(_edm_sigmas(path, t), expected, rtol=1e-9, atol=1e-12)
    gaps = (expected[:-1] - expected[1:]).abs()
    assert float(gaps[0]) < float(gaps[4]) and float(gaps[-1]) < float(gaps[4])


def test_beta_grid_matches_diffusers_use_beta_sigmas():
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.EulerDiscreteScheduler(use_beta_sigmas=True)
    # Their conversion of a sigma range (the ends of in_sigmas) to the beta spacing.
    theirs = torch.as_tensor(scheduler._convert_to_beta(torch.tensor([60.0, 0.02]), 10))
    path = EDM()
    ours = Beta(sigma_min=0.02, sigma_max=60.0).times(path, 10)
    torch.testing.assert_close(_edm_sigmas(path, ours), theirs.double(), rtol=1e-6, atol=1e-9)


def test_new_grids_by_name_and_options():
    path = VP()
    assert get_grid("polyexponential", path, 5).shape == (6,)
    assert get_grid({"name": "beta", "a": 0.5, "b": 0.5}, path, 5).shape == (6,)
    with pytest.raises(UserError, match="beta has no option 'alpha'"):
        get_grid({"name": "beta", "alpha": 0.5}, path, 5)


def test_shift_grid_starts_at_t_max_on_a_converted_path():
    oracle = GaussianMixture(torch.zeros(1, 2), torch.eye(2)[None])
    model = PathConverted(oracle.model(VP()), Linear())
    assert model.t_max < 1
    t = Shift(3.0).times(model.path, 8, model.t_max)
    assert float(t[0]) == model.t_max and bool((t[:-1] > t[1:]).all())
    torch.testing.assert_close(Shift(3.0).times(Linear(), 8), Shift(3.0).times(Linear(), 8, 1.0))
    noise = torch.randn(16, 2, dtype=torch.float64)
    out = ip.sample(model, noise, solver="euler", steps=8, grid="shift", t_max=model.t_max)
    assert out.x.shape == (16, 2) and bool(torch.isfinite(out.x).all())
