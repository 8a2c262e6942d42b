"""What every inference-time scaling method shares: the reward interface and the NFE ledger.

A reward (verifier) maps a batch of samples to one score per sample, higher is better. Methods are
compared at equal compute, so every model call and every reward call goes through a
:class:`Ledger` that counts them per method run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor


class BudgetError(ValueError):
    """A method would spend more model evaluations than its budget allows (a ValueError: the
    budget given is too small for what was asked)."""


class Reward(Protocol):
    """``reward(x) -> Tensor[B]``: one finite score per sample of ``x`` (B, ...); higher is
    better. ``**cond`` carries whatever the verifier needs (class labels, ...)."""

    def __call__(self, x: Tensor, **cond: Any) -> Tensor: ...


def check_rewards(values: Tensor, batch: int, name: str = "reward") -> Tensor:
    """Validate a reward's output: shape (batch,) and finite; name the offending samples."""
    if not isinstance(values, Tensor):
        raise TypeError(f"{name} must return a tensor, got {type(values).__name__}")
    if values.shape != (batch,):
        raise ValueError(
            f"{name} must return one value per sample, shape ({batch},); got {tuple(values.shape)}"
        )
    bad = (~torch.isfinite(values)).nonzero().flatten().tolist()
    if bad:
        shown = ", ".join(str(i) for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise ValueError(f"{name} returned non-finite values for samples {shown}")
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

    def charge(self, model_evals: int = 0, reward_evals: int = 0, what: str = "") -> None:
        """Record a cost; raise if it takes the model evaluations over the budget."""
        if model_evals < 0 or reward_evals < 0:
            raise ValueError("costs must be non-negative")
        if self.budget is not None and self.model_evals + model_evals > self.budget:
            raise BudgetError(
                f"NFE budget exceeded: {self.model_evals} + {model_evals} > {self.budget}"
                + (f" (at {what})" if what else "")
            )
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
