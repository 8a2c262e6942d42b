"""Toy 2-D sets and the registry: determinism, exact geometry, the oracle interface, errors."""

import json
import math

import pytest
import torch

from interpolant.data import (
    DATASETS,
    DataInfo,
    checkerboard,
    circles,
    eight_gaussians,
    load_dataset,
    moons,
    ring2d,
    split_generator,
    swiss_roll,
)
from interpolant.errors import UserError
from interpolant.randomness import derive_seed

SAMPLED = [k for k, spec in DATASETS.items() if spec.sampled]


@pytest.mark.parametrize("name", SAMPLED)
def test_sampled_sets_are_deterministic_float32(name):
    a = load_dataset(name, n=500, seed=3)
    b = load_dataset(name, n=500, seed=3)
    c = load_dataset(name, n=500, seed=4)
    test = load_dataset(name, n=500, split="test", seed=3)
    assert a.x.dtype == torch.float32 and a.x.shape[0] == 500
    assert a.info.shape == tuple(a.x.shape[1:]) and a.info.n == 500
    assert torch.equal(a.x, b.x)
    assert not torch.equal(a.x, c.x)
    assert not torch.equal(a.x, test.x)  # train and test streams differ
    assert torch.isfinite(a.x).all()
    if a.labels is not None:
        assert a.labels.dtype == torch.int64 and a.labels.shape == (500,)


def test_generator_argument_overrides_seed():
    a = load_dataset("moons", n=100, generator=torch.Generator().manual_seed(7))
    x, labels = moons(100, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.x, x) and torch.equal(a.labels, labels)
    b = load_dataset("moons", n=100, split="test", seed=5)
    assert torch.equal(b.x, moons(100, generator=split_generator(5, "test"))[0])


def test_split_streams_are_derived_seeds():
    # One derived seed per split (no additive offsets that could meet another stream's).
    for split in ("train", "test"):
        assert split_generator(5, split).initial_seed() == derive_seed(f"data-{split}", 5)
    assert split_generator(5, "train").initial_seed() != split_generator(5, "test").initial_seed()
    assert split_generator(5, "train").initial_seed() != 5


def test_default_sizes():
    assert load_dataset("circles").x.shape == (10_000, 2)
    assert load_dataset("circles", split="test").x.shape == (2_000, 2)


def test_oracles_through_the_same_interface():
    data = load_dataset("ring2d", n=300, seed=2)
    exact = ring2d().sample(300, generator=split_generator(2, "train")).float()
    assert torch.equal(data.x, exact)
    assert load_dataset("lowrank64", n=10).x.shape == (10, 64)
    # Oracle parameters pass through.
    assert load_dataset("lowrank64", n=10, dim=16).x.shape == (10, 16)


def test_moons_geometry_without_noise():
    x, label = moons(2000, noise=0.0, generator=torch.Generator().manual_seed(0))
    raw = x.double() + torch.tensor([0.5, 0.25], dtype=torch.float64)
    upper, lower = raw[label == 0], raw[label == 1]
    torch.testing.assert_close(upper.norm(dim=1), torch.ones(len(upper), dtype=torch.float64))
    centre = torch.tensor([1.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(
        (lower - centre).norm(dim=1), torch.ones(len(lower), dtype=torch.float64)
    )
    assert (upper[:, 1] >= -1e-6).all() and (lower[:, 1] <= 0.5 + 1e-6).all()
    assert abs(float(label.double().mean()) - 0.5) < 0.05


def test_circles_radii_without_noise():
    x, label = circles(1000, noise=0.0, factor=0.3, scale=2.0, generator=torch.Generator())
    r = x.double().norm(dim=1)
    torch.testing.assert_close(r[label == 0], torch.full_like(r[label == 0], 2.0))
    torch.testing.assert_close(r[label == 1], torch.full_like(r[label == 1], 0.6))


def test_swiss_roll_is_the_spiral_without_noise():
    x, _ = swiss_roll(1000, noise=0.0, generator=torch.Generator().manual_seed(1))
    s = 5 * x.double().norm(dim=1)  # the spiral parameter is the radius
    assert s.min() >= 1.5 * math.pi - 1e-4 and s.max() <= 4.5 * math.pi + 1e-4
    torch.testing.assert_close(
        5 * x.double(), torch.stack([s * s.cos(), s * s.sin()], 1), atol=1e-4, rtol=0
    )


def test_eight_gaussians_modes():
    x, k = eight_gaussians(16_000, generator=torch.Generator().manual_seed(0))
    angle = k.double() * math.pi / 4
    centre = 2 * math.sqrt(2) * torch.stack([angle.cos(), angle.sin()], 1)
    resid = x.double() - centre
    assert resid.mean(0).abs().max() < 0.02
    torch.testing.assert_close(
        resid.std(0), torch.full((2,), 0.5 / math.sqrt(2), dtype=torch.float64), atol=0.01, rtol=0
    )
    counts = torch.bincount(k, minlength=8).double()
    assert (counts / 16_000 - 1 / 8).abs().max() < 0.015


def test_checkerboard_fills_the_dark_squares_uniformly():
    x, _ = checkerboard(16_000, generator=torch.Generator().manual_seed(0))
    cell = torch.floor(x.double() / 2).long()  # square index in {-2..1}^2
    assert (x.abs() <= 4).all()
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all()  # only dark squares
    counts = torch.unique(cell, dim=0, return_counts=True)[1].double()
    assert counts.numel() == 8 and (counts / 16_000 - 1 / 8).abs().max() < 0.015


def test_info_is_json_serialisable():
    info = load_dataset("8gaussians", n=10).info
    back = DataInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert back == info
    assert back.classes == [f"mode{k}" for k in range(8)]


def test_bad_requests_are_refused():
    with pytest.raises(UserError, match="unknown data set"):
        load_dataset("no-such-set")
    with pytest.raises(ValueError, match="split"):
        load_dataset("moons", split="valid")
    with pytest.raises(ValueError, match="'all'"):
        load_dataset("moons", split="all")
    with pytest.raises(ValueError, match="n must be a positive integer"):
        load_dataset("moons", n=0)
    with pytest.raises(ValueError, match="factor"):
        circles(10, factor=1.5)
