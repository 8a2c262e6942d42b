"""Inverting samplers: deterministic ODE inversion (DDIM inversion) and CycleDiffusion's
DPM-Encoder for stochastic samplers (Wu & De la Torre 2023, seed paper 24).

**ODE inversion.** The probability-flow ODE is run upwards, from a small time ``t_min`` (where
``x ≈ x0``) to ``t_max``, with the same solver steps that sample it downwards: the exponential
integrators are exact for either direction of the step (DDIM inversion is the DDIM step on an
ascending grid), so the round trip ``x -> invert -> sample`` converges at the solver's order.

**DPM-Encoder.** A stochastic sampler is a deterministic map G(z) of its Gaussian latent
z = (x_T, z_T, ..., z_1) (sec. 3 of the paper): x_{t'} = mu(x_t) + c_t z_t at every step. Given
data x0, the encoder draws the trajectory from the posterior of the forward process,
x_T ~ q(x_T | x0) and x_{t'} ~ q(x_{t'} | x_t, x0) (the DDIM(eta) posterior, the same step with
the true x0 in place of the model's), and solves each step for its noise,
z_t = (x_{t'} - mu(x_t)) / c_t (``compute_eps`` of the official code). Decoding z with the same
sampler reproduces every state of that trajectory to round-off. Only the final step, to
sigma = 0, has no noise (c = 0): it is the sampler's own deterministic denoising step, so the
decoded x0 differs from the encoded one by that last step's denoising error, exactly as in the
paper ("up to the final deterministic step").

**CycleDiffusion.** z = Enc_A(x_A) with model A, x_B = G_B(z) with model B on the same path and
grid: two models share the latent space.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..paths import GaussianPath
from ..predictions import Model, Prediction
from ..solvers import Solver, State, get_grid, get_solver, make_nodes, sample
from .._porting import StepContext
from ..solvers.base import Node
from ..solvers.dpm import DDIM
from ..solvers.loop import SampleResult
from .._porting import make_generators, randn_like

# ----------------------------------------------------------------------------------------------
# Deterministic ODE inversion.


def inversion_grid(
    path: GaussianPath,
    steps: int,
    grid: str | Sequence[float] | Tensor = "karras",
    t_max: float = 1.0,
    **grid_options: float,
) -> Tensor:
    """The ascending grid of ``steps`` steps the inversion runs: the sampling grid of
    ``steps + 1`` steps without its final t = 0, reversed (so it starts at the smallest positive
    time, where the exponential integrators are defined, and ends at ``t_max``)."""
    if isinstance(grid, str):
        t = get_grid(grid, path, steps + 1, t_max=t_max, **grid_options)
    else:
        t = get_grid(grid, path, 0)
    t = t[t > 0]
    if t.numel() < 2:
        raise ValueError(f"an inversion grid needs two positive times, got {t.tolist()}")
    return t.flip(0)


def invert(
    model: Model,
    x: Tensor,
    *,
    solver: str | Solver = "ddim",
    nfe: int | None = None,
    steps: int | None = None,
    grid: str | Sequence[float] | Tensor = "karras",
    t_max: float = 1.0,
    grid_options: dict[str, float] | None = None,
    solver_dtype: torch.dtype | None = torch.float64,
    cond: dict[str, Any] | None = None,
    return_result: bool = False,
    keep_trajectory: bool = False,
) -> Tensor | SampleResult:
    """Integrate the probability-flow ODE upwards from x at the grid's first time to ``t_max``.

    ``x`` is the state at the smallest positive time of the grid (for data, x0 itself: the
    approximation error is sigma(t_min) * eps). ``solver`` must be deterministic. The result is
    the latent x_{t_max} (not divided by sigma); ``sample(model, latent, grid=result.grid.flip(0),
    scale_noise=False, ...)`` maps it back. With ``return_result`` the :class:`SampleResult`
    carries the ascending grid, the NFE and (``keep_trajectory``) the state at every node.
    """
    solver = get_solver(solver)
    if solver.stochastic:
        raise ValueError(f"invert needs a deterministic solver; {solver!r} draws noise")
    if isinstance(grid, str) and (nfe is None) == (steps is None):
        raise ValueError("give exactly one of nfe= or steps= (or pass a grid of times)")
    n_steps = 0
    if isinstance(grid, str):
        n_steps = steps if steps is not None else solver.steps_for_nfe(int(nfe))  # type: ignore[arg-type]
    t_grid = inversion_grid(model.path, n_steps, grid, t_max, **(grid_options or {}))
    if model.path.alpha(t_grid[-1:]).item() == 0 and solver.name != "euler":
        raise ValueError(
            f"the path has alpha = 0 at t_max={float(t_grid[-1])}, where the data-prediction "
            "steps cannot be run upwards; use t_max < 1 or solver='euler'"
        )
    nodes = make_nodes(model.path, t_grid)
    cond = dict(cond or {})
    model_dtype, work_dtype = x.dtype, solver_dtype or x.dtype
    nfe_count = 0

    def evaluate(xi: Tensor, node: Node) -> Prediction:
        nonlocal nfe_count
        nfe_count += 1
        t_batch = torch.full((xi.shape[0],), node.t, device=xi.device, dtype=model_dtype)
        value = model.net(xi.to(model_dtype), t_batch, **cond).to(work_dtype)
        return Prediction(xi, node.t, model.predicts, value, node.coeffs)

    def no_noise(like: Tensor) -> Tensor:
        raise RuntimeError("a deterministic solver drew noise during inversion")

    state = solver.init(x.to(work_dtype))
    ctx = StepContext(evaluate, no_noise, 0, len(nodes) - 1, model.path)
    trajectory = [state.x] if keep_trajectory else None
    for i in range(len(nodes) - 1):
        ctx.index = i
        now, nxt = nodes[i], nodes[i + 1]
        pred = evaluate(state.x, now) if solver.needs_prediction(state, now, ctx) else None
        state = solver.step(state, pred, now, nxt, ctx).replace(step=i + 1)  # type: ignore[arg-type]
        if trajectory is not None:
            trajectory.append(state.x)
    out = state.x.to(model_dtype)
    if return_result or keep_trajectory:
        return SampleResult(out, t_grid, nfe_count, trajectory)
    return out


def round_trip_error(
    model: Model, x: Tensor, *, solver: str = "ddim", nfe: int, **options: Any
) -> float:
    """max |x - sample(invert(x))| over the batch, both directions on the same grid."""
    result = invert(model, x, solver=solver, nfe=nfe, return_result=True, **options)
    assert isinstance(result, SampleResult)
    back = sample(
        model,
        result.x,
        solver=solver,
        grid=result.grid.flip(0),
        scale_noise=False,
        solver_dtype=options.get("solver_dtype", torch.float64),
        cond=options.get("cond"),
    )
    assert isinstance(back, Tensor)
    return float((back - x).abs().max())


# ----------------------------------------------------------------------------------------------
# DPM-Encoder: the Gaussian latent of a stochastic sampler.


@dataclass
class Latent:
    """The latent of a stochastic sampler: the start state and one noise per step.

    ``x_start`` is x at ``t_grid[0]`` (not divided by sigma); ``noises[i]`` is the standard
    normal z of step i (zeros where the step has no noise, e.g. the final denoising step).
    ``trajectory`` is the encoded trajectory x_{t_0}, ..., x_{t_N} (for checks).
    """

    x_start: Tensor
    noises: list[Tensor]
    t_grid: Tensor
    trajectory: list[Tensor]


def _with_noise(ctx: StepContext, noise: Callable[[Tensor], Tensor]) -> StepContext:
    return dataclasses.replace(ctx, noise=noise)


def _affine_in_noise(
    solver: Solver, state: State, pred: Prediction, now: Node, nxt: Node, ctx: StepContext
) -> tuple[State, Tensor]:
    """The step with zero noise (its mean) and the noise coefficient c (x = mean + c z).

    Every stochastic step of the library adds c * z with a scalar c, so c is the difference of
    the step at z = 1 and at z = 0."""
    mean = solver.step(state, pred, now, nxt, _with_noise(ctx, torch.zeros_like))
    ones = solver.step(state, pred, now, nxt, _with_noise(ctx, torch.ones_like))
    return mean, ones.x - mean.x


class EncoderStep(Solver):
    """The encoding pass of the DPM-Encoder as a solver wrapped around the sampler's own.

    At each step it draws the posterior state x' ~ q_eta(x' | x, x0) (DDIM(eta) with the true
    x0), solves mean + c z = x' for z (``compute_eps``), appends z to ``sink`` and moves the state
    to x' (keeping the inner solver's history, which depends on the model's predictions only).
    Where c = 0 the state follows the sampler and z = 0.
    """

    name = "dpm_encoder"

    def __init__(self, inner: Solver, x0: Tensor, posterior_eta: float, sink: list[Tensor]):
        self.inner, self.x0, self.sink = inner, x0, sink
        self.posterior = DDIM(eta=posterior_eta)
        self.order = inner.order  # type: ignore[misc]
        self.stochastic = True  # type: ignore[misc]

    def needs_prediction(self, state: State, now: Node, ctx: StepContext) -> bool:
        return self.inner.needs_prediction(state, now, ctx)

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, ctx: StepContext) -> State:
        mean, c = _affine_in_noise(self.inner, state, pred, now, nxt, ctx)
        nonzero = c != 0
        if not bool(nonzero.any()):
            self.sink.append(torch.zeros_like(state.x))
            return mean
        # Posterior draw x' ~ q(x' | x, x0): the DDIM(eta) step with the true x0.
        truth = Prediction(state.x, now.t, "x0", self.x0.to(state.x.dtype), now.coeffs)
        target = self.posterior.step(State(state.x), truth, now, nxt, ctx).x
        # Noise that makes the sampler land on the posterior draw (compute_eps).
        z = torch.where(nonzero, (target - mean.x) / torch.where(nonzero, c, 1.0), 0.0)
        self.sink.append(z)
        return mean.replace(x=torch.where(nonzero, target, mean.x))


class ReplayNoise(Solver):
    """The sampler with its noise draws replaced by given ones (``noises[i]`` at step i)."""

    name = "replay_noise"

    def __init__(self, inner: Solver, noises: Sequence[Tensor]):
        self.inner, self.noises = inner, list(noises)
        self.order = inner.order  # type: ignore[misc]
        self.stochastic = inner.stochastic  # type: ignore[misc]

    def needs_prediction(self, state: State, now: Node, ctx: StepContext) -> bool:
        return self.inner.needs_prediction(state, now, ctx)

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, ctx: StepContext) -> State:
        if ctx.index >= len(self.noises):
            raise ValueError(
                f"the latent has {len(self.noises)} noises; step {ctx.index} needs one"
            )
        z = self.noises[ctx.index]
        return self.inner.step(state, pred, now, nxt, _with_noise(ctx, lambda like: z.to(like)))


def _default_posterior_eta(solver: Solver) -> float:
    """The sampler's own eta for DDIM (the paper's DDIM(eta) posterior); 1 (the true posterior
    q(x' | x, x0)) for every other stochastic sampler."""
    return solver.eta if isinstance(solver, DDIM) else 1.0


def dpm_encode(
    model: Model,
    x0: Tensor,
    *,
    solver: str | Solver = "ddim",
    solver_options: dict[str, Any] | None = None,
    nfe: int | None = None,
    steps: int | None = None,
    grid: str | Sequence[float] | Tensor = "uniform",
    t_max: float = 1.0,
    posterior_eta: float | None = None,
    seed: int | Sequence[int] = 0,
    solver_dtype: torch.dtype | None = torch.float64,
    cond: dict[str, Any] | None = None,
) -> Latent:
    """Encode x0 into the Gaussian latent of a stochastic sampler (DPM-Encoder, paper sec. 3.2).

    ``solver`` must draw noise (DDIM with eta > 0, ``dpmpp_2m_sde``, ``euler_maruyama``, ...);
    ``t_max < 1`` starts from an intermediate level (the paper's early stop, ``es_steps``).
    ``seed`` seeds the posterior draws (one generator per sample).
    """
    inner = get_solver(solver, **(solver_options or {}))
    if not inner.stochastic:
        raise ValueError(
            f"dpm_encode needs a stochastic sampler (e.g. ddim with eta > 0); {inner!r} draws no "
            "noise, so its latent is x_T alone: use invert() instead"
        )
    eta = _default_posterior_eta(inner) if posterior_eta is None else float(posterior_eta)
    work = solver_dtype or x0.dtype
    generators = make_generators(seed, x0.shape[0])
    t_grid = _grid(model, inner, nfe, steps, grid, t_max)
    node0 = make_nodes(model.path, t_grid[:1])[0]
    # x_T ~ q(x_T | x0) = N(alpha x0, sigma^2 I).
    x_start = node0.alpha * x0.to(work) + node0.sigma * randn_like(x0.to(work), generators)
    noises: list[Tensor] = []
    result = sample(
        model,
        x_start.to(x0.dtype),
        solver=EncoderStep(inner, x0.to(work), eta, noises),
        grid=t_grid,
        seed=[int(g.initial_seed()) + 7919 for g in generators],
        solver_dtype=solver_dtype,
        cond=cond,
        scale_noise=False,
        return_result=True,
        keep_trajectory=True,
    )
    assert isinstance(result, SampleResult) and result.trajectory is not None
    return Latent(x_start, noises, t_grid, result.trajectory)


def dpm_decode(
    model: Model,
    latent: Latent,
    *,
    solver: str | Solver = "ddim",
    solver_options: dict[str, Any] | None = None,
    solver_dtype: torch.dtype | None = torch.float64,
    cond: dict[str, Any] | None = None,
    return_result: bool = False,
) -> Tensor | SampleResult:
    """G(z): run the sampler from ``latent.x_start`` on ``latent.t_grid`` with its noises."""
    inner = get_solver(solver, **(solver_options or {}))
    return sample(
        model,
        latent.x_start,
        solver=ReplayNoise(inner, latent.noises),
        grid=latent.t_grid,
        solver_dtype=solver_dtype,
        cond=cond,
        scale_noise=False,
        return_result=return_result,
        keep_trajectory=return_result,
    )


def cycle_translate(
    model_a: Model, model_b: Model, x_a: Tensor, **options: Any
) -> tuple[Tensor, Latent]:
    """CycleDiffusion (sec. 4.1): x_B = G_B(Enc_A(x_A)), both models on the same path.

    Options go to :func:`dpm_encode` (solver, solver_options, nfe, grid, t_max, seed, ...); the
    decoder uses the same sampler. Returns (x_B, the shared latent)."""
    if model_a.path.config() != model_b.path.config():
        raise ValueError(
            f"model_a and model_b must share a path to share a latent; got {model_a.path!r} and "
            f"{model_b.path!r}"
        )
    latent = dpm_encode(model_a, x_a, **options)
    decode_keys = ("solver", "solver_options", "solver_dtype", "cond")
    x_b = dpm_decode(model_b, latent, **{k: options[k] for k in decode_keys if k in options})
    assert isinstance(x_b, Tensor)
    return x_b, latent


def _grid(
    model: Model,
    solver: Solver,
    nfe: int | None,
    steps: int | None,
    grid: str | Sequence[float] | Tensor,
    t_max: float,
) -> Tensor:
    if not isinstance(grid, str):
        return get_grid(grid, model.path, 0)
    if (nfe is None) == (steps is None):
        raise ValueError("give exactly one of nfe= or steps= (or pass a grid of times)")
    n_steps = steps if steps is not None else solver.steps_for_nfe(int(nfe))  # type: ignore[arg-type]
    return get_grid(grid, model.path, n_steps, t_max=t_max)
