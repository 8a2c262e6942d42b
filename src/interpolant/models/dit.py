"""Diffusion Transformer, DiT (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers").

Patchify (B, C, H, W) into (H/p)(W/p) tokens, add a 2-D positional embedding, run ``depth``
transformer blocks conditioned by adaLN-Zero on ``c = t_emb + y_emb``, apply the adaLN final
layer and unpatchify. Following the paper (sec. 3.2), every adaLN modulation and the final linear
layer start at zero, so each block starts as the identity and the initial output is exactly 0.
We never learn variances, so the output has the input's channels.

Sizes (Table 1): S (12, 384, 6), B (12, 768, 12), L (24, 1024, 16), XL (28, 1152, 16) as
(depth, hidden, heads), each with patch size 2, 4 or 8: registry names ``dit-s/2`` ... ``dit-xl/8``.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError
from .layers import (
    QKV,
    Backbone,
    FinalLayer,
    LabelEmbedding,
    PatchEmbed,
    SkippableBlocks,
    TimestepEmbedding,
    attention,
    check_input,
    check_patch_size,
    image_size_hw,
    init_embeddings,
    mlp,
    modulate,
    norm_modulate,
    optional_labels,
    sincos_pos_embed_2d,
    time_batch,
    unpatchify,
    xavier_linears,
    zero_linear,
)
from .routing import TaskRouter, router_options

DIT_SIZES = {"s": (12, 384, 6), "b": (12, 768, 12), "l": (24, 1024, 16), "xl": (28, 1152, 16)}
PATCH_SIZES = (2, 4, 8)


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero (DiT fig. 3): gated residual attention and MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qk_norm: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = QKV(dim, heads, qk_norm)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(dim, mlp_ratio)
        self.ada = nn.Linear(dim, 6 * dim)
        # DiT's initialisation: xavier-uniform linears, then adaLN-Zero.
        xavier_linears(self)
        zero_linear(self.ada)

    def forward(
        self, x: Tensor, c: Tensor, mask: Tensor | None = None, ada: Tensor | None = None
    ) -> Tensor:
        """``ada``: this block's precomputed ``self.ada(silu(c))`` (the fused path, which also
        fuses norm + modulate and the gated residuals into multiply-add kernels)."""
        fused = ada is not None
        if ada is None:
            ada = self.ada(F.silu(c))
        shift1, scale1, gate1, shift2, scale2, gate2 = ada.chunk(6, dim=-1)
        # DTR routing (mask (B, C)): the block runs on m * x and the rest passes through.
        inp = x if mask is None else mask[:, None] * x
        if fused:
            h = attention(*self.qkv(norm_modulate(inp, shift1, scale1)))
            h = torch.addcmul(inp, gate1[:, None], self.out(h))
            h = torch.addcmul(h, gate2[:, None], self.mlp(norm_modulate(h, shift2, scale2)))
        else:
            # Attention branch, gated by gate1 (zero at init: the block is the identity).
            h = attention(*self.qkv(modulate(self.norm1(inp), shift1, scale1)))
            h = inp + gate1[:, None] * self.out(h)
            # MLP branch.
            h = h + gate2[:, None] * self.mlp(modulate(self.norm2(h), shift2, scale2))
        return h if mask is None else h + (1 - mask[:, None]) * x


class DiT(Backbone, SkippableBlocks):
    """DiT backbone ``net(x, t, class_labels=None, generator=None) -> tensor shaped like x``.

    Args:
        image_size: side ``s`` or ``(h, w)`` of the input (latent) image.
        in_channels: channels of x (and of the output).
        patch_size: p; must divide both sides.
        depth, hidden_size, num_heads: transformer size.
        mlp_ratio: MLP width / hidden size (4 in the paper).
        num_classes: 0 for an unconditional model; else labels in [0, num_classes) and the null
            class ``num_classes`` (see :class:`LabelEmbedding`).
        class_dropout_prob: label dropout for classifier-free guidance (0.1 in the paper).
        pos_embed: "sincos" (fixed, as in the paper) or "learned".
        qk_norm: RMS-normalise q and k per head (not in the paper; stabilises bf16).
        time_scale: input scale of the sinusoidal time embedding (see TimestepEmbedding).
        router: denoising task routing of every block's channels (``models.routing``): None,
            "dtr" (sharing 0.8, alpha 4, 1000 tasks, as DTR's DiT), "dtr-random" or a dict of
            TaskRouter options; the final layer is not routed. Adds no parameters.
        fused: compute every block's (and the final layer's) adaLN modulation with one matmul
            on the concatenated weights (``c`` is the same for all of them: one GEMM instead of
            depth + 1 small ones), and fuse norm + modulate and the gated residuals into
            multiply-add kernels. Same parameters and state dict as unfused (checkpoints load
            either way); outputs agree to float rounding.

    Gradient checkpointing (``set_gradient_checkpointing()``) recomputes each block in the
    backward pass.

    Transformer blocks listed in ``skip_blocks`` (default none) run as the identity
    (:class:`~interpolant.models.layers.SkippableBlocks`); every block is skippable.
    """

    registry_name = "dit"
    supports_gradient_checkpointing = True

    def __init__(
        self,
        image_size: int | tuple[int, int] = 32,
        in_channels: int = 4,
        patch_size: int = 2,
        depth: int = 12,
        hidden_size: int = 768,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        num_classes: int = 0,
        class_dropout_prob: float = 0.1,
        pos_embed: str = "sincos",
        qk_norm: bool = False,
        time_scale: float = 1000.0,
        router: str | dict | None = None,
        fused: bool = False,
    ):
        super().__init__()
        self._save_config(
            image_size=image_size,
            in_channels=in_channels,
            patch_size=patch_size,
            depth=depth,
            hidden_size=hidden_size,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            num_classes=num_classes,
            class_dropout_prob=class_dropout_prob,
            pos_embed=pos_embed,
            qk_norm=qk_norm,
            time_scale=time_scale,
            **({"router": router} if router is not None else {}),
            **({"fused": True} if fused else {}),
        )
        self.fused = bool(fused)
        self.height, self.width = image_size_hw(image_size, "image_size")
        check_patch_size(self.height, self.width, patch_size)
        if in_channels < 1:
            raise UserError(f"in_channels must be >= 1, got {in_channels}")
        if pos_embed not in ("sincos", "learned"):
            raise UserError(f"pos_embed must be 'sincos' or 'learned', got {pos_embed!r}")
        self.in_channels, self.patch_size = in_channels, patch_size
        num_tokens = (self.height // patch_size) * (self.width // patch_size)

        self.patch_embed = PatchEmbed(in_channels, hidden_size, patch_size)
        fixed = sincos_pos_embed_2d(
            hidden_size, self.height // patch_size, self.width // patch_size
        )
        self.pos_embed: Tensor
        if pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.randn(1, num_tokens, hidden_size) * 0.02)
        else:
            self.register_buffer("pos_embed", fixed[None], persistent=False)
        self.time_embed = TimestepEmbedding(hidden_size, time_scale=time_scale)
        self.label_embed = (
            LabelEmbedding(num_classes, hidden_size, class_dropout_prob) if num_classes else None
        )
        self.blocks = nn.ModuleList(
            DiTBlock(hidden_size, num_heads, mlp_ratio, qk_norm) for _ in range(depth)
        )
        options = router_options(router)
        self.router = None if options is None else TaskRouter(hidden_size, **options)
        self.final = FinalLayer(hidden_size, patch_size * patch_size * in_channels)
        init_embeddings(self.time_embed, self.label_embed)

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
        check_input(x, (self.in_channels, self.height, self.width), "DiT")
        t = time_batch(t, x)
        c = self.time_embed(t)
        y = optional_labels(self.label_embed, class_labels, x.shape[0], x.device, generator)
        if y is not None:
            c = c + y
        tokens = self.patch_embed(x) + self.pos_embed
        mask = None if self.router is None else self.router(t).to(tokens.dtype)
        active = [
            cast(DiTBlock, b) for i, b in enumerate(self.blocks) if i not in self._skip_blocks
        ]
        if self.fused:
            mods = self._all_modulations(active, c)
            for block, ada in zip(active, mods[:-1]):
                tokens = self.run_block(block, tokens, c, mask, ada)
            shift, scale = mods[-1].chunk(2, dim=-1)
            out = self.final.linear(norm_modulate(tokens, shift, scale))
        else:
            for block in active:
                tokens = self.run_block(block, tokens, c, mask)
            out = self.final(tokens, c)
        return unpatchify(out, self.in_channels, self.patch_size, self.height, self.width)

    def _all_modulations(self, blocks: list[DiTBlock], c: Tensor) -> tuple[Tensor, ...]:
        """Every block's ``ada(silu(c))`` and the final layer's, from one matmul."""
        layers = [b.ada for b in blocks] + [self.final.ada]
        weight = torch.cat([layer.weight for layer in layers])
        bias = torch.cat([layer.bias for layer in layers])
        return F.linear(F.silu(c), weight, bias).split([layer.out_features for layer in layers], -1)
