"""The Adams predictor-corrector in the angle variable: quadrature weights, convergence orders
against the analytic Gaussian solution, path invariance and argument checks."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture
from interpolant.solvers import SOLVERS, FunctionHook, State, sample
from interpolant.solvers.adams import AdamsAngle, angle, lagrange_integrals, radius
from interpolant.solvers.base import node_at

MEAN = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
STD = 0.5
SIGMA_MAX = 80.0


def _gaussian() -> GaussianMixture:
    return GaussianMixture(MEAN, (STD**2 * torch.eye(2, dtype=torch.float64))[None])


def _noise(n: int = 8) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _exact_endpoint(noise: torch.Tensor) -> torch.Tensor:
    # Gaussian data: x(sigma) - mu = sqrt((s^2 + sigma^2) / (s^2 + sigma_max^2)) (x_T - mu).
    x_start = SIGMA_MAX * noise
    return MEAN + STD * (x_start - MEAN) / math.sqrt(STD**2 + SIGMA_MAX**2)


def _angle_grid(steps: int) -> torch.Tensor:
    """Uniform in theta from theta(t = 1) to 0 on the EDM path (sigma = tan theta)."""
    theta = torch.linspace(math.atan(SIGMA_MAX), 0.0, steps + 1, dtype=torch.float64)
    t = torch.tan(theta) / SIGMA_MAX
    t[0], t[-1] = 1.0, 0.0
    return t


def test_registered():
    assert SOLVERS["adams"] is AdamsAngle


@pytest.mark.parametrize("n_nodes", [1, 2, 3, 4, 5])
def test_lagrange_integrals_exact_for_polynomials(n_nodes):
    nodes = [0.3 + 0.37 * k + 0.05 * k * k for k in range(n_nodes)]
    a, b = 1.9, 2.4
    weights = lagrange_integrals(nodes, a, b)
    coeffs = [0.7, -1.3, 0.4, 2.0, -0.6][:n_nodes]  # degree n_nodes - 1

    def poly(s: float) -> float:
        return sum(c * s**k for k, c in enumerate(coeffs))

    exact = sum(c * (b ** (k + 1) - a ** (k + 1)) / (k + 1) for k, c in enumerate(coeffs))
    assert sum(w * poly(s) for w, s in zip(weights, nodes)) == pytest.approx(exact, rel=1e-12)


def test_angle_and_radius_of_paths():
    node = node_at(paths.VPLinear(), 1.0)
    assert angle(node) == pytest.approx(math.atan2(node.sigma, node.alpha))
    assert radius(node) == pytest.approx(1.0)
    assert angle(node_at(paths.Linear(), 1.0)) == pytest.approx(math.pi / 2)
    assert angle(node_at(paths.EDM(), 0.0)) == 0.0


def _error(steps: int, **options) -> float:
    noise = _noise()
    model = _gaussian().model(paths.EDM(SIGMA_MAX))
    x = sample(model, noise, solver={"name": "adams", **(options or {})}, grid=_angle_grid(steps)).x
    return float((x - _exact_endpoint(noise)).abs().max())


# (options, least observed order). A k-step Adams method started with lower orders keeps the
# O(h^2) local error of its first (Euler) step, so AB3 and AB4 show order 2 from theta = pi/2;
# the corrector (Adams-Moulton through the next evaluation) lifts AB3 above order 3.
CASES = [
    ({"order": 1, "corrector": False}, 0.9),
    ({"order": 2, "corrector": False}, 1.9),
    ({"order": 3, "corrector": False}, 1.9),
    ({"order": 4, "corrector": False}, 1.9),
    ({"order": 3, "corrector": True}, 3.3),
    ({"order": 3, "corrector": True, "corrector_order": "plus"}, 3.3),
]


@pytest.mark.parametrize(("options", "least_order"), CASES)
def test_convergence_order_on_gaussian(options, least_order):
    errors = [_error(steps, **options) for steps in (32, 64, 128)]
    slopes = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert min(slopes) > least_order, (errors, slopes)


def test_corrector_improves_the_predictor():
    assert _error(32, order=3, corrector=True) < 0.2 * _error(32, order=3, corrector=False)


def test_path_invariance():
    # The angle form is path-free: the same noise levels give the same sample on every path.
    oracle = _gaussian()
    noise = _noise()
    levels = torch.tensor([40.0, 10.0, 3.0, 1.0, 0.3, 0.1, 0.03], dtype=torch.float64)
    outs = []
    for path in (paths.EDM(SIGMA_MAX), paths.VPLinear(), paths.Linear()):
        t = torch.cat([path.t_of_edm_sigma(levels), torch.zeros(1, dtype=torch.float64)])
        x_start = noise * 40.0 / float(path.edm_sigma(t[:1])[0]) * float(path.sigma(t[:1])[0])
        x = sample(oracle.model(path), x_start, solver="adams", grid=t, scale_noise=False).x
        outs.append(x)
    for x in outs[1:]:
        torch.testing.assert_close(x, outs[0], rtol=1e-9, atol=1e-9)


def test_step_hook_change_is_kept_by_the_corrector():
    # The correction is added as a difference, so a hook's shift of x survives the next step.
    model = _gaussian().model(paths.EDM(SIGMA_MAX))
    noise = _noise()
    grid = _angle_grid(6)
    shift = torch.tensor([0.01, -0.02], dtype=torch.float64)

    def on_step(state: State, step, run) -> State:
        return state.replace(x=state.x + shift) if state.step == 2 else state

    plain = sample(model, noise, solver="adams", grid=grid).x
    hooked = sample(
        model, noise, solver="adams", grid=grid, hooks=[FunctionHook(on_step=on_step)]
    ).x
    difference = (hooked - plain).mean(0)
    # The shift is carried to the end, contracted by the ODE's flow (a factor ~ std / sigma).
    assert float(difference.norm()) > 1e-5
    assert float((hooked - plain).std(0).max()) < 1e-3


@pytest.mark.parametrize(
    "options",
    [{"order": 0}, {"order": 5}, {"order": True}, {"corrector": 1}, {"corrector_order": "more"}],
)
def test_bad_options(options):
    with pytest.raises(ValueError):
        AdamsAngle(**options)


def test_needs_enough_steps_for_its_order():
    model = _gaussian().model(paths.EDM())
    with pytest.raises(ValueError, match="order"):
        sample(model, _noise(), solver={"name": "adams", "order": 3}, nfe=2)
