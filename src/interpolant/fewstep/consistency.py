"""Consistency models (Song et al. 2023; improved recipe iCT, Song & Dhariwal 2023) on any
Gaussian path.

A consistency function f(x_t, t) maps every point of a probability-flow trajectory to its
start x0, with f(x, 0) = x. We train an x0 model; the boundary condition holds exactly when the
network is EDM-preconditioned (``predictions.Preconditioned``: c_skip(0) = 1, c_out(0) = 0;
``TrainConfig(precondition=sigma_data)``), as in the papers' c_skip/c_out parameterisation
(iCT uses c_skip(s - s_min); we use the EDM form at s, which is 1 - O(s_min^2) at s_min).

Noise levels are EDM's s = sigma/alpha (path-free): x_t = alpha(t) (x0 + s z) with
t = ``path.t_of_edm_sigma(s)``, so one recipe serves every path.

**Consistency training (iCT, Sec. 3)** without a teacher, for adjacent levels s_i < s_{i+1} of
the Karras discretisation with N(k) levels at optimiser step k:

    L = lambda(s_i) d(f(x0 + s_{i+1} z, s_{i+1}), sg f(x0 + s_i z, s_i)),
    lambda(s_i) = 1 / (s_{i+1} - s_i),  d = pseudo-Huber (c = 0.00054 sqrt(dim)),
    N(k) = min(s0 2^floor(k / K'), s1) + 1,  K' = floor(K / (log2 floor(s1 / s0) + 1)),
    p(i) ~ erf((ln s_{i+1} - P_mean) / (sqrt 2 P_std)) - erf((ln s_i - P_mean) / (sqrt 2 P_std)),

with P_mean = -1.1, P_std = 2.0, s0 = 10, s1 = 1280, and the student itself (no EMA, mu = 0) as
the stop-gradient target.

**Consistency distillation (CD, Song et al. 2023, Alg. 2)**: the target's input is one step of
the teacher's probability-flow ODE from s_{i+1} to s_i, taken by our solver
(``Sampler(solver, steps=1, grid=[t_{i+1}, t_i])`` through the one sampling loop):
L = lambda d(f(x_{i+1}, s_{i+1}), sg f(x_hat_i, s_i)). One level i per loss call (per
``noise_block``), since the loop runs one grid per batch; over the batches of training this
is the same expectation.

**Multistep consistency sampling (Song et al. 2023, Alg. 1)**: x0_hat = f(x, t_n), then
x = alpha(t_{n+1}) x0_hat + sigma(t_{n+1}) z with fresh z, as the step hook :class:`Renoise` on
the one loop (any deterministic solver underneath; its move is replaced).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from ..predictions import Model
from ..randomness import Streams
from ..solvers import Sampler, sample
from ..solvers.base import Run, State
from ..solvers.hooks import Hook, Step
from .common import StepCounter, check_teacher, model_path, predict
from .distances import Distance, get_distance


def karras_levels(n: int, s_min: float = 0.002, s_max: float = 80.0, rho: float = 7.0) -> Tensor:
    """n ascending EDM noise levels (Karras et al. 2022, Eq. 5), float64."""
    if n < 2:
        raise UserError(f"need at least 2 noise levels, got {n}")
    i = torch.arange(n, dtype=torch.float64) / (n - 1)
    return (s_min ** (1 / rho) + i * (s_max ** (1 / rho) - s_min ** (1 / rho))) ** rho


def ict_levels(step: int, total_steps: int, s0: int = 10, s1: int = 1280) -> int:
    """iCT's number of levels N(k) (Sec. 3.4, Eq. 8: exponential curriculum)."""
    k_prime = math.floor(total_steps / (math.log2(math.floor(s1 / s0)) + 1))
    return min(s0 * 2 ** math.floor(step / max(k_prime, 1)), s1) + 1


def lognormal_index_probs(levels: Tensor, p_mean: float = -1.1, p_std: float = 2.0) -> Tensor:
    """p(i) for i = 0..N-2 (iCT Sec. 3.5): the log-normal mass between ln s_i and ln s_{i+1}."""
    z = (levels.log() - p_mean) / (math.sqrt(2.0) * p_std)
    mass = torch.erf(z[1:]) - torch.erf(z[:-1])
    return mass / mass.sum()


def _at_level(x0: Tensor, z: Tensor, s: Tensor, model: Any) -> tuple[Tensor, Tensor]:
    """(x_t, t) with x_t = alpha(t) (x0 + s z) on the model's path."""
    path = model_path(model)
    t = path.t_of_edm_sigma(s.to(torch.float64)).clamp(0, 1)
    alpha = path.alpha(t).to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
    sb = s.to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
    return alpha * (x0 + sb * z), t.to(x0.dtype)


class ConsistencyTraining(StepCounter):
    """iCT (see the module docstring). ``total_steps`` is the training length K of the
    curriculum; ``distance`` defaults to pseudo-Huber."""

    def __init__(
        self,
        total_steps: int,
        s_min: float = 0.002,
        s_max: float = 80.0,
        rho: float = 7.0,
        s0: int = 10,
        s1: int = 1280,
        p_mean: float = -1.1,
        p_std: float = 2.0,
        distance: str | Distance = "pseudo-huber",
    ) -> None:
        super().__init__()
        if not (isinstance(total_steps, int) and total_steps >= 1):
            raise UserError(f"total_steps must be a positive integer, got {total_steps!r}")
        if not 0 < s_min < s_max:
            raise UserError(f"need 0 < s_min < s_max, got {s_min}, {s_max}")
        self.total_steps, self.s_min, self.s_max, self.rho = total_steps, s_min, s_max, rho
        self.s0, self.s1, self.p_mean, self.p_std = s0, s1, p_mean, p_std
        self.distance = get_distance(distance)

    def levels(self) -> Tensor:
        """The current discretisation (ascending EDM levels)."""
        n = ict_levels(self.step, self.total_steps, self.s0, self.s1)
        return karras_levels(n, self.s_min, self.s_max, self.rho)

    def per_sample_loss(
        self,
        model: Any,
        x0: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        levels = self.levels()
        probs = lognormal_index_probs(levels, self.p_mean, self.p_std)
        gen_device = generator.device if generator is not None else None
        i = torch.multinomial(probs.to(gen_device), x0.shape[0], True, generator=generator).cpu()
        s_lo, s_hi = levels[i].to(x0.device), levels[i + 1].to(x0.device)
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_hi, t_hi = _at_level(x0, z, s_hi, model)
        x_lo, t_lo = _at_level(x0, z, s_lo, model)
        f_hi = predict(model, x_hi, t_hi, cond).x0
        with torch.no_grad():
            f_lo = predict(model, x_lo, t_lo, cond).x0
        weight = (1.0 / (s_hi - s_lo)).to(x0.dtype)
        return weight * self.distance(f_hi, f_lo)

    def loss(self, model: Any, x0: Tensor, generator: Any = None, cond: Any = None) -> Tensor:
        return self.per_sample_loss(model, x0, generator, cond).mean()


class ConsistencyDistillation(StepCounter):
    """CD with a teacher and our ODE solvers (see the module docstring).

    Args:
        teacher: a frozen Model on the student's path (any prediction kind).
        levels: N, the number of Karras levels (CD's default 18).
        solver: the solver of the teacher's one step (default Heun, as in CD).
    """

    def __init__(
        self,
        teacher: Model,
        levels: int = 18,
        solver: str = "heun",
        s_min: float = 0.002,
        s_max: float = 80.0,
        rho: float = 7.0,
        distance: str | Distance = "pseudo-huber",
    ) -> None:
        super().__init__()
        self.teacher = check_teacher(teacher, "consistency distillation")
        self.level_values = karras_levels(levels, s_min, s_max, rho)
        self.solver = solver
        self.distance = get_distance(distance)

    def per_sample_loss(
        self,
        model: Any,
        x0: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        if model_path(model) != self.teacher.path:
            raise UserError(
                f"consistency distillation needs the teacher on the student's path: teacher "
                f"{self.teacher.path!r}, student {model_path(model)!r}"
            )
        self.teacher.to(x0.device)
        n = self.level_values.numel()
        gen_device = generator.device if generator is not None else None
        i = int(torch.randint(0, n - 1, (1,), generator=generator, device=gen_device))
        s_lo = self.level_values[i].expand(x0.shape[0]).to(x0.device)
        s_hi = self.level_values[i + 1].expand(x0.shape[0]).to(x0.device)
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_hi, t_hi = _at_level(x0, z, s_hi, model)
        path = model_path(model)
        t_lo = path.t_of_edm_sigma(s_lo[:1].double()).clamp(0, 1)
        grid = [float(t_hi[0]), float(t_lo[0])]
        with torch.no_grad():
            x_lo = sample(
                self.teacher,
                x_hi,
                Sampler(self.solver, steps=1, grid=grid),
                scale_noise=False,
                cond=cond,
            ).x
            f_lo = predict(model, x_lo, t_lo.to(x0.dtype).expand(x0.shape[0]), cond).x0
        f_hi = predict(model, x_hi, t_hi, cond).x0
        weight = (1.0 / (s_hi - s_lo)).to(x0.dtype)
        return weight * self.distance(f_hi, f_lo)

    def loss(self, model: Any, x0: Tensor, generator: Any = None, cond: Any = None) -> Tensor:
        return self.per_sample_loss(model, x0, generator, cond).mean()


@dataclass
class RenoiseState:
    streams: Streams


class Renoise(Hook[RenoiseState]):
    """Multistep consistency sampling as a step hook: after each step, x = alpha(t_next) x0_hat
    + sigma(t_next) z with z from the per-sample stream ``"consistency"`` (x0_hat at the end)."""

    def start(self, run: Run) -> RenoiseState:
        return RenoiseState(run.streams_for("consistency"))

    def on_step(self, x_state: State, step: Step, run: Run, state: RenoiseState) -> State:
        if step.pred is None:
            raise UserError("consistency sampling needs a solver that evaluates first (euler)")
        x0 = step.pred.x0.to(x_state.x.dtype)
        if step.nxt.t <= 0:
            return x_state.replace(x=x0)
        z = state.streams.normal_like(x0)
        return x_state.replace(x=step.nxt.alpha * x0 + step.nxt.sigma * z)


def consistency_sample(
    model: Model, noise: Tensor, t_grid: list[float], seed: int = 0, **kwargs: Any
) -> Tensor:
    """Multistep consistency sampling on the descending grid ``t_grid`` ending at 0
    (``[t_max, 0]`` is one step: f(sigma(t_max) eps, t_max))."""
    if len(t_grid) < 2 or t_grid[-1] != 0:
        raise UserError(f"t_grid must be descending times ending at 0, got {t_grid}")
    spec = Sampler("euler", steps=len(t_grid) - 1, grid=t_grid, t_max=t_grid[0], seed=seed)
    return sample(model, noise, spec, hooks=[Renoise()], **kwargs).x
