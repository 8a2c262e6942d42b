"""LCM's multistep sampler: step for step against diffusers' LCMScheduler with the same noise
(its boundary-condition scalings set to the identity: they belong to the model here), the
per-step law (alpha' x0 + sigma' z exactly), and NFE."""

from __future__ import annotations

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture, three_modes
from interpolant.randomness import Streams
from interpolant.solvers import Sampler, sample


def _oracle() -> GaussianMixture:
    return three_modes()


@pytest.mark.peers
@pytest.mark.parametrize("steps", [1, 4, 8])
def test_matches_diffusers_lcm_scheduler(steps, monkeypatch):
    diffusers = pytest.importorskip("diffusers")
    lcm_module = pytest.importorskip("diffusers.schedulers.scheduling_lcm")
    gm, path = _oracle(), paths.VPLinear(beta_max=25.0)
    noise = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    scheduler = diffusers.LCMScheduler(prediction_type="sample")
    scheduler.get_scalings_for_boundary_condition_discrete = lambda timestep: (0.0, 1.0)
    scheduler.set_timesteps(steps)
    alphas = scheduler.alphas_cumprod.to(torch.float64)[scheduler.timesteps]
    grid = torch.cat([path.t_of_logsnr(torch.log(alphas / (1 - alphas))), torch.zeros(1)])
    streams = Streams(5, noise.shape[0])
    monkeypatch.setattr(lcm_module, "randn_tensor", lambda *a, **k: streams.normal_like(noise))
    # diffusers starts from its x_T = sqrt(1 - alphabar) eps + ...: the same start as ours.
    x = noise * float(path.sigma(grid[:1])[0])
    for i, timestep in enumerate(scheduler.timesteps):
        t = torch.full((x.shape[0],), float(grid[i]), dtype=torch.float64)
        x = scheduler.step(gm.denoiser(x, t, path), timestep, x).prev_sample
    ours = sample(gm.model(path), noise, Sampler("lcm", grid=grid, seed=5))
    torch.testing.assert_close(ours.x, x.double(), rtol=1e-6, atol=1e-6)
    assert ours.nfe == steps


def test_each_step_is_the_forward_draw_from_the_data_prediction():
    gm, path = _oracle(), paths.VP()
    noise = torch.randn(4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grid = [0.9, 0.4, 0.0]
    one = sample(gm.model(path), noise, Sampler("lcm", grid=grid[:2], seed=2))
    x_start = noise * float(path.sigma(torch.tensor(0.9, dtype=torch.float64)))
    x0 = gm.denoiser(x_start, torch.full((4,), 0.9, dtype=torch.float64), path)
    a, s = (float(f(torch.tensor(0.4, dtype=torch.float64))) for f in (path.alpha, path.sigma))
    z = Streams(2, 4).normal_like(x0)
    torch.testing.assert_close(one.x, a * x0 + s * z, rtol=1e-12, atol=1e-12)
    assert sample(gm.model(path), noise, Sampler("lcm", grid=grid, seed=2)).nfe == 2
