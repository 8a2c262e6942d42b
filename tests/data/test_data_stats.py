"""Data statistics and the Normalizer: exact values, invertibility, JSON round trips."""

import json

import pytest
import torch

from interpolant.data import DataInfo, Normalizer, channel_stats, estimate_sigma_data


def test_sigma_data_is_the_std_over_all_entries():
    g = torch.Generator().manual_seed(0)
    x = 0.5 * torch.randn(4000, 3, 4, generator=g) + 2.0
    assert estimate_sigma_data(x) == pytest.approx(float(x.double().flatten().std()), rel=1e-12)
    assert estimate_sigma_data(x) == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match="at least 2"):
        estimate_sigma_data(torch.zeros(1))


def test_channel_stats():
    g = torch.Generator().manual_seed(1)
    scale = torch.tensor([1.0, 3.0])[None, :, None, None]
    x = (
        torch.randn(2000, 2, 4, 4, generator=g) * scale
        + torch.tensor([5.0, -1.0])[None, :, None, None]
    )
    mean, std = channel_stats(x)
    torch.testing.assert_close(mean, x.double().transpose(0, 1).reshape(2, -1).mean(1))
    torch.testing.assert_close(
        std, torch.tensor([1.0, 3.0], dtype=torch.float64), atol=0.05, rtol=0
    )


def test_range_maps_endpoints_to_minus_one_and_one():
    norm = Normalizer.from_range(0.0, 16.0)
    torch.testing.assert_close(norm(torch.tensor([0.0, 8.0, 16.0])), torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(norm.inverse(torch.tensor([-1.0, 1.0])), torch.tensor([0.0, 16.0]))
    with pytest.raises(ValueError, match="high must exceed low"):
        Normalizer.from_range(1.0, 1.0)


@pytest.mark.parametrize("kind", ["standardize", "range"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_fitted_normalizers_invert_and_serialise(kind, per_channel):
    g = torch.Generator().manual_seed(2)
    x = (
        torch.randn(500, 3, 2, 2, generator=g, dtype=torch.float64)
        * torch.tensor([1.0, 10.0, 0.1])[None, :, None, None]
    )
    norm = Normalizer.fit(x, kind, per_channel=per_channel)
    y = norm(x)
    assert y.dtype == torch.float64
    back = Normalizer.from_json(json.dumps(json.loads(norm.to_json())))
    assert back == norm
    torch.testing.assert_close(back.inverse(y), x, atol=1e-12, rtol=1e-12)
    flat = y.transpose(0, 1).reshape(3, -1) if per_channel else y.reshape(1, -1)
    if kind == "standardize":
        torch.testing.assert_close(
            flat.mean(1), torch.zeros(len(flat), dtype=torch.float64), atol=1e-12, rtol=0
        )
        torch.testing.assert_close(flat.std(1), torch.ones(len(flat), dtype=torch.float64))
    else:
        torch.testing.assert_close(flat.min(1).values, -torch.ones(len(flat), dtype=torch.float64))
        torch.testing.assert_close(flat.max(1).values, torch.ones(len(flat), dtype=torch.float64))


def test_constant_channel_stays_invertible_and_bad_input():
    x = torch.stack([torch.arange(10.0), torch.full((10,), 4.0)], 1)
    norm = Normalizer.fit(x, "standardize", per_channel=True)
    assert norm.scale[1] == 1.0
    torch.testing.assert_close(norm.inverse(norm(x)), x)
    with pytest.raises(ValueError, match="2 channels on axis 1"):
        norm(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="kind must be"):
        Normalizer("minmax")
    with pytest.raises(ValueError, match="scale must be positive"):
        Normalizer("range", (0.0,), (0.0,))


def test_data_info_round_trip():
    info = DataInfo(
        "x", (1, 8, 8), 10, "train", Normalizer.from_range(0, 16), ["a"], "src", {"k": 1}
    )
    assert DataInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
