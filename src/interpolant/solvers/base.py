"""What every solver shares: the explicit state with its typed history, the one run context a
step and a hook may use, and the registry.

A solver is a pure step ``(state, prediction, now, nxt, run) -> state``. Multistep history lives
in ``State.history``, a typed :class:`History` that knows which of its fields are per sample, so
particles can be selected (``State.index_select``) without guessing. A solver object holds only
its configuration (a frozen dataclass), so one object can drive any number of independent
trajectories.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import Tensor

from ..configurable import Configurable, Registry
from ..errors import UserError
from ..paths import LOGSNR_LIMIT, GaussianPath
from ..paths.nodes import Node, make_nodes, node_at
from ..predictions import Evaluations, Model, Prediction
from ..randomness import Streams, fresh_seed

if TYPE_CHECKING:
    from .hooks import Hook

H = TypeVar("H", bound="History")
S = TypeVar("S")


# ----------------------------------------------------------------------------------------------
# State and history.


class History:
    """Base of a solver's typed memory between steps (frozen dataclasses).

    ``per_sample`` names the fields that hold one row per sample (tensors, nested histories or
    tuples of them); :meth:`index_select` selects rows of exactly those.
    """

    per_sample: ClassVar[tuple[str, ...]] = ()

    def index_select(self: H, index: Tensor) -> H:
        """This history for the samples ``index`` (FK resampling, particle branching)."""
        changes = {name: select_rows(getattr(self, name), index) for name in self.per_sample}
        out: H = dataclasses.replace(_any(self), **changes)
        return out


def _any(obj: Any) -> Any:
    return obj


def select_rows(value: Any, index: Tensor) -> Any:
    """Rows ``index`` of a per-sample value: a tensor, a :class:`History` or a tuple of them."""
    if isinstance(value, Tensor):
        return value[index.to(value.device)]
    if isinstance(value, History):
        return value.index_select(index)
    if isinstance(value, tuple):
        return tuple(select_rows(v, index) for v in value)
    if value is None:
        return None
    raise TypeError(f"{type(value).__name__} is declared per-sample but has no rows to select")


@dataclass(frozen=True)
class Output(History):
    """One earlier data prediction of a multistep solver: logsnr at its node and x0 there."""

    per_sample: ClassVar[tuple[str, ...]] = ("x0",)
    logsnr: float
    x0: Tensor


@dataclass(frozen=True)
class Multistep(History):
    """The last few :class:`Output` s of an exponential multistep solver, oldest first."""

    per_sample: ClassVar[tuple[str, ...]] = ("outputs",)
    outputs: tuple[Output, ...] = ()

    def __len__(self) -> int:
        return len(self.outputs)

    def push(self, output: Output, keep: int) -> Multistep:
        """This history with ``output`` appended, keeping the newest ``keep``."""
        return Multistep((*self.outputs, output)[-keep:])


@dataclass(frozen=True)
class State:
    """The explicit solver state: the current sample, the solver's typed history (None before
    the first step) and ``step``, the index of the next step."""

    x: Tensor
    history: History | None = None
    step: int = 0

    def replace(self, **changes: Any) -> State:
        if type(self) is State and changes.keys() <= _STATE_FIELDS:
            # Direct construction: dataclasses.replace costs ~10 us, twice per step.
            return State(
                changes.get("x", self.x),
                changes.get("history", self.history),
                changes.get("step", self.step),
            )
        out: State = dataclasses.replace(self, **changes)
        return out

    def index_select(self, index: Tensor) -> State:
        """The state of the samples ``index`` (rows of x and of the history)."""
        history = None if self.history is None else self.history.index_select(index)
        return self.replace(x=self.x[index.to(self.x.device)], history=history)


_STATE_FIELDS = frozenset(("x", "history", "step"))


# ----------------------------------------------------------------------------------------------
# The run context.


class Run(Evaluations):
    """One sampling run: what a solver step and every hook may use. The loop makes one per run.

    ``evaluate(x, node)`` is the model at a node (:meth:`Model.at`, one NFE) followed by the
    prediction hooks; ``noise(like)`` draws standard normals from the per-sample streams;
    ``index`` and ``n_steps`` place the current step on the grid; ``nfe`` counts every model
    evaluation of the run, including those hooks make; ``state(hook)`` is a hook's per-run state.
    """

    def __init__(
        self,
        model: Model,
        grid: Tensor,
        *,
        solver: Solver | None = None,
        cond: dict[str, Any] | None = None,
        seed: int | None = None,
        index: Sequence[int] | Tensor | None = None,
        batch: int = 0,
        model_dtype: torch.dtype | None = None,
        work_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(cond)
        self.model, self.path, self.solver = model, model.path, solver
        self.grid = grid
        self.nodes: list[Node] = make_nodes(model.path, grid)
        self.n_steps = len(self.nodes) - 1
        self.index = 0
        self.seed, self._rows = seed, index if index is not None else batch
        self._streams: Streams | None = None
        self.model_dtype, self.work_dtype = model_dtype, work_dtype
        self._prediction_hooks: list[tuple[Hook[Any], Any]] = []
        self._states: dict[int, Any] = {}
        #: The newest prediction of the run (after the prediction hooks).
        self.last_prediction: Prediction | None = None
        #: The state the first step starts from.
        self.x_start: Tensor | None = None

    @property
    def is_last(self) -> bool:
        return self.index == self.n_steps - 1

    @property
    def streams(self) -> Streams:
        """The per-sample random streams (``Streams(seed, index)``; made on the first draw, so a
        deterministic run never touches torch's global generator for a seed)."""
        if self._streams is None:
            if self.seed is None:
                self.seed = fresh_seed()
            self._streams = Streams(self.seed, self._rows)
        return self._streams

    def noise(self, like: Tensor) -> Tensor:
        """Standard normals shaped like ``like``, one stream per sample."""
        return self.streams.normal_like(like)

    def evaluate(self, x: Tensor, node: Node) -> Prediction:
        """The model at (x, node) (one NFE), then every prediction hook in order."""
        pred = self.model.at(x, node, self, dtype=self.model_dtype)
        for hook, hook_state in self._prediction_hooks:
            pred = hook.on_prediction(pred, node, self, hook_state)
        self.last_prediction = pred
        return pred

    def state(self, hook: Hook[S]) -> S:
        """The per-run state ``hook.start`` made for this run."""
        try:
            out: S = self._states[id(hook)]
        except KeyError:
            raise UserError(f"{hook!r} is not a hook of this run") from None
        return out


def fixed_run(
    path: GaussianPath,
    n_steps: int,
    index: int,
    evaluate: Callable[[Tensor, Node], Prediction],
    noise: Callable[[Tensor], Tensor],
) -> Run:
    """A run context for driving single solver steps by hand (tests, RBF's proposals): its
    ``evaluate`` and ``noise`` are the given functions and it has no model of its own."""
    run = _FixedRun(path, n_steps, evaluate, noise)
    run.index = index
    return run


class _FixedRun(Run):
    def __init__(
        self,
        path: GaussianPath,
        n_steps: int,
        evaluate: Callable[[Tensor, Node], Prediction],
        noise: Callable[[Tensor], Tensor],
    ) -> None:
        Evaluations.__init__(self)
        self.path, self.solver, self.n_steps, self.index = path, None, n_steps, 0
        self._evaluate, self._noise = evaluate, noise
        self._prediction_hooks, self._states, self.last_prediction = [], {}, None

    def evaluate(self, x: Tensor, node: Node) -> Prediction:
        self.nfe += 1
        return self._evaluate(x, node)

    def noise(self, like: Tensor) -> Tensor:
        return self._noise(like)


# ----------------------------------------------------------------------------------------------
# Solvers.


class Solver(Configurable):
    """Base class: frozen dataclasses whose fields are the solver's options. Subclasses set
    ``name`` and implement :meth:`step`; ``order``, ``evals_per_step`` and ``stochastic`` are
    properties a subclass may override with fields or its own properties."""

    name: ClassVar[str] = "solver"

    @property
    def order(self) -> int:
        """Convergence order of the deterministic part (global error ~ h^order)."""
        return 1

    @property
    def evals_per_step(self) -> int:
        """Model evaluations per step (the first step of every solver uses one each)."""
        return 1

    @property
    def stochastic(self) -> bool:
        """True when a step draws fresh noise."""
        return False

    def init(self, x: Tensor) -> State:
        """Initial state at the first grid node."""
        return State(x)

    def needs_prediction(self, state: State, now: Node, run: Run) -> bool:
        """Whether the loop should evaluate the model at ``now`` before the step (a solver that
        first moves elsewhere, like Heun with churn, evaluates there itself)."""
        return True

    @abstractmethod
    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
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
            raise UserError(
                f"nfe={nfe} is too small for solver {self.name!r}: one step needs "
                f"{self.nfe_for_steps(1)} model evaluations"
            )
        return steps


SOLVERS: Registry[Solver] = Registry("solver", Solver)


def register(cls: type[Solver]) -> type[Solver]:
    """Class decorator adding a solver to ``SOLVERS`` under its ``name``."""
    return SOLVERS.register(cls)


def get_solver(solver: str | dict[str, Any] | Solver, **options: Any) -> Solver:
    """A solver from its name (with options), its config dict or the object itself."""
    return SOLVERS.build(solver, **options)


def exp_integrator_coeffs(now: Node, nxt: Node) -> tuple[float, float, float]:
    """(sigma ratio, 1 - e^{-h}, h) for a step in logsnr/2 time, h = (logsnr' - logsnr) / 2.

    Written through alpha and sigma so that alpha = 0 at the start (e^{-h} = 0) and sigma = 0 at
    the end (ratio = 0) are exact.
    """
    ratio = nxt.sigma / now.sigma
    one_minus_exp = 1.0 - (ratio * now.alpha / nxt.alpha if nxt.alpha > 0 else 0.0)
    h = 0.5 * (min(nxt.logsnr, LOGSNR_LIMIT) - max(now.logsnr, -LOGSNR_LIMIT))
    return ratio, one_minus_exp, h


__all__ = [
    "SOLVERS",
    "History",
    "Multistep",
    "Node",
    "Output",
    "Run",
    "Solver",
    "State",
    "exp_integrator_coeffs",
    "fixed_run",
    "get_solver",
    "make_nodes",
    "node_at",
    "register",
    "select_rows",
]
