"""TEMPORARY during the API port (issue 11): old names, removed before the change lands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .solvers.base import Run

SampleContext = Run
StepContext = Run


def make_generators(seed: int | Sequence[int], batch: int) -> list[torch.Generator]:
    seeds = [int(seed) + i for i in range(batch)] if isinstance(seed, int) else list(seed)
    return [torch.Generator().manual_seed(s) for s in seeds]


def randn_like(like: Tensor, generators: Any) -> Tensor:
    if generators is None:
        return torch.randn_like(like)
    z = torch.empty(like.shape, dtype=torch.float64)
    for row, g in zip(z, generators):
        row.normal_(generator=g)
    return z.to(device=like.device, dtype=like.dtype)


def as_model(model: Any, path: Any, predicts: Any) -> Any:
    return model
