"""Feynman-Kac steering (Singhal et al. 2025, "A General Framework for Inference-time Scaling and
Steering of Diffusion Models", arXiv 2501.06848) as a hook on the one sampling loop.

K particles per final sample run as one batch through any stochastic solver (the proposal is the
model's own reverse kernel). At chosen steps each particle is weighted by a potential G_t built
from intermediate rewards r_t = r(x0_hat(x_t)) and the particles are resampled; the potentials
multiply to exp(r(x0) / temperature) along every path, so as K grows the particles target

    p*(x0) ∝ p_model(x0) exp(r(x0) / temperature)        (eq. 1; the paper's lambda = 1/temperature)

Potentials (sec. 3.1; the official code's names): ``diff`` G_t = exp((r_t - r_{t'}) / T) with t'
the previous weighting step (telescopes to exp(r(x0) / T)); ``max`` G_t = exp(max_{s >= t} r_s /
T) and ``sum`` G_t = exp(sum_{s >= t} r_s / T), both with the terminal correction G_0 =
exp(r(x0) / T) / prod_{t > 0} G_t (``product_of_potentials`` in the official code).

Randomness: the per-sample generators of the loop stay with their batch slots when particles
are resampled. A slot that receives a copy of another particle keeps drawing from its own
generator, so copies diverge with fresh independent noise from the next step on (copying the
generators would make duplicates move identically forever). Resampling draws come from the
hook's own generators (one per group, from ``seed``), never from the per-sample ones, so
steering does not shift the solver's noise streams.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..predictions import Model, Prediction
from ..solvers import Node, SampleResult, State, get_solver, sample
from .._porting import SampleContext
from .base import Ledger, Reward
from .search import NOISE_SEED_OFFSET, model_dtype, source_noise

POTENTIALS = ("diff", "max", "sum")
RESAMPLERS = ("multinomial", "systematic")
CHOICES = ("argmax", "sample")
#: The hook's group generators are seeded apart from the solver's per-sample ones (seed + i).
RESAMPLE_SEED_OFFSET = 2_000_003


def effective_sample_size(log_weights: Tensor) -> Tensor:
    """ESS = 1 / sum_i w_i^2 of the normalised weights, per group (rows of ``log_weights``)."""
    w = torch.softmax(log_weights, dim=-1)
    return 1.0 / (w * w).sum(-1)


def resample_indices(
    log_weights: Tensor,
    method: str = "systematic",
    generators: Sequence[torch.Generator | None] | torch.Generator | None = None,
) -> Tensor:
    """Ancestor indices (G, K) within each group of K particles, drawn from the normalised
    weights of each row of ``log_weights`` (G, K): ``multinomial`` (K iid draws) or
    ``systematic`` (one uniform per group, K evenly spaced points; lower variance). Row g draws
    from ``generators[g]`` (one generator per group keeps groups independent of their number)."""
    if method not in RESAMPLERS:
        raise ValueError(f"resampler must be one of {RESAMPLERS}, got {method!r}")
    w = torch.softmax(log_weights.to(torch.float64).cpu(), dim=-1)
    groups, k = w.shape
    gens = list(generators) if isinstance(generators, Sequence) else [generators] * groups
    if len(gens) != groups:
        raise ValueError(f"{len(gens)} generators for {groups} groups")
    if method == "multinomial":
        return torch.stack(
            [torch.multinomial(w[g], k, replacement=True, generator=gens[g]) for g in range(groups)]
        )
    offset = torch.cat(
        [torch.rand(1, generator=gens[g], dtype=torch.float64) for g in range(groups)]
    )
    u = (offset[:, None] + torch.arange(k, dtype=torch.float64)) / k
    cdf = w.cumsum(-1)
    cdf[:, -1] = 1.0  # guard against rounding below the last point
    return torch.searchsorted(cdf, u).clamp_max(k - 1)


def take(obj: Any, index: Tensor, batch: int) -> Any:
    """``obj`` with every tensor whose leading dimension is the batch indexed by ``index``
    (recursing into tuples, lists and dicts): resamples a solver's ``State.history``."""
    if isinstance(obj, Tensor):
        return obj[index.to(obj.device)] if obj.ndim >= 1 and obj.shape[0] == batch else obj
    if isinstance(obj, tuple):
        return tuple(take(v, index, batch) for v in obj)
    if isinstance(obj, list):
        return [take(v, index, batch) for v in obj]
    if isinstance(obj, dict):
        return {k: take(v, index, batch) for k, v in obj.items()}
    return obj


def _check_schedule(every: int | None, at_steps: Sequence[int] | None) -> None:
    if every is not None and at_steps is not None:
        raise ValueError("give every= or at_steps= (the resampling schedule), not both")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ValueError(f"every must be an int >= 1, got {every!r}")
    if at_steps is not None and any(
        isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in at_steps
    ):
        raise ValueError(f"at_steps must be step numbers >= 1, got {list(at_steps)!r}")


class FKSteering:
    """The FK steering hook: a prediction hook (:meth:`capture`, recording x0_hat) plus a step
    hook (the instance itself: potentials, weights, resampling).

    Use it through :func:`fk_steer`, or by hand: ``sample(model, noise, solver=<stochastic>,
    hooks=[..., steer.capture], step_hooks=[steer], seed=...)`` with a batch of G * ``particles``
    (groups of K consecutive particles are resampled among themselves); ``capture`` must be the
    last prediction hook so rewards see the guided x0_hat.

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
        seed: seeds the hook's generators, one per group (resampling and the final draw).
        ledger: where reward evaluations are charged (one per particle per weighting step).
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
        seed: int = 0,
        ledger: Ledger | None = None,
        reward_cond: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
            raise ValueError(f"particles must be an int >= 1, got {particles!r}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        if potential not in POTENTIALS:
            raise ValueError(f"potential must be one of {POTENTIALS}, got {potential!r}")
        if resampler not in RESAMPLERS:
            raise ValueError(f"resampler must be one of {RESAMPLERS}, got {resampler!r}")
        if ess_threshold is not None and not 0 < ess_threshold <= 1:
            raise ValueError(f"ess_threshold must lie in (0, 1], got {ess_threshold!r}")
        _check_schedule(every, at_steps)
        self.particles, self.temperature, self.potential = particles, float(temperature), potential
        self.every: int | None = None if at_steps is not None else (every or 1)
        self.at_steps: set[int] | None = None if at_steps is None else set(at_steps)
        self.ess_threshold, self.resampler = ess_threshold, resampler
        self.seed = int(seed)
        self.ledger = ledger if ledger is not None else Ledger()
        self.reward = self.ledger.counted_reward(reward, "FK reward")
        self.reward_cond = dict(reward_cond or {})
        self._sctx: SampleContext | None = None
        self._x0: Tensor | None = None

    # ------------------------------------------------------------------ per-run particle state

    def _start(self, batch: int, sctx: SampleContext, device: torch.device) -> None:
        if not sctx.solver.stochastic:
            raise ValueError(
                f"FK steering needs a stochastic solver (resampled copies must diverge); "
                f"{sctx.solver!r} is deterministic: use sde_euler, dpmpp_2m_sde, ddim with "
                "eta > 0, pc, or heun with s_churn > 0"
            )
        if batch % self.particles:
            raise ValueError(f"batch {batch} is not a multiple of particles={self.particles}")
        self._sctx, self.groups = sctx, batch // self.particles
        # One generator per group (seed + g): resampling in group g never depends on G.
        self.generators = [
            torch.Generator().manual_seed(RESAMPLE_SEED_OFFSET + self.seed + g)
            for g in range(self.groups)
        ]
        zeros = torch.zeros(batch, dtype=torch.float64, device=device)
        self.prev_reward = zeros.clone()  # r at the previous weighting step (diff)
        self.running = torch.full_like(zeros, -math.inf if self.potential == "max" else 0.0)
        self.log_product = zeros.clone()  # log prod of the potentials applied along each path
        self.log_weights = zeros.clone()  # since the last resampling
        self.last_reward = zeros.clone()
        self.ess_trace: list[tuple[int, float]] = []
        self.resample_steps: list[int] = []
        self.reward_cond_batch = {
            k: v.repeat_interleave(self.particles, 0) if isinstance(v, Tensor) else v
            for k, v in self.reward_cond.items()
        }

    def capture(self, pred: Prediction, node: Node, ctx: SampleContext) -> Prediction:
        """Prediction hook: remember the latest x0_hat (the intermediate reward's input)."""
        self._x0 = pred.x0
        return pred

    def _scheduled(self, step: int) -> bool:
        if self.at_steps is not None:
            return step in self.at_steps
        return self.every is not None and step % self.every == 0

    # ------------------------------------------------------------------ the step hook

    def __call__(self, state: State, node: Node, ctx: SampleContext) -> State:
        batch = state.x.shape[0]
        if ctx is not self._sctx:
            self._start(batch, ctx, state.x.device)
        final = node.sigma == 0.0 or state.step == ctx.grid.numel() - 1
        if not (final or self._scheduled(state.step)):
            return state
        # Intermediate reward r(x0_hat(x_t)); the final one is the reward of the sample itself.
        if final:
            target = state.x
        elif self._x0 is not None and self._x0.shape[0] == batch:
            target = self._x0
        else:
            raise RuntimeError("FK steering saw no x0 prediction: pass steer.capture in hooks=")
        with torch.no_grad():
            r = self.reward(target, **self.reward_cond_batch).to(torch.float64)
        log_g = self._log_potential(r, final)
        self.log_product += log_g
        self.log_weights += log_g
        self.last_reward = r
        ess = effective_sample_size(self.log_weights.view(self.groups, self.particles))
        self.ess_trace.append((state.step, float(ess.mean()) / self.particles))
        if final:
            return state
        if self.ess_threshold is not None and bool(
            (ess >= self.ess_threshold * self.particles).all()
        ):
            return state
        return self._resample(state)

    def _log_potential(self, r: Tensor, final: bool) -> Tensor:
        """log G_t for rewards r at a weighting step (sec. 3.1 of the paper)."""
        if self.potential == "diff":
            log_g = (r - self.prev_reward) / self.temperature
            self.prev_reward = r
            return log_g
        if final:
            # Terminal correction: the product of all potentials is exp(r(x0) / T).
            return r / self.temperature - self.log_product
        if self.potential == "max":
            self.running = torch.maximum(self.running, r)
        else:
            self.running = self.running + r
        return self.running / self.temperature

    def _resample(self, state: State) -> State:
        """Resample every group by its weights: the state, the solver history and the per-path
        bookkeeping follow their ancestors; the weights become uniform."""
        local = resample_indices(
            self.log_weights.view(self.groups, self.particles), self.resampler, self.generators
        )
        offsets = torch.arange(self.groups)[:, None] * self.particles
        index = (local + offsets).flatten().to(state.x.device)
        batch = state.x.shape[0]
        for name in ("prev_reward", "running", "log_product", "last_reward"):
            setattr(self, name, getattr(self, name)[index])
        self.log_weights = torch.zeros_like(self.log_weights)
        self.resample_steps.append(state.step)
        return state.replace(x=state.x[index], history=take(state.history, index, batch))

    # ------------------------------------------------------------------ the final choice

    def choose(self, x: Tensor, rule: str = "argmax") -> tuple[Tensor, Tensor, Tensor]:
        """One sample per group: ``argmax`` final reward, or ``sample`` by final weight.
        Returns (samples (G, ...), their rewards (G,), chosen indices within groups (G,))."""
        if rule not in CHOICES:
            raise ValueError(f"choose must be one of {CHOICES}, got {rule!r}")
        rewards = self.last_reward.view(self.groups, self.particles)
        if rule == "argmax":
            local = rewards.argmax(1).cpu()
        else:
            probs = torch.softmax(self.log_weights.view(self.groups, self.particles).cpu(), -1)
            local = torch.cat(
                [
                    torch.multinomial(probs[g], 1, generator=self.generators[g])
                    for g in range(self.groups)
                ]
            )
        index = local + torch.arange(self.groups) * self.particles
        return x[index.to(x.device)], self.last_reward[index.to(x.device)], local


@dataclass
class FKResult:
    """Chosen samples (n, ...) and rewards (n,), every particle (n, K, ...) with its final reward
    and log weight, the mean ESS / K at each weighting step, and the ledger."""

    x: Tensor
    rewards: Tensor
    particles: Tensor
    particle_rewards: Tensor
    log_weights: Tensor
    ess: list[tuple[int, float]]
    resample_steps: list[int]
    ledger: Ledger
    nfe_per_particle: int
    extra: dict[str, Any] = field(default_factory=dict)


def fk_steer(
    model: Model,
    reward: Reward,
    particles: int,
    *,
    n: int = 1,
    shape: Sequence[int] | None = None,
    noise: Tensor | None = None,
    solver: str = "ddim",
    solver_options: dict[str, Any] | None = None,
    steps: int | None = None,
    nfe: int | None = None,
    grid: str | Sequence[float] | Tensor = "uniform",
    temperature: float = 1.0,
    potential: str = "diff",
    every: int | None = None,
    at_steps: Sequence[int] | None = None,
    ess_threshold: float | None = None,
    resampler: str = "systematic",
    choose: str = "argmax",
    seed: int = 0,
    cond: dict[str, Any] | None = None,
    reward_cond: dict[str, Any] | None = None,
    hooks: Sequence[Any] = (),
    budget: int | None = None,
    solver_dtype: torch.dtype | None = None,
    dtype: torch.dtype | None = None,
) -> FKResult:
    """FK steering: ``n`` final samples, each chosen from ``particles`` particles steered toward
    p_model(x) exp(r(x) / temperature) (``interpolant sample --steer fk --particles K --reward
    SPEC``).

    ``solver`` must be stochastic; the default is ancestral DDIM (``ddim`` with eta = 1).
    ``noise`` (n * K, ...) or ``shape`` (per sample) gives the start (drawn from the per-sample
    generators of :func:`~interpolant.scaling.search.source_noise`); the solver's noise for
    particle slot j of sample i comes from the generator seed + i K + j; drawn noise is cast to
    ``dtype`` (default: the model's parameter dtype, float64 for a parameter-free model).
    ``cond`` and ``reward_cond`` hold batch-n tensors (repeated per particle). ``budget`` caps
    the model evaluations per final sample (K times the solver's NFE).
    """
    solver_obj = get_solver(
        solver,
        **({"eta": 1.0} if solver == "ddim" and solver_options is None else (solver_options or {})),
    )
    if not solver_obj.stochastic:
        raise ValueError(
            f"FK steering needs a stochastic solver, got {solver_obj!r}; use "
            "sde_euler, dpmpp_2m_sde, ddim with eta > 0 or pc"
        )
    batch = n * particles
    if noise is None:
        if shape is None:
            raise ValueError("give noise= (n * particles, ...) or shape= (one sample's shape)")
        seeds = [NOISE_SEED_OFFSET + int(seed) + j for j in range(batch)]
        noise = source_noise(shape, seeds).to(model_dtype(model, dtype))
    if noise.shape[0] != batch:
        raise ValueError(f"noise must have n * particles = {batch} rows, got {noise.shape[0]}")
    n_steps = (
        steps if steps is not None else (solver_obj.steps_for_nfe(nfe) if nfe is not None else None)
    )
    if n_steps is None and isinstance(grid, str):
        raise ValueError("give steps= or nfe= (or a grid of times)")
    per_particle = solver_obj.nfe_for_steps(n_steps if n_steps is not None else len(grid) - 1)
    ledger = Ledger(budget=None if budget is None else budget * n)
    ledger.charge(model_evals=per_particle * batch, what=f"fk {particles} particles")
    steer = FKSteering(
        reward,
        particles,
        temperature=temperature,
        potential=potential,
        every=every,
        at_steps=at_steps,
        ess_threshold=ess_threshold,
        resampler=resampler,
        seed=seed,
        ledger=ledger,
        reward_cond=reward_cond,
    )
    cond_batch = {
        k: v.repeat_interleave(particles, 0) if isinstance(v, Tensor) else v
        for k, v in (cond or {}).items()
    }
    result = sample(
        model,
        noise,
        solver=solver_obj,
        steps=n_steps,
        grid=grid,
        hooks=[*hooks, steer.capture],
        step_hooks=[steer],
        seed=seed,
        cond=cond_batch,
        solver_dtype=solver_dtype,
        return_result=True,
    )
    assert isinstance(result, SampleResult)
    if result.nfe != per_particle:
        raise RuntimeError(f"the loop spent {result.nfe} NFE, the ledger charged {per_particle}")
    x_out, rewards, local = steer.choose(result.x, choose)
    return FKResult(
        x=x_out,
        rewards=rewards,
        particles=result.x.view(n, particles, *result.x.shape[1:]),
        particle_rewards=steer.last_reward.view(n, particles),
        log_weights=steer.log_weights.view(n, particles),
        ess=steer.ess_trace,
        resample_steps=steer.resample_steps,
        ledger=ledger,
        nfe_per_particle=per_particle,
        extra={"chosen": local},
    )
