"""Feynman-Kac steering (Singhal et al. 2025, "A General Framework for Inference-time Scaling and
Steering of Diffusion Models", arXiv 2501.06848) as one hook on the one sampling loop.

K particles per final sample run as one batch through any stochastic solver (the proposal is the
model's own reverse kernel). At chosen steps each particle is weighted by a potential G_t built
from intermediate rewards r_t = r(x0_hat(x_t)) and the particles are resampled; the potentials
multiply to exp(r(x0) / temperature) along every path, so as K grows the particles target

    p*(x0) ∝ p_model(x0) exp(r(x0) / temperature)        (eq. 1; the paper's lambda = 1/temperature)

Potentials (sec. 3.1; the official code's names): ``diff`` G_t = exp((r_t - r_{t'}) / T) with t'
the previous weighting step (telescopes to exp(r(x0) / T)); ``max`` G_t = exp(max_{s >= t} r_s /
T) and ``sum`` G_t = exp(sum_{s >= t} r_s / T), both with the terminal correction G_0 =
exp(r(x0) / T) / prod_{t > 0} G_t (``product_of_potentials`` in the official code).

Randomness: the loop's per-sample streams stay with their batch slots when particles are
resampled. A slot that receives a copy of another particle keeps drawing from its own stream,
so copies diverge with fresh independent noise from the next step on (copying the streams would
make duplicates move identically forever). Resampling draws come from the named stream
``fk-resample``, one row per group (``Streams(seed, groups, "fk-resample")``), never from the
per-sample ones, so steering does not shift the solver's noise and a group's draws do not depend
on how many groups share the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from typing_extensions import Unpack

from ..errors import UserError
from ..predictions import Model
from ..randomness import Streams, fresh_seed, inverse_cdf
from ..solvers import Hook, Run, Sampler, State, Step, as_sampler, sample
from ..solvers.dpm import DDIM
from ..solvers.grids import Uniform
from ..solvers.spec import SamplerOptions
from .base import Ledger, Reward, check_rewards, repeat_cond, source_noise

POTENTIALS = ("diff", "max", "sum")
RESAMPLERS = ("multinomial", "systematic")
#: How fk_steer picks one sample per group: ``sample`` draws by the final weights (a draw of the
#: tilted target, the default), ``max_reward`` keeps the particle of highest final reward (a
#: mode-seeking estimator, not a sample; ``argmax`` is its old name, still accepted).
CHOICES = ("sample", "max_reward")
CHOICE_ALIASES = {"argmax": "max_reward"}
#: FK's default sampler: ancestral DDIM (eta = 1) on a uniform grid of 20 steps, seed 0.
ANCESTRAL = Sampler(DDIM(eta=1.0), steps=20, grid=Uniform(), seed=0)
#: The named streams of the resampling draws (one row per group) and of the start noise (one
#: row per particle slot).
RESAMPLE_STREAM, NOISE_STREAM = "fk-resample", "fk-noise"


def effective_sample_size(log_weights: Tensor) -> Tensor:
    """ESS = 1 / sum_i w_i^2 of the normalised weights, per group (rows of ``log_weights``)."""
    w = torch.softmax(log_weights, dim=-1)
    return 1.0 / (w * w).sum(-1)


def resample_indices(
    log_weights: Tensor, method: str = "systematic", streams: Streams | None = None
) -> Tensor:
    """Ancestor indices (G, K) within each group of K particles, drawn from the normalised
    weights of each row of ``log_weights`` (G, K): ``multinomial`` (K iid draws) or
    ``systematic`` (one uniform per group, K evenly spaced points; lower variance). Row g draws
    from row g of ``streams`` (one stream per group keeps groups independent of their number;
    default: ``fk-resample`` streams under a seed from torch's global generator)."""
    if method not in RESAMPLERS:
        raise UserError(f"resampler must be one of {RESAMPLERS}, got {method!r}")
    w = torch.softmax(log_weights.to(torch.float64).cpu(), dim=-1)
    groups, k = w.shape
    streams = Streams(fresh_seed(), groups, RESAMPLE_STREAM) if streams is None else streams
    if len(streams) != groups:
        raise UserError(f"{len(streams)} random streams for {groups} groups")
    if method == "multinomial":
        u = streams.uniform((k,))
    else:
        u = (streams.uniform(())[:, None] + torch.arange(k, dtype=torch.float64)) / k
    # Both are inverse-CDF draws: K iid uniforms, or K evenly spaced points from one uniform.
    return inverse_cdf(w[:, None, :].expand(groups, k, k), u)


def log_mean_exp(log_weights: Tensor) -> Tensor:
    """log (1/K) sum_k exp(l_k) per row of ``log_weights`` (G, K), stable."""
    return torch.logsumexp(log_weights, dim=-1) - math.log(log_weights.shape[-1])


def _zeros() -> Tensor:
    return torch.zeros(0, dtype=torch.float64)


@dataclass
class Weights:
    """What every sequential Monte Carlo run on the loop keeps (FK steering, the posterior
    samplers of :mod:`interpolant.inverse.smc`): per particle its log weight since the last
    resampling (G groups of K consecutive particles); per group the log of the normalising
    constant collected at the resamplings so far; the mean ESS / K at each weighting step, the
    steps that resampled and the group streams of the resampling draws.

    The normalising-constant estimate is the standard one (Del Moral 2004; Naesseth et al. 2019,
    eq. 2.12): Z_hat = prod over resampling epochs of (1/K) sum_k w_k, unbiased for the product
    of the potentials' expectation under the proposal; :meth:`log_normalizer` adds the open
    epoch. Subclasses add per-path fields and index them in :meth:`follow`."""

    groups: int
    streams: Streams
    log_weights: Tensor
    log_evidence: Tensor = field(default_factory=_zeros)
    ess: list[tuple[int, float]] = field(default_factory=list)
    resample_steps: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.log_evidence.numel() == 0:
            self.log_evidence = torch.zeros(
                self.groups, dtype=torch.float64, device=self.log_weights.device
            )

    @property
    def particles(self) -> int:
        return self.log_weights.shape[0] // self.groups

    def grouped(self) -> Tensor:
        """The log weights as (G, K)."""
        return self.log_weights.view(self.groups, self.particles)

    def reweight(self, log_g: Tensor, done: int) -> Tensor:
        """Multiply the weights by the potentials exp(log_g) (one per particle) and record the
        mean ESS / K at step ``done``; returns the ESS per group."""
        self.log_weights = self.log_weights + log_g.to(self.log_weights)
        ess = effective_sample_size(self.grouped())
        self.ess.append((done, float(ess.mean()) / self.particles))
        return ess

    def log_normalizer(self) -> Tensor:
        """log Z_hat per group (G,): the closed epochs and the current weights."""
        return self.log_evidence + log_mean_exp(self.grouped())

    def follow(self, index: Tensor) -> None:
        """Per-path fields follow the resampled ancestors (``index`` over all G * K rows)."""

    def resample(
        self, x_state: State, done: int, resampler: str, threshold: float | None = None
    ) -> State:
        """Resample every group by its weights (when the ESS of some group is below
        ``threshold`` * K, or always when ``threshold`` is None): the state, the solver's typed
        history and the per-path fields follow their ancestors, the epoch's normaliser is
        banked and the weights become uniform."""
        if threshold is not None:
            ess = effective_sample_size(self.grouped())
            if bool((ess >= threshold * self.particles).all()):
                return x_state
        local = resample_indices(self.grouped(), resampler, self.streams)
        offsets = torch.arange(self.groups)[:, None] * self.particles
        index = (local + offsets).flatten().to(x_state.x.device)
        self.log_evidence = self.log_evidence + log_mean_exp(self.grouped())
        self.log_weights = torch.zeros_like(self.log_weights)
        self.follow(index)
        self.resample_steps.append(done)
        return x_state.index_select(index)

    def draw(self, x: Tensor, scores: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One row per group of ``x`` (all G * K particles): a draw by the final weights (the
        group streams), or the particle of highest ``scores`` when given. Returns (the rows
        (G, ...), their indices within groups (G,))."""
        shape = (self.groups, self.particles)
        if scores is not None:
            local = scores.view(shape).argmax(1).cpu()
        else:
            local = self.streams.categorical(torch.softmax(self.grouped().cpu(), -1))
        index = (local + torch.arange(self.groups) * self.particles).to(x.device)
        return x[index], local


@dataclass
class Particles(Weights):
    """FK's per-run state (:class:`Weights` plus): per particle the reward at the previous
    weighting step (``diff``), the running max or sum (``max``, ``sum``), the log product of the
    potentials applied along its path and its last reward; the reward evaluations spent."""

    prev_reward: Tensor = field(default_factory=_zeros)
    running: Tensor = field(default_factory=_zeros)
    log_product: Tensor = field(default_factory=_zeros)
    last_reward: Tensor = field(default_factory=_zeros)
    reward_evals: int = 0

    def follow(self, index: Tensor) -> None:
        self.prev_reward, self.running = self.prev_reward[index], self.running[index]
        self.log_product, self.last_reward = self.log_product[index], self.last_reward[index]

    def choose(self, x: Tensor, rule: str = "sample") -> tuple[Tensor, Tensor, Tensor]:
        """One sample per group of ``x`` (the final particles): ``sample`` by final weight (a
        draw of the group streams), or ``max_reward``, the highest final reward. Returns
        (samples (G, ...), their rewards (G,), chosen indices within groups (G,))."""
        rule = CHOICE_ALIASES.get(rule, rule)
        if rule not in CHOICES:
            raise UserError(f"choose must be one of {CHOICES}, got {rule!r}")
        out, local = self.draw(x, self.last_reward if rule == "max_reward" else None)
        index = (local + torch.arange(self.groups) * self.particles).to(x.device)
        return out, self.last_reward[index], local


def _check_schedule(every: int | None, at_steps: Sequence[int] | None) -> None:
    if every is not None and at_steps is not None:
        raise UserError("give every= or at_steps= (the resampling schedule), not both")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise UserError(f"every must be an int >= 1, got {every!r}")
    if at_steps is not None and any(
        isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in at_steps
    ):
        raise UserError(f"at_steps must be step numbers >= 1, got {list(at_steps)!r}")


class FKSteering(Hook[Particles]):
    """The FK steering hook (one step hook; its per-run state is a :class:`Particles`).

    Use it through :func:`fk_steer`, or in any run: ``sample(model, noise, <stochastic spec>,
    hooks=[..., steer])`` with a batch of G * ``particles`` (groups of K consecutive particles
    are resampled among themselves); ``result.state(steer)`` is the run's :class:`Particles`.
    The intermediate reward is read from the step's newest prediction (``step.last``, after
    every prediction hook, so guidance is seen wherever it stands in ``hooks``).

    Args:
        reward: the verifier r(x) -> (B,) (it is called without gradients).
        particles: K, the particles per group.
        temperature: T in exp(r / T) (the paper's lambda is 1 / T).
        potential: ``diff``, ``max`` or ``sum``.
        every / at_steps: weight (and resample) after every k-th step (default every step), or
            after the given step numbers (1 = after the first step); the final step is always
            weighted.
        ess_threshold: if given, resample at a weighting step only when ESS < threshold * K
            (adaptive); otherwise resample at every weighting step except the last.
        resampler: ``systematic`` or ``multinomial``.
        reward_cond: keyword arguments for the reward, with batch G (repeated per particle).
    """

    def __init__(
        self,
        reward: Reward,
        particles: int,
        *,
        temperature: float = 1.0,
        potential: str = "diff",
        every: int | None = None,
        at_steps: Sequence[int] | None = None,
        ess_threshold: float | None = None,
        resampler: str = "systematic",
        reward_cond: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
            raise UserError(f"particles must be an int >= 1, got {particles!r}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise UserError(f"temperature must be a finite number > 0, got {temperature!r}")
        if potential not in POTENTIALS:
            raise UserError(f"potential must be one of {POTENTIALS}, got {potential!r}")
        if resampler not in RESAMPLERS:
            raise UserError(f"resampler must be one of {RESAMPLERS}, got {resampler!r}")
        if ess_threshold is not None and not 0 < ess_threshold <= 1:
            raise UserError(f"ess_threshold must lie in (0, 1], got {ess_threshold!r}")
        _check_schedule(every, at_steps)
        self.reward, self.particles = reward, particles
        self.temperature, self.potential = float(temperature), potential
        self.every: int | None = None if at_steps is not None else (every or 1)
        self.at_steps: frozenset[int] | None = None if at_steps is None else frozenset(at_steps)
        self.ess_threshold, self.resampler = ess_threshold, resampler
        self.reward_cond = repeat_cond(reward_cond, particles)

    def __repr__(self) -> str:
        return (
            f"FKSteering(particles={self.particles}, temperature={self.temperature}, "
            f"potential={self.potential!r})"
        )

    def start(self, run: Run) -> Particles:
        if run.solver is None or not run.solver.stochastic:
            raise UserError(
                f"FK steering needs a stochastic solver (resampled copies must diverge); "
                f"{run.solver!r} is deterministic: use sde_euler, dpmpp_2m_sde, ddim with "
                "eta > 0, pc, or heun with s_churn > 0"
            )
        batch, device = run.x_start.shape[0], run.x_start.device
        if batch % self.particles:
            raise UserError(f"batch {batch} is not a multiple of particles={self.particles}")
        groups = batch // self.particles
        zeros = torch.zeros(batch, dtype=torch.float64, device=device)
        return Particles(
            groups=groups,
            # One stream per group, keyed by the run's seed: group g never depends on G.
            streams=Streams(run.streams.seed, groups, RESAMPLE_STREAM),
            log_weights=zeros.clone(),
            prev_reward=zeros.clone(),
            running=torch.full_like(zeros, -math.inf if self.potential == "max" else 0.0),
            log_product=zeros.clone(),
            last_reward=zeros.clone(),
        )

    def _scheduled(self, step: int) -> bool:
        if self.at_steps is not None:
            return step in self.at_steps
        return self.every is not None and step % self.every == 0

    def on_step(self, x_state: State, step: Step, run: Run, state: Particles) -> State:
        done = step.index + 1  # steps taken so far (the schedule's step number)
        final = step.index == run.n_steps - 1
        if not (final or self._scheduled(done)):
            return x_state
        # Intermediate reward r(x0_hat(x_t)); the final one is the reward of the sample itself.
        if final:
            target = x_state.x
        elif step.last is not None:
            target = step.last.x0
        else:
            raise UserError(f"FK steering saw no prediction at step {done} of {run.solver!r}")
        r = self._reward(target, state)
        log_g = self._log_potential(r, final, state)
        state.log_product = state.log_product + log_g
        state.last_reward = r
        state.reweight(log_g, done)
        if final:
            return x_state
        return state.resample(x_state, done, self.resampler, self.ess_threshold)

    def _reward(self, x: Tensor, state: Particles) -> Tensor:
        """r(x) per particle in float64 (no gradients), checked and counted."""
        with torch.no_grad():
            values = check_rewards(self.reward(x, **self.reward_cond), x.shape[0], "FK reward")
        state.reward_evals += x.shape[0]
        return values.to(torch.float64)

    def _log_potential(self, r: Tensor, final: bool, state: Particles) -> Tensor:
        """log G_t for rewards r at a weighting step (sec. 3.1 of the paper)."""
        if self.potential == "diff":
            log_g = (r - state.prev_reward) / self.temperature
            state.prev_reward = r
            return log_g
        if final:
            # Terminal correction: the product of all potentials is exp(r(x0) / T).
            return r / self.temperature - state.log_product
        if self.potential == "max":
            state.running = torch.maximum(state.running, r)
        else:
            state.running = state.running + r
        return state.running / self.temperature


@dataclass
class FKResult:
    """Chosen samples (n, ...) and rewards (n,), the index of each within its group (n,), every
    particle (n, K, ...) with its final reward and log weight, the mean ESS / K at each
    weighting step, the steps that resampled, the ledger and ``nfe``, the model evaluations
    per final sample (K times the loop's NFE per particle, every hook's evaluations included)."""

    x: Tensor
    rewards: Tensor
    chosen: Tensor
    particles: Tensor
    particle_rewards: Tensor
    log_weights: Tensor
    ess: list[tuple[int, float]]
    resample_steps: list[int]
    ledger: Ledger
    nfe: int
    #: log Z_hat per final sample, an estimate of log E_model[exp(r(x0) / T)] (the tilted
    #: target's normaliser; :meth:`Weights.log_normalizer`).
    log_normalizer: Tensor | None = None


def fk_steer(
    model: Model,
    steering: FKSteering,
    sampler: Sampler | None = None,
    *,
    n: int = 1,
    shape: Sequence[int] | None = None,
    noise: Tensor | None = None,
    choose: str = "sample",
    cond: dict[str, Any] | None = None,
    hooks: Sequence[Hook[Any]] = (),
    budget: int | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> FKResult:
    """FK steering: ``n`` final samples, each chosen from ``steering.particles`` particles
    steered toward p_model(x) exp(r(x) / temperature) (``interpolant sample --steer fk
    --particles K --reward SPEC``).

    Args:
        model: the model (a :class:`~interpolant.Model`).
        steering: the :class:`FKSteering` hook (reward, K, temperature, potential, schedule).
        sampler: a stochastic :class:`~interpolant.solvers.Sampler` (default :data:`ANCESTRAL`,
            ancestral DDIM); ``shortcuts`` (solver=, steps=, nfe=, grid=, seed=, ...) change it.
        n: the number of final samples.
        shape / noise: one sample's shape, the start noise then being drawn from the ``fk-noise``
            stream of the spec's seed (row j: particle slot j, in the model's dtype); or the
            start noise itself (n * K, ...).
        choose: ``sample`` (default: a draw by the final weights, so the output samples the
            tilted target as K grows) or ``max_reward`` (the particle of best final reward,
            which overshoots the target's reward; ``argmax`` is accepted as its old name).
        cond: conditioning tensors of batch n (repeated per particle).
        hooks: other hooks of the run (guidance, ...); their evaluations are counted.
        budget: the most model evaluations per final sample (checked before sampling).
    """
    spec = as_sampler(ANCESTRAL if sampler is None else sampler, **shortcuts)
    if not spec.solver.stochastic:
        raise UserError(
            f"FK steering needs a stochastic solver, got {spec.solver!r}; use "
            "sde_euler, dpmpp_2m_sde, ddim with eta > 0 or pc"
        )
    # One seed for the start noise, the solver's noise and the resampling.
    seed = fresh_seed() if spec.seed is None else spec.seed
    spec = spec.replace(seed=seed)
    particles = steering.particles
    batch = n * particles
    if noise is None:
        if shape is None:
            raise UserError("give noise= (n * particles, ...) or shape= (one sample's shape)")
        noise = source_noise(model, Streams(seed, batch, NOISE_STREAM), shape)
    if noise.shape[0] != batch:
        raise UserError(f"noise must have n * particles = {batch} rows, got {noise.shape[0]}")
    ledger = Ledger(budget=None if budget is None else budget * n)
    what = f"fk {particles} particles"
    ledger.check(spec.nfe_used() * batch, what)  # refuse before sampling
    result = sample(model, noise, spec, hooks=[*hooks, steering], cond=repeat_cond(cond, particles))
    state = result.state(steering)
    ledger.charge(model_evals=result.nfe * batch, reward_evals=state.reward_evals, what=what)
    x_out, rewards, local = state.choose(result.x, choose)
    return FKResult(
        x=x_out,
        rewards=rewards,
        chosen=local,
        particles=result.x.view(n, particles, *result.x.shape[1:]),
        particle_rewards=state.last_reward.view(n, particles),
        log_weights=state.log_weights.view(n, particles),
        ess=state.ess,
        resample_steps=state.resample_steps,
        ledger=ledger,
        nfe=ledger.model_evals // n,
        log_normalizer=state.log_normalizer(),
    )


__all__ = [
    "ANCESTRAL",
    "CHOICES",
    "POTENTIALS",
    "RESAMPLERS",
    "FKResult",
    "FKSteering",
    "Particles",
    "Weights",
    "effective_sample_size",
    "fk_steer",
    "log_mean_exp",
    "resample_indices",
]
