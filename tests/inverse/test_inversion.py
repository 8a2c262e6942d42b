"""DDIM inversion (round trips converge at the solver's order) and the DPM-Encoder of
CycleDiffusion (decoding the latent reproduces the encoded trajectory to float64 round-off)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from interpolant.data.oracles import GaussianMixture, lowrank64
from interpolant.errors import UserError
from interpolant.inverse.inversion import (
    cycle_translate,
    dpm_decode,
    dpm_encode,
    invert,
    round_trip_error,
)
from interpolant.paths import VP, Cosine, Linear
from interpolant.predictions import Model
from interpolant.solvers import Trajectory


def _mixture(dim: int = 4) -> GaussianMixture:
    g = torch.Generator().manual_seed(0)
    means = torch.randn(3, dim, generator=g, dtype=torch.float64)
    covs = 0.3 * torch.eye(dim, dtype=torch.float64).expand(3, dim, dim).clone()
    return GaussianMixture(means, covs)


@pytest.mark.parametrize("path", [VP(), Cosine()], ids=["vp", "cosine"])
@pytest.mark.parametrize(
    ("solver", "options"),
    [
        ("ddim", {"eta": 0.1}),
        ("ddim", {"eta": 1.0}),
        ("dpmpp_2m_sde", {"eta": 1.0}),
        ("dpmpp_3m_sde", {"eta": 1.0}),
    ],
)
def test_decoding_the_latent_reproduces_the_encoded_trajectory(path, solver, options) -> None:
    gm = lowrank64(dim=8)
    model = gm.model(path)
    x0 = gm.sample(6, torch.Generator().manual_seed(1))
    spec = {"name": solver, **options}
    latent = dpm_encode(model, x0, solver=spec, nfe=15, seed=3)
    traj = Trajectory()
    out = dpm_decode(model, latent, hooks=[traj])
    states = out.state(traj).states
    assert len(latent.noises) == 15 and len(states) == len(latent.trajectory) == 16
    assert latent.nfe == out.nfe == 15
    for a, b in zip(states, latent.trajectory):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # The encoded states are posterior draws given x0, so they carry x0's information.
    assert latent.noises[-1].abs().max() == 0  # the final step to sigma = 0 has no noise
    # The only x0 error is the last, deterministic denoising step from the last noisy state.
    t1 = float(latent.t_grid[-2])
    expected = gm.denoiser(latent.trajectory[-2], t1, path)
    torch.testing.assert_close(out.x, expected, rtol=0, atol=1e-12)


def test_encoding_is_per_sample_and_independent_of_the_batch() -> None:
    gm = lowrank64(dim=8)
    model = gm.model(VP())
    x0 = gm.sample(4, torch.Generator().manual_seed(2))
    opts = {"solver": {"name": "ddim", "eta": 0.3}, "nfe": 10, "seed": 10}
    full = dpm_encode(model, x0, **opts)
    single = dpm_encode(model, x0[2:3], index=[2], **opts)
    torch.testing.assert_close(full.x_start[2:3], single.x_start, rtol=0, atol=1e-13)
    for a, b in zip(full.noises, single.noises):
        torch.testing.assert_close(a[2:3], b, rtol=0, atol=1e-10)


def test_early_stop_latent_starts_from_the_forward_marginal() -> None:
    gm = lowrank64(dim=8)
    path = VP()
    x0 = gm.sample(2000, torch.Generator().manual_seed(4))
    latent = dpm_encode(
        gm.model(path), x0, solver={"name": "ddim", "eta": 0.5}, steps=3, t_max=0.4, seed=0
    )
    alpha = float(path.alpha(torch.tensor(0.4, dtype=torch.float64)))
    sigma = float(path.sigma(torch.tensor(0.4, dtype=torch.float64)))
    resid = (latent.x_start - alpha * x0) / sigma
    assert abs(float(resid.mean())) < 0.02 and abs(float(resid.std()) - 1) < 0.02


def test_encoder_rejects_deterministic_samplers_and_translation_needs_one_path() -> None:
    gm = lowrank64(dim=8)
    x0 = gm.sample(2, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="stochastic"):
        dpm_encode(gm.model(VP()), x0, solver="ddim", nfe=5)
    with pytest.raises(ValueError, match="share a path"):
        cycle_translate(gm.model(VP()), gm.model(Cosine()), x0, nfe=5)
    with pytest.raises(ValueError, match="deterministic"):
        invert(gm.model(VP()), x0, solver="dpmpp_2m_sde", nfe=5)
    with pytest.raises(UserError, match="inner points of the steps"):
        dpm_encode(gm.model(VP()), x0, solver="dpmpp_sde", nfe=6)
    with pytest.raises(ValueError, match="alpha = 0"):
        invert(gm.model(Linear()), x0, solver="ddim", nfe=5)


def test_translation_between_identical_models_is_reconstruction() -> None:
    gm = lowrank64(dim=8)
    model = gm.model(VP())
    x0 = gm.sample(3, torch.Generator().manual_seed(5))
    opts = {"solver": {"name": "ddim", "eta": 0.2}, "nfe": 12, "seed": 1}
    out = cycle_translate(model, model, x0, **opts)
    decoded = dpm_decode(model, out.latent)
    torch.testing.assert_close(out.x, decoded.x, rtol=0, atol=0)
    assert out.nfe == 24


@pytest.mark.parametrize(("solver", "order"), [("ddim", 1), ("dpmpp_2m", 2), ("heun", 2)])
def test_inversion_round_trip_error_falls_at_the_solver_order(solver, order) -> None:
    gm = _mixture()
    model = gm.model(VP())
    x = gm.sample(16, torch.Generator().manual_seed(0))
    nfes = (40, 80, 160)
    errors = [round_trip_error(model, x, solver=solver, nfe=n) for n in nfes]
    slopes = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
    assert all(s > order - 0.3 for s in slopes), (errors, slopes)


def test_inversion_runs_the_ode_upwards_on_the_reversed_grid() -> None:
    gm = _mixture()
    model = gm.model(VP())
    x = gm.sample(4, torch.Generator().manual_seed(1))
    res = invert(model, x, solver="ddim", nfe=6, trajectory=True)
    assert res.nfe == 6 and len(res.trajectory) == 7
    assert bool((res.grid[1:] > res.grid[:-1]).all()) and float(res.grid[-1]) == 1.0
    # One DDIM inversion step is x' = alpha' x0_hat + sigma' eps_hat at the current state.
    t0, t1 = float(res.grid[0]), float(res.grid[1])
    pred = model(x, t0)
    path = model.path
    a1, s1 = (float(f(torch.tensor(t1, dtype=torch.float64))) for f in (path.alpha, path.sigma))
    torch.testing.assert_close(res.trajectory[1], a1 * pred.x0 + s1 * pred.eps)


def test_inversion_counts_every_network_call() -> None:
    gm = _mixture()
    model = gm.model(VP())
    calls = []

    def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return model.net(x, t)

    x = gm.sample(3, torch.Generator().manual_seed(2))
    res = invert(Model(net, model.path, "x0"), x, solver="heun", steps=5)
    assert res.nfe == len(calls) == 2 * 5
