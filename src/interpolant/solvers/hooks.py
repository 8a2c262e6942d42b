"""The one hook protocol of the sampling loop.

A hook is an object with up to four optional methods, called by the loop in this order:

* ``prepare(plan) -> plan`` before the run: may change the model, the grid or the start state
  (Gaussian teleportation, AutoDiffusion's skip plan);
* ``start(run) -> state``: the hook's typed per-run state (a dataclass of its own; None by
  default). The loop keeps it, passes it to the two methods below and returns it with the
  result (``result.state(hook)``), so a hook instance never holds per-run data and one hook can
  serve any number of runs;
* ``on_prediction(pred, node, run, state) -> pred`` after every model evaluation, in the order
  of ``hooks`` (CFG, classifier guidance, DPS's gradient, data consistency on x0);
* ``on_step(x_state, step, run, state) -> x_state`` after every solver step, in the order of
  ``hooks``; ``step.pred`` is the step's newest prediction after all prediction hooks, so a
  step hook never depends on where it stands in the list (projection, data consistency, DPS's
  move, FK resampling, trajectory recording).

Subclass :class:`Hook` and override what you need; :class:`FunctionHook` wraps plain functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from torch import Tensor

from ..errors import UserError
from ..predictions import Model, Prediction
from .base import Node, Run, State

S = TypeVar("S")


@dataclass(frozen=True)
class Plan:
    """What a run starts from: the model, the time grid (descending, float64) and the state at
    the grid's first time."""

    model: Model
    grid: Tensor
    x: Tensor


@dataclass(frozen=True)
class Step:
    """One finished step: its index, the nodes it went between, ``pred`` the prediction the loop
    evaluated at ``now`` for it (None for a solver that moves before evaluating, like Heun with
    churn) and ``last`` the step's newest prediction (after a multi-evaluation step, the one at
    its last evaluation); both after every prediction hook."""

    index: int
    now: Node
    nxt: Node
    pred: Prediction | None
    last: Prediction | None


class Hook(Generic[S]):
    """Base class of every hook (see the module docstring). The default methods do nothing."""

    def prepare(self, plan: Plan) -> Plan:
        """Change what the run starts from (called once, before :meth:`start`)."""
        return plan

    def start(self, run: Run) -> S:
        """This hook's state for ``run`` (None unless overridden)."""
        out: S = _none()
        return out

    def on_prediction(self, pred: Prediction, node: Node, run: Run, state: S) -> Prediction:
        """Transform the prediction at ``node``."""
        return pred

    def on_step(self, x_state: State, step: Step, run: Run, state: S) -> State:
        """Transform the solver state after ``step``."""
        return x_state

    def implements(self, method: str) -> bool:
        """Whether this hook implements ``method`` itself (the loop skips the defaults)."""
        return getattr(type(self), method) is not getattr(Hook, method)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _none() -> Any:
    return None


class FunctionHook(Hook[None]):
    """A hook from plain functions: ``on_prediction(pred, node, run) -> pred`` and/or
    ``on_step(x_state, step, run) -> x_state`` (no per-run state)."""

    def __init__(
        self,
        on_prediction: Callable[[Prediction, Node, Run], Prediction] | None = None,
        on_step: Callable[[State, Step, Run], State] | None = None,
    ) -> None:
        if on_prediction is None and on_step is None:
            raise UserError("give on_prediction= and/or on_step=")
        self._on_prediction, self._on_step = on_prediction, on_step

    def on_prediction(self, pred: Prediction, node: Node, run: Run, state: None) -> Prediction:
        return pred if self._on_prediction is None else self._on_prediction(pred, node, run)

    def on_step(self, x_state: State, step: Step, run: Run, state: None) -> State:
        return x_state if self._on_step is None else self._on_step(x_state, step, run)

    def implements(self, method: str) -> bool:
        if method in ("on_prediction", "on_step"):
            return getattr(self, f"_{method}") is not None
        return super().implements(method)


@dataclass
class Recording:
    """A trajectory: the state at every grid time (the start first) and the data prediction of
    every step, with the time of each."""

    times: list[float] = field(default_factory=list)
    states: list[Tensor] = field(default_factory=list)
    x0: list[Tensor] = field(default_factory=list)


class Trajectory(Hook[Recording]):
    """Records the states and the per-step data predictions: ``result.state(hook)`` is the
    :class:`Recording`. ``every`` keeps every k-th step only (the start and the end always)."""

    def __init__(self, every: int = 1) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise UserError(f"every must be an int >= 1, got {every!r}")
        self.every = every

    def start(self, run: Run) -> Recording:
        return Recording([run.nodes[0].t], [run.x_start])

    def on_step(self, x_state: State, step: Step, run: Run, state: Recording) -> State:
        if (step.index + 1) % self.every == 0 or step.index == run.n_steps - 1:
            state.times.append(step.nxt.t)
            state.states.append(x_state.x)
            if step.pred is not None:
                state.x0.append(step.pred.x0)
        return x_state

    def __repr__(self) -> str:
        return f"Trajectory(every={self.every})"


__all__ = ["FunctionHook", "Hook", "Plan", "Recording", "Step", "Trajectory"]
