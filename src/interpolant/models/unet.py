"""A small image UNet in the style of ADM (Dhariwal & Nichol 2021) and DDPM++ (Song et al. 2021).

Encoder: ``num_res_blocks`` residual blocks per resolution, then a strided-conv downsample;
middle: resblock, attention, resblock; decoder: ``num_res_blocks + 1`` resblocks per resolution,
each concatenating one encoder activation (the skip connection), then a nearest-neighbour
upsample + conv. Residual blocks use GroupNorm + SiLU and inject the embedding
``e = SiLU(t_emb + y_emb)`` by scale/shift after the second GroupNorm (ADM's
``use_scale_shift_norm``). Self-attention runs at the resolutions in ``attn_resolutions`` through
``scaled_dot_product_attention``. The last conv of every branch and the output conv start at zero
(ADM's ``zero_module``), so the initial output is exactly 0.

Denoising task routing (``router=``, ``models.routing``; DTR's ADM port): every routed level's
residual branch sees the task's channels of its input only, ``out = skip(x) + Delta(m_t * x)``,
with one mask family per input width (the levels' widths differ across resolutions).
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
from .routing import TaskRouter, router_options


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

    def forward(self, x: Tensor, emb: Tensor, mask: Tensor | None = None) -> Tensor:
        # DTR: the branch sees the task's channels only, skip(x) + Delta(m * x).
        inp = x if mask is None else mask[:, :, None, None] * x
        h = self.conv1(torch.nn.functional.silu(self.norm1(inp)))
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

    def forward(self, x: Tensor, emb: Tensor, mask: Tensor | None = None) -> Tensor:
        x = self.res(x, emb, mask)
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
        router: denoising task routing of the levels' residual branches (``models.routing``):
            None, "dtr", "dtr-random" or a dict of TaskRouter options, plus ``layers``: the
            levels to route by name ("down", "mid", "up" or one level such as "down.0"; see
            :attr:`level_names`), default all. Adds no parameters.

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
        router: str | dict | None = None,
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
            **({"router": router} if router is not None else {}),
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
        self._build_routers(router)

    @property
    def level_names(self) -> tuple[str, ...]:
        """The levels in forward order: "down.i", "mid.i", "up.i" (i counts the group's levels)."""
        names = []
        for group in ("down", "mid", "up"):
            levels = [m for m in getattr(self, group) if isinstance(m, Level)]
            names += [f"{group}.{i}" for i in range(len(levels))]
        return tuple(names)

    def _build_routers(self, router: str | dict | None) -> None:
        """One TaskRouter per input width of the routed levels (``routed``: their names)."""
        spec = dict(router) if isinstance(router, dict) else router
        layers = spec.pop("layers", None) if isinstance(spec, dict) else None
        options = router_options(spec)
        self.routers = nn.ModuleDict()
        self.routed: frozenset[str] = frozenset()
        self._names = self.level_names
        if options is None:
            return
        names = self.level_names
        wanted = ["down", "mid", "up"] if layers is None else layers
        if isinstance(wanted, str) or not all(isinstance(w, str) for w in wanted):
            raise UserError(f"UNet router layers must be a list of level names, got {layers!r}")
        unknown = [w for w in wanted if w not in names and w not in ("down", "mid", "up")]
        if unknown:
            raise UserError(
                f"UNet has no layers {unknown} to route; its layers are the groups "
                f"'down', 'mid', 'up' and the levels {list(names)}"
            )
        self.routed = frozenset(n for n in names if n in wanted or n.split(".")[0] in wanted)
        levels = [m for m in (*self.down, *self.mid, *self.up) if isinstance(m, Level)]
        for name, level in zip(names, levels):
            width = level.res.norm1.num_channels
            if name in self.routed and str(width) not in self.routers:
                self.routers[str(width)] = TaskRouter(width, **options)

    def _masks(self, t: Tensor, dtype: torch.dtype) -> dict[str, Tensor]:
        """Each routed width's (B, C) masks at the times t."""
        return {width: router(t).to(dtype) for width, router in self.routers.items()}

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
        t = time_batch(t, x)
        emb = self.time_embed(t)
        y = optional_labels(self.label_embed, class_labels, x.shape[0], x.device, generator)
        if y is not None:
            emb = emb + y
        h = self.conv_in(x)
        skips = [h]
        skip, level = self._skip_blocks, 0  # level: index of the next Level in forward order
        masks, names = self._masks(t, h.dtype), self._names

        def run(layer: nn.Module, h: Tensor, level: int) -> Tensor:
            if names[level] not in self.routed:
                return self.run_block(layer, h, emb)
            return self.run_block(layer, h, emb, masks[str(h.shape[1])])

        for layer in self.down:
            if not isinstance(layer, Level):
                h = layer(h)
            else:
                h = h if level in skip else run(layer, h, level)
                level += 1
            skips.append(h)
        for layer in self.mid:
            h = h if level in skip else run(layer, h, level)
            level += 1
        for layer in self.up:
            if isinstance(layer, Level):
                h = run(layer, torch.cat([h, skips.pop()], dim=1), level)
                level += 1
            else:
                h = layer(h)
        return self.conv_out(torch.nn.functional.silu(self.norm_out(h)))
