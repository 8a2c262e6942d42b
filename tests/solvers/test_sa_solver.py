"""SA-Solver: step for step against diffusers' SASolverScheduler with the same noise (ODE and SDE,
both prediction forms, predictor and corrector orders), the Adams coefficients against
quadrature, the ODE limit's convergence order and the SDE's sampled distribution."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import integrate

from interpolant import paths
from interpolant.data.oracles import GaussianMixture, three_modes
from interpolant.metrics.distances import mmd
from interpolant.randomness import Streams
from interpolant.solvers import sample
from interpolant.solvers.adaptive import odeint_dopri5
from interpolant.solvers.sa_solver import adams_coefficients


def _oracle(scale: float = 1.0) -> GaussianMixture:
    return three_modes(scale)


def test_adams_coefficients_are_the_lagrange_integrals():
    lambdas, a, b = [0.3, -0.1, -0.6], 0.3, 0.9
    for rate in (1.0, 2.0, -1.0):
        coef = adams_coefficients(lambdas, a, b, rate)
        for j, c in enumerate(coef):
            others = [lam for i, lam in enumerate(lambdas) if i != j]

            def integrand(u, others=others, j=j, rate=rate):
                return math.exp(rate * u) * math.prod((u - o) / (lambdas[j] - o) for o in others)

            expected = integrate.quad(integrand, a, b)[0]
            assert c == pytest.approx(expected, rel=1e-10, abs=1e-12)


CASES = list(
    itertools.product(("data_prediction", "noise_prediction"), (0.0, 1.0), ((2, 2), (3, 1), (1, 3)))
)


@pytest.mark.peers
@pytest.mark.parametrize(("algorithm", "tau", "orders"), CASES)
def test_matches_diffusers_sa_solver(algorithm, tau, orders, monkeypatch):
    diffusers = pytest.importorskip("diffusers")
    sa_module = pytest.importorskip("diffusers.schedulers.scheduling_sasolver")
    gm, path = _oracle(), paths.VPLinear(beta_max=25.0)
    noise = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p, c = orders
    for steps in (5, 9):
        scheduler = diffusers.SASolverScheduler(
            prediction_type="sample", algorithm_type=algorithm, predictor_order=p,
            corrector_order=c, tau_func=lambda t: tau,
        )  # fmt: skip
        scheduler.set_timesteps(steps)
        scheduler.sigmas = sigma = scheduler.sigmas.to(torch.float64)  # float64 coefficients
        grid = path.t_of_logsnr(-2.0 * torch.log(sigma))  # ends at its sigma_min, not 0
        streams = Streams(3, noise.shape[0])
        monkeypatch.setattr(
            sa_module, "randn_tensor", lambda *a, s=streams, **k: s.normal_like(noise)
        )
        x = noise * float(path.sigma(grid[:1])[0])
        for i, timestep in enumerate(scheduler.timesteps):
            t = torch.full((x.shape[0],), float(grid[i]), dtype=torch.float64)
            x = scheduler.step(gm.denoiser(x, t, path), timestep, x).prev_sample
        solver = {"name": "sa_solver", "algorithm": algorithm, "tau": tau, "tau_interval": (0, 1),
                  "predictor_order": p, "corrector_order": c}  # fmt: skip
        ours = sample(gm.model(path), noise, solver=solver, grid=grid, seed=3)
        torch.testing.assert_close(ours.x, x, rtol=1e-9, atol=1e-9)
        assert ours.nfe == steps


@pytest.mark.parametrize("orders", [(2, 2), (3, 3)])
def test_ode_limit_convergence_order(orders):
    # tau = 0 on grids uniform in log sigma (EDM path, sigma 80 -> 0.05), no lower-order end:
    # the predictor-corrector pair of orders (p, c) converges with order max(p, c) here (p = c).
    gm, path = _oracle(2.0), paths.EDM(sigma_max=80.0)
    noise = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def field(x, log_s):
        t = torch.full((x.shape[0],), math.exp(log_s) / 80.0, dtype=torch.float64)
        return x - gm.denoiser(x, t, path)

    reference, _ = odeint_dopri5(field, noise * 80.0, math.log(80.0), math.log(0.05), rtol=1e-11,
                                 atol=1e-11)  # fmt: skip
    p, c = orders
    solver = {"name": "sa_solver", "tau": 0.0, "predictor_order": p, "corrector_order": c,
              "lower_order_final": False}  # fmt: skip
    errors = []
    for steps in (32, 64, 128):
        sigma = torch.exp(torch.linspace(math.log(80.0), math.log(0.05), steps + 1)).double()
        x = sample(gm.model(path), noise, solver=solver, grid=sigma / 80.0).x
        errors.append(float((x - reference).pow(2).mean().sqrt()))
    slope = math.log2(errors[1] / errors[2])
    assert slope > p - 0.3, (errors, slope)


@pytest.mark.parametrize(
    ("solver", "steps"),
    [
        ({"name": "sa_solver"}, 40),  # tau = 1 for t in [0.2, 0.8] (diffusers' default)
        # tau = 1 down to the data: rougher near t = 0 (MMD 0.10 at 20 steps, 2.5e-3 at 40).
        ({"name": "sa_solver", "tau": 1.0, "tau_interval": (0.0, 1.0)}, 100),
    ],
)
def test_sde_samples_the_oracle_distribution(solver, steps):
    gm, path = _oracle(), paths.VP()
    noise = torch.randn(1500, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    x = sample(gm.model(path), noise, solver=solver, steps=steps, seed=2).x
    exact = [gm.sample(1500, torch.Generator().manual_seed(k)).double() for k in (1, 2, 3)]
    floor = max(abs(float(mmd(exact[0], e, 0.5))) for e in exact[1:])
    threshold = 4 * floor + 2e-4
    assert float(mmd(x, exact[0], 0.5)) < threshold, (float(mmd(x, exact[0], 0.5)), floor)
    assert float(mmd(1.1 * x, exact[0], 0.5)) > threshold
