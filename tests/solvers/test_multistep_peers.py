"""DEIS, LMS, iPNDM, PLMS and PNDM: step for step against the peers (diffusers 0.42, k-diffusion) on
an exact Gaussian-mixture denoiser with the same grid and start, exactness of the weights, and
the convergence order on an oracle."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture, three_modes
from interpolant.errors import UserError
from interpolant.solvers import Sampler, get_solver, sample
from interpolant.solvers.adaptive import odeint_dopri5
from interpolant.solvers.multistep_peers import log_rho_weights

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peers_util import k_diffusion_sampling


def _oracle(centred: bool = False) -> GaussianMixture:
    if not centred:
        return three_modes()
    # zero mean: E[x0 | pure noise] = 0, as diffusers' IPNDM assumes at alpha = 0
    means = torch.cat([three_modes().means, -three_modes().means])
    covs = torch.stack([torch.eye(2, dtype=torch.float64) * (0.4 + 0.1 * i) ** 2 for i in
                        range(means.shape[0])])  # fmt: skip
    return GaussianMixture(means, covs)


def _noise(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _times(t: float, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), float(t), dtype=torch.float64)


def _vp_grid(path, edm_sigmas: torch.Tensor) -> torch.Tensor:
    """Times of ``path`` at the EDM noise levels (0 maps to t = 0)."""
    s = edm_sigmas.to(torch.float64)
    t = path.t_of_logsnr(-2.0 * torch.log(s.clamp(min=1e-300)))
    return torch.where(s > 0, t, torch.zeros_like(t))


# -- the weights ---------------------------------------------------------------------------------


def test_log_rho_weights_integrate_the_interpolant_exactly():
    rhos, rho_next = [2.0, 3.5, 6.0], 1.2
    weights = log_rho_weights(rhos, rho_next)
    # sum_j c_j = rho' - rho_0 (the basis sums to one); a quadratic in log rho is integrated
    # exactly (compared with a fine trapezoid rule).
    assert math.isclose(sum(weights), rho_next - rhos[0], rel_tol=1e-12)
    r = np.linspace(rhos[0], rho_next, 200001)
    f = lambda u: 0.3 - 1.1 * u + 0.7 * u**2  # noqa: E731
    exact = float(np.trapezoid(f(np.log(r)), r))
    approx = sum(w * f(math.log(p)) for w, p in zip(weights, rhos))
    assert math.isclose(approx, exact, rel_tol=1e-8)


# -- peers ---------------------------------------------------------------------------------------


@pytest.mark.peers
@pytest.mark.parametrize("order", [1, 2, 3])
def test_deis_matches_diffusers(order):
    diffusers = pytest.importorskip("diffusers")
    gm, path = _oracle(), paths.VPLinear(beta_max=25.0)
    noise = _noise()
    for n in (5, 10, 20):
        scheduler = diffusers.DEISMultistepScheduler(solver_order=order, prediction_type="sample")
        scheduler.set_timesteps(n)
        grid = _vp_grid(path, scheduler.sigmas)  # ends at diffusers' last sigma (~0.01)
        x = (noise * float(path.sigma(grid[:1])[0])).float()
        for i, timestep in enumerate(scheduler.timesteps):
            x0 = gm.denoiser(x.double(), _times(grid[i], x), path).float()
            x = scheduler.step(x0, timestep, x).prev_sample
        ours = sample(gm.model(path), noise, solver={"name": "deis", "order": order}, grid=grid).x
        # diffusers steps in float32 on values of size ~2: a few float32 ulps per step.
        torch.testing.assert_close(ours, x.double(), rtol=0, atol=1e-5)


@pytest.mark.peers
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_lms_matches_k_diffusion(order):
    k_sampling = k_diffusion_sampling()
    gm, path = _oracle(), paths.EDM(sigma_max=80.0)
    noise = _noise()
    ours = sample(gm.model(path), noise, solver={"name": "lms", "order": order}, steps=12)
    sigmas = ours.grid * 80.0

    def denoiser(x, sigma):
        return gm.denoiser(x, sigma / 80.0, path)

    expected = k_sampling.sample_lms(denoiser, noise * 80.0, sigmas, order=order, disable=True)
    torch.testing.assert_close(ours.x, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.peers
def test_ipndm_matches_diffusers_on_the_trig_path():
    # diffusers' IPNDMScheduler runs on the trigonometric path with a v-prediction
    # (ets = x sin + v cos is the noise prediction) and starts at pure noise.
    diffusers = pytest.importorskip("diffusers")
    gm, path = _oracle(centred=True), paths.Trig()
    noise = _noise()
    for n in (4, 10, 20):
        scheduler = diffusers.IPNDMScheduler()
        scheduler.set_timesteps(n)
        grid = torch.cat([scheduler.timesteps.to(torch.float64), torch.zeros(1)])
        x = noise.float()
        for i, timestep in enumerate(scheduler.timesteps):
            t = _times(grid[i], x)
            x0 = gm.denoiser(x.double(), t, path)
            a, s = path.alpha(t)[:, None], path.sigma(t)[:, None]
            eps = (x.double() - a * x0) / s
            v = (a * eps - s * x0).float()
            x = scheduler.step(v, timestep, x).prev_sample
        ours = sample(gm.model(path), noise, solver="ipndm", grid=grid).x
        torch.testing.assert_close(ours, x.double(), rtol=0, atol=5e-6)


@pytest.mark.peers
def test_plms_matches_diffusers_pndm_without_prk_steps():
    diffusers = pytest.importorskip("diffusers")
    gm, path = _oracle(), paths.VPLinear(beta_max=25.0)
    noise = _noise()
    for n in (3, 5, 10, 20):
        scheduler = diffusers.PNDMScheduler(skip_prk_steps=True, set_alpha_to_one=True)
        scheduler.set_timesteps(n)
        alphas = scheduler.alphas_cumprod.to(torch.float64)
        unique = torch.unique_consecutive(scheduler.timesteps)
        sigmas = torch.sqrt((1 - alphas[unique]) / alphas[unique])
        grid = _vp_grid(path, torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)]))
        x = (noise * float(path.sigma(grid[:1])[0])).float()
        for timestep in scheduler.timesteps:
            a_bar = float(alphas[int(timestep)])
            t = path.t_of_logsnr(torch.tensor(math.log(a_bar / (1 - a_bar)), dtype=torch.float64))
            a, s = math.sqrt(a_bar), math.sqrt(1 - a_bar)
            eps = (x.double() - a * gm.denoiser(x.double(), _times(float(t), x), path)) / s
            x = scheduler.step(eps.float(), timestep, x).prev_sample
        result = sample(gm.model(path), noise, solver="plms", grid=grid)
        assert result.nfe == len(scheduler.timesteps) == n + 1
        torch.testing.assert_close(result.x, x.double(), rtol=0, atol=5e-6)


@pytest.mark.peers
def test_pndm_matches_diffusers_pndm_with_its_runge_kutta_steps():
    # diffusers' default PNDMScheduler: three pseudo Runge-Kutta steps through half timesteps,
    # then PLMS. On DiscreteVP (t = (timestep + 1) / 1000) the half timestep is the midpoint in t.
    diffusers = pytest.importorskip("diffusers")
    gm, path = _oracle(), paths.DiscreteVP()
    noise = _noise()
    for n in (5, 10, 20):
        scheduler = diffusers.PNDMScheduler(set_alpha_to_one=True)
        scheduler.set_timesteps(n)
        alphas = scheduler.alphas_cumprod.to(torch.float64)
        starts = torch.arange(n - 1, -1, -1, dtype=torch.float64) * (1000 // n)
        grid = torch.cat([(starts + 1.0) / 1000.0, torch.zeros(1, dtype=torch.float64)])
        x = noise * float(path.sigma(grid[:1])[0])
        for timestep in scheduler.timesteps:
            a_bar = float(alphas[int(timestep)])
            t = (int(timestep) + 1) / 1000.0
            a, s = math.sqrt(a_bar), math.sqrt(1 - a_bar)
            eps = (x - a * gm.denoiser(x, _times(t, x), path)) / s
            x = scheduler.step(eps, timestep, x).prev_sample
        result = sample(gm.model(path), noise, solver="pndm", grid=grid)
        assert result.nfe == len(scheduler.timesteps) == n + 9
        torch.testing.assert_close(result.x, x, rtol=0, atol=1e-6)


# -- orders, budgets, errors ---------------------------------------------------------------------

SIGMA_MAX, SIGMA_MIN = 80.0, 0.05
PATH = paths.EDM(sigma_max=SIGMA_MAX)
STEPS = (32, 64, 128, 256)


@pytest.fixture(scope="module")
def setup():
    oracle, noise = three_modes(2.0), _noise(16)

    def field(x: torch.Tensor, s: float) -> torch.Tensor:
        t = torch.full((x.shape[0],), math.exp(s) / SIGMA_MAX, dtype=torch.float64)
        return x - oracle.denoiser(x, t, PATH)

    reference, _ = odeint_dopri5(
        field, noise * SIGMA_MAX, math.log(SIGMA_MAX), math.log(SIGMA_MIN), rtol=1e-11, atol=1e-11
    )
    return oracle.model(PATH), noise, reference


def _log_grid(steps: int) -> torch.Tensor:
    sigma = torch.exp(torch.linspace(math.log(SIGMA_MAX), math.log(SIGMA_MIN), steps + 1))
    return (sigma.to(torch.float64) / SIGMA_MAX).clamp(max=1.0)


# On grids uniform in log sigma (ending at sigma = 0.05, where the ODE is smooth): DEIS-k and
# LMS-k interpolate with the true spacing, so they have order k. iPNDM's equal-step weights on a
# geometric grid are off by O(step ratio - 1) = O(h), which leaves order 2 whatever its order.
ORDER_CASES = [
    ("deis", {"order": 1, "lower_order_final": False}, 1.0),
    ("deis", {"order": 2, "lower_order_final": False}, 2.0),
    ("deis", {"order": 3, "lower_order_final": False}, 3.0),
    ("lms", {"order": 2}, 2.0),
    ("lms", {"order": 3}, 3.0),
    ("lms", {"order": 4}, 4.0),
    ("ipndm", {"order": 4}, 2.0),
    ("plms", {}, 2.0),
    ("pndm", {}, 2.0),
]


@pytest.mark.parametrize(("solver", "options", "theory"), ORDER_CASES)
def test_measured_order(setup, solver, options, theory):
    model, noise, reference = setup
    errors = []
    for n in STEPS:
        x = sample(model, noise, solver={"name": solver, **options}, grid=_log_grid(n)).x
        errors.append(float((x - reference).square().mean().sqrt()))
    slope = -np.polyfit(np.log(STEPS), np.log(errors), 1)[0]
    assert abs(slope - theory) < 0.35, f"{solver} {options}: order {slope:.2f}, errors {errors}"


def test_ipndm_equals_lms_on_an_equal_step_grid(setup):
    # On a grid uniform in rho the equal-step weights are the exact Adams-Bashforth ones, so
    # iPNDM is LMS there (and differs from it on any other grid).
    model, noise, _ = setup
    for order in (2, 3, 4):
        grid = torch.linspace(80.0, 5.0, 17, dtype=torch.float64) / SIGMA_MAX
        ipndm = sample(model, noise, solver={"name": "ipndm", "order": order}, grid=grid).x
        lms = sample(model, noise, solver={"name": "lms", "order": order}, grid=grid).x
        torch.testing.assert_close(ipndm, lms, rtol=0, atol=1e-12)
    ipndm = sample(model, noise, solver="ipndm", grid=_log_grid(16)).x
    lms = sample(model, noise, solver="lms", grid=_log_grid(16)).x
    assert float((ipndm - lms).abs().max()) > 1e-4


def test_budgets_and_nfe_counting():
    gm, path = _oracle(), paths.EDM()
    noise = _noise()
    for solver, nfe, steps in (
        ("deis", 10, 10),
        ("lms", 10, 10),
        ("ipndm", 10, 10),
        ("plms", 10, 9),
        ("pndm", 19, 10),
        ("pndm", 12, 3),
    ):
        spec = Sampler(solver, nfe=nfe)
        assert spec.steps_used() == steps
        result = sample(gm.model(path), noise, spec)
        assert result.nfe == spec.nfe_used() <= nfe
    with pytest.raises(UserError, match="too small for solver 'deis' of order 3"):
        Sampler({"name": "deis", "order": 3}, nfe=2)
    with pytest.raises(UserError, match="order"):
        get_solver("lms", order=5)


def test_start_at_pure_noise_and_batch_invariance():
    # The linear path starts at alpha = 0 (rho infinite): DEIS and LMS drop that point from their
    # interpolation, iPNDM and PLMS use DDIM's form there; all finite and batch-independent.
    gm, path = _oracle(), paths.Linear()
    noise = _noise(6)
    for solver in ("deis", "lms", "ipndm", "plms", "pndm"):
        x = sample(gm.model(path), noise, solver=solver, nfe=12).x
        assert bool(torch.isfinite(x).all())
        alone = sample(gm.model(path), noise[3:4], solver=solver, nfe=12).x
        torch.testing.assert_close(alone[0], x[3], rtol=0, atol=1e-12)
