"""A small linear codec for the latent-training tests, importable as ``latent_codecs:Pool``
(tests/train is on sys.path): 2x2 average pooling and nearest-neighbour upsampling back."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


class Pool:
    """encode: (N, C, H, W) -> (N, C, H/2, W/2) means of 2x2 blocks; decode: each latent pixel
    repeated over its block (decode(encode(x)) is the blockwise mean of x)."""

    def encode(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, 2)

    def decode(self, z: Tensor) -> Tensor:
        return F.interpolate(z, scale_factor=2, mode="nearest")


def halve(x: Tensor) -> Tensor:
    """An encoder without a decoder."""
    return F.avg_pool2d(x, 2)
