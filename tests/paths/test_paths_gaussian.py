"""Every Gaussian path in ``paths.PATHS``: end points, derivatives, logSNR, configs, bad times."""

from __future__ import annotations

import json
import math

import pytest
import torch

from interpolant import paths
from interpolant.paths import PATHS, GaussianPath, OneSided, as_time, from_config, get_path
from interpolant.predictions import convert

F64 = torch.float64
# Every registered class with its defaults, plus non-default parameters of the families.
EXTRA = [
    paths.VPLinear(beta_min=0.5, beta_max=10.0),
    paths.VPCosine(s=0.02),
    paths.VE(sigma_min=0.002, sigma_max=80.0),
    paths.EDM(sigma_max=10.0),
    paths.PFGM(D=16.0),
    OneSided("trig", "brownian"),
    OneSided("linear", "sin2", a=0.5),
    OneSided("linear", "quadratic", a=2.0),
]
ALL_PATHS = [cls() for cls in dict.fromkeys(PATHS.values())] + EXTRA
IDS = [repr(p) for p in ALL_PATHS]
T_INNER = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)


def end_values(path: GaussianPath) -> tuple[float, float]:
    """(alpha(1), sigma(1)) from each family's own definition."""
    if isinstance(path, paths.VPLinear):
        alpha = math.exp(-(path.beta_max - path.beta_min) / 4 - path.beta_min / 2)
        return alpha, math.sqrt(1 - alpha**2)
    if isinstance(path, paths.VPCosine | paths.Linear | paths.Trig | OneSided):
        return 0.0, 1.0
    if isinstance(path, paths.VE | paths.EDM):  # PFGM is an EDM
        return 1.0, path.sigma_max
    if type(path).__name__ == "DiscreteVP":
        abar = float(path.alphas_cumprod[-1])  # type: ignore[attr-defined]
        return math.sqrt(abar), math.sqrt(1 - abar)
    raise AssertionError(f"add the t = 1 values of {type(path).__name__} to this test")


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_end_points(path: GaussianPath) -> None:
    ends = torch.tensor([0.0, 1.0], dtype=F64)
    alpha, sigma = path.alpha(ends), path.sigma(ends)
    assert alpha[0] == 1.0 and sigma[0] == 0.0  # t = 0 is data, exactly
    a1, s1 = end_values(path)
    assert float(alpha[1]) == pytest.approx(a1, abs=1e-12)
    assert float(sigma[1]) == pytest.approx(s1, rel=1e-12)


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_variance_preserving_flag(path: GaussianPath) -> None:
    total = path.alpha(T_INNER) ** 2 + path.sigma(T_INNER) ** 2
    if path.variance_preserving:
        torch.testing.assert_close(total, torch.ones_like(total), atol=1e-14, rtol=0)
    else:
        assert float((total - 1).abs().max()) > 1e-3


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_derivatives_equal_autograd(path: GaussianPath) -> None:
    t = T_INNER.clone().requires_grad_(True)
    (d_alpha,) = torch.autograd.grad((path.alpha(t) + 0 * t).sum(), t)  # VE: alpha = 1
    (d_sigma,) = torch.autograd.grad((path.sigma(t) + 0 * t).sum(), t)
    torch.testing.assert_close(path.d_alpha(T_INNER), d_alpha, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(path.d_sigma(T_INNER), d_sigma, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_logsnr_decreasing_and_inverse(path: GaussianPath) -> None:
    t = torch.linspace(1e-4, 1 - 1e-4, 2001, dtype=F64)
    logsnr = path.logsnr(t)
    assert bool((logsnr.diff() < 0).all())
    torch.testing.assert_close(path.t_of_logsnr(logsnr), t, rtol=1e-9, atol=1e-12)
    # And the other way round over the range the path reaches.
    lam = torch.linspace(float(logsnr[-1]), float(logsnr[0]), 301, dtype=F64)
    torch.testing.assert_close(path.logsnr(path.t_of_logsnr(lam)), lam, rtol=1e-8, atol=1e-8)
    # logsnr is log(alpha^2 / sigma^2).
    alpha, sigma = path.alpha(t), path.sigma(t)
    torch.testing.assert_close(logsnr, torch.log(alpha**2 / sigma**2), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_edm_sigma_round_trip(path: GaussianPath) -> None:
    s = path.edm_sigma(T_INNER)
    torch.testing.assert_close(s, path.sigma(T_INNER) / path.alpha(T_INNER), rtol=1e-10, atol=0)
    torch.testing.assert_close(path.t_of_edm_sigma(s), T_INNER, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_config_round_trip(path: GaussianPath) -> None:
    rebuilt = from_config(json.loads(json.dumps(path.config())))
    assert type(rebuilt) is type(path)
    assert rebuilt.config() == path.config()
    assert rebuilt == path and hash(rebuilt) == hash(path)
    for a, b in zip(rebuilt.coefficients(T_INNER), path.coefficients(T_INNER)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert get_path(path) is path


# Path configs as the previous version wrote them (checkpoints store them in JSON).
OLD_CONFIGS = [
    ({"name": "vp", "beta_min": 0.1, "beta_max": 20.0}, paths.VPLinear()),
    ({"name": "cosine", "s": 0.008}, paths.VPCosine()),
    ({"name": "ve", "sigma_min": 0.01, "sigma_max": 50.0}, paths.VE()),
    ({"name": "edm", "sigma_max": 80.0}, paths.EDM()),
    ({"name": "linear"}, paths.Linear()),
    ({"name": "trig"}, paths.Trig()),
    ({"name": "pfgm", "D": None, "sigma_max": 80.0}, paths.PFGM(D=math.inf)),
    ({"name": "pfgm", "D": 128.0, "sigma_max": 80.0}, paths.PFGM()),
    ({"name": "discrete-vp", "alphas_cumprod": [0.9, 0.5, 0.1]}, paths.DiscreteVP([0.9, 0.5, 0.1])),
    (
        {"name": "one-sided", "interpolant": "trig", "gamma": "brownian", "a": 0.5},
        OneSided("trig", "brownian", 0.5),
    ),
]


@pytest.mark.parametrize(("config", "path"), OLD_CONFIGS, ids=[c["name"] for c, _ in OLD_CONFIGS])
def test_configs_of_the_previous_version_still_load(config: dict, path: GaussianPath) -> None:
    assert from_config(config) == path


def test_registry_names_aliases_and_options() -> None:
    for alias, cls in (
        ("vp-linear", paths.VPLinear),
        ("vp-cosine", paths.VPCosine),
        ("rectified-flow", paths.Linear),
        ("VP", paths.VPLinear),
    ):
        assert type(get_path(alias)) is cls
    assert get_path("edm", sigma_max=10.0) == paths.EDM(10.0)
    assert get_path({"name": "ve", "sigma_max": 20.0}) == paths.VE(sigma_max=20.0)
    assert repr(paths.VPLinear()) == "VPLinear(beta_min=0.1, beta_max=20.0)"
    assert paths.EDM(10.0) != paths.EDM() and paths.EDM() != paths.PFGM(D=math.inf)
    help_rows = {name: text for name, _, _, text in paths.VE.options()}
    assert set(help_rows) == {"sigma_min", "sigma_max"} and all(help_rows.values())
    with pytest.raises(ValueError, match="has no option 'sigma'"):
        get_path("edm", sigma=1.0)
    with pytest.raises(ValueError, match="need beta_min < beta_max"):
        paths.VPLinear(beta_min=5.0, beta_max=1.0)
    with pytest.raises(ValueError, match="VE: sigma_min must be a finite number > 0"):
        paths.VE(sigma_min=0.0)


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_times_outside_unit_interval_rejected(path: GaussianPath) -> None:
    x0, eps = torch.zeros(2, 3, dtype=F64), torch.zeros(2, 3, dtype=F64)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
            path.sample_xt(x0, torch.tensor([0.5, bad], dtype=F64), eps)
        with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
            convert(x0, "x0", "eps", x0, bad, path)


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_sample_xt_per_sample_times(path: GaussianPath) -> None:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 2, 3, generator=g, dtype=F64)
    eps = torch.randn(4, 2, 3, generator=g, dtype=F64)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=F64)
    xt = path.sample_xt(x0, t, eps)
    for i in range(4):
        ti = t[i]
        torch.testing.assert_close(xt[i], path.alpha(ti) * x0[i] + path.sigma(ti) * eps[i])


def test_as_time_and_registry_errors() -> None:
    assert as_time(0.5).dtype == torch.float64
    assert as_time(torch.tensor([0, 1])).dtype == torch.float64
    with pytest.raises(ValueError, match="t must lie"):
        as_time(1.0 + 1e-9)
    with pytest.raises(ValueError, match="unknown path"):
        get_path("no-such-path")
    with pytest.raises(ValueError, match="'name'"):
        from_config({"sigma_max": 1.0})
    with pytest.raises(ValueError, match="only used with a path name"):
        get_path(paths.Linear(), sigma_max=2.0)


def test_families_agree_where_they_coincide() -> None:
    t = T_INNER
    # The one-sided deterministic interpolants are rectified flow and the trig path.
    for one_sided, path in ((OneSided("linear"), paths.Linear()), (OneSided("trig"), paths.Trig())):
        for a, b in zip(one_sided.coefficients(t), path.coefficients(t)):
            torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-15)
    # PFGM++ keeps EDM's schedule for any D.
    for a, b in zip(paths.PFGM(D=4.0).coefficients(t), paths.EDM().coefficients(t)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # VP-cosine alpha is cos(theta(t)) / cos(theta(0)) (iDDPM), theta = pi/2 (t + s) / (1 + s).
    cosine = paths.VPCosine()
    theta = 0.5 * math.pi * (t + cosine.s) / (1 + cosine.s)
    expected = torch.cos(theta) / math.cos(0.5 * math.pi * cosine.s / (1 + cosine.s))
    torch.testing.assert_close(cosine.alpha(t), expected, rtol=1e-12, atol=1e-15)


def test_small_t_keeps_relative_precision() -> None:
    # sigma and t_of_logsnr must not cancel near t = 0 (reference solvers integrate there).
    t = torch.logspace(-12, -2, 41, dtype=F64)
    for path in (paths.VPLinear(), paths.VPCosine(), paths.Trig(), paths.VE()):
        back = path.t_of_logsnr(path.logsnr(t))
        assert float(((back - t) / t).abs().max()) < 1e-12, path
