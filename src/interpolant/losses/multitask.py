"""Summed per-modality losses for multi-head models (shared trunk, one head per modality).

    L_i = sum_m lambda_m * ell_m(head_m output_i, target_m,i)

with ``ell_m`` the per-sample loss of modality m: "mse" (mean over features of the squared
error: eps, images, representations) or "ce" (cross-entropy of logits against int64 class ids:
labels). This is the multi-task ELBO's form in MT-Diffusion (Chen et al. 2024, Eq. 9): an eps
regression plus, per modality, the negative log-likelihood of a decoder head, each weighted.
Objectives that build the inputs and targets (e.g.
:class:`~interpolant.multitask.MTDiffusionObjective`) call
:meth:`MultiTaskObjective.per_sample`; it holds no model and draws nothing, so it composes
with any way of building the heads' inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UserError

#: A per-sample loss ``(prediction (B, ...), target (B, ...)) -> (B,)``.
ModalityLossFn = Callable[[Tensor, Tensor], Tensor]


def mse_per_sample(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean over features of (prediction - target)^2, shape (B,)."""
    if prediction.shape != target.shape:
        raise UserError(
            f"mse: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ"
        )
    return (prediction - target).square().flatten(1).mean(dim=1)


def ce_per_sample(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy of (B, C) logits against (B,) int64 class ids, shape (B,) (nats)."""
    if logits.ndim != 2 or target.shape != logits.shape[:1] or target.is_floating_point():
        raise UserError(
            f"ce: needs (B, C) logits and (B,) integer class ids, got {tuple(logits.shape)} "
            f"and {tuple(target.shape)} ({target.dtype})"
        )
    return F.cross_entropy(logits.float(), target.long(), reduction="none")


MODALITY_LOSSES: dict[str, ModalityLossFn] = {"mse": mse_per_sample, "ce": ce_per_sample}


@dataclass(frozen=True)
class MultiTaskObjective:
    """Per-modality losses and their weights lambda_m.

    Args:
        losses: modality -> "mse", "ce" or a callable ``(prediction, target) -> (B,)``.
        weights: modality -> lambda_m >= 0 (missing modalities weigh 1).
    """

    losses: Mapping[str, str | ModalityLossFn]
    weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.losses:
            raise UserError("MultiTaskObjective needs at least one modality")
        for name, spec in self.losses.items():
            if isinstance(spec, str) and spec not in MODALITY_LOSSES:
                raise UserError(
                    f"modality {name!r}: unknown loss {spec!r}; choose {sorted(MODALITY_LOSSES)} "
                    "or pass a callable (prediction, target) -> (B,)"
                )
            if not isinstance(spec, str) and not callable(spec):
                raise UserError(f"modality {name!r}: the loss must be a name or a callable")
        unknown = sorted(set(self.weights) - set(self.losses))
        if unknown:
            raise UserError(f"weights name {unknown}, which have no loss ({sorted(self.losses)})")
        for name, w in self.weights.items():
            if not w >= 0:
                raise UserError(f"weight of modality {name!r} must be >= 0, got {w!r}")

    def weight(self, name: str) -> float:
        return float(self.weights.get(name, 1.0))

    def per_modality(
        self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """modality -> unweighted per-sample loss (B,)."""
        missing = [m for m in self.losses if m not in outputs or m not in targets]
        if missing:
            raise UserError(
                f"modalities {missing} lack an output or a target (outputs {sorted(outputs)}, "
                f"targets {sorted(targets)})"
            )
        out = {}
        for name, spec in self.losses.items():
            fn = MODALITY_LOSSES[spec] if isinstance(spec, str) else spec
            out[name] = fn(outputs[name], targets[name])
        return out

    def per_sample(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
        """sum_m lambda_m ell_m, shape (B,)."""
        weighted = [
            self.weight(m) * v.float() for m, v in self.per_modality(outputs, targets).items()
        ]
        return torch.stack(weighted).sum(dim=0)


__all__ = [
    "MODALITY_LOSSES",
    "ModalityLossFn",
    "MultiTaskObjective",
    "ce_per_sample",
    "mse_per_sample",
]
