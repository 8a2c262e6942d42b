"""The midpoint rule: 2 evaluations per step and the exact RK2 amplification on a linear ODE."""

import itertools

import torch

from interpolant import Model, paths
from interpolant.solvers import get_solver, sample

F64 = torch.float64


def test_midpoint_spends_two_evaluations_per_step():
    calls = []

    def net(x, t):
        calls.append(float(t.flatten()[0]))
        return -x

    noise = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    model = Model(net, paths.Linear(), predicts="velocity")
    out = sample(model, noise, solver="midpoint", nfe=10, grid="uniform")
    assert out.nfe == len(calls) == 10
    assert get_solver("midpoint").steps_for_nfe(11) == 5
    # Evaluations alternate between grid nodes and the midpoints between them.
    grid = [1.0 - k / 5 for k in range(6)]
    want = [t for a, b in itertools.pairwise(grid) for t in (a, 0.5 * (a + b))]
    assert len(calls) == len(want)
    assert all(abs(c - w) < 1e-6 for c, w in zip(calls, want))


def test_midpoint_on_a_linear_field_has_the_rk2_amplification_factor():
    # dx/dt = lam * x: one midpoint step multiplies x by 1 + lam h + (lam h)^2 / 2 exactly.
    lam, steps = 1.7, 7
    noise = torch.randn(16, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    model = Model(lambda x, t: lam * x, paths.Linear(), predicts="velocity")
    x = sample(model, noise, solver="midpoint", steps=steps, grid="uniform").x
    h = -1.0 / steps
    factor = (1 + lam * h + (lam * h) ** 2 / 2) ** steps
    torch.testing.assert_close(x, noise * factor, rtol=1e-12, atol=1e-12)
