"""Adapters: peer conventions to ours and back, and models moved between paths (no peers needed)."""

from types import SimpleNamespace

import pytest
import torch

import interpolant as ip
from interpolant import Model
from interpolant.adapters import (
    PathConverted,
    convert_path,
    diffusers_grid,
    from_diffusers,
    from_flow_matching,
    from_kdiffusion,
    to_diffusers,
    to_flow_matching,
    to_kdiffusion,
)
from interpolant.data import GaussianMixture, ring2d
from interpolant.paths import EDM, VP, DiscreteVP, Linear, Trig, VPCosine
from interpolant.predictions import convert

F64 = torch.float64
ORACLE = ring2d()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def points(n: int = 64, seed: int = 0) -> torch.Tensor:
    return 2.0 * torch.randn(n, 2, generator=gen(seed), dtype=F64)


def times(n: int = 64, seed: int = 1, low: float = 0.01, high: float = 1.0) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen(seed), dtype=F64)


def oracle_net(path, kind):
    """The exact model of ``path`` as a net predicting ``kind``."""

    def net(x, t):
        return convert(ORACLE.denoiser(x, t, path), "x0", kind, x, t, path)

    return net


# -- path conversion ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["x0", "eps", "velocity", "score", "v"])
@pytest.mark.parametrize(
    ("source", "target"),
    [(Linear(), VP()), (Linear(), EDM()), (Trig(), Linear()), (VPCosine(), DiscreteVP())],
    ids=["linear-vp", "linear-edm", "trig-linear", "cosine-discrete"],
)
def test_converted_exact_model_is_the_exact_model_of_the_target(source, target, kind):
    model = PathConverted(Model(oracle_net(source, kind), source, kind), target)
    x = points()
    t = times(high=model.t_max)
    torch.testing.assert_close(model(x, t).x0, ORACLE.denoiser(x, t, target), rtol=0, atol=1e-10)
    torch.testing.assert_close(model(x, t).score, ORACLE.score(x, t, target), rtol=1e-9, atol=1e-10)


def test_t_max_and_out_of_range_times():
    # VP reaches logsnr ~ -10 at t = 1; the linear path goes to -inf, so a VP model covers only
    # part of the linear path.
    model = PathConverted(ORACLE.model(VP()), Linear())
    one = torch.ones(1, dtype=F64)
    assert float(Linear().logsnr(torch.tensor([model.t_max], dtype=F64))) == pytest.approx(
        float(VP().logsnr(one)), abs=1e-9
    )
    assert 0.99 < model.t_max < 1.0
    with pytest.raises(ValueError, match="t_max"):
        model(points(4), torch.full((4,), 0.999, dtype=F64))
    assert PathConverted(ORACLE.model(Linear()), VP()).t_max == 1.0
    same = ORACLE.model(Linear())
    assert convert_path(same, Linear()) is same


def test_exponential_integrators_are_invariant_under_path_conversion():
    # DPM-Solver++ works in logsnr and x / alpha: on matched logsnr grids, sampling the original
    # (linear) and the converted (VP) model gives the same endpoint to rounding.
    converted = PathConverted(ORACLE.model(Linear()), VP())
    t_start = float(Linear().t_of_logsnr(VP().logsnr(torch.ones((), dtype=F64))))
    noise = torch.randn(32, 2, generator=gen(2), dtype=F64)
    for solver in ("ddim", "dpmpp_2m"):
        on_vp = ip.sample(converted, noise, solver=solver, steps=8, grid="logsnr").x
        on_linear = ip.sample(
            ORACLE.model(Linear()), noise, solver=solver, steps=8, grid="logsnr", t_max=t_start
        ).x
        torch.testing.assert_close(on_vp, on_linear, rtol=0, atol=1e-9)


def test_converted_model_has_the_same_ode_endpoint_map_up_to_discretisation():
    # Heun in the VP time of the converted model converges (second order) to the endpoint of the
    # original linear-path model's probability-flow ODE from the same noise.
    smooth = GaussianMixture(
        torch.tensor([[1.5, 0.0], [-1.0, 1.0], [0.0, -1.5]]),
        torch.diag_embed(torch.tensor([[0.3, 0.2], [0.2, 0.4], [0.25, 0.25]])),
    )
    original = smooth.model(Linear())
    converted = PathConverted(original, VP())
    t_start = float(Linear().t_of_logsnr(VP().logsnr(torch.ones((), dtype=F64))))
    noise = torch.randn(32, 2, generator=gen(3), dtype=F64)
    reference = ip.sample(
        original, noise, solver="dpmpp_2m", steps=1000, grid="logsnr", t_max=t_start
    ).x
    errors = [
        float(
            (ip.sample(converted, noise, solver="heun", steps=steps, grid="uniform").x - reference)
            .abs()
            .max()
        )
        for steps in (40, 80)
    ]
    assert errors[1] < 3e-3
    assert errors[1] < errors[0] / 3  # second order: the gap is discretisation error


# -- k-diffusion / EDM --------------------------------------------------------------------------


def edm_denoiser(x, sigma):
    """A k-diffusion denoiser D(x, sigma): the oracle's E[x0 | x0 + sigma n = x]."""
    return ORACLE.denoiser(x, sigma / 1e30, EDM(sigma_max=1e30))


@pytest.mark.parametrize("path", [EDM(), VP(), Linear(), VPCosine()], ids=lambda p: p.name)
def test_from_kdiffusion_on_any_path(path):
    model = from_kdiffusion(edm_denoiser, path)
    x, t = points(), times(high=1.0)
    torch.testing.assert_close(model(x, t).x0, ORACLE.denoiser(x, t, path), rtol=0, atol=1e-10)
    # Where alpha = 0 (t = 1 on the linear and cosine paths) the result is the data mean.
    if float(path.alpha(torch.ones((), dtype=F64))) == 0.0:
        at_one = model(x, torch.ones(64, dtype=F64)).x0
        torch.testing.assert_close(at_one, ORACLE.means.mean(0).expand(64, 2), rtol=0, atol=1e-8)


def test_from_kdiffusion_on_edm_passes_sigma_through():
    seen = {}

    def denoiser(x, sigma):
        seen["x"], seen["sigma"] = x, sigma
        return x

    x, t = points(8), times(8)
    from_kdiffusion(denoiser)(x, t)
    torch.testing.assert_close(seen["sigma"], 80.0 * t)
    assert torch.equal(seen["x"], x)


@pytest.mark.parametrize("path", [EDM(), VP(), Linear()], ids=lambda p: p.name)
def test_to_kdiffusion_round_trip(path):
    denoiser = to_kdiffusion(ORACLE.model(path))
    x = points()
    sigma = torch.exp(torch.randn(64, generator=gen(4), dtype=F64)).clamp(max=50.0)
    torch.testing.assert_close(denoiser(x, sigma), edm_denoiser(x, sigma), rtol=0, atol=1e-10)
    back = from_kdiffusion(denoiser, path)
    t = times()
    torch.testing.assert_close(back(x, t).x0, ORACLE.denoiser(x, t, path), rtol=0, atol=1e-10)
    if path.name == "vp":
        with pytest.raises(ValueError, match="largest noise level"):
            denoiser(x[:1], torch.tensor([500.0], dtype=F64))


# -- flow_matching / torchcfm -------------------------------------------------------------------


def test_from_flow_matching_flips_time_and_sign():
    def fm_velocity(x, t_fm):  # their convention: x = t' x1 + (1 - t') x0, x0 noise
        return -ORACLE.velocity(x, 1.0 - t_fm, Linear())

    model = from_flow_matching(fm_velocity)
    assert isinstance(model.path, Linear) and model.predicts == "velocity"
    x, t = points(), times(high=0.99)
    torch.testing.assert_close(model(x, t).velocity, ORACLE.velocity(x, t, Linear()))
    # Their velocity points from noise to data: along it, alpha (the data weight) grows.
    x0 = ORACLE.sample(64, gen(5))
    eps = torch.randn(64, 2, generator=gen(6), dtype=F64)
    t_fm = torch.rand(64, generator=gen(7), dtype=F64)
    x_fm = t_fm[:, None] * x0 + (1 - t_fm[:, None]) * eps
    torch.testing.assert_close(Linear().sample_xt(x0, 1 - t_fm, eps), x_fm)


def test_to_flow_matching_round_trip_from_another_path():
    velocity = to_flow_matching(ORACLE.model(Trig()))  # converted to Linear first
    x = points()
    t_fm = torch.rand(64, generator=gen(8), dtype=F64) * 0.98 + 0.01
    expected = -ORACLE.velocity(x, 1 - t_fm, Linear())
    torch.testing.assert_close(velocity(x, t_fm), expected, rtol=1e-9, atol=1e-9)
    # A scalar time, as flow_matching's ODESolver passes it.
    torch.testing.assert_close(
        velocity(x, torch.tensor(0.3, dtype=F64)), -ORACLE.velocity(x, 0.7, Linear())
    )
    back = from_flow_matching(velocity)
    torch.testing.assert_close(
        back(x, 1 - t_fm).velocity, ORACLE.velocity(x, 1 - t_fm, Linear()), rtol=1e-9, atol=1e-9
    )


# -- diffusers ----------------------------------------------------------------------------------


def diffusers_style_net(acp: torch.Tensor, prediction_type: str):
    """A net on integer timesteps written in diffusers' own terms (sqrt(abar), sqrt(1 - abar)),
    independent of our DiscreteVP."""
    acp = acp.to(F64)

    def net(x, timestep):
        n = torch.as_tensor(timestep).round().long().expand(x.shape[0])
        a, s = acp[n].sqrt()[:, None], (1 - acp[n]).sqrt()[:, None]
        x0 = edm_denoiser(x / a, (s / a)[:, 0])
        eps = (x - a * x0) / s
        out = {"epsilon": eps, "v_prediction": a * eps - s * x0, "sample": x0}[prediction_type]
        return SimpleNamespace(sample=out)  # diffusers models return an output object

    return net


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_from_diffusers_at_training_timesteps(prediction_type):
    path = DiscreteVP()
    net = diffusers_style_net(path.alphas_cumprod, prediction_type)
    model = from_diffusers(net, path.alphas_cumprod, prediction_type, integer_timesteps=True)
    n = torch.randint(0, 1000, (64,), generator=gen(9)).to(F64)
    t, x = path.t_of_timestep(n), points()
    torch.testing.assert_close(model(x, t).x0, ORACLE.denoiser(x, t, path), rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="fractional timestep"):
        model(x[:1], path.t_of_timestep(torch.tensor([10.5], dtype=F64)))


def test_from_diffusers_reads_a_scheduler_and_passes_fractional_timesteps():
    path = DiscreteVP()
    scheduler = SimpleNamespace(
        alphas_cumprod=path.alphas_cumprod.float(),
        config=SimpleNamespace(prediction_type="v_prediction"),
    )
    seen = {}

    def net(x, timestep):
        seen["timestep"] = timestep
        return x

    model = from_diffusers(net, scheduler)
    assert model.predicts == "v"
    model(points(3), torch.tensor([0.5, 0.0005, 1.0], dtype=F64))
    torch.testing.assert_close(seen["timestep"], torch.tensor([499.0, 0.0, 999.0], dtype=F64))
    with pytest.raises(ValueError, match="prediction_type"):
        from_diffusers(net, path, "flow")


def test_to_diffusers_round_trip():
    path = DiscreteVP()
    net = to_diffusers(ORACLE.model(Linear()), path, "epsilon")  # converted from the linear path
    model = from_diffusers(net, path, "epsilon", integer_timesteps=True)
    n = torch.randint(0, 1000, (64,), generator=gen(10)).to(F64)
    t, x = path.t_of_timestep(n), points()
    torch.testing.assert_close(model(x, t).x0, ORACLE.denoiser(x, t, path), rtol=0, atol=1e-9)


def test_diffusers_grid_end_points():
    path = DiscreteVP()
    leading = torch.arange(0, 1000, 50).flip(0)  # 950, ..., 0
    grid = diffusers_grid(leading, path)
    torch.testing.assert_close(grid[:-1], (leading.to(F64) + 1) / 1000)
    assert float(grid[-1]) == 0.0
    # set_alpha_to_one=False: the last step goes to abar_0 (t = 1/N): after timestep 0 it is the
    # identity and is dropped; after trailing timesteps it is a real step.
    assert diffusers_grid(leading, path, set_alpha_to_one=False).tolist() == grid[:-1].tolist()
    trailing = torch.arange(999, 0, -50)
    assert float(diffusers_grid(trailing, path, set_alpha_to_one=False)[-1]) == pytest.approx(1e-3)
