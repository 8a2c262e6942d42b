"""What every solver shares: grid nodes with precomputed coefficients, the explicit state, the
context a step may use, and the registry.

A solver is a pure step ``(state, prediction, now, nxt, ctx) -> state``. Multistep history lives
in ``State.history``; a solver object holds only its configuration, so one object can drive any
number of independent trajectories (particles can branch and resample).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..paths import LOGSNR_LIMIT, GaussianPath
from ..predictions import Coefficients, Prediction


@dataclass(frozen=True)
class Node:
    """One time-grid point with the path's coefficients as Python floats (float64 arithmetic)."""

    t: float
    alpha: float
    sigma: float
    d_alpha: float
    d_sigma: float
    logsnr: float

    @property
    def coeffs(self) -> Coefficients:
        return Coefficients(self.alpha, self.sigma, self.d_alpha, self.d_sigma)

    @property
    def edm_sigma(self) -> float:
        """sigma / alpha (inf where alpha = 0)."""
        return self.sigma / self.alpha if self.alpha > 0 else math.inf


def make_nodes(path: GaussianPath, t: Tensor) -> list[Node]:
    """Nodes for a descending time grid, all coefficients computed in one float64 pass."""
    t64 = t.detach().to("cpu", torch.float64)
    cols = [c.tolist() for c in (*path.coefficients(t64), path.logsnr(t64))]
    return [Node(ti, *vals) for ti, vals in zip(t64.tolist(), zip(*cols))]


def node_at(path: GaussianPath, t: float) -> Node:
    """A single node at time t."""
    return make_nodes(path, torch.tensor([t], dtype=torch.float64))[0]


@dataclass(frozen=True)
class State:
    """The explicit solver state: the current sample and the solver's own history.

    ``history`` is solver-defined (for multistep solvers, earlier (node, x0) pairs); ``step`` is
    the index of the next step.
    """

    x: Tensor
    history: tuple[Any, ...] = ()
    step: int = 0

    def replace(self, **changes: Any) -> State:
        if type(self) is State and changes.keys() <= _STATE_FIELDS:
            # Direct construction: dataclasses.replace costs ~10 us, twice per step.
            return State(
                changes.get("x", self.x),
                changes.get("history", self.history),
                changes.get("step", self.step),
            )
        return replace(self, **changes)


_STATE_FIELDS = frozenset(("x", "history", "step"))


@dataclass
class StepContext:
    """What a step may use besides the prediction at its start.

    ``evaluate(x, node)`` runs the model and the prediction hooks (and counts one NFE);
    ``noise(like)`` draws standard normals with the per-sample generators; ``index`` and
    ``n_steps`` place the step on the grid. ``extra`` is free for hooks to share data.
    """

    evaluate: Callable[[Tensor, Node], Prediction]
    noise: Callable[[Tensor], Tensor]
    index: int
    n_steps: int
    path: GaussianPath
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_last(self) -> bool:
        return self.index == self.n_steps - 1


class Solver(ABC):
    """Base class. Subclasses set the class variables and implement :meth:`step`."""

    name: ClassVar[str] = "solver"
    #: Convergence order of the deterministic part (global error ~ h^order).
    order: ClassVar[int] = 1
    #: Model evaluations per step (the first step of every solver uses one each).
    evals_per_step: ClassVar[int] = 1
    #: True when a step draws fresh noise.
    stochastic: ClassVar[bool] = False

    def init(self, x: Tensor) -> State:
        """Initial state at the first grid node."""
        return State(x)

    def needs_prediction(self, state: State, now: Node, ctx: StepContext) -> bool:
        """Whether the loop should evaluate the model at ``now`` before the step (a solver that
        first moves elsewhere, like Heun with churn, evaluates there itself)."""
        return True

    @abstractmethod
    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, ctx: StepContext) -> State:
        """Advance ``state`` from ``now`` to ``nxt`` given the prediction at ``now``."""

    def nfe_for_steps(self, steps: int) -> int:
        """Model evaluations used by ``steps`` steps."""
        return steps * self.evals_per_step

    def steps_for_nfe(self, nfe: int) -> int:
        """The most steps whose NFE stays within ``nfe``."""
        steps = nfe // self.evals_per_step
        while self.nfe_for_steps(steps + 1) <= nfe:  # the first step may cost less (Heun, pc)
            steps += 1
        if steps < 1:
            raise ValueError(
                f"nfe={nfe} is too small for solver {self.name!r}: one step needs "
                f"{self.nfe_for_steps(1)} model evaluations"
            )
        return steps

    def config(self) -> dict[str, Any]:
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


SOLVERS: dict[str, type[Solver]] = {}


def register(cls: type[Solver]) -> type[Solver]:
    """Class decorator adding a solver to ``SOLVERS`` under its ``name``."""
    SOLVERS[cls.name] = cls
    return cls


def get_solver(solver: str | Solver, **kwargs: Any) -> Solver:
    """A solver from its name (see ``SOLVERS``) or the object itself."""
    if isinstance(solver, Solver):
        if kwargs:
            raise ValueError("solver options are only used with a solver name")
        return solver
    if not isinstance(solver, str) or solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {sorted(SOLVERS)}")
    return SOLVERS[solver](**kwargs)


def exp_integrator_coeffs(now: Node, nxt: Node) -> tuple[float, float, float]:
    """(sigma ratio, 1 - e^{-h}, h) for a step in logsnr/2 time, h = (logsnr' - logsnr) / 2.

    Written through alpha and sigma so that alpha = 0 at the start (e^{-h} = 0) and sigma = 0 at
    the end (ratio = 0) are exact.
    """
    ratio = nxt.sigma / now.sigma
    one_minus_exp = 1.0 - (ratio * now.alpha / nxt.alpha if nxt.alpha > 0 else 0.0)
    h = 0.5 * (min(nxt.logsnr, LOGSNR_LIMIT) - max(now.logsnr, -LOGSNR_LIMIT))
    return ratio, one_minus_exp, h
