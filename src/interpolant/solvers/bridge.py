"""The bridge integrator of stochastic interpolants (Albergo, Boffi & Vanden-Eijnden 2023).

A data-to-data bridge ``x_t = alpha x0 + beta x1 + gamma z`` (``paths.Interpolant``) has no
Gaussian (alpha, sigma): its fields, the velocity ``b(x, t)`` and the score ``s(x, t)``, are
given directly, so neither the prediction algebra nor the Gaussian solver steps of the one loop
apply (those end on sigma = 0 with a noise-free Euler step, and Heun skips its correction there;
on a bridge b is finite at t = 0 and every step is the same). This is a small integrator of its
own built on the loop's other pieces: the :class:`~interpolant.solvers.spec.Sampler` spec (its
solver, steps or a list of times, t_max, solver dtype and seed), the per-sample random streams
of ``interpolant.randomness``, the hook protocol (``start`` and ``on_step``: a bridge has no
predictions to hand to ``on_prediction``) and :class:`~interpolant.solvers.loop.SampleResult`
with an honest NFE (every call of b or s counts one).

From x1 at t = t_max to t = 0, with dt = t_next - t < 0 (time runs backwards):

* ``euler``: ``x <- x + b(x, t) dt``;
* ``heun``: the Euler step to x', then ``x <- x + (b(x, t) + b(x', t_next)) dt / 2`` (2nd order,
  two evaluations at every step);
* ``sde_euler``: Euler-Maruyama of the paper's backward SDE ``dX = (b - eps s) dt + sqrt(2 eps)
  dW``, i.e. ``x <- x + (b - eps s) dt + sqrt(2 eps |dt|) xi`` with ``eps = eps(t)`` of the
  solver (``SDEEuler(eps=...)`` or ``g=``); in reversed time it is the flow plus a Langevin step
  that keeps rho_t invariant. A step where eps(t) = 0 is the Euler step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from typing_extensions import Unpack

from ..errors import UserError
from ..paths import Linear
from ..paths.interpolant import Field
from ..predictions import Prediction
from .base import Node, Run, Solver, State
from .grids import Listed, Shift, Uniform
from .hooks import Hook, Step
from .loop import SampleResult
from .ode import Euler, Heun
from .sde import SDEEuler
from .spec import Sampler, SamplerOptions, as_sampler

#: The bridge's defaults when no spec is given: Heun on a uniform grid (the budget, ``steps=``
#: or a list of times as ``grid=``, is the caller's).
BRIDGE_DEFAULTS: dict[str, Any] = {"solver": "heun", "grid": "uniform"}
#: The grids defined in t alone (the noise-level grids need a Gaussian path).
TIME_GRIDS = (Uniform, Shift, Listed)
# The time grids never read their path argument.
_NO_PATH = Linear()


def time_node(t: float) -> Node:
    """A grid node of a bridge: the time only (a bridge has no Gaussian coefficients; they are
    NaN)."""
    nan = math.nan
    return Node(t, nan, nan, nan, nan, nan)


class BridgeRun(Run):
    """The run context of a bridge: its grid and time nodes, the per-sample streams
    (``noise``), the hooks' states and the NFE. It has no model, path or predictions."""

    def __init__(
        self,
        grid: Tensor,
        solver: Solver,
        seed: int | None,
        rows: int | Sequence[int] | Tensor,
        work_dtype: torch.dtype,
    ) -> None:
        nodes = [time_node(t) for t in grid.tolist()]
        super().__init__(None, nodes, solver=solver, seed=seed, rows=rows, work_dtype=work_dtype)

    def evaluate(self, x: Tensor, node: Node) -> Prediction:
        raise UserError("a bridge run has no model to evaluate: its fields are given directly")


def sample_bridge(
    velocity: Field,
    x1: Tensor,
    sampler: Sampler | None = None,
    *,
    score: Field | None = None,
    hooks: Sequence[Hook[Any]] = (),
    index: Sequence[int] | Tensor | None = None,
    **options: Unpack[SamplerOptions],
) -> SampleResult:
    """Transport x1 (at t = t_max, default 1) to t = 0 with the interpolant's ODE or backward SDE.

    Args:
        velocity: the field b as ``velocity(x, t)``, t of shape (B,).
        x1: the start, a batch of the second endpoint (B, ...).
        sampler: the :class:`Sampler` spec; solver ``euler``, ``heun`` or ``sde_euler`` (the
            SDE; its ``eps`` is a number or a function of t), a budget of ``steps`` (not nfe:
            the bridge's steps cost differently from the Gaussian ones) and a grid in t alone
            (uniform, shift or a list of times). Keyword ``options`` build or change it; without
            a spec the defaults are ``BRIDGE_DEFAULTS`` (Heun, uniform). The solver arithmetic
            runs in float64 unless ``solver_dtype`` says otherwise.
        score: the field s as ``score(x, t)`` (needed by a stochastic ``sde_euler``).
        hooks: hooks with ``start`` and/or ``on_step`` (a :class:`Trajectory`, a projection),
            called after every step with ``step.pred = None``.
        index: the sample numbers of the rows (default 0..B-1): row r draws its noise from the
            stream of sample ``index[r]``, so a sample does not depend on its batch.

    Returns:
        A :class:`SampleResult` (``.x`` the sample at t = 0 in x1's dtype, ``.nfe`` the calls
        of b and s per sample).
    """
    spec = as_sampler(sampler, **options) if sampler is not None else _default_spec(options)
    solver = _check_spec(spec, score)
    if index is not None and len(index) != x1.shape[0]:
        raise UserError(f"index has {len(index)} entries for a batch of {x1.shape[0]}")
    work_dtype = spec.dtype or torch.float64
    grid = spec.grid.times(_NO_PATH, spec.steps_used(), spec.t_max)
    run = BridgeRun(grid, solver, spec.seed, x1.shape[0] if index is None else index, work_dtype)
    run.x_start = x1.to(work_dtype)
    step_hooks = _start_hooks(hooks, run)
    state = State(run.x_start)
    for i in range(run.n_steps):
        run.index = i
        now, nxt = run.nodes[i], run.nodes[i + 1]
        x = bridge_step(solver, state.x, now, nxt, run, velocity, score)
        state = state.replace(x=x, step=i + 1)
        done = Step(i, now, nxt, None, None)
        for hook, hook_state in step_hooks:
            state = hook.on_step(state, done, run, hook_state)
    return SampleResult(state.x.to(x1.dtype), grid, run.nfe, spec, run.states)


def bridge_step(
    solver: Solver,
    x: Tensor,
    now: Node,
    nxt: Node,
    run: Run,
    velocity: Field,
    score: Field | None,
) -> Tensor:
    """One step of ``solver`` (euler, heun or sde_euler) from ``now`` to ``nxt``."""
    dt = nxt.t - now.t  # negative: time runs from 1 to 0
    drift = field_at(velocity, x, now.t, run)
    eps = solver.eps_at(now.t) if isinstance(solver, SDEEuler) else 0.0
    if eps > 0 and score is not None:
        # Euler-Maruyama step of the backward SDE.
        s = field_at(score, x, now.t, run)
        return x + (drift - eps * s) * dt + math.sqrt(2 * eps * -dt) * run.noise(x)
    # Euler step.
    x_next = x + drift * dt
    if isinstance(solver, Heun):
        # 2nd-order correction.
        x_next = x + 0.5 * (drift + field_at(velocity, x_next, nxt.t, run)) * dt
    return x_next


def field_at(fn: Field, x: Tensor, t: float, run: Run) -> Tensor:
    """``fn(x, t)`` with t broadcast to every sample, shape-checked, counted as one NFE."""
    run.nfe += 1
    value = fn(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))
    if not isinstance(value, Tensor) or value.shape != x.shape:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise UserError(f"a bridge field returned {shape} for x of shape {tuple(x.shape)}")
    return value.to(x.dtype)


def _default_spec(options: SamplerOptions) -> Sampler:
    return as_sampler(None, **{**BRIDGE_DEFAULTS, **options})


def _check_spec(spec: Sampler, score: Field | None) -> Solver:
    """The spec's solver, if the bridge can run it as the spec says."""
    solver = spec.solver
    if not isinstance(solver, Euler | Heun | SDEEuler):
        raise UserError(f"a bridge runs euler, heun or sde_euler, not {solver.name!r}")
    if isinstance(solver, Heun) and solver.stochastic:
        raise UserError("a bridge runs Heun without churn (s_churn = 0)")
    if solver.stochastic and score is None:
        raise UserError("the bridge's SDE (sde_euler with eps > 0) needs score=")
    if spec.nfe is not None:
        raise UserError("a bridge takes steps= or a list of times as grid=, not nfe=")
    if not isinstance(spec.grid, TIME_GRIDS):
        raise UserError(
            f"a bridge has no noise levels for the {spec.grid.name} grid; use uniform, shift "
            "or a list of times"
        )
    return solver


def _start_hooks(hooks: Sequence[Hook[Any]], run: Run) -> list[tuple[Hook[Any], Any]]:
    """Each hook's state for ``run``; returns the hooks with ``on_step`` and their states."""
    for hook in hooks:
        for method in ("prepare", "on_prediction"):
            if hook.implements(method):
                raise UserError(f"{hook!r} has {method}, which a bridge (no model) cannot call")
    return run.attach(hooks)


__all__ = ["BRIDGE_DEFAULTS", "TIME_GRIDS", "BridgeRun", "bridge_step", "field_at", "sample_bridge"]
