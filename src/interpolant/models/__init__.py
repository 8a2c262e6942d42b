"""Backbones: ``net(x, t, **cond) -> tensor of x's shape`` (prediction kinds and preconditioning
are added by :class:`interpolant.Model` / :class:`interpolant.Preconditioned`).

``t`` is a float tensor of shape (B,): the path time in [0, 1] or EDM's c_noise. Conditioning is
passed by keyword: ``class_labels`` (B,) int64 (the index ``num_classes`` or ``None`` gives the
unconditional model for classifier-free guidance), and for MM-DiT ``context`` (B, L, d_ctx),
``context_mask`` and ``pooled``. In training mode labels are dropped with ``class_dropout_prob``
using ``generator`` (or the global RNG).

Registry: ``build_model(name, **kwargs)`` with names ``mlp``, ``unet``, ``dit``, ``mmdit``,
``conv1d`` (time-series windows), ``two-time`` (another backbone with a second time input,
MeanFlow's and shortcut models') and the DiT paper's sizes ``dit-{s,b,l,xl}/{2,4,8}`` (and
``mmdit-{s,b}/{2,4,8}``), which fix depth, hidden size, heads and patch size.
``build_model(**model_config(net))`` rebuilds ``net``'s architecture from its JSON-serialisable
config.

Cost: :func:`flops_per_forward` counts FLOPs with ``torch.utils.flop_counter.FlopCounterMode``,
which counts a multiply-add as **2** FLOPs. The DiT paper's "Gflops" (DiT-B/2 23.01, XL/2 118.6)
were counted with fvcore, which counts a multiply-add as **1**: they are multiply-adds, so
divide our count by 2 to compare. A training step (forward + backward) costs about 3x the
forward (the backward computes gradients with respect to both activations and weights).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import UserError, WrongTypeError
from .conv1d import Conv1D
from .dit import DIT_SIZES, PATCH_SIZES, DiT, DiTBlock
from .layers import Backbone, LabelEmbedding, TimestepEmbedding, drop_labels, sincos_pos_embed_2d
from .mlp import MLP
from .mmdit import MMDIT_SIZES, MMDiT, MMDiTBlock
from .multihead import MLPTrunk, MultiHead, MultiHeadMLP
from .two_time import TwoTime, TwoTimeEmbedding
from .unet import UNet

MODELS: dict[str, Callable[..., Backbone]] = {
    "mlp": MLP,
    "unet": UNet,
    "dit": DiT,
    "mmdit": MMDiT,
    "conv1d": Conv1D,
    "multihead-mlp": MultiHeadMLP,
    "two-time": TwoTime,  # (x, t, gap) around the above (MeanFlow, shortcut models)
}
# Preset name -> (class, the kwargs the preset fixes).
PRESETS: dict[str, tuple[type[Backbone], dict[str, Any]]] = {}
for _family, _cls, _sizes in (("dit", DiT, DIT_SIZES), ("mmdit", MMDiT, MMDIT_SIZES)):
    for _size, (_depth, _hidden, _heads) in _sizes.items():
        for _p in PATCH_SIZES:
            _fixed: dict[str, Any] = dict(
                depth=_depth, hidden_size=_hidden, num_heads=_heads, patch_size=_p
            )
            PRESETS[f"{_family}-{_size}/{_p}"] = (_cls, _fixed)
            MODELS[f"{_family}-{_size}/{_p}"] = partial(_cls, **_fixed)


def build_model(name: str, **kwargs: Any) -> Backbone:
    """Build a registered backbone, e.g. ``build_model("dit-b/2", num_classes=1000)``."""
    key = name.lower()
    if key not in MODELS:
        raise UserError(f"unknown model {name!r}; registered: {sorted(MODELS)}")
    if key in PRESETS:
        clash = sorted(set(kwargs) & set(PRESETS[key][1]))
        if clash:
            base = PRESETS[key][0].registry_name
            raise UserError(f"{name} fixes {clash}; build {base!r} to choose them yourself")
    return MODELS[key](**kwargs)


def model_config(model: Backbone) -> dict[str, Any]:
    """The JSON-serialisable ``{"name": ..., **kwargs}`` that ``build_model`` rebuilds."""
    if not isinstance(model, Backbone):
        raise WrongTypeError(
            f"model must be one of interpolant's backbones, got {type(model).__name__}"
        )
    return model.model_config()


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as fixed positional embeddings are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def flops_per_forward(
    model: nn.Module,
    example_inputs: tuple[Any, ...],
    example_kwargs: dict[str, Any] | None = None,
) -> int:
    """FLOPs of one forward call on ``example_inputs`` (whole batch; divide by B per sample).

    Counted by ``FlopCounterMode`` (matmuls, convolutions, attention), a multiply-add being
    2 FLOPs; elementwise ops are not counted. Works on the meta device, so a model built there
    costs neither memory nor time. A training step is about 3x this.
    """
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*example_inputs, **(example_kwargs or {}))
    return int(counter.get_total_flops())


__all__ = [
    "MLP",
    "MODELS",
    "PRESETS",
    "Backbone",
    "Conv1D",
    "DiT",
    "DiTBlock",
    "LabelEmbedding",
    "MLPTrunk",
    "MMDiT",
    "MMDiTBlock",
    "MultiHead",
    "MultiHeadMLP",
    "TimestepEmbedding",
    "TwoTime",
    "TwoTimeEmbedding",
    "UNet",
    "build_model",
    "count_parameters",
    "drop_labels",
    "flops_per_forward",
    "model_config",
    "sincos_pos_embed_2d",
]
