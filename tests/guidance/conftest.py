"""Shared fixtures of the guidance tests: a two-class Gaussian mixture with exact models."""

from __future__ import annotations

import pytest
import torch

from interpolant.guidance import LabelledMixture, two_class_mixture


@pytest.fixture(scope="module")
def mixture() -> LabelledMixture:
    return two_class_mixture(dim=2, separation=1.5, std=0.7, n_per_class=2)


@pytest.fixture
def noise() -> torch.Tensor:
    return torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))


@pytest.fixture
def labels() -> torch.Tensor:
    return torch.tensor([0, 1, 1, 0, 1, 0])
