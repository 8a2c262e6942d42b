"""Building blocks shared by the backbones: time and label embeddings, 2-D positional
embeddings, adaLN modulation, multi-head attention through ``scaled_dot_product_attention``,
patchify/unpatchify, and the input checks every backbone runs.

Every backbone is called as ``net(x, t, **cond)`` with ``t`` a float tensor of shape (B,) (or a
0-dim tensor, broadcast to the batch). It may be the path time ``t in [0, 1]`` or EDM's
``c_noise = ln(sigma) / 4`` from :class:`interpolant.Preconditioned`; see
:class:`TimestepEmbedding` for why one embedding serves both.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..errors import UserError, WrongTypeError


def _checks_enabled(x: Tensor) -> bool:
    # Value checks read the data on the host: skip them while tracing (no graph breaks), on meta
    # tensors and on accelerators (a host sync per forward stalls the queue and breaks CUDA-graph
    # capture); inputs are checked on the CPU, where they are usually built.
    return not torch.compiler.is_compiling() and x.device.type == "cpu"


def _jsonable(value: Any) -> Any:
    # Tuples become lists so that a config survives json.dumps / json.loads unchanged.
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise WrongTypeError(f"config value {value!r} of type {type(value).__name__} is not JSON-able")


class Backbone(nn.Module):
    """Base of every backbone: records its constructor kwargs as a JSON-serialisable config.

    ``build_model(**net.model_config())`` rebuilds the same architecture; a checkpoint stores
    this dict next to its safetensors weights (never pickled code).
    """

    registry_name: ClassVar[str] = ""
    # Backbones whose forward runs its blocks through run_block() set this.
    supports_gradient_checkpointing: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.config: dict[str, Any] = {}
        self.gradient_checkpointing = False

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of keeping them
        (Chen et al. 2016): activation memory falls from one set per block to one block's, for
        about one extra forward pass. A training-time setting, not part of the config: the
        weights and the outputs are the same (dropout masks are replayed: the RNG state is
        saved), so checkpoints load either way."""
        if enabled and not self.supports_gradient_checkpointing:
            raise UserError(
                f"{type(self).__name__} does not support gradient checkpointing "
                "(DiT, MMDiT and UNet do); it is meant for deep networks whose activations "
                "dominate memory"
            )
        self.gradient_checkpointing = bool(enabled)

    def run_block(self, block: Callable[..., Any], *args: Any) -> Any:
        """``block(*args)``, checkpointed while training with gradient checkpointing on."""
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def _save_config(self, **kwargs: Any) -> None:
        self.config = {k: _jsonable(v) for k, v in kwargs.items()}

    def model_config(self) -> dict[str, Any]:
        """``{"name": <registry name>, **constructor kwargs}``; JSON-serialisable."""
        return {"name": self.registry_name, **self.config}


class SkippableBlocks:
    """Training-free block skipping (AutoDiffusion, Li et al. 2023, sec. 3.3): blocks whose
    indices are in ``skip_blocks`` run as the identity. Default: nothing skipped, so the forward
    pass is unchanged. ``skippable_blocks`` lists the indices whose input and output shapes
    match (the only blocks that can be replaced by the identity); setting ``skip_blocks`` to any
    other index raises. AutoDiffusion varies the set per sampling step: see
    :func:`interpolant.scaling.autodiffusion.skipping`.
    """

    _skip_blocks: frozenset[int] = frozenset()

    @property
    def skippable_blocks(self) -> tuple[int, ...]:
        """Indices of the blocks that may be skipped."""
        raise AttributeError(f"{type(self).__name__} defines no skippable blocks")

    @property
    def skip_blocks(self) -> frozenset[int]:
        """The indices of the blocks currently run as the identity (empty by default)."""
        return self._skip_blocks

    @skip_blocks.setter
    def skip_blocks(self, blocks: Any) -> None:
        chosen = frozenset(int(b) for b in blocks)
        bad = sorted(chosen - set(self.skippable_blocks))
        if bad:
            raise UserError(
                f"skip_blocks {bad} are not skippable blocks of {type(self).__name__}; "
                f"choose from {list(self.skippable_blocks)}"
            )
        object.__setattr__(self, "_skip_blocks", chosen)


def image_size_hw(image_size: int | tuple[int, int] | list[int], argument: str) -> tuple[int, int]:
    """Normalise an image size given as ``s`` or ``(h, w)``."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise UserError(f"{argument} must be a positive int or (height, width), got {image_size}")
    return int(size[0]), int(size[1])


def check_input(x: Tensor, expected: tuple[int, ...], model: str) -> None:
    """Raise a clear error when ``x`` is not (B, *expected)."""
    if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        raise UserError(
            f"{model} expects x of shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
        )


def time_batch(t: Tensor | float, x: Tensor) -> Tensor:
    """The time input as shape (B,): a 0-dim tensor or float is broadcast to the batch."""
    t = torch.as_tensor(t, device=x.device)
    if t.ndim == 0:
        return t.expand(x.shape[0])
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise UserError(f"t must have shape ({x.shape[0]},) to match x, got {tuple(t.shape)}")
    return t


class TimestepEmbedding(nn.Module):
    """Sinusoidal embedding of a scalar time input followed by a two-layer SiLU MLP.

    ``emb(t) = [cos(s t f_k), sin(s t f_k)]_k`` with ``f_k = max_period^(-k / half)``
    (Vaswani et al. 2017; DDPM/DiT), then ``Linear -> SiLU -> Linear``. The input scale
    ``s = time_scale = 1000`` makes both conventions work: t in [0, 1] spans 1000 rad on the
    fastest frequency and 0.1 rad on the slowest (this is DDPM's integer-step embedding), and EDM's
    ``c_noise = ln(sigma) / 4 in [-1.55, 1.1]`` for sigma in [0.002, 80] spans ~2650 rad and
    ~0.26 rad; both are resolved at coarse and fine scales.
    """

    def __init__(
        self,
        dim: int,
        freq_dim: int = 256,
        time_scale: float = 1000.0,
        max_period: float = 10000.0,
    ):
        super().__init__()
        if freq_dim % 2:
            raise UserError(f"freq_dim must be even, got {freq_dim}")
        self.time_scale = float(time_scale)
        half = freq_dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.freqs: Tensor
        self.register_buffer("freqs", freqs, persistent=False)
        self.fc1 = nn.Linear(freq_dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def sinusoidal(self, t: Tensor) -> Tensor:
        """The raw (B, freq_dim) features, computed in float32 whatever the model dtype."""
        args = (self.time_scale * t.to(torch.float32))[:, None] * self.freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: Tensor) -> Tensor:
        return self.fc2(F.silu(self.fc1(self.sinusoidal(t).to(self.fc1.weight.dtype))))


def drop_labels(
    labels: Tensor, null_index: int, prob: float, generator: torch.Generator | None = None
) -> Tensor:
    """Replace each label by ``null_index`` with probability ``prob`` (CFG label dropout).

    Under ``torch.compile(fullgraph=True)`` a ``torch.Generator`` argument cannot be traced:
    either train with the global RNG (generator=None), or drop labels with this function before
    calling the compiled network and build it with ``class_dropout_prob=0``.
    """
    # rand_like, not rand(labels.shape): a symbolic batch size (a recompile of a compiled
    # network for a second batch size) cannot be passed as a size list. Same draws as rand.
    if generator is None:
        u = torch.rand_like(labels, dtype=torch.float32)
    else:
        u = torch.rand_like(labels, dtype=torch.float32, generator=generator)
    return torch.where(u < prob, torch.full_like(labels, null_index), labels)


class LabelEmbedding(nn.Module):
    """Class embedding with a "null" class for classifier-free guidance (Ho & Salimans 2021).

    The table has ``num_classes + 1`` rows; index ``num_classes`` is the null (unconditional)
    class. In training mode each label is replaced by the null class with probability
    ``dropout_prob``, drawn from ``generator`` (or torch's global RNG). ``labels=None`` gives the
    null class for every sample, so ``net(x, t)`` is the unconditional model.
    """

    def __init__(self, num_classes: int, dim: int, dropout_prob: float = 0.0):
        super().__init__()
        if num_classes < 1:
            raise UserError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= dropout_prob <= 1.0:
            raise UserError(f"dropout_prob must be in [0, 1], got {dropout_prob}")
        self.num_classes = int(num_classes)
        self.dropout_prob = float(dropout_prob)
        self.table = nn.Embedding(num_classes + 1, dim)

    @property
    def null_index(self) -> int:
        return self.num_classes

    def drop(self, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Replace each label by the null class with probability ``dropout_prob``."""
        return drop_labels(labels, self.null_index, self.dropout_prob, generator)

    def forward(
        self,
        labels: Tensor | None,
        batch_size: int,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        if labels is None:
            labels = torch.full((batch_size,), self.null_index, dtype=torch.long, device=device)
        else:
            if labels.shape != (batch_size,) or labels.is_floating_point():
                raise UserError(
                    f"class_labels must be an integer tensor of shape ({batch_size},), "
                    f"got {labels.dtype} of shape {tuple(labels.shape)}"
                )
            if _checks_enabled(labels) and bool(((labels < 0) | (labels > self.num_classes)).any()):
                raise UserError(
                    f"class_labels must lie in [0, {self.num_classes - 1}] (or {self.null_index} "
                    f"for the null class), got values in [{int(labels.min())}, {int(labels.max())}]"
                )
            if self.training and self.dropout_prob > 0:
                labels = self.drop(labels, generator)
        return self.table(labels)


def init_embeddings(time_embed: TimestepEmbedding, label_embed: LabelEmbedding | None) -> None:
    """DiT's N(0, 0.02) initialisation of the time MLP and the class table."""
    nn.init.normal_(time_embed.fc1.weight, std=0.02)
    nn.init.normal_(time_embed.fc2.weight, std=0.02)
    if label_embed is not None:
        nn.init.normal_(label_embed.table.weight, std=0.02)


def optional_labels(
    embedding: LabelEmbedding | None,
    labels: Tensor | None,
    batch_size: int,
    device: torch.device,
    generator: torch.Generator | None,
) -> Tensor | None:
    """The class embedding, or None for an unconditional model (which then refuses labels)."""
    if embedding is None:
        if labels is not None:
            raise UserError("class_labels given, but the model was built with num_classes=0")
        return None
    return embedding(labels, batch_size, device, generator)


def sincos_pos_embed_2d(dim: int, height: int, width: int) -> Tensor:
    """Fixed 2-D sine-cosine positional embedding (MAE/DiT), shape (height * width, dim).

    Half of the channels encode the row, half the column, each with the 1-D embedding
    ``[sin(p w_k), cos(p w_k)]``, ``w_k = 10000^(-k / (dim / 4))``.
    """
    if dim % 4:
        raise UserError(f"hidden size must be divisible by 4 for 2-D sin-cos, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    rows, cols = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )

    def embed_1d(pos: Tensor) -> Tensor:
        args = pos.reshape(-1, 1) * omega[None]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=1)

    # DiT's order: the first half from the column (w) grid, the second from the row (h) grid.
    return torch.cat([embed_1d(cols), embed_1d(rows)], dim=1).to(torch.float32)


def xavier_linears(module: nn.Module) -> None:
    """DiT's initialisation of every nn.Linear inside ``module``: xavier-uniform, zero bias."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


def zero_linear(layer: nn.Linear) -> None:
    """Zero a linear layer (adaLN-Zero modulation and final layers)."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN modulation of tokens (B, N, D) by per-sample (B, D) shift and scale."""
    return x * (1 + scale[:, None]) + shift[:, None]


def norm_modulate(x: Tensor, shift: Tensor, scale: Tensor, eps: float = 1e-6) -> Tensor:
    """``modulate(LayerNorm(x), shift, scale)`` (no affine) with the modulation as one fused
    multiply-add kernel (``addcmul``) instead of three elementwise ones."""
    normed = F.layer_norm(x, x.shape[-1:], eps=eps)
    return torch.addcmul(shift[:, None], normed, 1 + scale[:, None])


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, N, D) -> (B, heads, N, D / heads)."""
    b, n, d = x.shape
    return x.view(b, n, heads, d // heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, heads, N, d) -> (B, N, heads * d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class QKV(nn.Module):
    """Fused q, k, v projection of one token stream, with optional QK RMS normalisation.

    QK-norm (Dehghani et al. 2023; SD3 sec. 5.3.2) applies a learnable RMSNorm over each head's
    channels of q and k, which bounds the attention logits and keeps bf16 training stable.
    """

    def __init__(self, dim: int, heads: int, qk_norm: bool = False):
        super().__init__()
        if dim % heads:
            raise UserError(f"hidden size {dim} must be divisible by num_heads={heads}")
        self.heads = heads
        self.proj = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.RMSNorm(dim // heads, eps=1e-6) if qk_norm else None
        self.k_norm = nn.RMSNorm(dim // heads, eps=1e-6) if qk_norm else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = (split_heads(z, self.heads) for z in self.proj(x).chunk(3, dim=-1))
        if self.q_norm is not None and self.k_norm is not None:
            # Normalise in float32 (bf16 autocast would otherwise feed low-precision inputs).
            q = self.q_norm(q.float()).to(v.dtype)
            k = self.k_norm(k.float()).to(v.dtype)
        return q, k, v


def mlp(dim: int, ratio: float = 4.0) -> nn.Sequential:
    """Transformer MLP: Linear -> GELU(tanh) -> Linear (DiT, SD3)."""
    hidden = int(dim * ratio)
    return nn.Sequential(
        nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)
    )


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches of (B, C, H, W) -> tokens (B, H W / p^2, D) by strided conv."""

    def __init__(self, in_channels: int, dim: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        # Initialise like nn.Linear on the flattened patch (DiT).
        nn.init.xavier_uniform_(self.proj.weight.view(dim, -1))
        if self.proj.bias is not None:
            nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def unpatchify(tokens: Tensor, channels: int, patch_size: int, height: int, width: int) -> Tensor:
    """Tokens (B, (H/p)(W/p), p p C) -> image (B, C, H, W); inverse of patch flattening."""
    b, p = tokens.shape[0], patch_size
    h, w = height // p, width // p
    x = tokens.reshape(b, h, w, p, p, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(b, channels, h * p, w * p)


def check_patch_size(height: int, width: int, patch_size: int) -> None:
    """A patch size must divide both image sides."""
    if patch_size < 1 or height % patch_size or width % patch_size:
        raise UserError(f"patch_size={patch_size} must divide the image size ({height}, {width})")


class FinalLayer(nn.Module):
    """DiT final layer: LayerNorm, adaLN shift/scale from c, Linear to p p C; zero-initialised."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, out_dim)
        self.ada = nn.Linear(dim, 2 * dim)
        zero_linear(self.linear)
        zero_linear(self.ada)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.ada(F.silu(c)).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Multi-head attention (B, heads, N, d) through the fused SDPA kernel; returns (B, N, D)."""
    return merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
