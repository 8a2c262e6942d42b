"""Our loop on adapted models reproduces the peers' own samplers (skipped when a peer is absent).

The model everywhere is the exact denoiser of the ``ring2d`` Gaussian mixture, written in each
peer's own terms (so the adapter, not the model, is what is tested).
"""

import pytest
import torch

import interpolant as ip
from interpolant.adapters import diffusers_grid, from_diffusers, from_flow_matching, from_kdiffusion
from interpolant.data import ring2d
from interpolant.losses import Objective
from interpolant.paths import EDM, Linear

pytestmark = pytest.mark.peers

F64 = torch.float64
ORACLE = ring2d()
REFERENCE_EDM = EDM(sigma_max=1e30)  # sigma(t) = 1e30 t: any noise level fits


def noise(n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=F64)


def edm_denoiser(x, sigma):
    """k-diffusion's D(x, sigma) = E[x0 | x0 + sigma n = x] of the oracle."""
    sigma = torch.as_tensor(sigma, dtype=F64).expand(x.shape[0])
    return ORACLE.denoiser(x, sigma / REFERENCE_EDM.sigma_max, REFERENCE_EDM)


def diffusers_eps_net(alphas_cumprod: torch.Tensor):
    """The oracle as a diffusers epsilon model on integer timesteps (in diffusers' own terms)."""
    acp = alphas_cumprod.to(F64)

    def net(x, timestep):
        n = torch.as_tensor(timestep).round().long().expand(x.shape[0])
        a, s = acp[n].sqrt()[:, None], (1 - acp[n]).sqrt()[:, None]
        return (x - a * edm_denoiser(x / a, (s / a)[:, 0])) / s

    return net


def run_scheduler(scheduler, net, x):
    """diffusers' own sampling loop."""
    for timestep in scheduler.timesteps:
        x = scheduler.step(net(x, timestep), timestep, x).prev_sample
    return x


# -- diffusers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"set_alpha_to_one": True},
        {"set_alpha_to_one": False},
        {"set_alpha_to_one": True, "timestep_spacing": "trailing"},
        {"set_alpha_to_one": False, "timestep_spacing": "trailing"},
    ],
    ids=["leading-one", "leading-first", "trailing-one", "trailing-first"],
)
def test_ddim_reproduces_diffusers_ddim_scheduler(options):
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        clip_sample=False,
        **options,
    )
    scheduler.set_timesteps(20)
    net = diffusers_eps_net(scheduler.alphas_cumprod)
    theirs = run_scheduler(scheduler, net, noise())
    model = from_diffusers(net, scheduler)  # reads alphas_cumprod and prediction_type
    grid = diffusers_grid(scheduler.timesteps, model.path, options["set_alpha_to_one"])
    # diffusers starts from x = noise at its first timestep (init_noise_sigma = 1): no scaling.
    ours = ip.sample(
        model, noise(), solver="ddim", grid=grid, scale_noise=False, solver_dtype=F64
    ).x
    # diffusers keeps alphas_cumprod in float32: agreement to float32 rounding of the coefficients.
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_dpmpp_2m_reproduces_diffusers_multistep_scheduler():
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        solver_order=2,
        algorithm_type="dpmsolver++",
        solver_type="midpoint",
        lower_order_final=True,
        final_sigmas_type="zero",
    )
    scheduler.set_timesteps(20)
    net = diffusers_eps_net(scheduler.alphas_cumprod)
    theirs = run_scheduler(scheduler, net, noise())
    model = from_diffusers(net, scheduler.alphas_cumprod, "epsilon")
    grid = diffusers_grid(scheduler.timesteps, model.path)  # final_sigmas_type="zero": t = 0
    ours = ip.sample(
        model, noise(), solver="dpmpp_2m", grid=grid, scale_noise=False, solver_dtype=F64
    ).x
    # The scheduler casts the sample to float32 in every step: agreement to float32 rounding.
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_fractional_timesteps_match_diffusers_sigma_to_t():
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DPMSolverMultistepScheduler()
    model = from_diffusers(diffusers_eps_net(scheduler.alphas_cumprod), scheduler)
    acp = scheduler.alphas_cumprod.double()
    log_sigmas = (((1 - acp) / acp) ** 0.5).log().numpy()
    sigmas = torch.exp(torch.linspace(-4.0, 4.5, 50, dtype=F64))
    theirs = torch.as_tensor(scheduler._sigma_to_t(sigmas.numpy(), log_sigmas), dtype=F64)
    ours = model.path.timestep_of_t(model.path.t_of_edm_sigma(sigmas))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


# -- k-diffusion --------------------------------------------------------------------------------


def test_euler_reproduces_k_diffusion_sample_euler():
    from peers_util import k_diffusion_sampling

    sampling = k_diffusion_sampling()
    sigmas = sampling.get_sigmas_karras(12, 0.002, 80.0).to(F64)
    x = noise() * sigmas[0]
    theirs = sampling.sample_euler(edm_denoiser, x, sigmas, disable=True)
    model = from_kdiffusion(edm_denoiser)  # EDM path, t = sigma / 80
    ours = ip.sample(model, noise(), solver="euler", grid=model.path.t_of_edm_sigma(sigmas)).x
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_heun_reproduces_k_diffusion_sample_heun():
    from peers_util import k_diffusion_sampling

    sampling = k_diffusion_sampling()
    sigmas = sampling.get_sigmas_karras(10, 0.002, 80.0).to(F64)
    theirs = sampling.sample_heun(edm_denoiser, noise() * sigmas[0], sigmas, disable=True)
    model = from_kdiffusion(edm_denoiser)
    ours = ip.sample(model, noise(), solver="heun", grid=model.path.t_of_edm_sigma(sigmas)).x
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


# -- flow_matching / torchcfm -------------------------------------------------------------------


def test_linear_adapter_reproduces_flow_matching_ode_solver_euler():
    pytest.importorskip("flow_matching")
    from flow_matching.path import AffineProbPath
    from flow_matching.path.scheduler import CondOTScheduler
    from flow_matching.solver import ODESolver

    fm_path = AffineProbPath(CondOTScheduler())

    def velocity(x, t):  # in flow_matching's terms: t = 0 noise, t = 1 data
        t = torch.as_tensor(t, dtype=F64).expand(x.shape[0])
        x1 = ORACLE.denoiser(x, 1 - t, Linear())  # E[x1 | t x1 + (1 - t) x0 = x]
        return fm_path.target_to_velocity(x_1=x1, x_t=x, t=t[:, None])

    time_grid = torch.linspace(0.0, 0.999, 16, dtype=F64) ** 1.5  # non-uniform, avoiding t = 1
    theirs = ODESolver(velocity_model=velocity).sample(
        x_init=noise(), step_size=None, method="euler", time_grid=time_grid
    )
    ours = ip.sample(
        from_flow_matching(velocity), noise(), solver="euler", grid=1 - time_grid, scale_noise=False
    ).x
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)


def test_torchcfm_pairs_are_our_linear_path_and_velocity_target():
    cfm = pytest.importorskip("torchcfm.conditional_flow_matching")
    x1 = ORACLE.sample(64, torch.Generator().manual_seed(1))
    x0_noise = noise(64, 2)
    t_cfm = torch.rand(64, generator=torch.Generator().manual_seed(3), dtype=F64)
    _, xt, ut = cfm.ConditionalFlowMatcher(sigma=0.0).sample_location_and_conditional_flow(
        x0_noise, x1, t=t_cfm
    )
    objective = Objective(Linear(), target="velocity")
    torch.testing.assert_close(xt, Linear().sample_xt(x1, 1 - t_cfm, x0_noise))
    torch.testing.assert_close(ut, -objective.regression_target(x1, x0_noise, 1 - t_cfm))
