"""Diffusion features: hooks read the named layers exactly, noise draws are per sample and
averaged as stated, pooling shapes, errors, and a linear probe on separable features."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from interpolant import Model, paths
from interpolant.errors import UserError
from interpolant.models.features import diffusion_features, layer_names, linear_probe_accuracy
from interpolant.randomness import normal


class TwoLayer(nn.Module):
    def __init__(self, dim: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.enc = nn.Linear(dim, 5)
        self.dec = nn.Linear(5, dim)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.dec(torch.tanh(self.enc(x)))


class Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.out = nn.Conv2d(4, 1, 1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.out(self.conv(x))


def test_features_at_t0_are_the_layer_outputs():
    net = TwoLayer()
    x = torch.randn(7, 3)
    feats = diffusion_features(Model(net, paths.VP()), x, 0.0, ["enc", "dec"])
    with torch.no_grad():
        torch.testing.assert_close(feats["enc"], net.enc(x))
        torch.testing.assert_close(feats["dec"], net(x, torch.zeros(7)))


def test_noise_draws_are_per_sample_and_averaged():
    # enc is affine in its input, so the averaged feature is enc(alpha x + sigma mean_k eps_k).
    net, path = TwoLayer(), paths.VP()
    x, t = torch.randn(6, 3), 0.3
    feats = diffusion_features(Model(net, path), x, t, ["enc"], n_noise=4, seed=5)
    eps = torch.stack([normal((3,), 5, range(6), f"features-noise-{k}") for k in range(4)])
    alpha, sigma = (float(c) for c in path.coefficients(torch.tensor([t], dtype=torch.float64))[:2])
    with torch.no_grad():
        expected = net.enc(alpha * x + sigma * eps.mean(0))
    torch.testing.assert_close(feats["enc"], expected, atol=1e-5, rtol=1e-5)
    one = diffusion_features(Model(net, path), x[4:5], t, ["enc"], n_noise=4, seed=5, index=[4])
    torch.testing.assert_close(one["enc"], feats["enc"][4:5])  # batch-independent draws
    other = diffusion_features(Model(net, path), x, t, ["enc"], n_noise=4, seed=6)
    assert not torch.allclose(other["enc"], feats["enc"])


def test_pooling_of_feature_maps_and_errors():
    net = Conv()
    x = torch.randn(3, 1, 8, 8)
    feats = diffusion_features(Model(net, paths.VP()), x, 0.2, ["conv"], pool=2)
    assert feats["conv"].shape == (3, 4 * 2 * 2)
    assert layer_names(net) == ["conv", "out"]
    with pytest.raises(UserError, match=r"no layer \['blocks.3'\]; its layers are: conv, out"):
        diffusion_features(Model(net, paths.VP()), x, 0.2, ["blocks.3"])
    with pytest.raises(UserError, match="t must be in"):
        diffusion_features(Model(net, paths.VP()), x, 1.5, ["conv"])


def test_linear_probe_separates_separable_features():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 2
    x = torch.randn(200, 4, generator=gen) + 4.0 * y[:, None]
    assert linear_probe_accuracy(x[:100], y[:100], x[100:], y[100:]) == 1.0
    noise = torch.randn(200, 4, generator=gen)  # features that carry no label information
    assert linear_probe_accuracy(noise[:100], y[:100], noise[100:], y[100:]) < 0.75
