"""DiscreteVP: a discrete alphas_cumprod schedule as a continuous VP path."""

import math

import pytest
import torch

from interpolant.paths import PATHS, DiscreteVP, from_config, get_path
from interpolant.paths.discrete_vp import ddpm_linear_alphas_cumprod

F64 = torch.float64


@pytest.fixture(scope="module")
def path() -> DiscreteVP:
    return DiscreteVP()


def test_knots_reproduce_alphas_cumprod(path):
    n = torch.arange(path.num_train_timesteps, dtype=F64)
    t = path.t_of_timestep(n)
    acp = path.alphas_cumprod
    torch.testing.assert_close(path.alpha(t) ** 2, acp, rtol=1e-13, atol=0)
    torch.testing.assert_close(path.sigma(t) ** 2, 1 - acp, rtol=1e-10, atol=1e-15)
    # The EDM noise level at the knots is diffusers' sigmas = sqrt((1 - abar) / abar).
    torch.testing.assert_close(path.edm_sigma(t), ((1 - acp) / acp).sqrt(), rtol=1e-10, atol=0)
    assert float(t[-1]) == 1.0
    torch.testing.assert_close(path.timestep_of_t(t), n)


def test_default_is_diffusers_linear_schedule_and_betas_constructor():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    from_betas = DiscreteVP(betas=betas)
    torch.testing.assert_close(from_betas.alphas_cumprod, torch.cumprod(1 - betas, 0))
    default = DiscreteVP()
    torch.testing.assert_close(
        default.alphas_cumprod, ddpm_linear_alphas_cumprod().to(F64), rtol=0, atol=0
    )
    # float32 cumprod (as diffusers) and float64 cumprod agree to float32 rounding.
    torch.testing.assert_close(default.alphas_cumprod, from_betas.alphas_cumprod, rtol=1e-5, atol=0)


def test_end_points_are_data_exactly(path):
    zero = torch.zeros(1, dtype=F64)
    assert float(path.alpha(zero)) == 1.0
    assert float(path.sigma(zero)) == 0.0
    assert float(path.logsnr(zero)) == 120.0
    assert float(path.alpha(torch.ones(1, dtype=F64)) ** 2) == pytest.approx(
        float(path.alphas_cumprod[-1]), rel=1e-12
    )


def test_variance_preserving_and_monotone(path):
    t = torch.linspace(0, 1, 5001, dtype=F64)
    torch.testing.assert_close(path.alpha(t) ** 2 + path.sigma(t) ** 2, torch.ones_like(t))
    assert bool((path.logsnr(t)[1:] < path.logsnr(t)[:-1]).all())


def test_logsnr_is_linear_in_the_timestep_between_knots(path):
    # Halfway between timesteps n and n+1 the log EDM sigma is the mean of the two (the log-sigma
    # interpolation of diffusers' _sigma_to_t and k-diffusion's DiscreteSchedule).
    n = torch.tensor([0.0, 10.0, 499.0, 998.0], dtype=F64)
    knots = path.logsnr(path.t_of_timestep(torch.cat([n, n + 1])))
    mid = path.logsnr(path.t_of_timestep(n + 0.5))
    torch.testing.assert_close(mid, 0.5 * (knots[:4] + knots[4:]), rtol=1e-12, atol=1e-12)
    # On [0, 1/N], log alpha^2 is linear in t from 0 to log abar_0.
    t = torch.tensor([0.25, 0.5, 0.75], dtype=F64) / path.num_train_timesteps
    log_a2 = 2 * torch.log(path.alpha(t))
    expected = t * path.num_train_timesteps * math.log(float(path.alphas_cumprod[0]))
    torch.testing.assert_close(log_a2, expected, rtol=1e-12, atol=0)


def test_derivatives_match_autograd(path):
    g = torch.Generator().manual_seed(0)
    # Away from the knots (the derivative jumps there): fractional timesteps, and t < 1/N.
    n = (
        torch.randint(0, 999, (64,), generator=g).to(F64)
        + 0.1
        + 0.8 * torch.rand(64, generator=g, dtype=F64)
    )
    t = torch.cat([path.t_of_timestep(n), torch.tensor([0.3e-3, 0.7e-3], dtype=F64)])
    t.requires_grad_(True)
    for value, derivative in ((path.alpha, path.d_alpha), (path.sigma, path.d_sigma)):
        (grad,) = torch.autograd.grad(value(t).sum(), t)
        torch.testing.assert_close(grad, derivative(t.detach()), rtol=1e-9, atol=1e-12)


def test_t_of_logsnr_inverts_logsnr(path):
    g = torch.Generator().manual_seed(1)
    t = torch.cat(
        [
            torch.rand(2000, generator=g, dtype=F64),
            torch.rand(200, generator=g, dtype=F64) / path.num_train_timesteps,  # first interval
            torch.tensor([0.0, 1.0], dtype=F64),
        ]
    )
    torch.testing.assert_close(path.t_of_logsnr(path.logsnr(t)), t, rtol=0, atol=1e-12)
    # Below the last knot's logsnr the time clamps to 1.
    assert float(path.t_of_logsnr(torch.tensor([-50.0], dtype=F64))) == 1.0


def test_config_round_trip_and_registry(path):
    rebuilt = from_config(path.config())
    assert isinstance(rebuilt, DiscreteVP)
    torch.testing.assert_close(rebuilt.alphas_cumprod, path.alphas_cumprod, rtol=0, atol=0)
    assert PATHS["discrete-vp"] is DiscreteVP
    assert isinstance(get_path("discrete-vp", betas=[0.1, 0.2, 0.3]), DiscreteVP)


def test_zero_terminal_snr_is_clamped():
    acp = torch.cat(
        [ddpm_linear_alphas_cumprod(num_train_timesteps=10).to(F64)[:-1], torch.zeros(1, dtype=F64)]
    )
    p = DiscreteVP(acp)
    one = torch.ones(1, dtype=F64)
    assert float(p.logsnr(one)) == -120.0
    assert float(p.sigma(one)) == 1.0
    assert 0 < float(p.alpha(one)) < 1e-25


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alphas_cumprod": [0.9, 0.95]}, "strictly decrease"),
        ({"alphas_cumprod": [1.0, 0.5]}, r"\[0, 1\)"),
        ({"alphas_cumprod": [0.5]}, "at least two"),
        ({"betas": [0.0, 0.1]}, "betas"),
        ({"alphas_cumprod": [0.9, 0.5], "betas": [0.1, 0.2]}, "not both"),
    ],
)
def test_bad_schedules_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiscreteVP(**kwargs)
