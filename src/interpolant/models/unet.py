"""A small image UNet in the style of ADM (Dhariwal & Nichol 2021) and DDPM++ (Song et al. 2021).

Encoder: ``num_res_blocks`` residual blocks per resolution, then a strided-conv downsample;
middle: resblock, attention, resblock; decoder: ``num_res_blocks + 1`` resblocks per resolution,
each concatenating one encoder activation (the skip connection), then a nearest-neighbour
upsample + conv. Residual blocks use GroupNorm + SiLU and inject the embedding
``e = SiLU(t_emb + y_emb)`` by scale/shift after the second GroupNorm (ADM's
``use_scale_shift_norm``). Self-attention runs at the resolutions in ``attn_resolutions`` through
``scaled_dot_product_attention``. The last conv of every branch and the output conv start at zero
(ADM's ``zero_module``), so the initial output is exactly 0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import UserError
from .layers import (
    Backbone,
    LabelEmbedding,
    SkippableBlocks,
    TimestepEmbedding,
    attention,
    check_input,
    image_size_hw,
    optional_labels,
    time_batch,
)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups of at least 4 channels (EDM's rule), dividing ``channels``."""
    groups = max(1, min(32, channels // 4))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=1e-5)


def zero(module: nn.Conv2d) -> nn.Conv2d:
    """Zero a layer's weights and bias (ADM's zero_module)."""
    nn.init.zeros_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, scale/shift by the embedding, GroupNorm-SiLU-dropout-conv, + skip."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * cout))
        self.norm2 = group_norm(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip: nn.Module = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(torch.nn.functional.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(torch.nn.functional.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Residual multi-head self-attention over the H W positions of a feature map."""

    def __init__(self, channels: int, head_channels: int):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        if channels % self.heads:
            raise UserError(f"{channels} channels do not split into {self.heads} heads")
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        # (B, 3C, H, W) -> three (B, heads, HW, C / heads).
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)
        out = attention(q, k, v).transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj(out)


class Level(nn.Module):
    """A resblock optionally followed by attention; the unit of every UNet stage."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float, attn: int):
        super().__init__()
        self.res = ResBlock(cin, cout, emb_dim, dropout)
        self.attn = AttentionBlock(cout, attn) if attn else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        x = self.res(x, emb)
        return x if self.attn is None else self.attn(x)


class UNet(Backbone, SkippableBlocks):
    """UNet backbone ``net(x, t, class_labels=None, generator=None) -> tensor shaped like x``.

    Args:
        image_size: side ``s`` or ``(h, w)``; both must be divisible by 2^(len(channel_mult) - 1).
        in_channels: channels of x (and of the output).
        model_channels: channels at the first resolution; level i has model_channels * mult[i].
        channel_mult: one multiplier per resolution (each but the last is followed by a
            downsample), e.g. (1, 2) for 8x8 digits, (1, 2, 2, 2) for 32x32, (1, 2, 3, 4) for 64.
        num_res_blocks: resblocks per resolution in the encoder (decoder: one more).
        attn_resolutions: resolutions (the smaller side) where self-attention is applied.
        head_channels: channels per attention head.
        mid_attention: self-attention in the middle block (ADM always has it).
        dropout: dropout inside the resblocks.
        num_classes, class_dropout_prob: optional class conditioning (see LabelEmbedding).
        time_scale: input scale of the sinusoidal time embedding (see TimestepEmbedding).

    Block skipping (:class:`~interpolant.models.layers.SkippableBlocks`): the blocks are the
    resblock(+attention) levels numbered in forward order (encoder, middle, decoder); those with
    equal input and output channels (encoder and middle levels without a channel change) are
    skippable and run as the identity when listed in ``skip_blocks`` (default none). Decoder
    levels consume a skip connection and change the channels, so they always run.
    """

    registry_name = "unet"
    supports_gradient_checkpointing = True

    def __init__(
        self,
        image_size: int | tuple[int, int] = 32,
        in_channels: int = 3,
        model_channels: int = 64,
        channel_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (8,),
        head_channels: int = 32,
        mid_attention: bool = True,
        dropout: float = 0.0,
        num_classes: int = 0,
        class_dropout_prob: float = 0.1,
        time_scale: float = 1000.0,
    ):
        super().__init__()
        self._save_config(
            image_size=image_size,
            in_channels=in_channels,
            model_channels=model_channels,
            channel_mult=channel_mult,
            num_res_blocks=num_res_blocks,
            attn_resolutions=attn_resolutions,
            head_channels=head_channels,
            mid_attention=mid_attention,
            dropout=dropout,
            num_classes=num_classes,
            class_dropout_prob=class_dropout_prob,
            time_scale=time_scale,
        )
        self.height, self.width = image_size_hw(image_size, "image_size")
        self.in_channels = in_channels
        if in_channels < 1 or model_channels < 1 or num_res_blocks < 1 or not channel_mult:
            raise UserError(
                "in_channels, model_channels, num_res_blocks must be >= 1 and channel_mult "
                f"non-empty, got {in_channels}, {model_channels}, {num_res_blocks}, {channel_mult}"
            )
        factor = 2 ** (len(channel_mult) - 1)
        if self.height % factor or self.width % factor:
            raise UserError(
                f"image_size {(self.height, self.width)} must be divisible by {factor} for "
                f"channel_mult={tuple(channel_mult)} ({len(channel_mult) - 1} downsamplings)"
            )
        resolutions = [min(self.height, self.width) // 2**i for i in range(len(channel_mult))]
        unused = set(attn_resolutions) - set(resolutions)
        if unused:
            raise UserError(
                f"attn_resolutions {sorted(unused)} are not among the UNet's resolutions "
                f"{resolutions}"
            )
        emb_dim = 4 * model_channels
        self.time_embed = TimestepEmbedding(emb_dim, freq_dim=model_channels, time_scale=time_scale)
        self.label_embed = (
            LabelEmbedding(num_classes, emb_dim, class_dropout_prob) if num_classes else None
        )

        def attn(res: int) -> int:
            return head_channels if res in attn_resolutions else 0

        # Encoder: remember every activation's channels for the decoder's skips.
        ch = model_channels * channel_mult[0]
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        skips = [ch]
        self.down = nn.ModuleList()
        for i, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                self.down.append(
                    Level(ch, model_channels * mult, emb_dim, dropout, attn(resolutions[i]))
                )
                ch = model_channels * mult
                skips.append(ch)
            if i < len(channel_mult) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid = nn.ModuleList(
            [
                Level(ch, ch, emb_dim, dropout, head_channels if mid_attention else 0),
                Level(ch, ch, emb_dim, dropout, 0),
            ]
        )
        # Decoder: each level consumes one skip; upsample between resolutions.
        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_res_blocks + 1):
                cin = ch + skips.pop()
                ch = model_channels * mult
                self.up.append(Level(cin, ch, emb_dim, dropout, attn(resolutions[i])))
            if i > 0:
                self.up.append(
                    nn.Sequential(
                        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)
                    )
                )
        self.norm_out = group_norm(ch)
        self.conv_out = zero(nn.Conv2d(ch, in_channels, 3, padding=1))

    @property
    def skippable_blocks(self) -> tuple[int, ...]:
        levels = [m for m in (*self.down, *self.mid, *self.up) if isinstance(m, Level)]
        return tuple(i for i, m in enumerate(levels) if isinstance(m.res.skip, nn.Identity))

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        class_labels: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        check_input(x, (self.in_channels, self.height, self.width), "UNet")
        emb = self.time_embed(time_batch(t, x))
        y = optional_labels(self.label_embed, class_labels, x.shape[0], x.device, generator)
        if y is not None:
            emb = emb + y
        h = self.conv_in(x)
        skips = [h]
        skip, level = self._skip_blocks, 0  # level: index of the next Level in forward order
        for layer in self.down:
            if not isinstance(layer, Level):
                h = layer(h)
            else:
                h = h if level in skip else self.run_block(layer, h, emb)
                level += 1
            skips.append(h)
        for layer in self.mid:
            h = h if level in skip else self.run_block(layer, h, emb)
            level += 1
        for layer in self.up:
            if isinstance(layer, Level):
                h = self.run_block(layer, torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.conv_out(torch.nn.functional.silu(self.norm_out(h)))
