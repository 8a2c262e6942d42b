"""Multimodal Diffusion Transformer, MM-DiT (Esser et al. 2024, SD3, sec. 5.1 and fig. 2).

Two token streams, image patches and a context sequence (e.g. text-encoder outputs, given as
``context`` of shape (B, L, context_dim)), each with its own weights (adaLN modulation, q/k/v,
output projection, MLP). Attention is joint: the q, k, v of both streams are concatenated along
the sequence and attended together, so information flows both ways. The modulation vector is
``c = t_emb + pooled_emb`` (SD3's pooled CLIP vector) and/or a class embedding. q and k are
RMS-normalised per head (sec. 5.3.2: needed for stable bf16 training at high resolution). As in
SD3, the last block only reads the context stream (it contributes keys and values but its
output is discarded, so it has no post-attention weights). The image stream is unpatchified.

Initialisation follows DiT (adaLN-Zero, zero final layer), so the initial output is exactly 0.
"""

from __future__ import annotations

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
    TimestepEmbedding,
    attention,
    check_input,
    check_patch_size,
    image_size_hw,
    init_embeddings,
    mlp,
    modulate,
    optional_labels,
    sincos_pos_embed_2d,
    time_batch,
    unpatchify,
    xavier_linears,
    zero_linear,
)

MMDIT_SIZES = {"s": (12, 384, 6), "b": (12, 768, 12)}


class StreamIn(nn.Module):
    """Pre-attention half of one stream: adaLN modulation, LayerNorm, fused q/k/v."""

    def __init__(self, dim: int, heads: int, n_mod: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Linear(dim, n_mod * dim)
        self.qkv = QKV(dim, heads, qk_norm=True)
        self.n_mod = n_mod
        # DiT's initialisation: xavier-uniform linears, then adaLN-Zero.
        xavier_linears(self)
        zero_linear(self.ada)

    def forward(self, x: Tensor, c: Tensor) -> tuple[tuple[Tensor, Tensor, Tensor], list[Tensor]]:
        mods = list(self.ada(F.silu(c)).chunk(self.n_mod, dim=-1))
        return self.qkv(modulate(self.norm(x), mods[0], mods[1])), mods[2:]


class StreamOut(nn.Module):
    """Post-attention half of one stream: gated output projection and gated MLP (adaLN-Zero)."""

    def __init__(self, dim: int, mlp_ratio: float):
        super().__init__()
        self.out = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(dim, mlp_ratio)
        xavier_linears(self)

    def forward(self, x: Tensor, h: Tensor, mods: list[Tensor]) -> Tensor:
        gate1, shift2, scale2, gate2 = mods
        x = x + gate1[:, None] * self.out(h)
        return x + gate2[:, None] * self.mlp(modulate(self.norm(x), shift2, scale2))


class MMDiTBlock(nn.Module):
    """One MM-DiT block (SD3 fig. 2b); ``context_out=False`` for the last block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, context_out: bool = True):
        super().__init__()
        self.image_in = StreamIn(dim, heads, 6)
        self.image_out = StreamOut(dim, mlp_ratio)
        # The last block only needs shift/scale for the context (no gates, no output weights).
        self.context_in = StreamIn(dim, heads, 6 if context_out else 2)
        self.context_out = StreamOut(dim, mlp_ratio) if context_out else None

    def forward(
        self, x: Tensor, ctx: Tensor, c: Tensor, mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        (qx, kx, vx), mods_x = self.image_in(x, c)
        (qc, kc, vc), mods_c = self.context_in(ctx, c)
        # Joint attention over the concatenated sequence [image; context].
        q, k, v = (torch.cat(pair, dim=2) for pair in ((qx, qc), (kx, kc), (vx, vc)))
        h = attention(q, k, v, mask=mask)
        n = x.shape[1]
        x = self.image_out(x, h[:, :n], mods_x)
        if self.context_out is not None:
            ctx = self.context_out(ctx, h[:, n:], mods_c)
        return x, ctx


class MMDiT(Backbone):
    """MM-DiT backbone ``net(x, t, context=None, context_mask=None, pooled=None,
    class_labels=None, generator=None) -> tensor shaped like x``.

    Args:
        image_size, in_channels, patch_size, depth, hidden_size, num_heads, mlp_ratio: as DiT.
        context_dim: channels of the context tokens; projected linearly to ``hidden_size``.
        pooled_dim: size of the pooled conditioning vector (0: none), embedded by a SiLU MLP
            and added to the time embedding.
        num_classes, class_dropout_prob: optional class conditioning (see LabelEmbedding).

    ``context=None`` runs without context tokens (joint attention over the image alone);
    ``context_mask`` (B, L) bool marks the valid context tokens (False = padding, ignored).
    Dropping the context for classifier-free guidance (SD3 replaces it by the encoding of the
    empty prompt) is the data pipeline's choice, since only it knows the encoders.
    """

    registry_name = "mmdit"
    supports_gradient_checkpointing = True

    def __init__(
        self,
        context_dim: int,
        image_size: int | tuple[int, int] = 32,
        in_channels: int = 4,
        patch_size: int = 2,
        depth: int = 12,
        hidden_size: int = 384,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        pooled_dim: int = 0,
        num_classes: int = 0,
        class_dropout_prob: float = 0.1,
        time_scale: float = 1000.0,
    ):
        super().__init__()
        self._save_config(
            context_dim=context_dim,
            image_size=image_size,
            in_channels=in_channels,
            patch_size=patch_size,
            depth=depth,
            hidden_size=hidden_size,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            pooled_dim=pooled_dim,
            num_classes=num_classes,
            class_dropout_prob=class_dropout_prob,
            time_scale=time_scale,
        )
        self.height, self.width = image_size_hw(image_size, "image_size")
        check_patch_size(self.height, self.width, patch_size)
        if context_dim < 1 or in_channels < 1 or depth < 1:
            raise UserError(
                f"context_dim, in_channels and depth must be >= 1, got {context_dim}, "
                f"{in_channels}, {depth}"
            )
        self.in_channels, self.patch_size = in_channels, patch_size
        self.context_dim, self.pooled_dim = context_dim, pooled_dim
        hp, wp = self.height // patch_size, self.width // patch_size

        self.patch_embed = PatchEmbed(in_channels, hidden_size, patch_size)
        self.pos_embed: Tensor
        self.register_buffer("pos_embed", sincos_pos_embed_2d(hidden_size, hp, wp)[None], False)
        self.context_embed = nn.Linear(context_dim, hidden_size)
        self.time_embed = TimestepEmbedding(hidden_size, time_scale=time_scale)
        self.pooled_embed = (
            nn.Sequential(
                nn.Linear(pooled_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
            )
            if pooled_dim
            else None
        )
        self.label_embed = (
            LabelEmbedding(num_classes, hidden_size, class_dropout_prob) if num_classes else None
        )
        self.blocks = nn.ModuleList(
            MMDiTBlock(hidden_size, num_heads, mlp_ratio, context_out=i < depth - 1)
            for i in range(depth)
        )
        self.final = FinalLayer(hidden_size, patch_size * patch_size * in_channels)
        init_embeddings(self.time_embed, self.label_embed)

    def _condition(
        self,
        x: Tensor,
        t: Tensor,
        pooled: Tensor | None,
        class_labels: Tensor | None,
        generator: torch.Generator | None,
    ) -> Tensor:
        # c = t_emb + pooled_emb (+ class embedding).
        c = self.time_embed(time_batch(t, x))
        if pooled is not None:
            if self.pooled_embed is None:
                raise UserError("pooled given, but the model was built with pooled_dim=0")
            if pooled.shape != (x.shape[0], self.pooled_dim):
                raise UserError(
                    f"pooled must have shape ({x.shape[0]}, {self.pooled_dim}), "
                    f"got {tuple(pooled.shape)}"
                )
            c = c + self.pooled_embed(pooled)
        y = optional_labels(self.label_embed, class_labels, x.shape[0], x.device, generator)
        return c if y is None else c + y

    def _context(
        self, x: Tensor, context: Tensor | None, context_mask: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        # Embed the context tokens and turn the padding mask into an SDPA mask over [image; ctx].
        b, n = x.shape[0], (self.height // self.patch_size) * (self.width // self.patch_size)
        if context is None:
            if context_mask is not None:
                raise UserError("context_mask given without context")
            return x.new_zeros(b, 0, self.context_embed.out_features), None
        if context.ndim != 3 or context.shape[0] != b or context.shape[2] != self.context_dim:
            raise UserError(
                f"context must have shape ({b}, L, {self.context_dim}), got {tuple(context.shape)}"
            )
        ctx = self.context_embed(context)
        if context_mask is None:
            return ctx, None
        if context_mask.shape != context.shape[:2] or context_mask.dtype != torch.bool:
            raise UserError(
                f"context_mask must be a bool tensor of shape {tuple(context.shape[:2])}, "
                f"got {context_mask.dtype} of shape {tuple(context_mask.shape)}"
            )
        keep_image = torch.ones(b, n, dtype=torch.bool, device=x.device)
        return ctx, torch.cat([keep_image, context_mask], dim=1)[:, None, None, :]

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        pooled: Tensor | None = None,
        class_labels: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        check_input(x, (self.in_channels, self.height, self.width), "MMDiT")
        c = self._condition(x, t, pooled, class_labels, generator)
        ctx, mask = self._context(x, context, context_mask)
        tokens = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            tokens, ctx = self.run_block(block, tokens, ctx, c, mask)
        out = self.final(tokens, c)
        return unpatchify(out, self.in_channels, self.patch_size, self.height, self.width)
