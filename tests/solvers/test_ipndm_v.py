"""iPNDM with variable steps (ComfyUI ``ipndm_v``): ComfyUI's closed-form weights against the
Adams-Bashforth weights on equal steps (and where they differ), the weight sums, the exact
weights as LMS with a denoising final step, the convergence orders on the Gaussian-mixture
oracle (4 for the exact weights, 2 for ComfyUI's), and the ComfyUI name."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from interpolant.errors import UserError
from interpolant.solvers import get_solver, sample
from interpolant.solvers.adams import lagrange_integrals
from interpolant.solvers.ipndm_v import comfyui_weights
from interpolant.solvers.multistep_peers import ADAMS_BASHFORTH
from interpolant.solvers.peer_names import peer_sampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_solvers_convergence import SIGMA_MAX, SIGMA_MIN, STEPS, _grid, setup  # noqa: F401


def test_equal_steps_give_adams_bashforth_up_to_order_three():
    for k in (1, 2, 3):
        assert comfyui_weights(-0.3, [-0.3] * (k - 1)) == pytest.approx(ADAMS_BASHFORTH[k - 1])
    # Order 4: not AB4's (55, -59, 37, -9) / 24; the fourth order condition sum_j b_j (-j)^3
    # = 1/4 fails (it is 3/4), the lower ones hold.
    b = comfyui_weights(-1.0, [-1.0, -1.0, -1.0])
    assert b == pytest.approx([57 / 24, -65 / 24, 43 / 24, -11 / 24])
    moments = [sum(bj * (-j) ** m for j, bj in enumerate(b)) for m in range(4)]
    assert moments[:3] == pytest.approx([1.0, 0.5, 1 / 3]) and moments[3] == pytest.approx(0.75)


def test_weight_sums_on_variable_steps():
    rng = random.Random(0)
    for _ in range(5):
        h, *gaps = (-rng.uniform(0.1, 1.0) for _ in range(4))
        # Order 2 is the exact variable-step AB2; order 3 sums to one but differs from AB3.
        rhos = [10.0]
        for g in gaps:
            rhos.append(rhos[-1] - g)
        exact = [w / h for w in lagrange_integrals(rhos[:2], rhos[0], rhos[0] + h)]
        assert comfyui_weights(h, gaps[:1]) == pytest.approx(exact, rel=1e-10)
        exact3 = [w / h for w in lagrange_integrals(rhos[:3], rhos[0], rhos[0] + h)]
        assert sum(comfyui_weights(h, gaps[:2])) == pytest.approx(1.0, rel=1e-12)
        assert comfyui_weights(h, gaps[:2]) != pytest.approx(exact3, rel=1e-3)
        # Order 4: the sum misses one unless the steps are geometric (a_1 = a_2).
        assert abs(sum(comfyui_weights(h, gaps)) - 1.0) > 1e-3
    ratio = 0.8
    geometric = [-(ratio**k) for k in (1, 2, 3)]
    assert sum(comfyui_weights(-1.0, geometric)) == pytest.approx(1.0, rel=1e-12)


def test_exact_weights_are_lms_with_a_denoising_final_step(setup):  # noqa: F811
    model, noise, _ = setup
    grid = _grid(12)
    ours = sample(model, noise, solver="ipndm_v", grid=grid)
    lms = sample(model, noise, solver="lms", grid=grid)
    torch.testing.assert_close(ours.x, lms.x, rtol=0, atol=1e-12)
    assert ours.nfe == 12
    # To sigma = 0: ComfyUI's last step returns x0_hat; LMS integrates with its full order.
    to_zero = torch.cat([grid, torch.zeros(1, dtype=grid.dtype)])
    ours = sample(model, noise, solver="ipndm_v", grid=to_zero)
    before = sample(model, noise, solver="ipndm_v", grid=grid).x
    t_last = torch.full((noise.shape[0],), float(grid[-1]), dtype=torch.float64)
    torch.testing.assert_close(ours.x, model.forward(before, t_last).x0, rtol=1e-12, atol=1e-12)
    lms = sample(model, noise, solver="lms", grid=to_zero).x
    assert float((ours.x - lms).abs().max()) > 1e-6


def _karras(steps: int) -> torch.Tensor:
    ramp = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    lo, hi = SIGMA_MIN ** (1 / 7), SIGMA_MAX ** (1 / 7)
    return ((hi + ramp * (lo - hi)) ** 7 / SIGMA_MAX).clamp(max=1.0)


@pytest.mark.parametrize(
    ("options", "grid", "lo", "hi"),
    [
        ({}, _grid, 3.4, 4.3),
        ({}, _karras, 3.4, 4.3),
        ({"weights": "comfyui"}, _grid, 2.2, 2.9),
        ({"weights": "comfyui"}, _karras, 2.2, 2.9),
    ],
)
def test_convergence_order(setup, options, grid, lo, hi):  # noqa: F811
    model, noise, reference = setup
    errors = []
    for n in STEPS:
        x = sample(model, noise, solver={"name": "ipndm_v", **options}, grid=grid(n)).x
        errors.append(float((x - reference).square().mean().sqrt()))
    slope = -np.polyfit(np.log(STEPS), np.log(errors), 1)[0]
    assert lo < slope < hi, (options, slope, errors)


def test_comfyui_name_and_bad_option():
    solver = peer_sampler("ipndm_v", nfe=10).solver
    assert solver.name == "ipndm_v" and solver.order == 4
    with pytest.raises(UserError, match="weights"):
        get_solver("ipndm_v", weights="zju")
