"""Residual MLP for low-dimensional data: shapes, zero initial output, time and class
conditioning, label dropout, both time conventions, errors."""

import pytest
import torch

from interpolant.models import MLP


def test_shapes_and_zero_initial_output(randomize):
    x2, x64 = torch.randn(5, 2), torch.randn(5, 1, 8, 8)
    assert torch.equal(MLP(2)(x2, torch.rand(5)), torch.zeros_like(x2))
    for x, dim in ((x2, 2), (x64, 64)):
        out = randomize(MLP(dim, width=32, depth=2))(x, torch.rand(5))
        assert out.shape == x.shape and out.abs().sum() > 0
    out = randomize(MLP(2, width=16, depth=0, layer_norm=False))(x2, torch.rand(5))
    assert out.shape == x2.shape


def test_flattening_matches_flat_input(randomize):
    net = randomize(MLP(64, width=32)).eval()
    x, t = torch.randn(3, 1, 8, 8), torch.rand(3)
    assert torch.equal(net(x, t).reshape(3, 64), net(x.reshape(3, 64), t))


def test_time_conditioning_for_both_conventions(randomize):
    # t in [0, 1] and EDM's c_noise = ln(sigma) / 4 both change the output.
    net = randomize(MLP(2, width=32)).eval()
    x = torch.randn(4, 2)
    for t in (torch.tensor([0.1, 0.4, 0.7, 0.9]), torch.tensor([-1.5, -0.5, 0.3, 1.0])):
        assert not torch.allclose(net(x, t), net(x, t + 0.01), atol=1e-4)
    # A 0-dim time is broadcast to the batch.
    assert torch.equal(net(x, torch.tensor(0.3)), net(x, torch.full((4,), 0.3)))


def test_class_conditioning_and_dropout(randomize):
    net = randomize(MLP(2, width=32, num_classes=3, class_dropout_prob=1.0)).eval()
    x, t, y = torch.randn(4, 2), torch.rand(4), torch.tensor([0, 1, 2, 3])
    out, uncond = net(x, t, class_labels=y), net(x, t)
    assert torch.allclose(out[3], uncond[3], atol=1e-6)
    assert not torch.allclose(out[:3], uncond[:3], atol=1e-4)
    # Training with dropout 1: every label is replaced by the null class.
    assert torch.allclose(net.train()(x, t, class_labels=y), uncond, atol=1e-6)


def test_errors():
    net = MLP(2)
    with pytest.raises(ValueError, match=r"MLP expects x of shape \(B, 2\)"):
        net(torch.randn(4, 3), torch.rand(4))
    with pytest.raises(ValueError, match="num_classes=0"):
        net(torch.randn(4, 2), torch.rand(4), class_labels=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"class_labels must lie in \[0, 2\]"):
        MLP(2, num_classes=3)(torch.randn(2, 2), torch.rand(2), class_labels=torch.tensor([0, 4]))
