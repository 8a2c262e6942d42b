"""Euler a and DPM++ 2S a: step for step against k-diffusion with the same noise, the same
samples on every path (they work in EDM coordinates), the NFE count, and the target variance of
a Gaussian at many steps."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture, three_modes
from interpolant.randomness import Streams
from interpolant.solvers import Sampler, sample
from interpolant.solvers.ancestral import ancestral_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peers_util import k_diffusion_sampling

SOLVERS = {
    "euler_ancestral": "sample_euler_ancestral",
    "dpmpp_2s_ancestral": "sample_dpmpp_2s_ancestral",
}


def _oracle() -> GaussianMixture:
    return three_modes()


@pytest.mark.peers
@pytest.mark.parametrize("name", sorted(SOLVERS))
@pytest.mark.parametrize("eta", [1.0, 0.5, 0.0])
def test_matches_k_diffusion_with_the_same_noise(name, eta):
    k_sampling = k_diffusion_sampling()
    gm, path = _oracle(), paths.EDM(sigma_max=80.0)
    noise = torch.randn(6, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    spec = Sampler({"name": name, "eta": eta}, steps=10, grid="karras", seed=7)
    ours = sample(gm.model(path), noise, spec)
    sigmas = ours.grid * 80.0
    streams = Streams(7, noise.shape[0])  # the run's own per-sample streams (seed 7)
    expected = getattr(k_sampling, SOLVERS[name])(
        lambda x, sigma: gm.denoiser(x, sigma / 80.0, path),
        noise * sigmas[0],
        sigmas,
        eta=eta,
        noise_sampler=lambda sigma, sigma_next: streams.normal_like(noise),
        disable=True,
    )
    torch.testing.assert_close(ours.x, expected, rtol=1e-10, atol=1e-10)
    assert ours.nfe == (10 if name == "euler_ancestral" else 19)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_same_samples_on_every_path(name):
    # On the same EDM noise levels and the same per-sample noise, VP and EDM give one sampler.
    gm = _oracle()
    noise = torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    spec = Sampler(name, steps=8, grid={"name": "karras", "sigma_max": 50.0}, seed=3)
    on_edm = sample(gm.model(paths.EDM(sigma_max=80.0)), noise, spec)
    on_vp = sample(gm.model(paths.VP()), noise, spec)
    torch.testing.assert_close(on_vp.x, on_edm.x, rtol=1e-8, atol=1e-8)


def test_ancestral_step_keeps_the_marginal_noise_level():
    for s, s_next, eta in ((10.0, 3.0, 1.0), (2.0, 1.9, 0.5), (float("inf"), 5.0, 1.0)):
        down, up = ancestral_step(s, s_next, eta)
        assert down**2 + up**2 == pytest.approx(s_next**2)
    assert ancestral_step(5.0, 0.0, 1.0) == (0.0, 0.0)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_variance_of_a_gaussian_converges_with_steps(name):
    # Ancestral samplers are biased at finite steps (Euler a first order: 0.151 at 25 steps,
    # 0.217 at 100 for a target 0.25); the bias must shrink at least 2.5x from 25 to 100 steps.
    gm = GaussianMixture(torch.zeros(1, 1), torch.full((1, 1, 1), 0.25))
    noise = torch.randn(4000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = [
        abs(
            float(sample(gm.model(paths.VP()), noise, Sampler(name, steps=n, seed=2)).x.var())
            - 0.25
        )
        for n in (25, 100)
    ]
    assert errors[1] < errors[0] / 2.5 and errors[1] < 0.04
