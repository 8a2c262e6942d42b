"""Time samplers: samples follow the stated density, SD3 and EDM formulas in our convention."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from interpolant.losses import (
    TIME_SAMPLERS,
    CosMap,
    EDMLogNormal,
    LogitNormal,
    Mode,
    Shift,
    TimeSampler,
    Uniform,
    get_time_sampler,
    time_from_config,
)
from interpolant.paths import EDM, VP, Linear

F64 = torch.float64
N = 4000


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cdf_from_pdf(sampler: TimeSampler):
    """(CDF, total mass) obtained by integrating ``sampler.pdf`` (trapezoid on a logit-spaced
    grid, which resolves densities piled up near t = 0 or 1)."""
    inner = torch.sigmoid(torch.linspace(-25, 25, 50_001, dtype=F64))
    grid = torch.cat([torch.zeros(1, dtype=F64), inner, torch.ones(1, dtype=F64)])
    pdf = sampler.pdf(grid)
    steps = 0.5 * (pdf[1:] + pdf[:-1]) * grid.diff()
    cdf = torch.cat([torch.zeros(1, dtype=F64), torch.cumsum(steps, 0)])
    grid_np, cdf_np = grid.numpy(), cdf.numpy()
    return (lambda x: np.interp(x, grid_np, cdf_np)), float(cdf[-1])


SAMPLERS = [
    Uniform(),
    Uniform(0.1, 0.7),
    LogitNormal(0.0, 1.0),
    LogitNormal(0.5, 0.6),
    Mode(1.29),
    Mode(-0.5),
    CosMap(),
    Shift(Uniform(), 3.0),
    Shift(LogitNormal(0.0, 1.0), 2.0),
    EDMLogNormal(path=EDM()),
    EDMLogNormal(path=VP()),
]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
def test_samples_follow_pdf(sampler):
    cdf, total = cdf_from_pdf(sampler)
    assert total == pytest.approx(1.0, abs=2e-4)  # the density integrates to one
    t = sampler.sample(N, gen(3))
    assert t.dtype == F64 and t.shape == (N,)
    assert float(t.min()) >= 0 and float(t.max()) <= 1
    assert stats.kstest(t.numpy(), cdf).pvalue > 1e-3


def test_ks_detects_a_wrong_density():
    # Power check of the test above: logit-normal(0, 1) draws against the logit-normal(0.5, 1) pdf.
    cdf, _ = cdf_from_pdf(LogitNormal(0.5, 1.0))
    t = LogitNormal(0.0, 1.0).sample(N, gen(3))
    assert stats.kstest(t.numpy(), cdf).pvalue < 1e-6


def test_logit_normal_is_sigmoid_of_normal():
    t = LogitNormal(0.3, 0.7).sample(10, gen(5))
    z = torch.randn(10, generator=gen(5), dtype=F64)
    torch.testing.assert_close(t, torch.sigmoid(0.3 + 0.7 * z))


def test_sd3_mode_with_zero_scale_is_uniform():
    t = Mode(0.0).sample(1000, gen(7))
    u = torch.rand(1000, generator=gen(7), dtype=F64)
    torch.testing.assert_close(t, 1 - u, rtol=0, atol=0)
    grid = torch.linspace(0, 1, 101, dtype=F64)
    torch.testing.assert_close(Mode(0.0).pdf(grid), torch.ones_like(grid))


def test_sd3_mode_and_cosmap_formulas_in_our_convention():
    u = torch.rand(1000, generator=gen(8), dtype=F64)
    s = 1.29
    mode = 1 - u - s * (torch.cos(math.pi * u / 2) ** 2 - 1 + u)
    torch.testing.assert_close(Mode(s).sample(1000, gen(8)), mode)
    # Mode s > 0 concentrates t near the middle, symmetric about 1/2 (f(1 - u) = 1 - f(u)).
    grid = torch.tensor([0.1, 0.3, 0.5], dtype=F64)
    pdf = Mode(s).pdf(grid)
    assert float(pdf[0]) < float(pdf[1]) < float(pdf[2])
    torch.testing.assert_close(Mode(s).pdf(1 - grid), pdf)
    # CosMap: t / (1 - t) = tan(pi u / 2), i.e. on the linear path logsnr = -2 log tan(pi u / 2),
    # the logsnr of the cosine schedule alpha = cos(pi u / 2) (t = 1 is noise, as in SD3).
    t = CosMap().sample(1000, gen(9))
    u = torch.rand(1000, generator=gen(9), dtype=F64)
    torch.testing.assert_close(Linear().logsnr(t), -2 * torch.log(torch.tan(math.pi * u / 2)))


@pytest.mark.parametrize("path", [EDM(), VP()], ids=["edm", "vp"])
def test_edm_log_normal_gives_log_normal_sigma_on_any_path(path):
    t = EDMLogNormal(-1.2, 1.2, path=path).sample(N, gen(11))
    log_sigma = torch.log(path.edm_sigma(t))
    assert stats.kstest(log_sigma.numpy(), stats.norm(-1.2, 1.2).cdf).pvalue > 1e-3
    # Same draws, same noise levels on both paths: only the time coordinate differs.
    other = VP() if isinstance(path, EDM) else EDM()
    t_other = EDMLogNormal(-1.2, 1.2, path=other).sample(N, gen(11))
    torch.testing.assert_close(other.edm_sigma(t_other), path.edm_sigma(t), rtol=1e-9, atol=0)


def test_edm_log_normal_needs_a_path():
    with pytest.raises(ValueError, match="needs a path"):
        EDMLogNormal().sample(3)
    bound = EDMLogNormal().with_path(EDM())
    assert bound.sample(3).shape == (3,)
    with pytest.raises(ValueError, match="maps sigma on"):
        EDMLogNormal(path=EDM()).with_path(VP())


def test_shift_lowers_linear_logsnr_by_two_log_alpha():
    alpha = 3.0
    base = Uniform().sample(1000, gen(12))
    shifted = Shift(Uniform(), alpha).sample(1000, gen(12))
    path = Linear()
    torch.testing.assert_close(path.logsnr(shifted), path.logsnr(base) - 2 * math.log(alpha))
    assert Shift.resolution_alpha(1024**2, 256**2) == pytest.approx(4.0)


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
def test_config_round_trip(sampler):
    rebuilt = time_from_config(json.loads(json.dumps(sampler.config())))
    assert rebuilt.config() == sampler.config()
    assert rebuilt == sampler and hash(rebuilt) == hash(sampler)
    torch.testing.assert_close(rebuilt.sample(50, gen(4)), sampler.sample(50, gen(4)))


def test_configs_of_the_previous_version_and_dicts_load():
    # The previous version left out an EDMLogNormal's path when it had none.
    assert time_from_config({"name": "edm-log-normal", "P_mean": -1.2, "P_std": 1.2}) == (
        EDMLogNormal()
    )
    old = {"name": "shift", "alpha": 2.0, "base": {"name": "logit-normal", "m": 0.0, "s": 1.0}}
    assert time_from_config(old) == Shift(LogitNormal(), 2.0)
    assert get_time_sampler({"name": "mode", "s": 0.5}) == Mode(0.5)
    assert TIME_SAMPLERS["logit-normal"] is LogitNormal
    assert repr(Shift(Uniform(), 2.0)) == "Shift(base=Uniform(t_min=0.0, t_max=1.0), alpha=2.0)"
    with pytest.raises(ValueError, match="has no option 'mu'"):
        time_from_config({"name": "logit-normal", "mu": 0.0})
    with pytest.raises(TypeError, match="base must be a TimeSampler"):
        Shift("uniform")


def test_names_and_bad_arguments():
    assert isinstance(get_time_sampler(None), Uniform)
    assert isinstance(get_time_sampler("cosmap"), CosMap)
    with pytest.raises(ValueError, match="time must be"):
        get_time_sampler("logit")
    with pytest.raises(ValueError, match="t_min"):
        Uniform(0.5, 0.2)
    with pytest.raises(ValueError, match="monotone"):
        Mode(2.0)
    with pytest.raises(ValueError, match="> 0"):
        LogitNormal(0.0, 0.0)
    with pytest.raises(ValueError, match="unknown time sampler"):
        time_from_config({"name": "nope"})


def test_sampler_respects_device_argument():
    t = Uniform().sample(5, gen(0), device="cpu")
    assert t.device.type == "cpu" and t.shape == (5,)
