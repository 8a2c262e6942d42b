"""Image-quality measures for reconstructions: PSNR and SSIM (per image, in torch).

SSIM follows Wang et al. 2004 with scikit-image's defaults (``structural_similarity``: a 7x7
uniform window, K1 = 0.01, K2 = 0.03, sample covariances, the mean over windows that fit inside
the image, channels averaged), so the numbers match ``skimage.metrics`` exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UserError


def psnr(x: Tensor, ref: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per sample, 10 log10(data_range^2 / MSE) in dB, shape (B,)."""
    if x.shape != ref.shape:
        raise UserError(f"x {tuple(x.shape)} and ref {tuple(ref.shape)} must have equal shapes")
    mse = ((x.to(torch.float64) - ref.to(torch.float64)) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-30))


def ssim(
    x: Tensor, ref: Tensor, data_range: float = 1.0, win_size: int = 7, k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:  # fmt: skip
    """Structural similarity per image of (B, C, H, W) batches, shape (B,) (eq. 13 of Wang et
    al. 2004, averaged over every full window and over channels)."""
    if x.shape != ref.shape or x.ndim != 4:
        raise UserError(
            f"x {tuple(x.shape)} and ref {tuple(ref.shape)} must be equal (B, C, H, W) shapes"
        )
    if win_size % 2 != 1 or min(x.shape[-2:]) < win_size:
        raise UserError(f"win_size must be odd and fit in the image {tuple(x.shape[-2:])}")
    c = x.shape[1]
    a, b = x.to(torch.float64), ref.to(torch.float64)
    kernel = torch.full((c, 1, win_size, win_size), 1.0 / win_size**2, dtype=torch.float64)

    def mean(v: Tensor) -> Tensor:  # windows fully inside the image only ("valid")
        return F.conv2d(v, kernel.to(v.device), groups=c)

    ux, uy = mean(a), mean(b)
    norm = win_size**2 / (win_size**2 - 1)  # sample covariance
    vx, vy = norm * (mean(a * a) - ux * ux), norm * (mean(b * b) - uy * uy)
    vxy = norm * (mean(a * b) - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)
