"""What the few-step objectives share: calling the (possibly DDP-wrapped) model, a step counter
the trainer checkpoints, and the checks on a teacher."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import UserError, WrongTypeError
from ..paths import GaussianPath, Linear
from ..predictions import Model, Prediction


def predict(model: Any, x: Tensor, t: Tensor, cond: dict[str, Any] | None = None) -> Prediction:
    """The prediction of a :class:`Model`, or of a DDP/FSDP wrapper around one, at (x, t)."""
    out = model(x, t, **(cond or {}))
    if not isinstance(out, Prediction):
        raise WrongTypeError(
            f"few-step objectives train an interpolant Model (or its DDP wrapper); calling "
            f"{type(model).__name__} returned {type(out).__name__}"
        )
    return out


def model_path(model: Any) -> GaussianPath:
    """The path of a Model or of the Model inside a DDP/FSDP wrapper."""
    inner = getattr(model, "module", model)
    path = getattr(inner, "path", None)
    if not isinstance(path, GaussianPath):
        raise WrongTypeError(f"{type(model).__name__} is not an interpolant Model")
    return path


def require_linear(model: Any, role: str, method: str) -> None:
    """A clear error unless ``model`` lives on the rectified-flow path."""
    path = model_path(model)
    if not isinstance(path, Linear):
        raise UserError(
            f"{method} needs the {role} on the linear (rectified-flow) path, got {path!r}: "
            "train it with path=linear, or convert it with predictions.PathConverted"
        )


def check_teacher(teacher: Any, method: str) -> Model:
    if not isinstance(teacher, Model):
        raise WrongTypeError(f"{method} needs a teacher Model, got {type(teacher).__name__}")
    teacher.eval().requires_grad_(False)
    return teacher


def times(
    n: int, generator: torch.Generator | None, device: Any, lo: float = 0.0, hi: float = 1.0
) -> Tensor:
    """n uniform times on [lo, hi] from the loss's generator (float32 on device)."""
    gen_device = generator.device if generator is not None else device
    u = torch.rand(n, generator=generator, device=gen_device, dtype=torch.float64).to(device)
    return (lo + (hi - lo) * u).float()


class StepCounter:
    """Counts optimiser steps (``end_step``) and checkpoints the count (``state``), so that
    schedules over training steps (annealing beta, iCT's discretisation) resume exactly."""

    def __init__(self) -> None:
        self.step = 0

    def end_step(self) -> None:
        self.step += 1

    def state(self) -> dict[str, Tensor]:
        return {"step": torch.tensor(self.step, dtype=torch.int64)}

    def load_state(self, state: dict[str, Tensor]) -> None:
        if set(state) != {"step"}:
            raise UserError(f"checkpointed objective state has {sorted(state)}, expected ['step']")
        self.step = int(state["step"])
