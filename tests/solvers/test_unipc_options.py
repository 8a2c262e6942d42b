"""UniPC's step-ratio restart (``max_step_ratio``): off by default, a no-op on even grids, and a
first-order predictor from the corrected state over a step much longer than the one before."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture
from interpolant.solvers import FunctionHook, get_solver, make_nodes, sample
from interpolant.solvers.base import exp_integrator_coeffs

PATH = paths.EDM(sigma_max=80.0)


def _oracle() -> GaussianMixture:
    means = torch.tensor([[-1.0, 0.5], [1.0, -0.5]], dtype=torch.float64)
    covs = torch.stack([torch.eye(2, dtype=torch.float64) * s**2 for s in (0.3, 0.5)])
    return GaussianMixture(means, covs)


def _sigma_grid(sigmas: list[float]) -> torch.Tensor:
    return torch.tensor([*sigmas, 0.0], dtype=torch.float64) / 80.0


NOISE = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("order", [2, 3])
def test_no_effect_on_a_grid_of_equal_steps(order):
    # Uniform in log sigma: every ratio of consecutive steps is 1 (the last step goes to 0).
    grid = _sigma_grid(torch.logspace(math.log10(80.0), -2, 12).tolist())
    model = _oracle().model(PATH)
    plain = sample(model, NOISE, solver={"name": "unipc", "order": order}, grid=grid).x
    capped = sample(
        model, NOISE, solver={"name": "unipc", "order": order, "max_step_ratio": 1.5}, grid=grid
    ).x
    torch.testing.assert_close(plain, capped, rtol=0, atol=0)


def test_a_long_step_is_predicted_at_first_order_from_the_corrected_state():
    # sigma 80 -> 20 -> 10 -> 5 (h = log 2 each) then 5 -> 0.05 (h = log 100 > 3 log 2).
    sigmas = [80.0, 40.0, 20.0, 10.0, 5.0, 0.05]
    nodes = make_nodes(PATH, _sigma_grid(sigmas))
    gm = _oracle()
    seen = {}

    def on_step(state, step, run):
        if abs(step.nxt.edm_sigma - 0.05) < 1e-12:
            seen["after_jump"] = state
        return state

    hook = FunctionHook(on_step=on_step)
    for ratio in (3.0, None):
        solver = get_solver("unipc", order=3, max_step_ratio=ratio)
        sample(gm.model(PATH), NOISE, solver=solver, grid=_sigma_grid(sigmas), hooks=[hook])
        state = seen["after_jump"]
        history = state.history
        x_corrected, order_used, outputs = history.x, history.order, history.outputs
        assert history.node == nodes[4]
        # The prediction at sigma = 5 (the model saw the uncorrected state) is outputs[-1].
        assert outputs[-1].logsnr == nodes[4].logsnr
        m_now = outputs[-1].x0
        ratio_sigma, one_minus_exp, _ = exp_integrator_coeffs(nodes[4], nodes[5])
        ddim = ratio_sigma * x_corrected + nodes[5].alpha * one_minus_exp * m_now
        if ratio is None:
            assert order_used == 2 and len(outputs) == 3  # lower_order_final caps it at 2
            assert float((state.x - ddim).abs().max()) > 1e-6
        else:
            assert order_used == 1 and len(outputs) == 1
            torch.testing.assert_close(state.x, ddim, rtol=1e-14, atol=1e-14)


def test_bad_max_step_ratio():
    for bad in (0.5, math.inf, "2", True):
        with pytest.raises(ValueError, match="max_step_ratio must be None or a finite number >= 1"):
            get_solver("unipc", max_step_ratio=bad)
