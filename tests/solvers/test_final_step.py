"""diffusers' final-step options: ``final_sigmas_type`` and ``lambda_min_clipped`` on the
noise-level grids, ``euler_at_final`` on the multistep solvers (against diffusers 0.42)."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture, three_modes
from interpolant.errors import UserError
from interpolant.solvers import sample
from interpolant.solvers.grids import Beta, Karras, LogSNR, Polyexponential


def _oracle() -> GaussianMixture:
    return three_modes()


@pytest.mark.parametrize("cls", [Karras, LogSNR, Polyexponential, Beta])
def test_final_sigmas_type(cls):
    path = paths.EDM()
    zero = cls(sigma_min=0.01).times(path, 6)
    stop = cls(sigma_min=0.01, final_sigmas_type="sigma_min").times(path, 6)
    # "zero": 6 levels then 0; "sigma_min": 7 levels, all steps between levels, ending at 0.01.
    assert len(zero) == len(stop) == 7
    assert zero[-1] == 0 and math.isclose(float(zero[-2]) * 80, 0.01, rel_tol=1e-9)
    assert math.isclose(float(stop[-1]) * 80, 0.01, rel_tol=1e-9)
    assert zero[0] == stop[0] == 1.0
    with pytest.raises(UserError, match="final_sigmas_type must be one of"):
        cls(final_sigmas_type="last")


def test_lambda_min_clipped_caps_the_start():
    path = paths.VPLinear()  # edm sigma 152.6 at t = 1
    clipped = LogSNR(sigma_min=0.01, lambda_min_clipped=-3.0).times(path, 5)
    assert math.isclose(float(path.edm_sigma(clipped[0])), math.exp(3.0), rel_tol=1e-9)
    assert clipped[0] < 1.0
    # Equal to giving that sigma_max; no effect where the path starts below it.
    torch.testing.assert_close(
        clipped, LogSNR(sigma_min=0.01, sigma_max=math.exp(3.0)).times(path, 5)
    )
    loose = LogSNR(sigma_min=0.01, lambda_min_clipped=-10.0).times(path, 5)
    torch.testing.assert_close(loose, LogSNR(sigma_min=0.01).times(path, 5))
    with pytest.raises(UserError, match="below sigma_min"):
        LogSNR(sigma_min=0.5, lambda_min_clipped=2.0).times(path, 5)


@pytest.mark.peers
@pytest.mark.parametrize("euler_at_final", [False, True])
def test_euler_at_final_matches_diffusers(euler_at_final):
    # 20 steps (>= 15, so lower_order_final does not act) ending at sigma_min > 0: there the
    # last DPM-Solver++(2M) step is second order unless euler_at_final.
    diffusers = pytest.importorskip("diffusers")
    gm, path = _oracle(), paths.VPLinear(beta_max=25.0)
    noise = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    scheduler = diffusers.DPMSolverMultistepScheduler(
        prediction_type="sample", final_sigmas_type="sigma_min", euler_at_final=euler_at_final
    )
    scheduler.set_timesteps(20)
    sigmas = scheduler.sigmas.to(torch.float64)
    grid = path.t_of_logsnr(-2.0 * torch.log(sigmas))
    x = (noise * float(path.sigma(grid[:1])[0])).float()
    for i, timestep in enumerate(scheduler.timesteps):
        t = torch.full((x.shape[0],), float(grid[i]), dtype=torch.float64)
        x = scheduler.step(gm.denoiser(x.double(), t, path).float(), timestep, x).prev_sample
    solver = {"name": "dpmpp_2m", "euler_at_final": euler_at_final}
    ours = sample(gm.model(path), noise, solver=solver, grid=grid).x
    torch.testing.assert_close(ours, x.double(), rtol=0, atol=2e-6)
    other = {"name": "dpmpp_2m", "euler_at_final": not euler_at_final}
    assert (
        float((sample(gm.model(path), noise, solver=other, grid=grid).x - ours).abs().max()) > 1e-5
    )


@pytest.mark.parametrize("solver", ["dpmpp_3m", "unipc"])
def test_euler_at_final_lowers_the_last_step(solver):
    # On a 20-step grid ending at sigma_min = 0.05 the last step is of full order unless
    # euler_at_final (lower_order_final acts below 15 steps only for dpmpp_3m, and UniPC's
    # caps the order by the steps left, which already makes its last step first order).
    gm, path = _oracle(), paths.EDM()
    noise = torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grid = LogSNR(sigma_min=0.05, final_sigmas_type="sigma_min").times(path, 20)
    full = {"name": solver, "lower_order_final": False}

    def run(**options):
        return sample(gm.model(path), noise, solver={**full, **options}, grid=grid).x

    assert float((run() - run(euler_at_final=True)).abs().max()) > 1e-6
    if solver == "unipc":
        default = sample(gm.model(path), noise, solver="unipc", grid=grid).x
        torch.testing.assert_close(default, run(euler_at_final=True), rtol=0, atol=0)
