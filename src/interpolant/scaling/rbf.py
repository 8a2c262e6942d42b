"""Inference-time scaling for flow models (Kim et al. 2025, "Inference-Time Scaling for Flow
Models via Stochastic Generation and Rollover Budget Forcing", arXiv 2503.19385; RBF).

Three pieces, each reusing what the library has:

1. **Stochastic generation**. A flow's ODE and the SDE
   dx = [u - (g(t)^2 / 2) s] dt + g(t) dW (run from t = 1 to 0) share the marginals for any
   diffusion coefficient g; the score s comes from the velocity by the path's conversion. This is
   the ``sde_euler`` solver with ``g=`` (:class:`~interpolant.solvers.sde.SDEEuler`);
   :func:`diffusion_coefficient` builds the paper's g families (default ``square``, 3 t^2).
2. **Interpolant conversion**: a linear-path (rectified flow) model is sampled on the
   VP path at inference time by matching log-SNR and rescaling x
   (:func:`~interpolant.adapters.convert_path`); the paper's VP path is ``VPLinear(0.1, 20)``.
   The SDE noise then explores along the VP path, which the paper finds more diverse.
3. **Particle sampling**: at each step draw candidate next states with fresh SDE
   noise, score each by the reward of its Tweedie estimate x0_hat (one model evaluation per
   candidate, reused for the next step), keep the best. :func:`particle_sample` spends a fixed
   number per step; :func:`rbf_sample` adds **rollover budget forcing**: each
   step is allotted an equal share of the NFE budget, a step that finds a candidate better than
   every earlier one accepts it at once, and its unused NFE rolls over to the next step.

Candidates are one batch per round (no loop per particle); every model and reward evaluation is
charged to a :class:`~interpolant.scaling.base.Ledger`. Noise for final sample i comes from its
own generator (seed + i), so a sample does not depend on the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..adapters import convert_path
from ..paths import GaussianPath, get_path
from ..predictions import Model, Prediction
from ..solvers.base import Node, State, make_nodes
from .._porting import StepContext
from ..solvers.grids import get_grid
from .._porting import as_model, make_generators
from ..solvers.sde import SDEEuler
from .base import Ledger, Reward

#: RBF's diffusion-coefficient families (``get_sde_diffuse`` of the official code), in the
#: sampling path's time t: g(t) = norm * f(t).
G_FAMILIES = ("square", "linear", "constant", "sin", "sigma", "clipping", "tan")


def diffusion_coefficient(
    kind: str = "square", norm: float = 3.0, path: GaussianPath | None = None
) -> Callable[[float], float]:
    """g(t) = norm * f(t) for f in ``G_FAMILIES``: t^2 (the paper's default, norm 3), t, 1,
    sin(pi t / 2), sigma(t) (needs ``path``), max(0, 2 t - 1), tan(pi min(t, 0.95) / 2)."""
    if kind not in G_FAMILIES:
        raise ValueError(f"g kind must be one of {G_FAMILIES}, got {kind!r}")
    if not (isinstance(norm, float | int) and math.isfinite(norm) and norm >= 0):
        raise ValueError(f"norm must be a finite number >= 0, got {norm!r}")
    if kind == "sigma" and path is None:
        raise ValueError("g kind 'sigma' needs path= (g = norm * sigma(t))")
    c = float(norm)

    def g(t: float) -> float:
        if kind == "square":
            return c * t * t
        if kind == "linear":
            return c * t
        if kind == "constant":
            return c
        if kind == "sin":
            return c * math.sin(0.5 * math.pi * t)
        if kind == "clipping":
            return c * max(0.0, 2.0 * t - 1.0)
        if kind == "tan":
            return c * math.tan(0.5 * math.pi * min(t, 0.95))
        assert path is not None
        return c * float(path.sigma(torch.tensor(t, dtype=torch.float64)))

    return g


@dataclass
class ParticleResult:
    """Final samples (B, ...) and their rewards (B,), the ledger, and per searched step the
    NFE allotted and used per sample and whether the step accepted early (rollover)."""

    x: Tensor
    rewards: Tensor
    ledger: Ledger
    allotted: list[Tensor] = field(default_factory=list)
    used: list[Tensor] = field(default_factory=list)
    rolled_over: list[Tensor] = field(default_factory=list)
    quota: int = 0
    method: str = ""


class _Particles:
    """Shared machinery: the (converted) model on its grid, the SDE step, per-sample generators,
    batched candidate proposal and scoring, all charged to the ledger."""

    def __init__(
        self,
        model: Model,
        reward: Reward,
        steps: int,
        path: GaussianPath | str | None,
        g: float | Callable[[float], float] | str,
        grid: str | Sequence[float] | Tensor,
        batch: int,
        seed: int,
        ledger: Ledger,
        cond: dict[str, Any] | None,
        reward_cond: dict[str, Any] | None,
        dtype: torch.dtype,
    ) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
            raise ValueError(f"steps must be an int >= 2, got {steps!r}")
        # Interpolant conversion: sample the model on the chosen path.
        self.model = model if path is None else convert_path(model, get_path(path))
        t_max = getattr(self.model, "t_max", 1.0)
        self.grid = get_grid(grid, self.model.path, steps, t_max=t_max)
        self.nodes = make_nodes(self.model.path, self.grid)
        g_fn = diffusion_coefficient(g, path=self.model.path) if isinstance(g, str) else g
        self.solver = SDEEuler(g=g_fn)
        self.generators = make_generators(seed, batch)
        self.reward, self.ledger, self.dtype = reward, ledger, dtype
        self.cond, self.reward_cond = dict(cond or {}), dict(reward_cond or {})
        self.counted = ledger.counted_reward(reward, "particle reward")

    @staticmethod
    def _take(cond: dict[str, Any], rows: Tensor, repeats: int) -> dict[str, Any]:
        """Conditioning tensors (batch B) for the rows ``rows``, each repeated ``repeats`` times."""
        return {
            k: v[rows].repeat_interleave(repeats, 0) if isinstance(v, Tensor) else v
            for k, v in cond.items()
        }

    def evaluate(self, x: Tensor, node: Node, rows: Tensor, repeats: int) -> Prediction:
        """The model at ``node`` for a batch grouped by sample (charged: one NFE per row)."""
        self.ledger.charge(model_evals=x.shape[0], what=f"t={node.t:.4g}")
        t = torch.full((x.shape[0],), node.t, dtype=self.dtype, device=x.device)
        with torch.no_grad():
            value = self.model.net(x.to(self.dtype), t, **self._take(self.cond, rows, repeats))
        return Prediction(x, node.t, self.model.predicts, value.to(x.dtype), node.coeffs)

    def score(self, x0: Tensor, rows: Tensor, repeats: int) -> Tensor:
        """Rewards of the x0 estimates, shaped (len(rows), repeats), on the CPU in float64 (the
        bookkeeping of the search runs there; states stay on their device)."""
        with torch.no_grad():
            r = self.counted(x0, **self._take(self.reward_cond, rows, repeats))
        return r.to("cpu", torch.float64).view(len(rows), repeats)

    def draws(self, rows: Tensor, count: int, shape: Sequence[int]) -> Tensor:
        """``count`` standard normals per sample of ``rows`` from its generator (on the CPU, so
        values do not depend on the device), grouped."""
        return torch.cat(
            [
                torch.randn((count, *shape), generator=self.generators[i], dtype=torch.float64)
                for i in rows.tolist()
            ]
        )

    def propose(
        self, x: Tensor, value: Tensor, k: int, rows: Tensor, count: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``count`` SDE candidates per row from node k to k + 1, evaluated and scored there:
        (states, model outputs, x0 estimates, rewards (rows, count))."""
        now, nxt = self.nodes[k], self.nodes[k + 1]
        x_rep, v_rep = x.repeat_interleave(count, 0), value.repeat_interleave(count, 0)
        pred = Prediction(x_rep, now.t, self.model.predicts, v_rep, now.coeffs)
        shape = x.shape[1:]

        def noise(like: Tensor) -> Tensor:
            return self.draws(rows, count, shape).to(device=like.device, dtype=like.dtype)

        ctx = StepContext(lambda *_: pred, noise, k, len(self.nodes) - 1, self.model.path)
        # Stochastic step (SDE conversion): the sde_euler solver with g(t).
        x_new = self.solver.step(State(x_rep), pred, now, nxt, ctx).x
        pred_new = self.evaluate(x_new, nxt, rows, count)
        x0 = pred_new.x0
        return x_new, pred_new.value, x0, self.score(x0, rows, count)


def _pick(t: Tensor, rows: Tensor, count: int, best: Tensor) -> Tensor:
    """Row i's candidate best[i] out of a grouped batch (len(rows) * count, ...)."""
    return t[torch.arange(len(rows)) * count + best]


def particle_sample(
    model: Model | Callable[..., Tensor],
    reward: Reward,
    noise: Tensor,
    *,
    n_particles: int,
    steps: int = 10,
    path: GaussianPath | str | None = "vp",
    g: float | Callable[[float], float] | str = "square",
    grid: str | Sequence[float] | Tensor = "uniform",
    seed: int = 0,
    ledger: Ledger | None = None,
    cond: dict[str, Any] | None = None,
    reward_cond: dict[str, Any] | None = None,
    model_path: GaussianPath | str | None = None,
    predicts: str | None = None,
) -> ParticleResult:
    """Particle sampling ("best-of-N at each step", Kim et al. 2025): from x =
    sigma(t_max) noise, each of the ``steps - 1`` stochastic steps draws ``n_particles``
    candidates, scores their x0_hat and keeps the best; the last step returns the chosen
    particle's x0_hat (Tweedie; on the linear path this is the Euler step to t = 0).

    NFE per sample: 1 + (steps - 1) n_particles. With ``n_particles = 1`` this is exactly
    ``sample(convert_path(model, path), noise, solver=SDEEuler(g=...), seed=seed, ...)`` read at
    its last x0 estimate (the test checks it bit for bit).

    Args:
        path: the sampling path ("vp" converts the model as the paper does; None keeps the
            model's own path).
        g: a diffusion coefficient g(t) (float or callable), or a family name of
            ``G_FAMILIES`` with the paper's norm 3.
    """
    model = as_model(model, model_path, predicts)
    if isinstance(n_particles, bool) or not isinstance(n_particles, int) or n_particles < 1:
        raise ValueError(f"n_particles must be an int >= 1, got {n_particles!r}")
    if not isinstance(noise, Tensor) or noise.ndim < 2:
        raise ValueError("noise must be a tensor of shape (batch, ...)")
    batch = noise.shape[0]
    ledger = ledger if ledger is not None else Ledger()
    p = _Particles(
        model, reward, steps, path, g, grid, batch, seed, ledger, cond, reward_cond, noise.dtype
    )
    rows = torch.arange(batch)
    x = noise.to(torch.float64) * p.nodes[0].sigma
    value = p.evaluate(x, p.nodes[0], rows, 1).value
    rewards = torch.full((batch,), -math.inf, dtype=torch.float64)
    x0 = x
    for k in range(steps - 1):
        # Particle step: n candidates per sample, keep the best by the reward of x0_hat.
        xs, values, x0s, r = p.propose(x, value, k, rows, n_particles)
        best = r.argmax(1)
        x, value, x0 = (_pick(t, rows, n_particles, best) for t in (xs, values, x0s))
        rewards = r.gather(1, best[:, None])[:, 0]
    return ParticleResult(x0.to(noise.dtype), rewards, ledger, method="particle")


def rbf_sample(
    model: Model | Callable[..., Tensor],
    reward: Reward,
    budget: int,
    shape: Sequence[int],
    *,
    n: int = 1,
    steps: int = 10,
    n_init: int = 25,
    parallel: int = 1,
    rollover: bool = True,
    path: GaussianPath | str | None = "vp",
    g: float | Callable[[float], float] | str = "square",
    grid: str | Sequence[float] | Tensor = "uniform",
    seed: int = 0,
    ledger: Ledger | None = None,
    cond: dict[str, Any] | None = None,
    reward_cond: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    model_path: GaussianPath | str | None = None,
    predicts: str | None = None,
) -> ParticleResult:
    """Rollover budget forcing (Kim et al. 2025; the official ``rbf/rbf.py``).

    For each of ``n`` final samples (shape ``shape``), with B = ``budget`` model evaluations:

    1. draw ``n_init`` noises, evaluate each once, keep the one whose x0_hat has the best reward;
    2. the ``steps - 1`` stochastic steps share q = (B - n_init) // (steps - 1) NFE each; step k
       is allotted a_k (a_0 = q) and draws ``parallel`` candidates per round (one NFE each);
    3. as soon as a candidate beats the best reward seen so far, the step accepts it and stops:
       a_{k+1} = q + (a_k - used_k) (rollover); otherwise, when the allotment is spent, it takes
       the step's best candidate (and any remainder below ``parallel`` also rolls over);
    4. the last stochastic step spends everything left without early stopping; the result is the
       x0_hat of its best candidate (the official code's ``cur_step_best_tweedie``).

    The official code searches one candidate at a time (``parallel=1``); ``parallel > 1`` scores
    that many per round in one batch (fewer rounds, the same budget). Unused NFE (below one round
    at the end) is not spent: ``ledger.model_evals <= n * budget`` always. ``rollover=False``
    is budget forcing alone (the ablation): every step spends its allotment and keeps its best,
    i.e. :func:`particle_sample` with the step's allotment as the particle count.

    States are float64 on ``device`` (noise is drawn per sample on the CPU, then moved); the model
    is called in ``dtype``; ``cond`` / ``reward_cond`` tensors have batch ``n``.
    """
    model = as_model(model, model_path, predicts)
    device = torch.device("cpu") if device is None else torch.device(device)
    for name, count in (("budget", budget), ("n", n), ("n_init", n_init), ("parallel", parallel)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{name} must be an int >= 1, got {count!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2, got {steps!r}")
    quota = (budget - n_init) // (steps - 1)
    if quota < parallel:
        raise ValueError(
            f"budget={budget} is too small: after n_init={n_init} initial evaluations each of the "
            f"{steps - 1} stochastic steps needs at least parallel={parallel} NFE "
            f"(budget >= {n_init + (steps - 1) * parallel})"
        )
    ledger = ledger if ledger is not None else Ledger(budget=budget * n)
    p = _Particles(model, reward, steps, path, g, grid, n, seed, ledger, cond, reward_cond, dtype)
    rows = torch.arange(n)
    shape = tuple(shape)

    # Initial particles (the official "pre_correct"): n_init noises, one NFE each.
    x_init = p.draws(rows, n_init, shape).to(device) * p.nodes[0].sigma
    pred = p.evaluate(x_init, p.nodes[0], rows, n_init)
    r = p.score(pred.x0, rows, n_init)
    best = r.argmax(1)
    x, value = _pick(x_init, rows, n_init, best), _pick(pred.value, rows, n_init, best)
    best_reward = r.gather(1, best[:, None])[:, 0]
    spent = torch.full((n,), n_init, dtype=torch.long)
    allot = torch.full((n,), quota, dtype=torch.long)
    result = ParticleResult(x, best_reward, ledger, quota=quota, method="rbf")

    for k in range(steps - 1):
        last = k == steps - 2
        if last:
            allot = budget - spent  # the last step spends everything left
        used = torch.zeros(n, dtype=torch.long)
        accepted = torch.zeros(n, dtype=torch.bool)
        step_reward = torch.full((n,), -math.inf, dtype=torch.float64)
        step_x, step_value, step_x0 = x.clone(), value.clone(), x.clone()
        while True:
            active = ~accepted & (used + parallel <= allot)
            if not bool(active.any()):
                break
            idx = active.nonzero().flatten()
            xs, values, x0s, r = p.propose(x[idx], value[idx], k, idx, parallel)
            used[idx] += parallel
            r_best, j = r.max(1)
            cand = [_pick(t, idx, parallel, j) for t in (xs, values, x0s)]
            # Track the best candidate of this step.
            better = r_best > step_reward[idx]
            sel = idx[better]
            step_reward[sel] = r_best[better]
            step_x[sel], step_value[sel], step_x0[sel] = (c[better] for c in cand)
            # Rollover: a candidate better than every earlier one is accepted at once.
            if rollover and not last:
                beat = r_best > best_reward[idx]
                won = idx[beat]
                best_reward[won] = r_best[beat]
                accepted[won] = True
        result.allotted.append(allot.clone())
        result.used.append(used.clone())
        result.rolled_over.append(accepted.clone())
        spent += used
        x, value = step_x, step_value
        allot = quota + (allot - used)
        if last:
            result.x, result.rewards = step_x0.to(dtype), step_reward
    return result


__all__ = ["G_FAMILIES", "ParticleResult", "diffusion_coefficient", "particle_sample", "rbf_sample"]
