"""Denoising task routing (DTR, Park et al. 2024): fixed per-timestep channel masks.

Each noise level is a task. Task k of T gets a binary mask over the C channels of every routed
block: a window of ``n_on = int(C * sharing)`` consecutive channels starting at

    start_k = round((k / (T - 1))^alpha * (C - n_on)),

so adjacent tasks share most channels (task affinity) and, for alpha > 1, the window moves
slowly at small t and fast at large t (more task-specific channels for the noisy tasks). A
routed residual block applies its update to the masked input and keeps the rest:

    x <- x + Delta(m_k * x)

(the paper's ``h = m x; h = h + Delta(h); x = h + (1 - m) x``). Masks are buffers: no
parameters or FLOPs are added. Continuous t in [0, 1] is binned to k = round(t (T - 1)).
``init="random"`` is the paper's ablation: n_on random channels per task (seeded).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..randomness import derive_seed

ROUTER_INITS = ("sliding", "random")


class TaskRouter(nn.Module):
    """Channel masks for ``tasks`` noise levels over ``channels`` channels (see the module)."""

    def __init__(
        self,
        channels: int,
        tasks: int = 1000,
        sharing: float = 0.8,
        alpha: float = 4.0,
        init: str = "sliding",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if channels < 1 or tasks < 2:
            raise UserError(
                f"TaskRouter needs channels >= 1 and tasks >= 2, got {channels}, {tasks}"
            )
        if not 0 < sharing <= 1:
            raise UserError(f"TaskRouter sharing must be in (0, 1], got {sharing}")
        if alpha <= 0:
            raise UserError(f"TaskRouter alpha must be > 0, got {alpha}")
        if init not in ROUTER_INITS:
            raise UserError(f"TaskRouter init must be one of {ROUTER_INITS}, got {init!r}")
        self.channels, self.tasks, self.sharing, self.alpha, self.init = (
            channels,
            tasks,
            sharing,
            alpha,
            init,
        )
        n_on = max(1, int(channels * sharing))
        masks = torch.zeros(tasks, channels)
        if init == "sliding":
            frac = torch.linspace(0, 1, tasks, dtype=torch.float64) ** alpha
            starts = torch.round(frac * (channels - n_on)).long()
            for k, start in enumerate(starts.tolist()):
                masks[k, start : start + n_on] = 1.0
        else:
            gen = torch.Generator().manual_seed(derive_seed("task-router", seed))
            for k in range(tasks):
                masks[k, torch.randperm(channels, generator=gen)[:n_on]] = 1.0
        self.masks: Tensor
        self.register_buffer("masks", masks, persistent=False)

    def task_of(self, t: Tensor) -> Tensor:
        """The task index of each time t in [0, 1]: round(t (T - 1))."""
        return torch.round(t.double().clamp(0, 1) * (self.tasks - 1)).long()

    def forward(self, t: Tensor) -> Tensor:
        """(B, C) masks for the times t of shape (B,)."""
        return self.masks[self.task_of(t).to(self.masks.device)]

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, tasks={self.tasks}, sharing={self.sharing}, "
            f"alpha={self.alpha}, init={self.init!r}"
        )


def router_options(spec: Any) -> dict[str, Any] | None:
    """A backbone's ``router`` argument as TaskRouter options: None (no routing), "dtr" (the
    paper's defaults), "dtr-random" (the random-mask ablation) or a dict of options."""
    if spec is None or spec is False or spec == "none":
        return None
    if spec == "dtr":
        return {}
    if spec == "dtr-random":
        return {"init": "random"}
    if isinstance(spec, dict):
        allowed = {"tasks", "sharing", "alpha", "init", "seed"}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise UserError(f"router has no option {unknown}; its options are {sorted(allowed)}")
        return dict(spec)
    raise UserError(f"router must be none, 'dtr', 'dtr-random' or a dict of options, got {spec!r}")


__all__ = ["ROUTER_INITS", "TaskRouter", "router_options"]
