"""DiffuseVAE's conditional denoiser: the coarse image concatenated to the network's input.

Form 1 (and, as in the official code, form 2) conditions the denoiser by stacking the prior mean
``x_hat`` as extra input channels: ``net([x_t, x_hat], t)``. :class:`ChannelConcat` does this for
any image backbone whose ``in_channels`` is ``C + C_cond`` (e.g. ``models.UNet(in_channels=2)``
for grey digits) and keeps the first C output channels, so the wrapped network is an ordinary
``net(x_t, t, **cond)`` whose conditioning arrives through the trainer's ``cond`` and the
sampler's ``cond=`` like any other.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UserError
from .shifted import DEFAULT_KEY


class ChannelConcat(nn.Module):
    """``net(cat([x, cond[key]], dim=1), t, **rest)[:, :C]`` for x of C channels.

    The backbone's output has ``in_channels = C + C_cond`` channels (our backbones return the
    shape of their input); the extra ``C_cond`` are discarded (their output conv weights get no
    gradient from the loss, so they stay at their zero initialisation).
    """

    def __init__(self, net: nn.Module, key: str = DEFAULT_KEY):
        super().__init__()
        self.net, self.key = net, key

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        if self.key not in cond:
            raise UserError(
                f"this denoiser is conditioned on a coarse image: pass cond[{self.key!r}] "
                f"(shape (B, C_cond, H, W) with H, W = {tuple(x.shape[2:])}); got keys "
                f"{sorted(cond)}"
            )
        rest = dict(cond)
        coarse = rest.pop(self.key)
        if not isinstance(coarse, Tensor) or coarse.ndim != x.ndim or coarse.shape[0] != x.shape[0]:
            got = tuple(coarse.shape) if isinstance(coarse, Tensor) else type(coarse).__name__
            raise UserError(f"cond[{self.key!r}] must be (B, C_cond, H, W) like x, got {got}")
        if coarse.shape[2:] != x.shape[2:]:
            raise UserError(
                f"cond[{self.key!r}] is {tuple(coarse.shape[2:])} images, x is "
                f"{tuple(x.shape[2:])}: the coarse image must have x's spatial size"
            )
        h = torch.cat([x, coarse.to(dtype=x.dtype, device=x.device)], dim=1)
        return self.net(h, t, **rest)[:, : x.shape[1]]


__all__ = ["ChannelConcat"]
