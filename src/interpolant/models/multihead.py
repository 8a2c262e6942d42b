"""A shared trunk with one output head per modality (multi-task denoisers, MT-Diffusion).

``MultiHead(trunk, heads)(x, t, **cond)`` runs ``h = trunk(x, t, **cond)`` once and returns
``{name: head(h)}`` for every head: e.g. an eps head shaped like x and a label head of logits
(Chen et al. 2024, "Diffusion Models for Multi-Modal Generative Modeling", Sec. 3.3: one
backbone, modality-specific decoders). :class:`MultiHeadMLP` is the registered, JSON-configured
instance on a residual-MLP trunk (``build_model("multihead-mlp", dim=64, heads={"eps": "x",
"label": 10})``); the per-modality losses are summed by
:class:`~interpolant.losses.multitask.MultiTaskObjective`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError, WrongTypeError
from .layers import Backbone, TimestepEmbedding, time_batch
from .mlp import ResidualBlock

#: A head spec: "x" (an output shaped like the input) or the number of output features.
HeadSpec = str | int


class MultiHead(nn.Module):
    """``trunk(x, t, **cond) -> features`` shared by ``heads[name](features) -> output``.

    Args:
        trunk: any module called as ``trunk(x, t, **cond)``; returns one feature tensor.
        heads: name -> module applied to the trunk's features (at least one).
        like_input: names of heads whose output is reshaped to x's shape (e.g. an eps head).
    """

    def __init__(
        self,
        trunk: nn.Module,
        heads: Mapping[str, nn.Module],
        like_input: tuple[str, ...] = (),
    ):
        super().__init__()
        if not isinstance(trunk, nn.Module):
            raise WrongTypeError(f"trunk must be an nn.Module, got {type(trunk).__name__}")
        if not isinstance(heads, Mapping) or not heads:
            raise UserError("heads must be a non-empty mapping of name -> nn.Module")
        for name, head in heads.items():
            if not isinstance(head, nn.Module):
                raise WrongTypeError(f"head {name!r} must be an nn.Module, got {type(head)}")
        unknown = sorted(set(like_input) - set(heads))
        if unknown:
            raise UserError(f"like_input names {unknown}, not heads ({sorted(heads)})")
        self.trunk = trunk
        self.heads = nn.ModuleDict(dict(heads))
        self.like_input = tuple(like_input)

    @property
    def head_names(self) -> tuple[str, ...]:
        return tuple(self.heads.keys())

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> dict[str, Tensor]:
        h = self.trunk(x, t, **cond)
        out = {name: head(h) for name, head in self.heads.items()}
        for name in self.like_input:
            if out[name].numel() != x.numel():
                raise UserError(
                    f"head {name!r} returned {tuple(out[name].shape)}, which cannot take the "
                    f"input's shape {tuple(x.shape)}"
                )
            out[name] = out[name].reshape(x.shape)
        return out


class MLPTrunk(nn.Module):
    """The residual MLP of :class:`~interpolant.models.mlp.MLP` without its output layer:
    ``x (B, dim or *shape), t (B,) -> features (B, width)`` (time embedding injected into every
    block, final LayerNorm and SiLU)."""

    def __init__(self, dim: int, width: int = 256, depth: int = 3, time_scale: float = 1000.0):
        super().__init__()
        if dim < 1 or width < 1 or depth < 0:
            raise UserError(f"need dim >= 1, width >= 1, depth >= 0; got {dim}, {width}, {depth}")
        self.dim = dim
        self.time_embed = TimestepEmbedding(
            width, freq_dim=2 * max(1, width // 2), time_scale=time_scale
        )
        self.fc_in = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(ResidualBlock(width, width, True, 0.0) for _ in range(depth))
        self.norm_out = nn.LayerNorm(width)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.dim:
            raise UserError(
                f"MLPTrunk expects x with {self.dim} features per sample, got {tuple(x.shape)}"
            )
        emb = F.silu(self.time_embed(time_batch(t, x)))
        h = self.fc_in(x.reshape(x.shape[0], self.dim))
        for block in self.blocks:
            h = block(h, emb)
        return F.silu(self.norm_out(h))


class MultiHeadMLP(Backbone):
    """A registered multi-head backbone: :class:`MLPTrunk` and one linear head per entry of
    ``heads`` (name -> "x" for an output shaped like the input, zero-initialised as the
    library's single-head output layers are, or an int number of features).

    ``net(x, t) -> {name: output}``.
    """

    registry_name = "multihead-mlp"

    def __init__(
        self,
        dim: int,
        heads: Mapping[str, HeadSpec] | None = None,
        width: int = 256,
        depth: int = 3,
        time_scale: float = 1000.0,
    ):
        super().__init__()
        heads = dict(heads) if heads is not None else {"eps": "x"}
        self._save_config(dim=dim, heads=heads, width=width, depth=depth, time_scale=time_scale)
        modules: dict[str, nn.Module] = {}
        for name, spec in heads.items():
            if spec == "x":
                layer = nn.Linear(width, dim)
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
            elif isinstance(spec, int) and not isinstance(spec, bool) and spec >= 1:
                layer = nn.Linear(width, spec)
            else:
                raise UserError(
                    f"head {name!r}: spec must be 'x' (shaped like the input) or a number of "
                    f"features >= 1, got {spec!r}"
                )
            modules[name] = layer
        like = tuple(name for name, spec in heads.items() if spec == "x")
        self.net = MultiHead(MLPTrunk(dim, width, depth, time_scale), modules, like_input=like)

    def forward(self, x: Tensor, t: Tensor) -> dict[str, Tensor]:  # type: ignore[override]
        return self.net(x, t)


__all__ = ["HeadSpec", "MLPTrunk", "MultiHead", "MultiHeadMLP"]
