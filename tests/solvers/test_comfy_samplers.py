"""ComfyUI's ER-SDE (``er_sde``) and SEEDS (``seeds_2``, ``seeds_3``): step for step against
direct transcriptions of ComfyUI's updates (written here from their formulas, with the same
normals), the quadrature of the ER-SDE weights, the deterministic limits (ER-SDE with f(s) = s at
stage 1 is DDIM, SEEDS-2 at eta = 0 is DPM-Solver++(2S)), the convergence orders of the
deterministic limits on the Gaussian-mixture oracle, the stochastic samplers' mean and
covariance on the oracle at a large NFE, per-sample noise and the ComfyUI names."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from interpolant import paths
from interpolant.data.oracles import GaussianMixture, three_modes
from interpolant.errors import UserError
from interpolant.randomness import Streams
from interpolant.solvers import Sampler, get_solver, sample
from interpolant.solvers.er_sde import NOISE_SCALERS, er_integrals
from interpolant.solvers.peer_names import peer_sampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_solvers_convergence import STEPS, _grid, setup  # noqa: F401  (fixture)

EDM = paths.EDM(sigma_max=80.0)
FLOW = paths.Linear()
SEED = 3


def _noise(n: int = 6, seed: int = 4) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# ComfyUI's model_sampling in float64: "edm" (their eps/v models, alpha = 1 in their coordinates)
# and "const" (flow models, x = (1 - sigma) x0 + sigma eps).


def _half_log_snr(sigma: torch.Tensor, ms: str) -> torch.Tensor:
    return sigma.logit().neg() if ms == "const" else sigma.log().neg()


def _sigma_of(lam: torch.Tensor, ms: str) -> torch.Tensor:
    return lam.neg().sigmoid() if ms == "const" else lam.neg().exp()


def _setting(ms: str, steps: int):
    """(our path, their sigmas ending at 0, our grid, their denoiser(x, sigma))."""
    gm = three_modes()
    if ms == "edm":
        sigmas = torch.exp(torch.linspace(math.log(60.0), math.log(0.02), steps)).double()
        path, grid = EDM, sigmas / 80.0
    else:  # a flow model, off t = 1 (ComfyUI moves a first sigma of 1 off it too)
        sigmas = torch.linspace(0.97, 0.03, steps).double()
        path, grid = FLOW, sigmas
    sigmas = torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])
    grid = torch.cat([grid, torch.zeros(1, dtype=torch.float64)])

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        t = float(sigma) / 80.0 if ms == "edm" else float(sigma)
        return gm.denoiser(x, torch.full((x.shape[0],), t, dtype=torch.float64), path)

    return path, sigmas, grid, denoise


def _comfy_er_sde(denoise, x, sigmas, ms, draw, max_stage=3):
    """ComfyUI's ``sample_er_sde`` (default noise scaler, s_noise = 1), noise from ``draw``."""

    def scaler(v):
        return v * ((v**0.3).exp() + 10.0)

    points = torch.arange(0, 200.0, dtype=torch.float64)
    lam = _half_log_snr(sigmas, ms).neg().exp()
    old = old_d = None
    for i in range(len(sigmas) - 1):
        den = denoise(x, sigmas[i])
        stage = min(max_stage, i + 1)
        if sigmas[i + 1] == 0:
            x = den
        else:
            ls, lt = lam[i], lam[i + 1]
            a_s, a_t = sigmas[i] / ls, sigmas[i + 1] / lt
            r = scaler(lt) / scaler(ls)
            x = a_t / a_s * r * x + a_t * (1 - r) * den
            if stage >= 2:
                dt = lt - ls
                du = -dt / 200.0
                pos = lt + points * du
                scaled = scaler(pos)
                s = torch.sum(1 / scaled) * du
                dd = (den - old) / (ls - lam[i - 1])
                x = x + a_t * (dt + s * scaler(lt)) * dd
                if stage >= 3:
                    s_u = torch.sum((pos - ls) / scaled) * du
                    d_u = (dd - old_d) / ((ls - lam[i - 2]) / 2)
                    x = x + a_t * ((dt**2) / 2 + s_u * scaler(lt)) * d_u
                old_d = dd
            x = x + a_t * draw(x) * (lt**2 - ls**2 * r**2).sqrt().nan_to_num(nan=0.0)
        old = den
    return x


def _phi1(h):
    return torch.expm1(h)


def _phi2(h):
    return (torch.expm1(h) - h) / h


def _comfy_seeds(denoise, x, sigmas, ms, draw, stages=2, eta=1.0, r=0.5, solver_type="phi_1",
                 r_1=1 / 3, r_2=2 / 3):  # fmt: skip
    """ComfyUI's ``sample_seeds_2`` / ``sample_seeds_3`` (s_noise = 1), noise from ``draw``."""
    inject = eta > 0
    for i in range(len(sigmas) - 1):
        den = denoise(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = den
            continue
        ls, lt = _half_log_snr(sigmas[i], ms), _half_log_snr(sigmas[i + 1], ms)
        h = lt - ls
        h_eta = h * (eta + 1)
        ra = r if stages == 2 else r_1
        l1 = torch.lerp(ls, lt, ra)
        s1 = _sigma_of(l1, ms)
        a1, a_t = s1 * l1.exp(), sigmas[i + 1] * lt.exp()
        x2 = s1 / sigmas[i] * (-ra * h * eta).exp() * x - a1 * _phi1(-ra * h_eta) * den
        if inject:
            noise = (-2 * ra * h * eta).expm1().neg().sqrt() * draw(x)
            x2 = x2 + noise * s1
        den2 = denoise(x2, s1)
        if stages == 2:
            if solver_type == "phi_1":
                mixed = torch.lerp(den, den2, 1 / (2 * r))
                x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - a_t * _phi1(-h_eta) * mixed
            else:
                b2 = _phi2(-h_eta) / r
                b1 = _phi1(-h_eta) - b2
                x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - a_t * (b1 * den + b2 * den2)
            last = r
        else:
            l2 = torch.lerp(ls, lt, r_2)
            s2 = _sigma_of(l2, ms)
            a2 = s2 * l2.exp()
            a32 = r_2 / r_1 * _phi2(-r_2 * h_eta)
            a31 = _phi1(-r_2 * h_eta) - a32
            x3 = s2 / sigmas[i] * (-r_2 * h * eta).exp() * x - a2 * (a31 * den + a32 * den2)
            if inject:
                seg = (r_1 - r_2) * h * eta
                noise = noise * seg.exp() + seg.mul(2).expm1().neg().sqrt() * draw(x)
                x3 = x3 + noise * s2
            den3 = denoise(x3, s2)
            b3 = _phi2(-h_eta) / r_2
            b1 = _phi1(-h_eta) - b3
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - a_t * (b1 * den + b3 * den3)
            last = r_2
        if inject:
            seg = (last - 1) * h * eta
            noise = noise * seg.exp() + seg.mul(2).expm1().neg().sqrt() * draw(x)
            x = x + noise * sigmas[i + 1]
    return x


def _draws(n: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The normals our run draws, in order (the run's per-sample streams of seed SEED)."""
    streams = Streams(SEED, n)
    return lambda like: streams.normal_like(like)


@pytest.mark.parametrize("ms", ["edm", "const"])
@pytest.mark.parametrize("max_stage", [1, 2, 3])
def test_er_sde_matches_comfyui(ms, max_stage):
    path, sigmas, grid, denoise = _setting(ms, 9)
    noise = _noise()
    x = noise * float(sigmas[0])
    theirs = _comfy_er_sde(denoise, x, sigmas, ms, _draws(noise.shape[0]), max_stage)
    solver = {"name": "er_sde", "max_stage": max_stage, "third_order": "comfyui",
              "quadrature": "comfyui"}  # fmt: skip
    ours = sample(three_modes().model(path), noise, solver=solver, grid=grid, seed=SEED)
    torch.testing.assert_close(ours.x, theirs, rtol=1e-10, atol=1e-10)
    assert ours.nfe == 9
    # The default weights (Gauss-Legendre integrals, the quadratic's stage 3) change the result.
    default = sample(three_modes().model(path), noise, grid=grid, seed=SEED,
                     solver={"name": "er_sde", "max_stage": max_stage})  # fmt: skip
    if max_stage == 1:
        torch.testing.assert_close(default.x, ours.x, rtol=1e-12, atol=1e-12)
    else:
        assert not torch.allclose(default.x, ours.x, rtol=0, atol=1e-6)


@pytest.mark.parametrize("ms", ["edm", "const"])
@pytest.mark.parametrize(
    "options",
    [
        {"stages": 2},
        {"stages": 2, "solver_type": "phi_2"},
        {"stages": 2, "r": 0.3, "eta": 0.5},
        {"stages": 2, "r": 1.0, "eta": 0.0, "solver_type": "phi_2"},  # exp_heun_2_x0
        {"stages": 2, "r": 1.0, "solver_type": "phi_2"},  # exp_heun_2_x0_sde
        {"stages": 3},
        {"stages": 3, "eta": 0.0},
    ],
)
def test_seeds_match_comfyui(ms, options):
    path, sigmas, grid, denoise = _setting(ms, 7)
    noise = _noise()
    x = noise * float(sigmas[0])
    theirs = _comfy_seeds(denoise, x, sigmas, ms, _draws(noise.shape[0]), **options)
    ours_options = {k: v for k, v in options.items() if k != "stages"}
    solver = {"name": f"seeds_{options['stages']}", **ours_options}
    ours = sample(three_modes().model(path), noise, solver=solver, grid=grid, seed=SEED)
    torch.testing.assert_close(ours.x, theirs, rtol=1e-9, atol=1e-9)
    stages = options["stages"]
    assert ours.nfe == stages * 6 + 1 == get_solver(solver).nfe_for_steps(7)


def test_er_sde_integrals():
    for s, s_next in ((80.0, 40.0), (3.0, 0.5), (0.2, 0.05)):
        # f(s) = s: S_1 = log(s / s') and S_2 = int (u - s) / u du = (s - s') - s log(s / s').
        s1, s2 = er_integrals(NOISE_SCALERS["ode"], s, s_next)
        assert s1 == pytest.approx(math.log(s / s_next), rel=1e-13)
        assert s2 == pytest.approx((s - s_next) - s * math.log(s / s_next), rel=1e-11)
        f = NOISE_SCALERS["comfyui"]
        exact1 = quad(lambda u, f=f: 1 / f(u), s_next, s, epsrel=1e-13)[0]
        exact2 = quad(lambda u, f=f, s=s: (u - s) / f(u), s_next, s, epsrel=1e-13)[0]
        g1, g2 = er_integrals(f, s, s_next)
        assert (g1, g2) == pytest.approx((exact1, exact2), rel=1e-11)
        # ComfyUI's 200-point left Riemann sums are off at O(1/200) relative.
        r1, r2 = er_integrals(f, s, s_next, "comfyui")
        assert 1e-4 < abs(r1 / exact1 - 1) < 2e-2 and 1e-4 < abs(r2 / exact2 - 1) < 2e-2


def test_deterministic_limits():
    model, noise = three_modes().model(paths.VP()), _noise()
    spec = {"steps": 10, "grid": "karras", "seed": SEED}
    # ER-SDE with f(s) = s at stage 1 is DDIM; SEEDS-2 at eta = 0 is DPM-Solver++(2S), the
    # DPM++ SDE sampler at eta = 0.
    er = sample(model, noise, Sampler({"name": "er_sde", "noise_scaler": "ode", "max_stage": 1},
                                      **spec))  # fmt: skip
    ddim = sample(model, noise, Sampler("ddim", **spec))
    torch.testing.assert_close(er.x, ddim.x, rtol=1e-12, atol=1e-12)
    seeds = sample(model, noise, Sampler({"name": "seeds_2", "eta": 0.0, "r": 0.4}, **spec))
    sde = sample(model, noise, Sampler({"name": "dpmpp_sde", "eta": 0.0, "r": 0.4}, **spec))
    torch.testing.assert_close(seeds.x, sde.x, rtol=1e-12, atol=1e-12)
    assert seeds.nfe == sde.nfe == 19
    assert not get_solver("er_sde", noise_scaler="ode").stochastic
    assert not get_solver("seeds_3", eta=0.0).stochastic


# The deterministic limits on grids uniform in log sigma from 80 to 0.05 (test_solvers_convergence):
# ComfyUI's stage 3 converges with order 2 (the backward difference's bias), and with its Riemann
# sums too the slope falls below 2 (1.8 here; 1.61, 1.42, 1.26 from 128 to 1024 steps: order 1).
ORDER_CASES = [
    ({"name": "er_sde", "noise_scaler": "ode"}, 2.8, 3.3),
    ({"name": "er_sde", "noise_scaler": "ode", "third_order": "comfyui"}, 1.9, 2.3),
    ({"name": "er_sde", "noise_scaler": "ode", "max_stage": 2}, 1.85, 2.2),
    ({"name": "er_sde", "noise_scaler": "ode", "max_stage": 1}, 0.9, 1.1),
    ({"name": "seeds_2", "eta": 0.0}, 1.85, 2.2),
    ({"name": "seeds_2", "eta": 0.0, "solver_type": "phi_2"}, 1.85, 2.2),
    ({"name": "seeds_3", "eta": 0.0}, 2.8, 3.2),
]


@pytest.mark.parametrize(("solver", "lo", "hi"), ORDER_CASES, ids=str)
def test_convergence_order_of_the_deterministic_limits(setup, solver, lo, hi):  # noqa: F811
    model, noise, reference = setup
    errors = []
    for n in STEPS:
        x = sample(model, noise, solver=solver, grid=_grid(n)).x
        errors.append(float((x - reference).square().mean().sqrt()))
    slope = -np.polyfit(np.log(STEPS), np.log(errors), 1)[0]
    assert lo < slope < hi, (solver, slope, errors)


def test_comfyui_quadrature_costs_the_order(setup):  # noqa: F811
    model, noise, reference = setup
    solver = {"name": "er_sde", "noise_scaler": "ode", "third_order": "comfyui",
              "quadrature": "comfyui"}  # fmt: skip
    errors = [float((sample(model, noise, solver=solver, grid=_grid(n)).x - reference)
                    .square().mean().sqrt()) for n in STEPS[-2:]]  # fmt: skip
    assert math.log2(errors[0] / errors[1]) < 1.75, errors


# ----------------------------------------------------------------------------------------------
# The stochastic samplers: distribution, per-sample noise.

STOCHASTIC = [
    ({"name": "er_sde"}, 60),
    ({"name": "er_sde", "noise_scaler": "sde"}, 60),
    ({"name": "seeds_2"}, 40),
    ({"name": "seeds_3"}, 30),
]


def _moments(gm: GaussianMixture) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact mean and covariance of a mixture."""
    w = gm.weights.double()
    mean = w @ gm.means
    centred = gm.means - mean
    cov = torch.einsum("k,kij->ij", w, gm.covs) + torch.einsum("k,ki,kj->ij", w, centred, centred)
    return mean, cov


@pytest.mark.parametrize(("solver", "steps"), STOCHASTIC, ids=str)
def test_stochastic_samples_match_the_oracle_moments(solver, steps):
    # 4000 draws on the VP path, karras grid to sigma = 0: mean within 4 standard errors and
    # covariance entries within 4 standard errors (a Gaussian's SE of a covariance entry,
    # 0.014-0.021 here). Measured: at most 1.6 SE for the mean and 1.3 SE for the covariance;
    # half the noise scale (s_noise = 0.5) is 27-28 SE off in the covariance.
    gm = three_modes()
    mean, cov = _moments(gm)
    n = 4000
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    se_mean = (torch.diag(cov) / n).sqrt()
    se_cov = ((torch.diag(cov)[:, None] * torch.diag(cov)[None, :] + cov**2) / n).sqrt()

    def errors(options):
        x = sample(gm.model(paths.VP()), noise, solver=options, steps=steps, seed=2).x
        return (x.mean(0) - mean).abs() / se_mean, (torch.cov(x.T) - cov).abs() / se_cov

    mean_err, cov_err = errors(solver)
    assert float(mean_err.max()) < 4 and float(cov_err.max()) < 4, (mean_err, cov_err)
    mean_err, cov_err = errors({**solver, "s_noise": 0.5})
    assert float(cov_err.max()) > 4, cov_err


@pytest.mark.parametrize(("solver", "steps"), STOCHASTIC[::2] + STOCHASTIC[3:], ids=str)
def test_samples_do_not_depend_on_the_batch(solver, steps):
    model, noise = three_modes().model(FLOW), _noise(8)
    spec = Sampler(solver, steps=6, seed=5)  # from t = 1 (alpha = 0) on the flow path
    full = sample(model, noise, spec).x
    assert bool(torch.isfinite(full).all())
    part = sample(model, noise[3:6], spec, index=torch.arange(3, 6)).x
    torch.testing.assert_close(part, full[3:6], rtol=1e-12, atol=1e-12)
    other = sample(model, noise, Sampler(solver, steps=6, seed=6)).x
    assert not torch.allclose(other, full)


@pytest.mark.parametrize("solver", ["er_sde", "seeds_2", "seeds_3"])
def test_same_samples_on_every_path(solver):
    # EDM coordinates: the same noise levels and per-sample noise give the same samples on the
    # EDM and the VP path (the stages' intermediate nodes are placed by logSNR).
    gm = three_modes()
    spec = Sampler(solver, steps=6, grid={"name": "karras", "sigma_max": 50.0}, seed=3)
    on_edm = sample(gm.model(EDM), _noise(), spec)
    on_vp = sample(gm.model(paths.VP()), _noise(), spec)
    torch.testing.assert_close(on_vp.x, on_edm.x, rtol=1e-8, atol=1e-8)


def test_comfyui_names_and_bad_options():
    assert peer_sampler("er_sde", nfe=10).solver.name == "er_sde"
    assert peer_sampler("seeds_2", nfe=19).steps_used() == 10
    assert peer_sampler("seeds_3", nfe=28).steps_used() == 10
    heun = peer_sampler("exp_heun_2_x0", nfe=19).solver
    assert (heun.name, heun.r, heun.eta, heun.solver_type) == ("seeds_2", 1.0, 0.0, "phi_2")
    assert peer_sampler("euler_ancestral_cfg_pp", nfe=10).solver.eta == 1.0
    orders = [get_solver("er_sde", **o).order for o in ({}, {"third_order": "comfyui"},
              {"third_order": "comfyui", "quadrature": "comfyui"}, {"max_stage": 2})]  # fmt: skip
    assert orders == [3, 2, 1, 2]
    with pytest.raises(UserError, match="r_1 < r_2"):
        get_solver("seeds_3", r_1=0.7, r_2=0.3)
    with pytest.raises(UserError, match="noise_scaler"):
        get_solver("er_sde", noise_scaler="er_sde_5")
