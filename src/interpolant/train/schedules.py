"""Learning-rate schedules: a pure function of the step, so a resumed run needs no state.

``lr(step) = lr_ref * warmup(step) * decay(step)`` with ``step = 0`` the first update and

* warmup: ``min(1, (step + 1) / warmup_steps)`` (linear ramp; 1 when ``warmup_steps = 0``),
* constant: ``decay = 1``,
* cosine: ``decay = r + (1 - r) (1 + cos(pi p)) / 2`` with progress
  ``p = clamp((step - warmup_steps) / (decay_steps - warmup_steps), 0, 1)`` and floor ``r``,
* inverse_sqrt (EDM2, Karras et al. 2024, eq. 16): ``decay = 1 / sqrt(max(step / t_ref, 1))``.
"""

from __future__ import annotations

import math

from ..errors import UserError
from .config import LR_SCHEDULES, TrainConfig


def lr_at(
    step: int,
    lr: float,
    schedule: str = "constant",
    warmup_steps: int = 0,
    decay_steps: int | None = None,
    total_steps: int | None = None,
    min_ratio: float = 0.0,
) -> float:
    """The learning rate of update ``step`` (0-based)."""
    if step < 0:
        raise UserError(f"step must be >= 0, got {step}")
    warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if schedule == "constant":
        decay = 1.0
    elif schedule == "cosine":
        end = decay_steps or total_steps
        if end is None:
            raise UserError("the cosine schedule needs decay_steps or total_steps")
        span = max(end - warmup_steps, 1)
        progress = min(max((step - warmup_steps) / span, 0.0), 1.0)
        decay = min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "inverse_sqrt":
        t_ref = decay_steps or max(warmup_steps, 1)
        decay = 1.0 / math.sqrt(max(step / t_ref, 1.0))
    else:
        raise UserError(f"schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    return lr * warmup * decay


def lr_from_config(config: TrainConfig, step: int) -> float:
    """``lr_at`` with the settings of ``config``."""
    return lr_at(
        step,
        config.lr,
        config.lr_schedule,
        config.lr_warmup_steps,
        config.lr_decay_steps,
        config.steps,
        config.lr_min_ratio,
    )
