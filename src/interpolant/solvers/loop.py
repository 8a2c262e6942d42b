"""The one sampling loop: model -> prediction hooks -> solver step -> step hooks.

Guidance, inverse-problem corrections, inference-time steering, teleportation and trajectory
recording are hooks on this loop (``solvers.hooks``), never forks of it. Randomness comes from
one counter-based stream per sample (``interpolant.randomness``), so sample i is the same
whatever the batch; solver arithmetic can run in float64 whatever the model's dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import Tensor
from tqdm.auto import tqdm
from typing_extensions import Unpack

from ..errors import UserError, WrongTypeError
from ..predictions import Model
from .base import Run, State, make_nodes
from .defaults import model_sigma_data
from .hooks import Hook, Plan, Step
from .spec import Sampler, SamplerOptions, as_sampler

S = TypeVar("S")


@dataclass
class SampleResult:
    """The final sample, the grid it used, the NFE spent per sample (every model evaluation of
    the run, hooks' included), the spec, and the per-run state of every hook
    (:meth:`state`)."""

    x: Tensor
    grid: Tensor
    nfe: int
    sampler: Sampler
    states: dict[int, Any] = field(default_factory=dict, repr=False)

    def state(self, hook: Hook[S]) -> S:
        """The state ``hook`` kept during the run (e.g. a :class:`Trajectory`'s recording)."""
        try:
            out: S = self.states[id(hook)]
        except KeyError:
            raise UserError(f"{hook!r} was not a hook of this run") from None
        return out


@dataclass(frozen=True)
class StepInfo:
    """What ``callback`` receives after every step."""

    index: int
    t: float
    x: Tensor
    x0: Tensor | None
    nfe: int


def sample(
    model: Model,
    noise: Tensor,
    sampler: Sampler | None = None,
    *,
    hooks: Sequence[Hook[Any]] = (),
    cond: dict[str, Any] | None = None,
    index: Sequence[int] | Tensor | None = None,
    scale_noise: bool = True,
    progress: bool = False,
    callback: Callable[[StepInfo], None] | None = None,
    **options: Unpack[SamplerOptions],
) -> SampleResult:
    """Sample any model of any prediction kind on any path with any solver.

    Args:
        model: a :class:`~interpolant.Model` (wrap a plain network with
            ``Model(net, path, predicts)``).
        noise: the standard source draw eps of shape (B, ...); the start is
            ``x = sigma(t_max) * noise`` (``scale_noise=False`` uses ``noise`` as x itself, e.g.
            to continue from an intermediate state).
        sampler: the :class:`Sampler` spec; keyword ``options`` (solver=, nfe=, steps=, grid=,
            t_max=, solver_dtype=, seed=) build or change one (``Sampler`` documents them).
        hooks: :class:`~interpolant.solvers.hooks.Hook` objects (guidance, inverse-problem
            corrections, steering, :class:`~interpolant.solvers.hooks.Trajectory`), in order.
        cond: keyword arguments passed to the network (class labels, ...).
        index: the sample numbers of the rows (default 0..B-1): row r draws from the stream
            ``derive_seed("sampler", seed, index[r])``, so a sample does not depend on its batch.
        callback: called with a :class:`StepInfo` after every step.

    Returns:
        A :class:`SampleResult` (``.x`` is the sample at t = 0).
    """
    spec = as_sampler(sampler, **options)
    if not isinstance(model, Model):
        raise WrongTypeError(
            f"model must be an interpolant Model, got {type(model).__name__}; wrap a network "
            "with ip.Model(net, path, predicts=...)"
        )
    if not isinstance(noise, Tensor) or noise.ndim < 1:
        raise UserError("noise must be a tensor of shape (batch, ...)")
    if index is not None and len(index) != noise.shape[0]:
        raise UserError(f"index has {len(index)} entries for a batch of {noise.shape[0]}")
    solver, work_dtype = spec.solver, spec.dtype or noise.dtype
    t_grid = spec.times(model.path, model_sigma_data(model))
    nodes = make_nodes(model.path, t_grid)
    x = noise.to(work_dtype)
    if scale_noise:
        x = x * nodes[0].sigma
    plan = Plan(model, t_grid, x)
    for hook in hooks:
        if hook.implements("prepare"):
            plan = hook.prepare(plan)
    if plan.grid is not t_grid or plan.model.path is not model.path:
        nodes = make_nodes(plan.model.path, plan.grid)
    model, x = plan.model, plan.x
    run = Run(
        model.path,
        nodes,
        grid=plan.grid,
        model=model,
        solver=solver,
        cond=cond,
        seed=spec.seed,
        rows=noise.shape[0] if index is None else index,
        model_dtype=model.input_dtype(noise),
        work_dtype=work_dtype,
    )
    run.x_start = x
    step_hooks = run.attach(hooks)
    state: State = solver.init(x)
    # No progress bar object at all unless asked: constructing a disabled tqdm costs ~0.5 ms.
    bar = tqdm(total=run.n_steps, desc=f"sampling ({solver.name})") if progress else None
    for i in range(run.n_steps):
        run.index = i
        now, nxt = nodes[i], nodes[i + 1]
        pred = run.evaluate(state.x, now) if solver.needs_prediction(state, now, run) else None
        # pred is None only for a solver that evaluates the model itself (needs_prediction).
        state = solver.step(state, pred, now, nxt, run).replace(step=i + 1)  # type: ignore[arg-type]
        if step_hooks:
            done = Step(i, now, nxt, pred, run.last_prediction)
            for hook, hook_state in step_hooks:
                state = hook.on_step(state, done, run, hook_state)
        if callback is not None:
            x0 = None if run.last_prediction is None else run.last_prediction.x0
            callback(StepInfo(i, nxt.t, state.x, x0, run.nfe))
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    out = state.x.to(noise.dtype)
    return SampleResult(out, plan.grid, run.nfe, spec, run.states)


__all__ = ["SampleResult", "StepInfo", "sample"]
