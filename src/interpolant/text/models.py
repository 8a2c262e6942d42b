"""Transformers over token ids: a bidirectional denoiser for discrete diffusion and a causal
language model (the autoregressive baseline and EDLM's energy, seed paper 19).

Both are pre-LayerNorm transformers with rotary position embeddings (RoPE, Su et al. 2021) and
``torch.nn.functional.scaled_dot_product_attention``. Rotary positions make attention scores
depend on positions only through their difference, so the network has no length-specific
position table.

* :class:`DiffusionTransformer`: ``net(tokens (B, L) in [0, V], t (B,)) -> logits (B, L, V)``.
  It embeds V + 1 ids (id V is the mask, ``text.base``) and outputs logits over the V clean
  tokens only, so the mask gets zero probability (half of MDLM's SUBS parameterisation; the
  other half, carrying visible tokens over, is :func:`interpolant.text.losses.subs_log_probs`).
  Masked diffusion is time-agnostic (seed 7): by default ``t`` is ignored. Uniform-noise
  diffusion needs the time, so ``time_conditioning=True`` adds an embedding of ``t``.
  ``max_length=N`` adds a learned absolute position embedding (rows of at most N tokens): with
  rotary positions alone an all-mask canvas is the same input at every position (every value
  vector is the mask's, so attention returns it whatever the scores), and the first prediction
  is the unigram law everywhere; fixed-layout data (JSON records, S3) need to know where they are.
* :class:`CausalTransformer`: ``net.log_prob(tokens) -> (B,)`` the exact log-likelihood
  ``sum_i log p(x_i | x_<i)``; the first token is predicted from a begin-of-sequence id V.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError
from .base import check_tokens


def rotary_tables(
    length: int, head_dim: int, base: float = 10000.0, device: Any = None
) -> tuple[Tensor, Tensor]:
    """cos and sin tables (length, head_dim / 2) of RoPE angles ``pos * base^(-2k / head_dim)``."""
    if head_dim % 2:
        raise UserError(f"rotary embeddings need an even head dimension, got {head_dim}")
    inv_freq = base ** (
        -torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim
    )
    angles = torch.arange(length, dtype=torch.float32, device=device)[:, None] * inv_freq[None]
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate consecutive pairs (x_{2k}, x_{2k+1}) of the last dim of x (B, H, L, D) by the
    position's angles, so <R_m q, R_n k> depends on m - n only."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    c, s = cos.to(x.dtype), sin.to(x.dtype)
    return torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2)


class Block(nn.Module):
    """Pre-LN attention + MLP block with rotary self-attention."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, h: Tensor, cos: Tensor, sin: Tensor, causal: bool) -> Tensor:
        b, length, dim = h.shape
        qkv = self.qkv(self.norm1(h)).reshape(b, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, L, D)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        p = self.dropout if self.training else 0.0
        att = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)
        h = h + self.proj(att.transpose(1, 2).reshape(b, length, dim))
        return h + self.mlp(self.norm2(h))


class TextTransformer(nn.Module):
    """Shared trunk: embedding of ``n_ids`` ids, ``depth`` rotary blocks, LN, head over V."""

    causal = False
    kind = ""

    def __init__(
        self,
        vocab_size: int,
        n_ids: int,
        dim: int = 128,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_sizes(vocab_size, dim, heads)
        self.vocab_size = vocab_size
        self.heads = heads
        self._config: dict[str, Any] = {
            "vocab_size": vocab_size,
            "dim": dim,
            "depth": depth,
            "heads": heads,
            "mlp_ratio": mlp_ratio,
            "dropout": dropout,
        }
        self.embed = nn.Embedding(n_ids, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)
        self.apply(_init)

    def trunk(self, h: Tensor) -> Tensor:
        """Blocks and the output head on embeddings h (B, L, dim) -> logits (B, L, V)."""
        return self.head(run_blocks(self.blocks, self.norm, h, self.heads, self.causal))

    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments plus the class name under ``kind``."""
        return {"kind": self.kind, **self._config}


class DiffusionTransformer(TextTransformer):
    """Bidirectional denoiser: tokens (B, L) in [0, V] (V = mask), t (B,) -> logits (B, L, V).

    Args:
        vocab_size: V clean tokens (the network embeds V + 1 ids).
        time_conditioning: add a learned embedding of t (needed for uniform-noise diffusion;
            masked diffusion is time-agnostic, seed 7).
        max_length: if given, add a learned absolute position embedding for rows of at most
            this many tokens (default: rotary positions only, as before).
        neighbours: if > 0, a convolution of width 2 neighbours + 1 over the embeddings is
            added to each position's input, so a masked position sees its neighbours' tokens
            without first learning sharp relative attention (issue 21: this removed most of
            the plateau on a second-order chain; docs/howto/text-diffusion.md).
    """

    kind = "diffusion"

    def __init__(
        self,
        vocab_size: int,
        *,
        time_conditioning: bool = False,
        max_length: int | None = None,
        neighbours: int = 0,
        **kwargs: Any,
    ):
        super().__init__(vocab_size, vocab_size + 1, **kwargs)
        self._config["time_conditioning"] = bool(time_conditioning)
        dim = int(self._config["dim"])
        self.local: nn.Conv1d | None = None
        if neighbours:
            if not isinstance(neighbours, int) or neighbours < 0:
                raise UserError(f"neighbours must be an int >= 0, got {neighbours!r}")
            self._config["neighbours"] = neighbours
            self.local = nn.Conv1d(dim, dim, 2 * neighbours + 1, padding=neighbours)
            nn.init.normal_(self.local.weight, std=0.02)
            if self.local.bias is not None:
                nn.init.zeros_(self.local.bias)
        self.position: nn.Embedding | None = None
        if max_length is not None:
            if not isinstance(max_length, int) or max_length < 1:
                raise UserError(f"max_length must be a positive int or None, got {max_length!r}")
            self._config["max_length"] = max_length
            self.position = nn.Embedding(max_length, dim)
            _init(self.position)
        self.time_mlp = time_embedding(dim) if time_conditioning else None

    def forward(self, tokens: Tensor, t: Tensor | None = None) -> Tensor:
        check_tokens(tokens, self.vocab_size)
        h = self.embed(tokens)
        if self.position is not None:
            if tokens.shape[1] > self.position.num_embeddings:
                raise UserError(
                    f"tokens have length {tokens.shape[1]} > max_length "
                    f"{self.position.num_embeddings} of this denoiser"
                )
            h = h + self.position.weight[: tokens.shape[1]]
        if self.local is not None:  # each position sees its neighbours' tokens directly
            h = h + self.local(h.transpose(1, 2)).transpose(1, 2)
        return self.trunk(add_time(h, self.time_mlp, t, "denoiser"))


class CausalTransformer(TextTransformer):
    """Autoregressive language model over V tokens: ``forward(tokens)`` gives the logits of
    ``p(x_i | x_<i)`` at every position i (B, L, V); id V is the begin-of-sequence input."""

    kind = "causal"
    causal = True

    def __init__(self, vocab_size: int, **kwargs: Any):
        super().__init__(vocab_size, vocab_size + 1, **kwargs)

    def forward(self, tokens: Tensor, t: Tensor | None = None) -> Tensor:
        check_tokens(tokens, self.vocab_size, allow_mask=False)
        bos = torch.full_like(tokens[:, :1], self.vocab_size)
        return self.trunk(self.embed(torch.cat([bos, tokens[:, :-1]], 1)))

    def log_prob(self, tokens: Tensor) -> Tensor:
        """Exact log p(x) = sum_i log p(x_i | x_<i), (B,) in float32."""
        logp = torch.log_softmax(self(tokens).float(), -1)
        return logp.gather(-1, tokens[..., None])[..., 0].sum(-1)


def check_sizes(vocab_size: int, dim: int, heads: int) -> None:
    """Raise a ValueError unless V >= 2 and the rotary head size dim / heads is an even int."""
    if not isinstance(vocab_size, int) or vocab_size < 2:
        raise UserError(f"vocab_size must be an int >= 2, got {vocab_size!r}")
    if dim % heads or (dim // heads) % 2:
        raise UserError(f"dim / heads must be an even integer, got dim={dim}, heads={heads}")


def run_blocks(
    blocks: nn.ModuleList, norm: nn.Module, h: Tensor, heads: int, causal: bool
) -> Tensor:
    """Rotary ``blocks`` then ``norm`` on embeddings h (B, L, dim) -> features (B, L, dim)."""
    cos, sin = rotary_tables(h.shape[1], h.shape[-1] // heads, device=h.device)
    for block in blocks:
        h = block(h, cos, sin, causal)
    return norm(h)


def time_embedding(dim: int) -> nn.Sequential:
    """The MLP applied to sinusoidal features of t (:func:`add_time`)."""
    return nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))


def add_time(h: Tensor, time_mlp: nn.Module | None, t: Tensor | None, owner: str) -> Tensor:
    """h (B, L, dim) plus the embedding of t (B,) at every position; h itself without a
    ``time_mlp``. ``owner`` names the network in the error for a missing t."""
    if time_mlp is None:
        return h
    if t is None:
        raise UserError(f"this {owner} is time-conditioned: pass t (B,)")
    t = torch.as_tensor(t, dtype=h.dtype, device=h.device).reshape(-1)
    return h + time_mlp(_sinusoidal(t.expand(h.shape[0]), h.shape[-1]))[:, None]


def _sinusoidal(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of t in [0, 1] (scaled by 1000 like DDPM's timestep embedding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = 1000.0 * t[:, None].float() * freqs[None]
    return torch.cat([args.cos(), args.sin()], -1).to(t.dtype)


def _init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


TEXT_MODELS: dict[str, type[TextTransformer]] = {
    "diffusion": DiffusionTransformer,
    "causal": CausalTransformer,
}


def build_text_model(config: dict[str, Any]) -> TextTransformer:
    """Rebuild a model from its :meth:`config` (``{"kind": "diffusion" | "causal", ...}``)."""
    spec = dict(config)
    kind = spec.pop("kind", None)
    if kind not in TEXT_MODELS:
        raise UserError(f"model kind must be one of {sorted(TEXT_MODELS)}, got {kind!r}")
    vocab_size = spec.pop("vocab_size")
    return TEXT_MODELS[kind](vocab_size, **spec)
