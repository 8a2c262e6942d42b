"""Singlestep DPM-Solver (diffusers' DPMSolverSinglestepScheduler, 2S / 3S) and DPM-fast
(k-diffusion): step for step against the peers on an exact Gaussian-mixture denoiser, their
order schedules and NFE, and their convergence orders."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture, three_modes
from interpolant.errors import UserError
from interpolant.solvers import Sampler, get_solver, sample
from interpolant.solvers.adaptive import odeint_dopri5
from interpolant.solvers.singlestep import singlestep_orders

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peers_util import k_diffusion_sampling


def _oracle(scale: float = 1.0) -> GaussianMixture:
    return three_modes(scale)


def _noise(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_order_lists_are_diffusers_get_order_list():
    diffusers = pytest.importorskip("diffusers")
    for order, lower in itertools.product((1, 2, 3), (True, False)):
        scheduler = diffusers.DPMSolverSinglestepScheduler(
            solver_order=order, lower_order_final=lower, final_sigmas_type="sigma_min"
        )
        for steps in range(1, 13):
            if not lower and steps % order:
                continue  # diffusers forces lower_order_final there
            assert singlestep_orders(steps, order, lower) == scheduler.get_order_list(steps)


@pytest.mark.peers
@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("algorithm", ["dpmsolver++", "dpmsolver"])
@pytest.mark.parametrize("solver_type", ["midpoint", "heun"])
def test_matches_diffusers_singlestep(order, algorithm, solver_type):
    diffusers = pytest.importorskip("diffusers")
    gm, path, noise = _oracle(), paths.VPLinear(beta_max=25.0), _noise()
    # diffusers' noise-prediction form cannot end at sigma = 0: it stops at its sigma_min.
    final = "zero" if algorithm == "dpmsolver++" else "sigma_min"
    for steps in (6, 10):
        scheduler = diffusers.DPMSolverSinglestepScheduler(
            solver_order=order, algorithm_type=algorithm, solver_type=solver_type,
            prediction_type="sample", final_sigmas_type=final, lower_order_final=False,
        )  # fmt: skip
        scheduler.set_timesteps(steps)
        # Its float32 coefficients cost ~2e-5 in the noise form (two large terms cancel at the
        # first steps): in float64 it agrees with ours to rounding.
        scheduler.sigmas = edm_sigma = scheduler.sigmas.to(torch.float64)
        grid = path.t_of_logsnr(-2.0 * torch.log(edm_sigma[:-1]))
        last = torch.zeros(1) if final == "zero" else path.t_of_logsnr(-2.0 * edm_sigma[-1:].log())
        grid = torch.cat([grid, last.double()])
        x = noise * float(path.sigma(grid[:1])[0])
        for i, timestep in enumerate(scheduler.timesteps):
            t = torch.full((x.shape[0],), float(grid[i]), dtype=torch.float64)
            x = scheduler.step(gm.denoiser(x, t, path), timestep, x).prev_sample
        options = {"name": "dpmpp_singlestep", "solver_order": order, "algorithm": algorithm,
                   "solver_type": solver_type, "lower_order_final": False}  # fmt: skip
        ours = sample(gm.model(path), noise, solver=options, grid=grid)
        torch.testing.assert_close(ours.x, x, rtol=1e-12, atol=1e-12)
        assert ours.nfe == steps


@pytest.mark.peers
@pytest.mark.parametrize("nfe", [3, 9, 15])
def test_dpm_fast_matches_k_diffusion(nfe):
    # k-diffusion's steps are uniform in lambda = -log sigma from sigma_max to sigma_min, and it
    # stops at sigma_min: ours runs on that listed grid (EDM path, alpha = 1).
    k_sampling = k_diffusion_sampling()
    gm, path, noise = _oracle(), paths.EDM(sigma_max=80.0), _noise()
    s_max, s_min = 80.0, 0.05
    # k-diffusion builds its lambda grid with torch.linspace in the default dtype: float64 here.
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        expected = k_sampling.sample_dpm_fast(
            lambda x, sigma: gm.denoiser(x, sigma / 80.0, path),
            noise * s_max, s_min, s_max, nfe, disable=True,
        )  # fmt: skip
    finally:
        torch.set_default_dtype(default)
    steps = nfe // 3 + 1
    lam = torch.linspace(-math.log(s_max), -math.log(s_min), steps + 1, dtype=torch.float64)
    grid = torch.exp(-lam) / 80.0
    ours = sample(gm.model(path), noise, solver="dpm_fast", grid=grid)
    torch.testing.assert_close(ours.x, expected, rtol=1e-9, atol=1e-9)
    assert ours.nfe == nfe == get_solver("dpm_fast").nfe_for_steps(steps)


def _convergence(options, steps_list, scale=2.0):
    gm, noise, path = _oracle(scale), _noise(16), paths.EDM(sigma_max=80.0)

    def field(x: torch.Tensor, log_s: float) -> torch.Tensor:
        t = torch.full((x.shape[0],), math.exp(log_s) / 80.0, dtype=torch.float64)
        return x - gm.denoiser(x, t, path)

    reference, _ = odeint_dopri5(
        field, noise * 80.0, math.log(80.0), math.log(0.05), rtol=1e-11, atol=1e-11
    )
    errors = []
    for steps in steps_list:
        sigma = torch.exp(torch.linspace(math.log(80.0), math.log(0.05), steps + 1)).double()
        x = sample(gm.model(path), noise, solver=options, grid=sigma / 80.0).x
        errors.append(float((x - reference).pow(2).mean().sqrt()))
    return [math.log2(a / b) for a, b in itertools.pairwise(errors)], errors


@pytest.mark.parametrize(
    ("options", "order"),
    [
        ({"name": "dpmpp_singlestep", "solver_order": 2, "lower_order_final": False}, 2.0),
        ({"name": "dpmpp_singlestep", "solver_order": 3, "lower_order_final": False}, 3.0),
        (
            {
                "name": "dpmpp_singlestep",
                "solver_order": 3,
                "solver_type": "heun",
                "algorithm": "dpmsolver",
                "lower_order_final": False,
            },
            3.0,
        ),
        # DPM-fast's last two steps have orders 2 and 1: the O(h^2) local error of the last
        # step makes the whole run second order.
        ({"name": "dpm_fast"}, 2.0),
    ],
)
def test_convergence_orders(options, order):
    # On grids uniform in log sigma the 2S groups have r = 1/2 and the 3S groups r = 1/3, 2/3.
    slopes, errors = _convergence(options, (24, 48, 96))
    assert abs(slopes[-1] - order) < 0.35, (errors, slopes)


def test_noise_algorithm_refuses_a_higher_order_step_from_alpha_zero():
    gm = _oracle()
    solver = {"name": "dpmpp_singlestep", "algorithm": "dpmsolver"}
    with pytest.raises(UserError, match="alpha = 0"):
        sample(gm.model(paths.Linear()), _noise(), solver=solver, steps=6, grid="uniform")
    # The data-prediction form runs there, and converges on the linear path.
    x = sample(gm.model(paths.Linear()), _noise(), solver="dpmpp_singlestep", steps=6).x
    assert torch.isfinite(x).all()


def test_dpm_fast_budget():
    solver = get_solver("dpm_fast")
    assert [solver.nfe_for_steps(m) for m in (1, 2, 3, 4)] == [1, 3, 6, 9]
    assert Sampler("dpm_fast", nfe=10, grid="logsnr").steps_used() == 4


def _adaptive_setup():
    gm, path, noise = _oracle(), paths.EDM(sigma_max=80.0), _noise()
    return gm, path, noise


@pytest.mark.peers
@pytest.mark.parametrize("order", [2, 3])
def test_dpm_adaptive_matches_k_diffusion(order):
    # One adaptive integration from sigma 80 to 0.05 (no final denoising, as k-diffusion).
    k_sampling = k_diffusion_sampling()
    gm, path, noise = _adaptive_setup()
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # its tolerances become float64 tensors
    try:
        expected, info = k_sampling.sample_dpm_adaptive(
            lambda x, sigma: gm.denoiser(x, sigma / 80.0, path),
            noise * 80.0, 0.05, 80.0, order=order, rtol=0.01, atol=0.001, disable=True,
            return_info=True,
        )  # fmt: skip
    finally:
        torch.set_default_dtype(default)
    solver = {"name": "dpm_adaptive", "solver_order": order, "rtol": 0.01, "atol": 0.001}
    ours = sample(gm.model(path), noise, solver=solver, grid=[1.0, 0.05 / 80.0])
    torch.testing.assert_close(ours.x, expected, rtol=1e-9, atol=1e-9)
    assert info["n_reject"] > 0
    # k-diffusion evaluates the step's start again after every rejection; ours reuses it.
    assert ours.nfe == info["nfe"] - info["n_reject"]


def test_dpm_adaptive_meets_its_budget_and_converges_with_the_tolerance():
    gm, path, noise = _adaptive_setup()
    reference = gm.model(path)
    exact = sample(reference, noise, solver="dpmpp_3m", steps=400, grid="logsnr").x
    errors = []
    for rtol in (0.05, 0.005, 0.0005):
        solver = {"name": "dpm_adaptive", "rtol": rtol, "atol": rtol / 10, "max_nfe": 400}
        out = sample(reference, noise, solver=solver, steps=1)
        assert out.nfe <= 400
        errors.append(float((out.x - exact).pow(2).mean().sqrt()))
    assert errors[0] > errors[1] > errors[2], errors
    tight = {"name": "dpm_adaptive", "rtol": 1e-6, "atol": 1e-7, "max_nfe": 30}
    capped = sample(reference, noise, solver=tight, steps=1)
    assert capped.nfe <= 30 and torch.isfinite(capped.x).all()
    with pytest.raises(UserError, match="max_nfe"):
        Sampler("dpm_adaptive", nfe=50)
    with pytest.raises(UserError, match="alpha = 0"):
        sample(gm.model(paths.Linear()), noise, solver="dpm_adaptive", steps=1)
