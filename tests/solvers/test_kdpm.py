"""KDPM2, KDPM2 ancestral and Euler with churn: step for step against k-diffusion with the same
noise, the same samples on every path (EDM coordinates), NFE counts and convergence order."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture, three_modes
from interpolant.randomness import Streams
from interpolant.solvers import Sampler, sample
from interpolant.solvers.adaptive import odeint_dopri5

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peers_util import k_diffusion_sampling

PATH = paths.EDM(sigma_max=80.0)


def _oracle(scale: float = 1.0) -> GaussianMixture:
    return three_modes(scale)


def _noise(n: int = 6, seed: int = 4) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.peers
@pytest.mark.parametrize("eta", [1.0, 0.5, 0.0])
def test_dpm_2_ancestral_matches_k_diffusion_with_the_same_noise(eta):
    k_sampling = k_diffusion_sampling()
    gm, noise = _oracle(), _noise()
    ours = sample(
        gm.model(PATH),
        noise,
        Sampler({"name": "dpm_2_ancestral", "eta": eta}, steps=10, grid="karras", seed=7),
    )
    sigmas = ours.grid * 80.0
    streams = Streams(7, noise.shape[0])  # the run's own per-sample streams (seed 7)
    expected = k_sampling.sample_dpm_2_ancestral(
        lambda x, sigma: gm.denoiser(x, sigma / 80.0, PATH),
        noise * sigmas[0],
        sigmas,
        eta=eta,
        noise_sampler=lambda sigma, sigma_next: streams.normal_like(noise),
        disable=True,
    )
    torch.testing.assert_close(ours.x, expected, rtol=1e-10, atol=1e-10)
    assert ours.nfe == 19


@pytest.mark.peers
@pytest.mark.parametrize("name", ["euler", "heun", "dpm_2"])
@pytest.mark.parametrize("churn", [0.0, 8.0])
def test_churned_samplers_match_k_diffusion_with_the_same_noise(name, churn, monkeypatch):
    # k-diffusion's churned samplers draw torch.randn_like(x) once per step and use it where
    # gamma > 0. s_tmax = 79 keeps the first step (sigma = 80 = the path's sigma_max, which
    # churn cannot exceed here) unchurned; every later step is churned and draws once from ours.
    k_sampling = k_diffusion_sampling()
    gm, noise = _oracle(), _noise()
    options = {"s_churn": churn, "s_noise": 1.003, "s_tmax": 79.0}
    ours = sample(gm.model(PATH), noise, Sampler({"name": name, **options}, steps=10, seed=3))
    sigmas = ours.grid * 80.0
    streams, draws = Streams(3, noise.shape[0]), []

    def randn_like(x: torch.Tensor) -> torch.Tensor:
        draws.append(None)
        return torch.zeros_like(x) if len(draws) == 1 else streams.normal_like(x)

    monkeypatch.setattr(torch, "randn_like", randn_like)
    expected = getattr(k_sampling, f"sample_{name}")(
        lambda x, sigma: gm.denoiser(x, sigma / 80.0, PATH),
        noise * sigmas[0],
        sigmas,
        disable=True,
        **options,
    )
    monkeypatch.undo()
    torch.testing.assert_close(ours.x, expected, rtol=1e-10, atol=1e-10)
    assert ours.nfe == (10 if name == "euler" else 19)


@pytest.mark.parametrize("name", ["dpm_2", "dpm_2_ancestral"])
def test_same_samples_on_every_path(name):
    gm, noise = _oracle(), _noise(8, 1)
    spec = Sampler(name, steps=8, grid={"name": "karras", "sigma_max": 50.0}, seed=3)
    on_edm = sample(gm.model(PATH), noise, spec)
    on_vp = sample(gm.model(paths.VP()), noise, spec)
    torch.testing.assert_close(on_vp.x, on_edm.x, rtol=1e-8, atol=1e-8)


def test_dpm_2_runs_from_alpha_zero_on_flow_paths():
    # The first step of the linear path starts where alpha = 0 (s infinite): its midpoint is
    # taken in t. Against the exact flow map of one Gaussian, the error falls ~4x per doubling.
    gm = GaussianMixture(torch.tensor([[0.5, -1.0]]), torch.tensor([[[0.3, 0.1], [0.1, 0.2]]]))
    noise, path = _noise(64, 2), paths.Linear()
    exact = gm.flow_map(noise, 1.0, 0.0, path)
    errors = []
    for steps in (8, 16):
        out = sample(gm.model(path), noise, solver="dpm_2", steps=steps, grid="uniform")
        assert out.nfe == 2 * steps - 1
        errors.append(float((out.x - exact).pow(2).mean().sqrt()))
    assert errors[1] < errors[0] / 3 and errors[1] < 1e-2, errors


def test_dpm_2_is_second_order():
    # Against an adaptive solution of dx/dlog s = x - x0_hat on the EDM path from s = 80 to 0.05.
    gm, noise = _oracle(2.0), _noise(16, 0)
    s_max, s_min = 80.0, 0.05

    def field(x: torch.Tensor, log_s: float) -> torch.Tensor:
        t = torch.full((x.shape[0],), math.exp(log_s) / s_max, dtype=torch.float64)
        return x - gm.denoiser(x, t, PATH)

    reference, _ = odeint_dopri5(
        field, noise * s_max, math.log(s_max), math.log(s_min), rtol=1e-10, atol=1e-10
    )
    errors = []
    for steps in (16, 32, 64):
        sigma = torch.exp(torch.linspace(math.log(s_max), math.log(s_min), steps + 1))
        x = sample(gm.model(PATH), noise, solver="dpm_2", grid=sigma.double() / s_max).x
        errors.append(float((x - reference).pow(2).mean().sqrt()))
    slopes = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
    assert all(1.8 < s < 2.3 for s in slopes), (errors, slopes)


def test_euler_churn_option_is_checked_and_off_by_default():
    from interpolant.errors import UserError
    from interpolant.solvers import get_solver

    assert not get_solver("euler").stochastic and get_solver("euler", s_churn=1.0).stochastic
    with pytest.raises(UserError, match="s_churn"):
        get_solver("euler", s_churn=-1.0)


@pytest.mark.parametrize("name", ["dpm_2", "dpm_fast", "dpmpp_sde"])
def test_a_numerically_zero_alpha_counts_as_the_source(name):
    # The trig path's alpha(1) = cos(pi / 2) is 6e-17, not 0: x / alpha has no usable digits
    # there, so the EDM-coordinate solvers must start as from alpha = 0 (at_source), not blow up.
    gm = GaussianMixture(torch.tensor([[0.5, -1.0]]), torch.tensor([[[0.3, 0.1], [0.1, 0.2]]]))
    noise, path = _noise(64, 2), paths.Trig()
    assert 0 < float(path.alpha(torch.tensor(1.0, dtype=torch.float64))) < 1e-15
    out = sample(gm.model(path), noise, solver={"name": name, "eta": 0.0} if name == "dpmpp_sde"
                 else name, nfe=31, grid="uniform")  # fmt: skip
    exact = gm.flow_map(noise, 1.0, 0.0, path)
    assert float((out.x - exact).pow(2).mean().sqrt()) < 0.05
