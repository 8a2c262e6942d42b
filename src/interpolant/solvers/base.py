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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import Tensor

from ..configurable import Configurable, Registry
from ..errors import UserError, WrongTypeError
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
        return self.replace(**changes)

    def replace(self: H, **changes: Any) -> H:
        """A copy with some fields changed."""
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
    raise WrongTypeError(f"{type(value).__name__} is declared per-sample but has no rows to select")


@dataclass(slots=True)
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
    evaluation of the run, including those hooks make; ``rows`` are the sample numbers of the
    batch's rows; ``state(hook)`` is a hook's per-run state.
    """

    def __init__(
        self,
        path: GaussianPath | None,
        nodes: list[Node],
        *,
        grid: Tensor | None = None,
        model: Model | None = None,
        solver: Solver | None = None,
        cond: dict[str, Any] | None = None,
        seed: int | None = None,
        rows: int | Sequence[int] | Tensor = 0,
        model_dtype: torch.dtype | None = None,
        work_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(cond)
        self._model, self._path, self.solver = model, path, solver
        self.nodes, self.n_steps, self.index = nodes, len(nodes) - 1, 0
        self.grid = (
            torch.tensor([n.t for n in nodes], dtype=torch.float64) if grid is None else grid
        )
        self.seed = seed
        #: The sample numbers of the rows (row r draws from the streams of sample rows[r]).
        self.rows = torch.arange(rows) if isinstance(rows, int) else torch.as_tensor(rows)
        self._streams: Streams | None = None
        self.model_dtype, self.work_dtype = model_dtype, work_dtype
        self._prediction_hooks: list[tuple[Hook[Any], Any]] = []
        self._states: dict[int, Any] = {}
        #: The newest prediction of the run (after the prediction hooks).
        self.last_prediction: Prediction | None = None
        #: The state the first step starts from.
        self.x_start: Tensor = torch.empty(0)

    @classmethod
    def for_model(cls, model: Model, grid: Tensor, **options: Any) -> Run:
        """The run context of ``model`` on the descending time ``grid`` (``options``: solver,
        cond, seed, rows, model_dtype, work_dtype)."""
        return cls(model.path, make_nodes(model.path, grid), grid=grid, model=model, **options)

    @property
    def model(self) -> Model:
        if self._model is None:
            raise UserError("this run has no model (a bridge or a hand-driven step)")
        return self._model

    @property
    def path(self) -> GaussianPath:
        if self._path is None:
            raise UserError("this run has no Gaussian path (a data-to-data bridge)")
        return self._path

    @property
    def is_last(self) -> bool:
        return self.index == self.n_steps - 1

    @property
    def streams(self) -> Streams:
        """The per-sample random streams (``Streams(seed, rows)``; made on the first draw, so a
        deterministic run never touches torch's global generator for a seed)."""
        if self._streams is None:
            if self.seed is None:
                self.seed = fresh_seed()
            self._streams = Streams(self.seed, self.rows)
        return self._streams

    def noise(self, like: Tensor) -> Tensor:
        """Standard normals shaped like ``like``, one stream per sample."""
        return self.streams.normal_like(like)

    def streams_for(self, stream: str) -> Streams:
        """Fresh per-sample streams named ``stream`` under the run's seed and rows (a hook's own
        randomness, apart from the solver's)."""
        if self.seed is None:
            self.seed = fresh_seed()
        return Streams(self.seed, self.rows, stream)

    def evaluate(self, x: Tensor, node: Node) -> Prediction:
        """The model at (x, node) (one NFE), then every prediction hook in order."""
        model = self._model if self._model is not None else self.model  # the property raises
        pred = model.at(x, node, self, None, self.model_dtype)
        for hook, hook_state in self._prediction_hooks:
            pred = hook.on_prediction(pred, node, self, hook_state)
        self.last_prediction = pred
        return pred

    def attach(self, hooks: Sequence[Hook[Any]]) -> list[tuple[Hook[Any], Any]]:
        """Start every hook for this run (its state kept for :meth:`state`), register the
        prediction hooks; returns the step hooks with their states, in order."""
        step_hooks = []
        for hook in hooks:
            hook_state = hook.start(self)
            self._states[id(hook)] = hook_state
            if hook.implements("on_prediction"):
                self._prediction_hooks.append((hook, hook_state))
            if hook.implements("on_step"):
                step_hooks.append((hook, hook_state))
        return step_hooks

    @property
    def prediction_hooks(self) -> tuple[Hook[Any], ...]:
        """The run's prediction hooks, in order (a solver that needs one checks for it)."""
        return tuple(hook for hook, _ in self._prediction_hooks)

    @property
    def states(self) -> dict[int, Any]:
        """Every hook's state, by id of the hook (what the result keeps)."""
        return self._states

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
        super().__init__(path, [])
        self.n_steps = n_steps
        self._evaluate, self._noise = evaluate, noise

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


def get_solver(solver: str | Mapping[str, Any] | Solver, **options: Any) -> Solver:
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
