"""RES multistep (ComfyUI ``res_multistep`` / ``res_multistep_ancestral``): the weights of eq. (2)
against quadrature of the exact step with a linear data prediction, convergence order 2 against a
Dormand-Prince reference on the Gaussian-mixture oracle, first-order start and end (Euler), the
same samples on every path, per-sample noise, the ancestral variant's marginal law on a Gaussian,
and the ComfyUI names."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from interpolant import paths
from interpolant.data.oracles import GaussianMixture, three_modes
from interpolant.solvers import Sampler, sample
from interpolant.solvers.peer_names import peer_sampler
from interpolant.solvers.res_multistep import res_weights

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_solvers_convergence import STEPS, _rms_error, setup  # noqa: F401  (fixture)


@pytest.mark.parametrize(("h", "h_prev"), [(0.1, 0.1), (0.7, 0.3), (2.0, 1.5), (1e-4, 2e-4)])
def test_weights_integrate_the_exact_step_of_a_linear_data_prediction(h, h_prev):
    # x0(lambda + tau) = D + tau (D - D_old) / h_prev in eq. (1): the weights are the integrals
    # of e^{tau - h} and e^{tau - h} tau / h_prev over [0, h].
    w_now, w_diff = res_weights(h, h_prev)
    assert w_now == pytest.approx(quad(lambda u: math.exp(u - h), 0, h)[0], rel=1e-10)
    exact_diff = quad(lambda u: math.exp(u - h) * u / h_prev, 0, h, epsabs=0, epsrel=1e-12)[0]
    assert w_diff == pytest.approx(exact_diff, rel=1e-6)


def test_convergence_order_two(setup):  # noqa: F811
    errors = [_rms_error(setup, "res_multistep", n) for n in STEPS]
    slope = -np.polyfit(np.log(STEPS), np.log(errors), 1)[0]
    assert 1.8 < slope < 2.3, (slope, errors)
    # Same order as DPM-Solver++(2M), but a different method (the weight of D - D_old differs
    # at O(h^3)).
    dpm = _rms_error(setup, "dpmpp_2m", STEPS[0])
    assert errors[0] != pytest.approx(dpm, rel=1e-6)


def _oracle() -> GaussianMixture:
    return three_modes()


def _noise(n: int = 8) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_one_step_and_the_first_step_are_euler():
    model = _oracle().model(paths.EDM(sigma_max=80.0))
    grid = {"name": "karras", "sigma_max": 50.0}
    one = sample(model, _noise(), Sampler("res_multistep", steps=1, grid=grid))
    euler = sample(model, _noise(), Sampler("euler", steps=1, grid=grid))
    torch.testing.assert_close(one.x, euler.x, rtol=1e-12, atol=1e-12)
    # Two steps: Euler then the final step to sigma = 0 (first order too): Euler throughout.
    two = sample(model, _noise(), Sampler("res_multistep", steps=2, grid=grid))
    euler2 = sample(model, _noise(), Sampler("euler", steps=2, grid=grid))
    torch.testing.assert_close(two.x, euler2.x, rtol=1e-12, atol=1e-12)
    three = sample(model, _noise(), Sampler("res_multistep", steps=3, grid=grid))
    euler3 = sample(model, _noise(), Sampler("euler", steps=3, grid=grid))
    assert not torch.allclose(three.x, euler3.x)
    assert three.nfe == 3


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_same_samples_on_every_path(eta):
    # EDM coordinates: on the same noise levels and per-sample noise, VP, flow and EDM agree
    # (from alpha = 0, the flow path's start, the first step is Euler's, as on the others).
    gm = _oracle()
    spec = Sampler({"name": "res_multistep", "eta": eta}, steps=8,
                   grid={"name": "karras", "sigma_max": 50.0}, seed=3)  # fmt: skip
    on_edm = sample(gm.model(paths.EDM(sigma_max=80.0)), _noise(), spec)
    on_vp = sample(gm.model(paths.VP()), _noise(), spec)
    torch.testing.assert_close(on_vp.x, on_edm.x, rtol=1e-8, atol=1e-8)


def test_ancestral_noise_is_per_sample_and_eta_zero_is_deterministic():
    model = _oracle().model(paths.VP())
    spec = Sampler({"name": "res_multistep", "eta": 1.0}, steps=6, seed=5)
    full = sample(model, _noise(8), spec).x
    part = sample(model, _noise(8)[3:5], spec, index=torch.arange(3, 5)).x
    torch.testing.assert_close(part, full[3:5], rtol=1e-12, atol=1e-12)
    other_seed = sample(model, _noise(8), Sampler({"name": "res_multistep", "eta": 1.0},
                                                  steps=6, seed=6)).x  # fmt: skip
    assert not torch.allclose(other_seed, full)
    quiet = [sample(model, _noise(8), Sampler("res_multistep", steps=6, seed=s)).x for s in (5, 6)]
    torch.testing.assert_close(quiet[0], quiet[1], rtol=0, atol=0)


def test_ancestral_marginal_law_of_a_gaussian():
    # N(0.5, 0.25) data: the ancestral samples' mean is within 4 SE of 0.5 and the variance bias
    # shrinks at least 2.5x from 25 to 100 steps (the fresh noise makes the sampler first order).
    gm = GaussianMixture(torch.full((1, 1), 0.5), torch.full((1, 1, 1), 0.25))
    noise = torch.randn(4000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    spec = {"name": "res_multistep", "eta": 1.0}
    xs = [sample(gm.model(paths.VP()), noise, Sampler(spec, steps=n, seed=2)).x for n in (25, 100)]
    se = math.sqrt(0.25 / noise.shape[0])
    assert abs(float(xs[1].mean()) - 0.5) < 4 * se
    errors = [abs(float(x.var()) - 0.25) for x in xs]
    assert errors[1] < errors[0] / 2.5 and errors[1] < 0.04, errors


def test_comfyui_names():
    assert peer_sampler("res_multistep", nfe=10).solver.name == "res_multistep"
    ancestral = peer_sampler("res_multistep_ancestral", nfe=10).solver
    assert ancestral.name == "res_multistep" and ancestral.eta == 1.0
