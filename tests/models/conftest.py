"""Shared helpers for the backbone tests."""

import pytest
import torch
from torch import nn


def _randomize(model: nn.Module, std: float = 0.1, seed: int = 0) -> nn.Module:
    # Give zero-initialised layers (adaLN-Zero, output convs) random weights so the output
    # depends on every input; norms keep their scale near 1.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen) * std
            p.copy_((1.0 + noise) if "norm" in name and name.endswith("weight") else noise)
    return model


@pytest.fixture
def randomize():
    return _randomize
