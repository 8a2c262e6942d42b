"""Bits per dimension: the raw-unit offset exactly, and the NLL of an exact Gaussian model."""

import importlib.util
import math

import pytest
import torch

from interpolant.data import GaussianMixture, Normalizer
from interpolant.metrics import nll_bits_per_dim
from interpolant.metrics.nll import LIKELIHOOD_MODULE, raw_space_offset

needs_core = pytest.mark.skipif(
    importlib.util.find_spec(LIKELIHOOD_MODULE) is None, reason="core likelihood not available"
)


def test_raw_space_offset():
    # y = (x - 3) / 4: p_x = p_y / 4 per entry, i.e. +2 bits per dim.
    assert raw_space_offset(Normalizer("standardize", (3.0,), (4.0,)), (6,)) == pytest.approx(2.0)
    # Per channel, averaged over entries: log2 scales 1 and 3 on equal-size channels.
    per_channel = Normalizer("standardize", (0.0, 0.0), (2.0, 8.0))
    assert raw_space_offset(per_channel, (2, 3, 3)) == pytest.approx(2.0)
    # Digits: [0, 16] -> [-1, 1] has scale 8.
    assert raw_space_offset(Normalizer.from_range(0.0, 16.0), (1, 8, 8)) == pytest.approx(3.0)


@pytest.fixture(scope="module")
def gaussian():
    from interpolant.paths import Linear

    mean = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    gauss = GaussianMixture(mean, (0.3**2 * torch.eye(2, dtype=torch.float64))[None])
    x = gauss.sample(6, generator=torch.Generator().manual_seed(0))
    return gauss, gauss.model(Linear()), x


@needs_core
def test_nll_of_an_exact_gaussian_model(gaussian):
    gauss, model, x = gaussian
    bpd = nll_bits_per_dim(model, x)
    exact = -gauss.log_prob(x) / (2 * math.log(2))
    torch.testing.assert_close(bpd, exact, atol=1e-3, rtol=1e-3)
    # In raw units x_raw = 10 x + 5 the density is 10x lower per dim: + log2(10) bits per dim.
    norm = Normalizer("standardize", (5.0,), (10.0,))
    torch.testing.assert_close(nll_bits_per_dim(model, x, normalizer=norm), bpd + math.log2(10))
    # The discrete bound with bins of width 2/256 is 7 bits per dim above the continuous value.
    discrete = nll_bits_per_dim(model, x, bin_width=2 / 256)
    torch.testing.assert_close(discrete - bpd, torch.full_like(bpd, 7.0))
    with pytest.raises(ValueError, match="not both"):
        nll_bits_per_dim(model, x, normalizer=norm, bin_width=1.0)
