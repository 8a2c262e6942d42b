"""The default sampler: what ``ip.sample(model, noise, nfe=N)`` runs when no solver is named.

The rule (derived and checked in docs/decisions.md, "The default sampler"):

* solver ``"auto"``: UniPC (bh2, with its corrector; Zhao et al. 2023) whose predictor order is
  set by the log-SNR step h = log(sigma_max / sigma_min) / (N - 1) of the auto grid: order 2
  (method order 3) while h > 0.25, order 3 (method order 4) below, i.e. from N = 42 steps on
  (h depends on N only: the auto grid's range scales with sigma_data at both ends);
  order 1 for a single step.
* grid ``"auto"`` (:class:`~interpolant.solvers.grids.Auto`): uniform in log-SNR from
  min(sigma(t_max), 160 sigma_data) to sigma_min = 10 sigma_data / N^2, then 0.
* sigma_data: the model's when it declares one (``Preconditioned(..., sigma_data)``, or a
  ``sigma_data`` attribute on the model or its network), else 0.5.

The auto solver is an ordinary stateless solver that delegates each step to the UniPC of its
rule for the run's number of steps, so it serialises as ``{"name": "auto"}`` and works wherever
a solver name does (``interpolant sample --solver auto --grid auto``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from ..predictions import Prediction
from .base import Node, Run, Solver, State, register
from .grids import AUTO_SIGMA_MIN, AUTO_SPACING_MAX
from .unipc import UniPC

#: The log-SNR step below which the third-order predictor pays (measured: docs/decisions.md).
THIRD_ORDER_BELOW_STEP = 0.25


def rule_step_size(steps: int) -> float:
    """h = log(sigma_max / sigma_min) / (N - 1) of the auto grid for N = ``steps`` (infinite for
    one step): log(16 N^2) / (N - 1), the same for every sigma_data."""
    if steps < 2:
        return math.inf
    return math.log(AUTO_SPACING_MAX * steps**2 / AUTO_SIGMA_MIN) / (steps - 1)


def rule_order(steps: int) -> int:
    """UniPC's predictor order for ``steps`` steps under the default rule."""
    if steps < 2:
        return 1
    return 3 if rule_step_size(steps) <= THIRD_ORDER_BELOW_STEP else 2


def rule_solver(steps: int) -> UniPC:
    """The UniPC that the auto solver runs for ``steps`` steps."""
    return UniPC(order=rule_order(steps))


@register
@dataclass(frozen=True)
class Auto(Solver):
    """The default rule's solver: UniPC of order :func:`rule_order` (the run's step count), one
    model evaluation per step. ``interpolant info`` lists it as "auto"."""

    name: ClassVar[str] = "auto"

    @property
    def order(self) -> int:
        return 3  # UniPC-2 with its corrector: the order of the low-budget case

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        return rule_solver(run.n_steps).step(state, pred, now, nxt, run)


def model_sigma_data(model: Any) -> float | None:
    """The data's standard deviation a model declares: a ``sigma_data`` attribute on the model or
    its network (EDM's ``Preconditioned`` has one), else None."""
    for obj in (model, getattr(model, "net", None)):
        value = getattr(obj, "sigma_data", None)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


__all__ = [
    "THIRD_ORDER_BELOW_STEP",
    "Auto",
    "model_sigma_data",
    "rule_order",
    "rule_solver",
    "rule_step_size",
]
