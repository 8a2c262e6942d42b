"""The oracle families added for the sampler benchmark (issue 12): aniso16 and the digits mixture,
and the exact data standard deviation of a mixture."""

from __future__ import annotations

import math

import torch

from interpolant.data import load_digits
from interpolant.data.oracles import ORACLES, aniso16, data_std, digits_mixture, ring2d


def test_aniso16_spans_the_scales():
    gm = aniso16()
    assert gm.dim == 16 and gm.means.shape[0] == 6
    expected = torch.logspace(math.log10(0.5), math.log10(0.005), 16, dtype=torch.float64)
    for k in range(6):  # every component has all 16 standard deviations, rotated
        stds = gm.eigvals[k].sqrt().sort(descending=True).values
        torch.testing.assert_close(stds, expected)
    assert not torch.allclose(gm.eigvecs[0].abs(), torch.eye(16, dtype=torch.float64))


def test_digits_mixture_is_the_class_moments():
    gm, data = digits_mixture(), load_digits("train")
    x = data.x.to(torch.float64).reshape(len(data.x), -1)
    for c in (0, 7):
        rows = x[data.labels == c]
        torch.testing.assert_close(gm.means[c], rows.mean(0))
        torch.testing.assert_close(gm.covs[c], torch.cov(rows.T) + 1e-3 * torch.eye(64).double())
    assert math.isclose(float(gm.weights.sum()), 1.0)
    assert set(ORACLES) >= {"ring2d", "lowrank64", "aniso16", "digits_mixture"}


def test_data_std_is_exact():
    # ring2d: radius 2 on a circle plus std 0.05: E[x_i^2] = 2 + 0.05^2 per coordinate, mean 0.
    assert math.isclose(data_std(ring2d()), math.sqrt(2 + 0.05**2), rel_tol=1e-12)
    gm = aniso16()
    draws = gm.sample(200_000, torch.Generator().manual_seed(0))
    assert math.isclose(data_std(gm), float(draws.std()), rel_tol=5e-3)
