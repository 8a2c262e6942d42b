"""Residual MLP for low-dimensional data (toy 2-D sets, flattened 8x8 digits, Gaussian mixtures).

``h = W_in x``; ``depth`` residual blocks
``h <- h + W_2 SiLU(W_1 LN(h) + W_e e)`` with the embedding ``e = SiLU(t_emb + y_emb)`` injected
into every block; the output is ``W_out SiLU(LN(h))``, zero-initialised so that the initial
output is exactly 0 (the convention of ADM/EDM output layers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError
from .layers import (
    Backbone,
    LabelEmbedding,
    SkippableBlocks,
    TimestepEmbedding,
    optional_labels,
    time_batch,
)
from .routing import TaskRouter, router_options


class ResidualBlock(nn.Module):
    """Pre-norm residual block with the embedding added before the nonlinearity."""

    def __init__(self, width: int, emb_dim: int, layer_norm: bool, dropout: float):
        super().__init__()
        self.norm: nn.Module = nn.LayerNorm(width) if layer_norm else nn.Identity()
        self.fc1 = nn.Linear(width, width)
        self.emb = nn.Linear(emb_dim, width)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: Tensor, emb: Tensor, mask: Tensor | None = None) -> Tensor:
        # DTR: the update sees the task's channels only, h + Delta(m * h).
        z = F.silu(self.fc1(self.norm(h if mask is None else mask * h)) + self.emb(emb))
        return h + self.fc2(self.dropout(z))


class MLP(Backbone, SkippableBlocks):
    """MLP backbone ``net(x, t, class_labels=None, generator=None) -> tensor shaped like x``.

    Args:
        dim: number of features of one sample; x may be (B, dim) or (B, *shape) with
            prod(shape) = dim (flattened and reshaped back).
        width: hidden width.
        depth: number of residual blocks.
        layer_norm: pre-normalise each block with LayerNorm.
        dropout: dropout inside the blocks.
        emb_dim: time/class embedding size (default: width).
        num_classes, class_dropout_prob: optional class conditioning (see LabelEmbedding).
        time_scale: input scale of the sinusoidal time embedding (see TimestepEmbedding).
        router: denoising task routing of the blocks' hidden channels (``models.routing``):
            None, "dtr" (sharing 0.8, alpha 4, 1000 tasks), "dtr-random" or a dict of
            TaskRouter options. Adds no parameters.

    Residual blocks listed in ``skip_blocks`` (default none) run as the identity
    (:class:`~interpolant.models.layers.SkippableBlocks`); every block is skippable.
    """

    registry_name = "mlp"

    def __init__(
        self,
        dim: int,
        width: int = 256,
        depth: int = 3,
        layer_norm: bool = True,
        dropout: float = 0.0,
        emb_dim: int | None = None,
        num_classes: int = 0,
        class_dropout_prob: float = 0.1,
        time_scale: float = 1000.0,
        router: str | dict | None = None,
    ):
        super().__init__()
        self._save_config(
            dim=dim,
            width=width,
            depth=depth,
            layer_norm=layer_norm,
            dropout=dropout,
            emb_dim=emb_dim,
            num_classes=num_classes,
            class_dropout_prob=class_dropout_prob,
            time_scale=time_scale,
            **({"router": router} if router is not None else {}),
        )
        if dim < 1 or width < 1 or depth < 0:
            raise UserError(f"need dim >= 1, width >= 1, depth >= 0; got {dim}, {width}, {depth}")
        self.dim = dim
        emb_dim = emb_dim or width
        self.time_embed = TimestepEmbedding(
            emb_dim, freq_dim=2 * max(1, emb_dim // 2), time_scale=time_scale
        )
        self.label_embed = (
            LabelEmbedding(num_classes, emb_dim, class_dropout_prob) if num_classes else None
        )
        self.fc_in = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(
            ResidualBlock(width, emb_dim, layer_norm, dropout) for _ in range(depth)
        )
        options = router_options(router)
        self.router = None if options is None else TaskRouter(width, **options)
        self.norm_out: nn.Module = nn.LayerNorm(width) if layer_norm else nn.Identity()
        self.fc_out = nn.Linear(width, dim)
        nn.init.zeros_(self.fc_out.weight)
        nn.init.zeros_(self.fc_out.bias)

    @property
    def skippable_blocks(self) -> tuple[int, ...]:
        return tuple(range(len(self.blocks)))

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        class_labels: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.dim:
            raise UserError(
                f"MLP expects x of shape (B, {self.dim}) or (B, *shape) with {self.dim} "
                f"features, got {tuple(x.shape)}"
            )
        t = time_batch(t, x)
        emb = self.time_embed(t)
        y = optional_labels(self.label_embed, class_labels, x.shape[0], x.device, generator)
        emb = F.silu(emb if y is None else emb + y)
        h = self.fc_in(x.reshape(x.shape[0], self.dim))
        mask = None if self.router is None else self.router(t).to(h.dtype)
        for i, block in enumerate(self.blocks):
            if i not in self._skip_blocks:
                h = block(h, emb) if mask is None else block(h, emb, mask)
        return self.fc_out(F.silu(self.norm_out(h))).reshape(x.shape)
