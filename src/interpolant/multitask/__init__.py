"""Multi-task / multi-modal diffusion: MT-Diffusion (seed paper 14, Chen et al. 2024).

``AggregatedProcess`` is the forward process with a data-dependent offset c_s E(x) and its
closed-form marginal and posterior; ``JointModel`` (a multi-head network plus learned modality
encoders), ``MTDiffusionObjective`` (the multi-task loss, usable by ``train.Trainer``) and
``sample_joint`` (images and labels generated together) build on it.
See docs/papers/14-mt-diffusion.md.
"""

from __future__ import annotations

from torch import nn

from ..models.multihead import MultiHeadMLP
from .joint import JointModel, JointSample, MTDiffusionObjective, classify, sample_joint
from .process import WEIGHT_SCHEDULES, AggregatedProcess, offset_weights, scaled_linear_betas


def joint_mlp(
    shape: tuple[int, ...],
    num_classes: int,
    width: int = 256,
    depth: int = 3,
    cond_key: str = "class_labels",
) -> JointModel:
    """The digits model of the paper's CPU reproduction: a residual-MLP trunk with an eps head
    and a label head, and a learned label embedding E(y) in image space."""
    dim = 1
    for s in shape:
        dim *= int(s)
    net: nn.Module = MultiHeadMLP(
        dim, heads={"eps": "x", "label": num_classes}, width=width, depth=depth
    )
    return JointModel(net, {cond_key: (num_classes, "label")}, shape)


__all__ = [
    "WEIGHT_SCHEDULES",
    "AggregatedProcess",
    "JointModel",
    "JointSample",
    "MTDiffusionObjective",
    "classify",
    "joint_mlp",
    "offset_weights",
    "sample_joint",
    "scaled_linear_betas",
]
