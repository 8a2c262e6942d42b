"""The one sampling loop: model -> prediction hooks -> solver step -> step hooks.

Guidance, inverse-problem corrections and inference-time steering are hooks on this loop, never
forks of it. Randomness comes from one generator per sample, so sample i is the same whatever
the batch size; solver arithmetic can run in float64 whatever the model's dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..paths import GaussianPath, get_path
from ..predictions import Model, Prediction, check_kind
from .base import Node, Solver, State, StepContext, get_solver, make_nodes
from .grids import get_grid


class PredictionHook(Protocol):
    """Transforms the prediction at one node (CFG, classifier guidance, DPS, self-guidance)."""

    def __call__(self, pred: Prediction, node: Node, ctx: SampleContext) -> Prediction: ...


class StepHook(Protocol):
    """Transforms the state after a step (projection, data consistency, resampling, logging)."""

    def __call__(self, state: State, node: Node, ctx: SampleContext) -> State: ...


@dataclass
class SampleContext:
    """Shared by the hooks of one sampling run: the model, its conditioning, the generators."""

    model: Model
    cond: dict[str, Any]
    generators: list[torch.Generator] | None
    solver: Solver
    grid: Tensor
    nfe: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def noise(self, like: Tensor) -> Tensor:
        """Standard normals shaped like ``like``, one generator per sample."""
        return randn_like(like, self.generators)


def make_generators(seed: int | Sequence[int], batch: int) -> list[torch.Generator]:
    """One CPU generator per sample: seed + i for an int seed, or one seed per sample."""
    seeds = [int(seed) + i for i in range(batch)] if isinstance(seed, int) else list(seed)
    if len(seeds) != batch:
        raise ValueError(f"got {len(seeds)} seeds for a batch of {batch}")
    return [torch.Generator().manual_seed(s) for s in seeds]


def randn_like(like: Tensor, generators: list[torch.Generator] | None) -> Tensor:
    """Per-sample standard normals on CPU (so values do not depend on the device), moved to
    ``like``'s device and dtype; without generators, torch's global generator."""
    if generators is None:
        return torch.randn_like(like)
    if len(generators) != like.shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {like.shape[0]}")
    z = torch.empty(like.shape, dtype=torch.float64)
    for row, g in zip(z, generators):
        row.normal_(generator=g)  # the same stream as torch.randn, without a stack (2x faster)
    return z.to(device=like.device, dtype=like.dtype)


@dataclass
class SampleResult:
    """The final sample, the grid it used, the NFE spent and (if asked) the trajectory: the state
    after every step, and the data prediction of every step whose model call the loop made."""

    x: Tensor
    grid: Tensor
    nfe: int
    trajectory: list[Tensor] | None = None
    x0_estimates: list[Tensor] | None = None


def as_model(model: Any, path: GaussianPath | str | None, predicts: str | None) -> Model:
    """Wrap a plain callable as a :class:`Model` (path and predicts required then)."""
    if isinstance(model, Model):
        if predicts is not None and predicts != model.predicts:
            raise ValueError(f"model predicts {model.predicts!r}, not {predicts!r}")
        if path is not None and get_path(path).config() != model.path.config():
            raise ValueError(f"model's path is {model.path!r}, not {path!r}")
        return model
    if path is None or predicts is None:
        raise ValueError(
            "a plain callable needs path= and predicts= (one of x0, eps, velocity, score, v)"
        )
    return Model(model, get_path(path), check_kind(predicts, "predicts"))


def sample(
    model: Model | Callable[..., Tensor],
    noise: Tensor,
    *,
    solver: str | Solver = "dpmpp_2m",
    nfe: int | None = None,
    steps: int | None = None,
    grid: str | Sequence[float] | Tensor = "karras",
    path: GaussianPath | str | None = None,
    predicts: str | None = None,
    hooks: Sequence[PredictionHook] = (),
    step_hooks: Sequence[StepHook] = (),
    seed: int | Sequence[int] | None = None,
    solver_dtype: torch.dtype | None = None,
    cond: dict[str, Any] | None = None,
    t_max: float = 1.0,
    grid_options: dict[str, float] | None = None,
    solver_options: dict[str, Any] | None = None,
    scale_noise: bool = True,
    return_result: bool = False,
    keep_trajectory: bool = False,
    progress: bool = False,
) -> Tensor | SampleResult:
    """Sample any model of any prediction kind on any path with any solver.

    Args:
        model: a :class:`Model`, or any callable ``net(x_t, t, **cond)`` with ``path`` and
            ``predicts`` given.
        noise: the standard source draw eps of shape (B, ...); the start is
            ``x = sigma(t_max) * noise`` (``scale_noise=False`` uses ``noise`` as x itself).
        solver: a name from ``solvers.SOLVERS`` or a solver object.
        nfe: the budget of model evaluations (the solver picks its number of steps), or
        steps: the number of steps (give one of the two).
        grid: a grid name (uniform, karras, logsnr, shift) or a descending list of times.
        hooks: prediction hooks applied after each model call, in order.
        step_hooks: state hooks applied after each step, in order.
        seed: per-sample generators for stochastic solvers and hooks (seed + i for sample i).
        solver_dtype: dtype of the solver arithmetic (e.g. torch.float64) whatever the model's.
        cond: keyword arguments passed to the model (class labels, ...).
        return_result: return a :class:`SampleResult` instead of the final sample.

    Returns:
        The sample at t = 0, or a :class:`SampleResult`.
    """
    model = as_model(model, path, predicts)
    solver = get_solver(solver, **(solver_options or {}))
    if not isinstance(noise, Tensor) or noise.ndim < 1:
        raise ValueError("noise must be a tensor of shape (batch, ...)")
    if isinstance(grid, str) and (nfe is None) == (steps is None):
        raise ValueError("give exactly one of nfe= or steps= (or pass a grid of times)")
    cond = dict(cond or {})
    model_dtype = noise.dtype
    work_dtype = solver_dtype or noise.dtype
    if isinstance(grid, str):
        n_steps = steps if steps is not None else solver.steps_for_nfe(int(nfe))  # type: ignore[arg-type]
        t_grid = get_grid(grid, model.path, n_steps, t_max=t_max, **(grid_options or {}))
    else:
        t_grid = get_grid(grid, model.path, 0)
    nodes = make_nodes(model.path, t_grid)
    generators = make_generators(seed, noise.shape[0]) if seed is not None else None
    sctx = SampleContext(model, cond, generators, solver, t_grid)

    net, predicts = model.net, model.predicts

    def evaluate(x: Tensor, node: Node) -> Prediction:
        sctx.nfe += 1
        t_batch = torch.full((x.shape[0],), node.t, device=x.device, dtype=model_dtype)
        # Casts only where the dtypes differ (a no-op .to still costs a dispatch per step).
        value = net(x if x.dtype == model_dtype else x.to(model_dtype), t_batch, **cond)
        if value.shape != x.shape:
            raise ValueError(f"model returned shape {tuple(value.shape)} for x of {tuple(x.shape)}")
        if value.dtype != work_dtype:
            value = value.to(work_dtype)
        pred = Prediction(x, node.t, predicts, value, node.coeffs)
        for hook in hooks:
            pred = hook(pred, node, sctx)
        return pred

    x = noise.to(work_dtype)
    if scale_noise:
        x = x * nodes[0].sigma
    state = solver.init(x)
    ctx = StepContext(evaluate, sctx.noise, 0, len(nodes) - 1, model.path, extra=sctx.extra)
    trajectory = [x] if keep_trajectory else None
    x0s: list[Tensor] | None = [] if keep_trajectory else None
    # No progress bar object at all unless asked: constructing a disabled tqdm costs ~0.5 ms.
    bar = tqdm(total=len(nodes) - 1, desc=f"sampling ({solver.name})") if progress else None
    for i in range(len(nodes) - 1):
        ctx.index = i
        now, nxt = nodes[i], nodes[i + 1]
        pred = evaluate(state.x, now) if solver.needs_prediction(state, now, ctx) else None
        # pred is None only for a solver that evaluates the model itself (needs_prediction).
        state = solver.step(state, pred, now, nxt, ctx).replace(step=i + 1)  # type: ignore[arg-type]
        for step_hook in step_hooks:
            state = step_hook(state, nxt, sctx)
        if trajectory is not None and x0s is not None:
            trajectory.append(state.x)
            if pred is not None:
                x0s.append(pred.x0)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    out = state.x.to(model_dtype)
    if return_result:
        return SampleResult(out, t_grid, sctx.nfe, trajectory, x0s)
    return out
