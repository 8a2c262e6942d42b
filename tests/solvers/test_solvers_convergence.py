"""Convergence orders and exactness of the deterministic solvers on exact Gaussian-mixture
oracles.

The orders are measured on the EDM path from sigma = 80 (the source, t = 1) down to sigma = 0.05
(t_min > 0, where the ODE is still smooth) on grids uniform in log sigma, against an adaptive
Dormand-Prince solution of the same ODE (in s = log sigma: dx/ds = x - x0_hat(x, sigma)).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture, three_modes
from interpolant.predictions import Prediction
from interpolant.solvers import Run, State, fixed_run, get_solver, node_at, sample
from interpolant.solvers.adaptive import odeint_dopri5

SIGMA_MAX, SIGMA_MIN = 80.0, 0.05
STEPS = (32, 64, 128, 256)
PATH = paths.EDM(sigma_max=SIGMA_MAX)


def _oracle() -> GaussianMixture:
    """Three overlapping 2-D components of std ~1: a smooth probability-flow ODE."""
    return three_modes(2.0)


def _grid(steps: int) -> torch.Tensor:
    sigma = torch.exp(torch.linspace(math.log(SIGMA_MAX), math.log(SIGMA_MIN), steps + 1))
    return (sigma.to(torch.float64) / SIGMA_MAX).clamp(max=1.0)


@pytest.fixture(scope="module")
def setup():
    oracle = _oracle()
    noise = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def field(x: torch.Tensor, s: float) -> torch.Tensor:
        # dx/d(log sigma) = x - x0_hat on the EDM path (alpha = 1).
        t = torch.full((x.shape[0],), math.exp(s) / SIGMA_MAX, dtype=torch.float64)
        return x - oracle.denoiser(x, t, PATH)

    reference, _ = odeint_dopri5(
        field, noise * SIGMA_MAX, math.log(SIGMA_MAX), math.log(SIGMA_MIN), rtol=1e-10, atol=1e-10
    )
    return oracle.model(PATH), noise, reference


def _rms_error(setup, solver: str, steps: int, **options) -> float:
    model, noise, reference = setup
    x = sample(model, noise, solver={"name": solver, **(options or {})}, grid=_grid(steps)).x
    return float((x - reference).pow(2).mean().sqrt())


# The multistep solvers run with lower_order_final=False: on a grid ending at sigma > 0 the
# order-lowering of the last steps (meant for a final jump to sigma = 0) would cost an order.
# UniPC-p with its corrector has order p + 1 (Zhao et al. 2023, Thm. 3.3); UniP-p alone, p.
# DPM-Solver++(3M) starts with a first-order step whose O(h^2 x0'(lambda_max)) error stays below
# the third-order error on these grids (x0_hat barely moves at sigma = 80); beyond ~500 steps
# the slope drifts towards 2, as for any multistep method with a lower-order start.
CASES = [
    ("euler", {}, 1.0),
    ("heun", {}, 2.0),
    ("midpoint", {}, 2.0),
    ("ddim", {}, 1.0),
    ("dpmpp_2m", {}, 2.0),
    ("dpmpp_3m", {"lower_order_final": False}, 3.0),
    ("unipc", {"order": 2, "lower_order_final": False}, 3.0),
    ("unipc", {"order": 3, "lower_order_final": False}, 4.0),
    ("unipc", {"order": 3, "lower_order_final": False, "use_corrector": False}, 3.0),
    # B(h) = h ("bh1") changes the coefficients, not the order (Zhao et al. 2023, Thm. 3.3).
    ("unipc", {"order": 2, "lower_order_final": False, "variant": "bh1"}, 3.0),
    ("unipc", {"order": 3, "lower_order_final": False, "variant": "bh1"}, 4.0),
]


@pytest.mark.parametrize(("solver", "options", "theory"), CASES)
def test_measured_order_matches_theory(setup, solver, options, theory):
    errors = [_rms_error(setup, solver, n, **options) for n in STEPS]
    slope = -np.polyfit(np.log(STEPS), np.log(errors), 1)[0]
    assert abs(slope - theory) < 0.3, f"{solver} {options}: order {slope:.2f}, errors {errors}"


def test_reference_is_far_more_accurate_than_the_finest_solve(setup):
    # The reference error must not limit the slopes (smallest error above ~1e-7): a 1000-step
    # UniPC-3 solve (error ~1e-10 by its measured order) agrees with it to far below that.
    assert _rms_error(setup, "unipc", 1000, order=3, lower_order_final=False) < 1e-8


def test_unip3_equals_dpmpp_3m_and_unip2_equals_dpmpp_2m(setup):
    # Two independent derivations of the same multistep formulas: UniP's linear solve for rho
    # and DPM-Solver++'s closed-form divided differences.
    model, noise, _ = setup
    grid = _grid(20)
    no_lowering = {"lower_order_final": False}
    for order, dpm, dpm_options in ((3, "dpmpp_3m", no_lowering), (2, "dpmpp_2m", {})):
        unip = {"order": order, "use_corrector": False, **no_lowering}
        x_unip = sample(model, noise, solver={"name": "unipc", **(unip or {})}, grid=grid).x
        x_dpm = sample(model, noise, solver={"name": dpm, **(dpm_options or {})}, grid=grid).x
        torch.testing.assert_close(x_unip, x_dpm, rtol=1e-11, atol=1e-11)


def _ctx(index: int, n_steps: int = 20) -> Run:
    """A context for direct step calls (no model, zero noise)."""
    return fixed_run(PATH, n_steps, index, lambda x, node: None, torch.zeros_like)


def _exact_step(x: float, now, nxt, x0_of_lambda) -> float:
    """x' = (sigma'/sigma) x + alpha' int_0^h e^{tau - h} x0(lambda + tau) dtau (DPM-Solver++
    eq. 9) for x0 a function of lambda = logsnr / 2 alone (40-point Gauss-Legendre)."""
    lam, h = 0.5 * now.logsnr, 0.5 * (nxt.logsnr - now.logsnr)
    nodes, weights = np.polynomial.legendre.leggauss(40)
    tau = 0.5 * h * (nodes + 1)
    integral = 0.5 * h * float(np.sum(weights * np.exp(tau - h) * x0_of_lambda(lam + tau)))
    return nxt.sigma / now.sigma * x + nxt.alpha * integral


def _polynomial(degree: int):
    coef = [0.7, -0.4, 0.25, 0.15][: degree + 1]
    return lambda lam: sum(c * np.asarray(lam) ** k for k, c in enumerate(coef))


def _run_steps(solver, nodes, x0_of_lambda, x: torch.Tensor) -> list[State]:
    """Direct steps through ``nodes`` with the prediction x0 = x0_of_lambda(lambda)."""
    states, state = [], solver.init(x)
    for i, (now, nxt) in enumerate(itertools.pairwise(nodes)):
        m = torch.full_like(x, float(x0_of_lambda(0.5 * now.logsnr)))
        state = solver.step(
            state, Prediction(state.x, now.t, "x0", m, now.coeffs), now, nxt, _ctx(i)
        )
        states.append(state)
    return states


# Three history nodes with uneven steps, then the target (VP path).
TIMES = (0.62, 0.55, 0.5, 0.44)


@pytest.mark.parametrize(
    ("solver", "options", "degree"),
    [
        ("dpmpp_3m", {}, 2),
        ("unipc", {"order": 3, "use_corrector": False}, 2),
    ],
)
def test_multistep_step_is_exact_for_polynomial_x0(solver, options, degree):
    # With exact history, a third-order step is exact when x0 is a polynomial of degree 2 in
    # lambda, and not for degree 3: the divided-difference coefficients are the Taylor ones.
    # (With diffusers' 3M coefficient, - phi3 D2, the quadratic case fails; DPM-Solver++(2M)
    # approximates its coefficient (h - phi1 ~ phi1 h / 2), so no 2M step is exact.)
    nodes = [node_at(paths.VPLinear(), t) for t in TIMES[-(degree + 2) :]]
    x = torch.tensor([[0.3]], dtype=torch.float64)
    for deg, exact in ((degree, True), (degree + 1, False)):
        x0_of_lambda = _polynomial(deg)
        states = _run_steps(get_solver(solver, **options), nodes, x0_of_lambda, x)
        want = _exact_step(float(states[-2].x), nodes[-2], nodes[-1], x0_of_lambda)
        err = abs(float(states[-1].x) - want)
        assert (err < 1e-13) == exact, f"{solver} degree {deg}: error {err:.2e}"


@pytest.mark.parametrize("variant", ["bh2", "bh1"])
def test_unic_corrector_is_exact_one_degree_higher(variant):
    # UniC-3 also uses the prediction at the new node: exact for x0 cubic in lambda when the
    # step's start is exact, where the predictor UniP-3 alone is not. Either B(h) (bh1, bh2):
    # the rho solve matches the Taylor terms whatever B(h) is.
    nodes = [node_at(paths.VPLinear(), t) for t in (*TIMES, 0.4)]
    x0_of_lambda = _polynomial(3)
    x = torch.tensor([[0.3]], dtype=torch.float64)
    solver = get_solver("unipc", order=3, lower_order_final=False, variant=variant)
    states = _run_steps(solver, nodes[:-1], x0_of_lambda, x)
    history = states[-1].history
    assert history.order == 3 and history.node == nodes[2]
    exact_start = torch.full_like(x, 0.1)  # any start: the exact step is linear in it
    state = states[-1].replace(history=history.replace(x=exact_start))
    want = _exact_step(0.1, nodes[2], nodes[3], x0_of_lambda)
    # The next step first corrects (UniC) with the prediction at nodes[3]; history.x keeps it.
    m = torch.full_like(x, float(x0_of_lambda(0.5 * nodes[3].logsnr)))
    pred = Prediction(state.x, nodes[3].t, "x0", m, nodes[3].coeffs)
    corrected = solver.step(state, pred, nodes[3], nodes[4], _ctx(3)).history.x
    assert abs(float(corrected) - want) < 1e-13
    # UniP-3 alone from the same exact start is not exact for a cubic.
    no_corrector = get_solver(
        "unipc", order=3, lower_order_final=False, use_corrector=False, variant=variant
    )
    m2 = torch.full_like(x, float(x0_of_lambda(0.5 * nodes[2].logsnr)))
    pred2 = Prediction(exact_start, nodes[2].t, "x0", m2, nodes[2].coeffs)
    start = states[-2].replace(x=exact_start)
    predicted = no_corrector.step(start, pred2, nodes[2], nodes[3], _ctx(2)).x
    assert abs(float(predicted) - want) > 1e-9


def test_sde_solvers_without_noise_are_their_odes():
    oracle = _oracle()
    model = oracle.model(paths.VPLinear())
    noise = torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for stochastic, deterministic in (
        (("sde_euler", {"eps": 0.0}), ("euler", {})),
        (("dpmpp_2m_sde", {"eta": 0.0}), ("dpmpp_2m", {})),
    ):
        a = sample(
            model, noise, solver={"name": stochastic[0], **(stochastic[1] or {})}, steps=12
        ).x
        b = sample(
            model, noise, solver={"name": deterministic[0], **(deterministic[1] or {})}, steps=12
        ).x
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
