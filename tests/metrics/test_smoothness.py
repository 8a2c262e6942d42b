"""ISTD and slerp against exact answers: an isotropic Gaussian's exact ODE map is x = c z, so
equally spaced slerp points of equal-norm noises give equal chords (ISTD 0); a two-mode mixture's
map jumps between the modes (ISTD far from 0)."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture
from interpolant.errors import UserError
from interpolant.metrics.smoothness import interpolation_path, interpolation_std, istd, slerp
from interpolant.solvers import Sampler


def _pairs(n=8, dim=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z0 = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    z1 = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    return z0, z1 / z1.norm(dim=1, keepdim=True) * z0.norm(dim=1, keepdim=True)


def test_slerp_keeps_the_norm_and_moves_the_angle_linearly():
    z0, z1 = _pairs()
    omega = torch.arccos((z0 * z1).sum(1) / (z0.norm(dim=1) * z1.norm(dim=1)))
    for a in (0.0, 0.25, 0.6, 1.0):
        z = slerp(z0, z1, a)
        torch.testing.assert_close(z.norm(dim=1), z0.norm(dim=1))
        angle = torch.arccos(((z * z0).sum(1) / (z.norm(dim=1) * z0.norm(dim=1))).clamp(-1, 1))
        torch.testing.assert_close(angle, a * omega, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(slerp(z0, z0, 0.3), z0)  # parallel rows: no division by 0


def test_interpolation_std_is_zero_for_constant_steps_and_exact_otherwise():
    line = torch.linspace(0, 1, 5, dtype=torch.float64)[None, :, None] * torch.ones(1, 1, 3)
    assert float(interpolation_std(line)) == pytest.approx(0.0, abs=1e-15)
    jump = torch.tensor([[[0.0], [0.0], [3.0], [3.0]]], dtype=torch.float64)  # steps 0, 3, 0
    assert float(interpolation_std(jump)) == pytest.approx(math.sqrt(2.0), rel=1e-12)


def test_istd_is_zero_for_an_isotropic_gaussian_and_large_for_two_modes():
    z0, z1 = _pairs(n=6, dim=2)
    sampler = Sampler("dpmpp_2m", nfe=20)
    iso = GaussianMixture(torch.zeros(1, 2), 0.5 * torch.eye(2)[None])
    flat = istd(iso.model(paths.VP()), z0, z1, sampler, n=9)
    assert flat < 1e-9
    modes = GaussianMixture(
        torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), 0.01 * torch.eye(2).expand(2, 2, 2)
    )
    assert istd(modes.model(paths.VP()), z0, z1, sampler, n=9) > 0.1


def test_istd_refuses_stochastic_samplers_and_short_paths():
    iso = GaussianMixture(torch.zeros(1, 2), torch.eye(2)[None])
    z0, z1 = _pairs(n=2, dim=2)
    with pytest.raises(UserError, match="deterministic"):
        istd(iso.model(paths.VP()), z0, z1, Sampler("sde_euler", nfe=10))
    with pytest.raises(UserError, match="n >= 3"):
        interpolation_path(z0, z1, n=2)
