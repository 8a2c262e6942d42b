"""Heun++ (ComfyUI ``heunpp2``): every step recomputed from its definition with the oracle's
exact denoiser, the NFE count, order 1 on the Gaussian-mixture oracle, the same samples on
every path, and the ComfyUI name."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture
from interpolant.solvers import Sampler, Trajectory, sample
from interpolant.solvers.peer_names import peer_sampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_solvers_convergence import STEPS, _rms_error, setup  # noqa: F401  (fixture)

GRID = {"name": "karras", "sigma_max": 50.0}


def _oracle() -> GaussianMixture:
    means = torch.tensor([[-1.0, 0.5], [1.0, -0.5], [0.3, 1.2]], dtype=torch.float64)
    covs = torch.stack([torch.eye(2, dtype=torch.float64) * s**2 for s in (0.4, 0.5, 0.6)])
    return GaussianMixture(means, covs)


def _noise() -> torch.Tensor:
    return torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_each_step_against_its_definition():
    gm, path = _oracle(), paths.EDM(sigma_max=80.0)
    trajectory = Trajectory()
    run = sample(gm.model(path), _noise(),
                 Sampler("heunpp2", steps=6, grid=GRID), hooks=[trajectory])  # fmt: skip
    xs = run.state(trajectory).states
    sigma = [float(t) * 80.0 for t in run.grid]
    assert run.nfe == 3 * 6 - 3 and len(xs) == 7

    def direction(x: torch.Tensor, s: float) -> torch.Tensor:
        t = torch.full((x.shape[0],), s / 80.0, dtype=torch.float64)
        return (x - gm.denoiser(x, t, path)) / s

    n = len(sigma) - 1
    for i in range(n):
        x, s, s1 = xs[i], sigma[i], sigma[i + 1]
        d = direction(x, s)
        x2 = x + (s1 - s) * d
        if i == n - 1:
            expected = x2
        elif i == n - 2:
            w2 = s1 / (2 * sigma[0])
            expected = x + (s1 - s) * ((1 - w2) * d + w2 * direction(x2, s1))
        else:
            s2 = sigma[i + 2]
            d2 = direction(x2, s1)
            d3 = direction(x2 + (s2 - s1) * d2, s2)
            w2, w3 = s1 / (3 * sigma[0]), s2 / (3 * sigma[0])
            expected = x + (s1 - s) * ((1 - w2 - w3) * d + w2 * d2 + w3 * d3)
        torch.testing.assert_close(xs[i + 1], expected, rtol=1e-10, atol=1e-10)


def test_convergence_order_one(setup):  # noqa: F811
    errors = [_rms_error(setup, "heunpp2", n) for n in STEPS]
    slope = -np.polyfit(np.log(STEPS), np.log(errors), 1)[0]
    assert 0.85 < slope < 1.2, (slope, errors)
    # Smaller error than Euler at equal steps (its weights lean towards Heun's at high noise).
    assert errors[0] < _rms_error(setup, "euler", STEPS[0])


def test_same_samples_on_every_path():
    gm = _oracle()
    spec = Sampler("heunpp2", steps=7, grid=GRID)
    on_edm = sample(gm.model(paths.EDM(sigma_max=80.0)), _noise(), spec)
    on_vp = sample(gm.model(paths.VP()), _noise(), spec)
    torch.testing.assert_close(on_vp.x, on_edm.x, rtol=1e-8, atol=1e-8)


def test_budget_and_comfyui_name():
    spec = peer_sampler("heunpp2", nfe=30)
    assert spec.solver.name == "heunpp2"
    assert spec.solver.steps_for_nfe(30) == 11 and spec.solver.nfe_for_steps(11) == 30
    assert spec.solver.nfe_for_steps(1) == 1 and spec.solver.nfe_for_steps(2) == 3
