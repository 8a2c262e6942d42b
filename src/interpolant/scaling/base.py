"""What every inference-time scaling method shares: the reward interface, the NFE ledger and the
start noise.

A reward (verifier) maps a batch of samples to one score per sample, higher is better. Methods are
compared at equal compute, so every model call and every reward call goes through a
:class:`Ledger` that counts them per method run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from ..errors import UserError, WrongTypeError
from ..predictions import Model
from ..randomness import Streams


class BudgetError(UserError):
    """A method would spend more model evaluations than its budget allows (a UserError: the
    budget given is too small for what was asked)."""


class Reward(Protocol):
    """``reward(x) -> Tensor[B]``: one finite score per sample of ``x`` (B, ...); higher is
    better. ``**cond`` carries whatever the verifier needs (class labels, ...)."""

    def __call__(self, x: Tensor, **cond: Any) -> Tensor: ...


def check_rewards(values: Tensor, batch: int, name: str = "reward") -> Tensor:
    """Validate a reward's output: shape (batch,) and finite; name the offending samples."""
    if not isinstance(values, Tensor):
        raise WrongTypeError(f"{name} must return a tensor, got {type(values).__name__}")
    if values.shape != (batch,):
        raise UserError(
            f"{name} must return one value per sample, shape ({batch},); got {tuple(values.shape)}"
        )
    bad = (~torch.isfinite(values)).nonzero().flatten().tolist()
    if bad:
        shown = ", ".join(str(i) for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise UserError(f"{name} returned non-finite values for samples {shown}")
    return values


@dataclass
class Ledger:
    """Counts model evaluations (per sample: a batch of B costs B) and reward evaluations.

    ``budget`` (model evaluations per final sample times the number of final samples, or None)
    is checked by :meth:`charge`: a method that would exceed it raises, so equal-compute
    comparisons cannot silently overspend.
    """

    budget: int | None = None
    model_evals: int = 0
    reward_evals: int = 0
    log: list[tuple[str, int]] = field(default_factory=list)

    def check(self, model_evals: int, what: str = "") -> None:
        """Raise :class:`BudgetError` if ``model_evals`` more would exceed the budget (charges
        nothing: a method checks before it spends)."""
        if model_evals < 0:
            raise UserError("costs must be non-negative")
        if self.budget is not None and self.model_evals + model_evals > self.budget:
            raise BudgetError(
                f"NFE budget exceeded: {self.model_evals} + {model_evals} > {self.budget}"
                + (f" (at {what})" if what else "")
            )

    def charge(self, model_evals: int = 0, reward_evals: int = 0, what: str = "") -> None:
        """Record a cost; raise if it takes the model evaluations over the budget."""
        if reward_evals < 0:
            raise UserError("costs must be non-negative")
        self.check(model_evals, what)
        self.model_evals += model_evals
        self.reward_evals += reward_evals
        if what:
            self.log.append((what, model_evals))

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - self.model_evals

    def counted_reward(self, reward: Reward, name: str = "reward") -> Callable[..., Tensor]:
        """``reward`` wrapped so that each call is validated and charged one reward evaluation
        per sample."""

        def wrapped(x: Tensor, **cond: Any) -> Tensor:
            values = check_rewards(reward(x, **cond), x.shape[0], name)
            self.charge(reward_evals=x.shape[0])
            return values

        return wrapped


def repeat_cond(cond: dict[str, Any] | None, repeats: int) -> dict[str, Any]:
    """Conditioning of batch n for a batch grouped by final sample: every tensor's rows
    repeated ``repeats`` times (other values as they are)."""
    return {
        k: v.repeat_interleave(repeats, 0) if isinstance(v, Tensor) else v
        for k, v in (cond or {}).items()
    }


def placement(model: Model) -> tuple[torch.dtype, torch.device]:
    """Where a method puts the start noise it draws: the network's dtype and device (float64 and
    the CPU for a parameter-free model such as an exact oracle)."""
    dtype = model.input_dtype(torch.empty(0, dtype=torch.float64))
    param = next(model.parameters(), None)
    return dtype, torch.device("cpu") if param is None else param.device


def source_noise(
    model: Model,
    streams: Streams,
    shape: Sequence[int],
    count: int = 1,
    rows: Tensor | None = None,
) -> Tensor:
    """``count`` standard normals of ``shape`` for each row of ``streams`` (or of ``rows``), one
    draw of the streams, grouped by row: (rows * count, *shape), in the model's dtype on its
    device (:func:`placement`)."""
    dtype, device = placement(model)
    z = streams.normal((count, *shape), rows=rows, dtype=torch.float64)
    return z.reshape(-1, *shape).to(device=device, dtype=dtype)


__all__ = [
    "BudgetError",
    "Ledger",
    "Reward",
    "check_rewards",
    "placement",
    "repeat_cond",
    "source_noise",
]
