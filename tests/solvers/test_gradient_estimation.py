"""Gradient estimation (ComfyUI ``gradient_estimation``): gamma = 1 is Euler, the extrapolated
direction of each step against its definition, order 1 against a Dormand-Prince reference on the
Gaussian-mixture oracle, the same samples on every path, and the ComfyUI name."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture, three_modes
from interpolant.solvers import Sampler, Trajectory, sample
from interpolant.solvers.peer_names import peer_sampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_solvers_convergence import STEPS, _rms_error, setup  # noqa: F401  (fixture)


def _oracle() -> GaussianMixture:
    return three_modes()


def _noise() -> torch.Tensor:
    return torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


GRID = {"name": "karras", "sigma_max": 50.0}


def test_gamma_one_is_euler():
    model = _oracle().model(paths.EDM(sigma_max=80.0))
    ours = sample(model, _noise(), Sampler({"name": "gradient_estimation", "gamma": 1.0},
                                           steps=7, grid=GRID))  # fmt: skip
    euler = sample(model, _noise(), Sampler("euler", steps=7, grid=GRID))
    torch.testing.assert_close(ours.x, euler.x, rtol=1e-12, atol=1e-12)


def test_each_step_uses_the_extrapolated_direction():
    # Recompute every step from the recorded states with the oracle's exact eps:
    # x' = x + (s' - s) (gamma d_i + (1 - gamma) d_{i-1}); the last step is x' = x0_hat.
    gm = _oracle()
    path = paths.EDM(sigma_max=80.0)
    model = gm.model(path)
    gamma = 2.5
    trajectory = Trajectory()
    run = sample(model, _noise(), Sampler({"name": "gradient_estimation", "gamma": gamma},
                                          steps=6, grid=GRID), hooks=[trajectory])  # fmt: skip
    xs = run.state(trajectory).states
    sigmas = run.grid.to(torch.float64) * 80.0
    assert len(xs) == len(sigmas) and run.nfe == 6
    d_old = None
    for i in range(len(sigmas) - 1):
        t = (sigmas[i] / 80.0).expand(xs[i].shape[0])
        x0 = gm.denoiser(xs[i], t, path)
        d = (xs[i] - x0) / sigmas[i]
        if sigmas[i + 1] == 0:
            expected = x0
        else:
            direction = d if d_old is None else gamma * d + (1 - gamma) * d_old
            expected = xs[i] + (sigmas[i + 1] - sigmas[i]) * direction
        torch.testing.assert_close(xs[i + 1], expected, rtol=1e-10, atol=1e-10)
        d_old = d


def test_convergence_order_one(setup):  # noqa: F811
    errors = [_rms_error(setup, "gradient_estimation", n) for n in STEPS]
    slope = -np.polyfit(np.log(STEPS), np.log(errors), 1)[0]
    assert 0.85 < slope < 1.25, (slope, errors)


def test_same_samples_on_every_path():
    gm = _oracle()
    spec = Sampler("gradient_estimation", steps=8, grid=GRID)
    on_edm = sample(gm.model(paths.EDM(sigma_max=80.0)), _noise(), spec)
    on_vp = sample(gm.model(paths.VP()), _noise(), spec)
    torch.testing.assert_close(on_vp.x, on_edm.x, rtol=1e-8, atol=1e-8)


def test_comfyui_name():
    solver = peer_sampler("gradient_estimation", nfe=10).solver
    assert solver.name == "gradient_estimation" and solver.gamma == 2.0
