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

Inversion and encoding run the sampler's own solver steps by hand (``solvers.base.fixed_run``,
on an ascending grid or with the posterior noise), every evaluation through ``Model.at`` and
counted; decoding runs on the one sampling loop with the latent's noises replayed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor
from typing_extensions import Unpack

from ..errors import UserError
from ..paths import GaussianPath
from ..predictions import Evaluations, Model, Prediction
from ..randomness import Streams
from ..solvers import (
    Hook,
    Node,
    Run,
    Sampler,
    SampleResult,
    Solver,
    State,
    as_sampler,
    fixed_run,
    make_nodes,
    sample,
)
from ..solvers.dpm import DDIM
from ..solvers.dpm_sde import DPMSolverPPSDE
from ..solvers.grids import Karras, Uniform
from ..solvers.spec import SamplerOptions
from .base import Rows, seeded

#: The inversion's default: DDIM inversion on 50 Karras steps, float64 arithmetic.
INVERSION = Sampler(DDIM(), nfe=50, grid=Karras(), solver_dtype="float64")
#: The DPM-Encoder's default: DDIM(eta = 0.1) on 100 uniform steps, float64 (the paper's).
ENCODER = Sampler(DDIM(eta=0.1), nfe=100, grid=Uniform(), solver_dtype="float64", seed=0)
#: The stream of the encoder's draws (x_T and the posterior states).
ENCODER_STREAM = "dpm-encoder"

StepFn = Callable[[State, Prediction, Node, Node, Run], State]


def _no_noise(like: Tensor) -> Tensor:
    raise RuntimeError("a deterministic solver drew noise")


def _with_noise(run: Run, noise: Callable[[Tensor], Tensor]) -> Run:
    """``run`` (its evaluations, its place on the grid) drawing ``noise`` instead."""
    return fixed_run(run.path, run.n_steps, run.index, run.evaluate, noise)


def _walk(
    model: Model,
    solver: Solver,
    x: Tensor,
    nodes: Sequence[Node],
    cond: dict[str, Any] | None,
    step: StepFn | None = None,
) -> tuple[Tensor, list[Tensor], int]:
    """Drive ``step`` (default: the solver's) along ``nodes`` from x by hand: (the final state,
    the state at every node, the model evaluations per sample)."""
    counter, net_dtype = Evaluations(cond), model.input_dtype(x)

    def evaluate(xi: Tensor, node: Node) -> Prediction:
        return model.at(xi, node, counter, dtype=net_dtype)

    move = solver.step if step is None else step
    state = solver.init(x)
    states = [state.x]
    for i, (now, nxt) in enumerate(itertools.pairwise(nodes)):
        run = fixed_run(model.path, len(nodes) - 1, i, evaluate, _no_noise)
        state = move(state, run.evaluate(state.x, now), now, nxt, run).replace(step=i + 1)
        states.append(state.x)
    return state.x, states, counter.nfe


# ----------------------------------------------------------------------------------------------
# Deterministic ODE inversion.


@dataclass
class Inversion:
    """The latent x at the last (largest) time of the ascending ``grid``, the NFE per sample,
    the spec and (``trajectory=True``) the state at every grid time."""

    x: Tensor
    grid: Tensor
    nfe: int
    sampler: Sampler
    trajectory: list[Tensor] = field(default_factory=list)


def inversion_grid(path: GaussianPath, sampler: Sampler) -> Tensor:
    """The ascending grid of the spec's steps that the inversion runs: the sampling grid of one
    step more without its final t = 0, reversed (so it starts at the smallest positive time,
    where the exponential integrators are defined, and ends at ``t_max``); a listed grid is
    used as given, without its zeros."""
    if sampler.grid.fixed_steps is None:
        sampler = sampler.replace(nfe=None, steps=sampler.steps_used() + 1)
    t = sampler.times(path)
    t = t[t > 0]
    if t.numel() < 2:
        raise UserError(f"an inversion grid needs two positive times, got {t.tolist()}")
    return t.flip(0)


def invert(
    model: Model,
    x: Tensor,
    sampler: Sampler | None = None,
    *,
    cond: dict[str, Any] | None = None,
    trajectory: bool = False,
    **shortcuts: Unpack[SamplerOptions],
) -> Inversion:
    """Integrate the probability-flow ODE upwards from x at the grid's first time to ``t_max``.

    ``x`` is the state at the smallest positive time of the grid (for data, x0 itself: the
    approximation error is sigma(t_min) * eps). ``sampler`` (default :data:`INVERSION`;
    ``shortcuts`` change it) must have a deterministic solver. The result's ``x`` is the latent
    x_{t_max} (not divided by sigma); :func:`round_trip_error` samples it back on the reversed
    grid.
    """
    spec = as_sampler(INVERSION if sampler is None else sampler, **shortcuts)
    solver = spec.solver
    if solver.stochastic:
        raise UserError(f"invert needs a deterministic solver; {solver!r} draws noise")
    t_grid = inversion_grid(model.path, spec)
    if model.path.alpha(t_grid[-1:]).item() == 0 and solver.name != "euler":
        raise UserError(
            f"the path has alpha = 0 at t_max={float(t_grid[-1])}, where the data-prediction "
            "steps cannot be run upwards; use t_max < 1 or solver='euler'"
        )
    work = spec.dtype or x.dtype
    nodes = make_nodes(model.path, t_grid)
    out, states, nfe = _walk(model, solver, x.to(work), nodes, cond)
    return Inversion(out.to(x.dtype), t_grid, nfe, spec, states if trajectory else [])


def reconstruct(
    model: Model,
    x: Tensor,
    sampler: Sampler | None = None,
    *,
    cond: dict[str, Any] | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> Tensor:
    """sample(invert(x)): x inverted to the latent and sampled back on the same grid."""
    inv = invert(model, x, sampler, cond=cond, **shortcuts)
    back = inv.sampler.replace(grid=inv.grid.flip(0), nfe=None, steps=None)
    return sample(model, inv.x, back, cond=cond, scale_noise=False).x


def round_trip_error(
    model: Model,
    x: Tensor,
    sampler: Sampler | None = None,
    *,
    cond: dict[str, Any] | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> float:
    """max |x - sample(invert(x))| over the batch, both directions on the same grid."""
    return float((reconstruct(model, x, sampler, cond=cond, **shortcuts) - x).abs().max())


# ----------------------------------------------------------------------------------------------
# DPM-Encoder: the Gaussian latent of a stochastic sampler.


@dataclass
class Latent:
    """The latent of a stochastic sampler: the start state and one noise per step.

    ``x_start`` is x at ``t_grid[0]`` (not divided by sigma); ``noises[i]`` is the standard
    normal z of step i (zeros where the step has no noise, e.g. the final denoising step).
    ``trajectory`` is the encoded trajectory x_{t_0}, ..., x_{t_N} (for checks); ``sampler``
    the spec that encoded it (decoding replays it) and ``nfe`` the encoder's evaluations.
    """

    x_start: Tensor
    noises: list[Tensor]
    t_grid: Tensor
    trajectory: list[Tensor]
    sampler: Sampler
    nfe: int


def _affine_in_noise(
    solver: Solver, state: State, pred: Prediction, now: Node, nxt: Node, run: Run
) -> tuple[State, Tensor]:
    """The step with zero noise (its mean) and the noise coefficient c (x = mean + c z).

    Every stochastic step of the library adds c * z with a scalar c, so c is the difference of
    the step at z = 1 and at z = 0."""
    mean = solver.step(state, pred, now, nxt, _with_noise(run, torch.zeros_like))
    ones = solver.step(state, pred, now, nxt, _with_noise(run, torch.ones_like))
    return mean, ones.x - mean.x


def _encoder_step(
    solver: Solver, x0: Tensor, eta: float, streams: Streams, noises: list[Tensor]
) -> StepFn:
    """One encoding step: draw the posterior state x' ~ q_eta(x' | x, x0) (DDIM(eta) with the
    true x0), solve mean + c z = x' for z (``compute_eps``), append z to ``noises`` and move the
    state to x' (keeping the solver's history, which depends on the model's predictions only).
    Where c = 0 the state follows the sampler and z = 0."""
    posterior = DDIM(eta=eta)

    def step(state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        mean, c = _affine_in_noise(solver, state, pred, now, nxt, run)
        nonzero = c != 0
        if not bool(nonzero.any()):
            noises.append(torch.zeros_like(state.x))
            return mean
        # Posterior draw x' ~ q(x' | x, x0): the DDIM(eta) step with the true x0.
        truth = Prediction(state.x, now.t, "x0", x0.to(state.x.dtype), now.coeffs)
        draw = _with_noise(run, streams.normal_like)
        target = posterior.step(State(state.x), truth, now, nxt, draw).x
        # Noise that makes the sampler land on the posterior draw (compute_eps).
        z = torch.where(nonzero, (target - mean.x) / torch.where(nonzero, c, 1.0), 0.0)
        noises.append(z)
        return mean.replace(x=torch.where(nonzero, target, mean.x))

    return step


def _default_posterior_eta(solver: Solver) -> float:
    """The sampler's own eta for DDIM (the paper's DDIM(eta) posterior); 1 (the true posterior
    q(x' | x, x0)) for every other stochastic sampler."""
    return solver.eta if isinstance(solver, DDIM) else 1.0


def dpm_encode(
    model: Model,
    x0: Tensor,
    sampler: Sampler | None = None,
    *,
    posterior_eta: float | None = None,
    cond: dict[str, Any] | None = None,
    index: Rows | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> Latent:
    """Encode x0 into the Gaussian latent of a stochastic sampler (DPM-Encoder, paper sec. 3.2).

    ``sampler`` (default :data:`ENCODER`; ``shortcuts`` change it) must draw noise (DDIM with
    eta > 0, ``dpmpp_2m_sde``, ``euler_maruyama``, ...); ``t_max < 1`` starts from an
    intermediate level (the paper's early stop, ``es_steps``). The draws come from the
    ``dpm-encoder`` stream of the spec's seed (row r: sample ``index[r]``).
    """
    spec, seed = seeded(as_sampler(ENCODER if sampler is None else sampler, **shortcuts))
    if getattr(spec.solver, "noise", None) == "brownian":
        # The latent is one normal per step, which is what a Brownian path's increments on the
        # fixed grid are (the same law): encode with the per-step-noise form of the solver.
        spec = spec.replace(solver=spec.solver.replace(noise="independent"))
    solver = spec.solver
    if isinstance(solver, DPMSolverPPSDE):
        raise UserError(
            f"dpm_encode cannot encode {solver.name}: its noise is a Brownian path queried at "
            "inner points of the steps, not one normal per step; use dpmpp_2m_sde, dpmpp_3m_sde "
            "or ddim"
        )
    if not solver.stochastic:
        raise UserError(
            f"dpm_encode needs a stochastic sampler (e.g. ddim with eta > 0); {solver!r} draws "
            "no noise, so its latent is x_T alone: use invert() instead"
        )
    eta = _default_posterior_eta(solver) if posterior_eta is None else float(posterior_eta)
    x0w = x0.to(spec.dtype or x0.dtype)
    streams = Streams(seed, x0.shape[0] if index is None else index, ENCODER_STREAM)
    t_grid = spec.times(model.path)
    nodes = make_nodes(model.path, t_grid)
    # x_T ~ q(x_T | x0) = N(alpha x0, sigma^2 I).
    x_start = nodes[0].alpha * x0w + nodes[0].sigma * streams.normal_like(x0w)
    noises: list[Tensor] = []
    step = _encoder_step(solver, x0w, eta, streams, noises)
    _, states, nfe = _walk(model, solver, x_start, nodes, cond, step)
    return Latent(x_start, noises, t_grid, states, spec, nfe)


@dataclass(frozen=True, eq=False)
class ReplayNoise(Solver):
    """The sampler ``inner`` with its noise draws replaced by given ones (``noises[i]`` at step
    i): G(z) for the latent z = (x_start, noises) as a solver of the loop."""

    name: ClassVar[str] = "replay_noise"
    inner: Solver
    noises: tuple[Tensor, ...] = field(repr=False)

    @property
    def order(self) -> int:
        return self.inner.order

    @property
    def evals_per_step(self) -> int:
        return self.inner.evals_per_step

    def nfe_for_steps(self, steps: int) -> int:
        return self.inner.nfe_for_steps(steps)

    @property
    def stochastic(self) -> bool:
        return self.inner.stochastic

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        if run.index >= len(self.noises):
            raise UserError(f"the latent has {len(self.noises)} noises; step {run.index} needs one")
        z = self.noises[run.index]
        return self.inner.step(state, pred, now, nxt, _with_noise(run, lambda like: z.to(like)))


def dpm_decode(
    model: Model,
    latent: Latent,
    *,
    cond: dict[str, Any] | None = None,
    hooks: Sequence[Hook[Any]] = (),
) -> SampleResult:
    """G(z): the latent's sampler run from ``latent.x_start`` on ``latent.t_grid`` with its
    noises (``hooks``: e.g. a :class:`~interpolant.solvers.Trajectory`)."""
    replay = ReplayNoise(latent.sampler.solver, tuple(latent.noises))
    spec = latent.sampler.replace(solver=replay, grid=latent.t_grid, nfe=None, steps=None)
    return sample(model, latent.x_start, spec, hooks=hooks, cond=cond, scale_noise=False)


@dataclass
class Translation:
    """CycleDiffusion's output: x_B, the shared latent and the NFE per sample (encoding with
    model A plus decoding with model B)."""

    x: Tensor
    latent: Latent
    nfe: int


def cycle_translate(
    model_a: Model,
    model_b: Model,
    x_a: Tensor,
    sampler: Sampler | None = None,
    *,
    posterior_eta: float | None = None,
    cond: dict[str, Any] | None = None,
    index: Rows | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> Translation:
    """CycleDiffusion (sec. 4.1): x_B = G_B(Enc_A(x_A)), both models on the same path and the
    same sampler (as in :func:`dpm_encode`), both given ``cond``."""
    if model_a.path.config() != model_b.path.config():
        raise UserError(
            f"model_a and model_b must share a path to share a latent; got {model_a.path!r} and "
            f"{model_b.path!r}"
        )
    latent = dpm_encode(
        model_a, x_a, sampler, posterior_eta=posterior_eta, cond=cond, index=index, **shortcuts
    )
    decoded = dpm_decode(model_b, latent, cond=cond)
    return Translation(decoded.x, latent, latent.nfe + decoded.nfe)


__all__ = [
    "ENCODER",
    "INVERSION",
    "Inversion",
    "Latent",
    "ReplayNoise",
    "Translation",
    "cycle_translate",
    "dpm_decode",
    "dpm_encode",
    "inversion_grid",
    "invert",
    "round_trip_error",
]
