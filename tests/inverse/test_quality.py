"""PSNR and SSIM against their definitions and scikit-image."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.inverse.quality import psnr, ssim


def test_psnr_definition() -> None:
    ref = torch.zeros(2, 1, 4, 4)
    x = ref + torch.tensor([0.1, 0.01]).view(2, 1, 1, 1)
    torch.testing.assert_close(psnr(x, ref), torch.tensor([20.0, 40.0], dtype=torch.float64))
    assert float(psnr(x, ref, data_range=2.0)[0]) == pytest.approx(20 + 20 * math.log10(2))


def test_ssim_identity_and_bounds() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 12, 12, generator=g)
    torch.testing.assert_close(ssim(x, x), torch.ones(3, dtype=torch.float64))
    noisy = x + 0.2 * torch.randn(x.shape, generator=g)
    assert bool((ssim(noisy, x) < 0.9).all())
    with pytest.raises(ValueError, match="win_size"):
        ssim(x[..., :5, :5], x[..., :5, :5])


def test_ssim_matches_scikit_image() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(1)
    ref = torch.rand(2, 1, 16, 16, generator=g, dtype=torch.float64)
    x = (ref + 0.1 * torch.randn(ref.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = ssim(x, ref)
    for i in range(2):
        theirs = metrics.structural_similarity(x[i, 0].numpy(), ref[i, 0].numpy(), data_range=1.0)
        assert float(ours[i]) == pytest.approx(theirs, abs=1e-10)
