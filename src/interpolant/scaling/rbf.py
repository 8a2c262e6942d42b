"""Inference-time scaling for flow models (Kim et al. 2025, "Inference-Time Scaling for Flow
Models via Stochastic Generation and Rollover Budget Forcing", arXiv 2503.19385; RBF).

Three pieces, each reusing what the library has:

1. **Stochastic generation**. A flow's ODE and the SDE
   dx = [u - (g(t)^2 / 2) s] dt + g(t) dW (run from t = 1 to 0) share the marginals for any
   diffusion coefficient g; the score s comes from the velocity by the path's conversion. This is
   the ``sde_euler`` solver with ``g=`` (:class:`~interpolant.solvers.sde.SDEEuler`), the
   solver of the sampler spec (default :data:`RBF_SAMPLER`: the paper's g = 3 t^2, 10 steps);
   :func:`diffusion_coefficient` builds the paper's g families.
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

Candidates are one batch per round (no loop per particle); every model evaluation goes through
:meth:`~interpolant.Model.at` and, with every reward evaluation, is charged to a
:class:`~interpolant.scaling.base.Ledger`. Randomness: final sample i's SDE noise is row i of
the spec's per-sample streams (``Streams(seed, n)``, the loop's), and its draw number is fixed
by (step, round), so a sample's noise never depends on how many rounds other samples needed;
RBF's initial candidates come from the stream ``rbf-init``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from typing_extensions import Unpack

from ..adapters import convert_path
from ..errors import UserError
from ..paths import GaussianPath, get_path
from ..predictions import Evaluations, Model, Prediction
from ..randomness import Streams, fresh_seed
from ..solvers import Node, Sampler, State, as_sampler, fixed_run, make_nodes
from ..solvers.grids import Uniform
from ..solvers.sde import SDEEuler
from ..solvers.spec import SamplerOptions
from .base import Ledger, Reward, check_rewards, placement, repeat_cond

#: RBF's diffusion-coefficient families (``get_sde_diffuse`` of the official code), in the
#: sampling path's time t: g(t) = norm * f(t).
G_FAMILIES = ("square", "linear", "constant", "sin", "sigma", "clipping", "tan")
#: The named stream of RBF's initial candidates (one row per final sample).
INIT_STREAM = "rbf-init"


def diffusion_coefficient(
    kind: str = "square", norm: float = 3.0, path: GaussianPath | None = None
) -> Callable[[float], float]:
    """g(t) = norm * f(t) for f in ``G_FAMILIES``: t^2 (the paper's default, norm 3), t, 1,
    sin(pi t / 2), sigma(t) (needs ``path``), max(0, 2 t - 1), tan(pi min(t, 0.95) / 2)."""
    if kind not in G_FAMILIES:
        raise UserError(f"g kind must be one of {G_FAMILIES}, got {kind!r}")
    if not (isinstance(norm, float | int) and math.isfinite(norm) and norm >= 0):
        raise UserError(f"norm must be a finite number >= 0, got {norm!r}")
    if kind == "sigma" and path is None:
        raise UserError("g kind 'sigma' needs path= (g = norm * sigma(t))")
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


#: RBF's default sampler: Euler-Maruyama of the marginal-preserving SDE with the paper's
#: g(t) = 3 t^2 on a uniform grid of 10 steps, seed 0.
RBF_SAMPLER = Sampler(
    SDEEuler(g=diffusion_coefficient("square", 3.0)), steps=10, grid=Uniform(), seed=0
)


@dataclass
class ParticleResult:
    """Final samples (B, ...) and their rewards (B,), the ledger, ``nfe`` (the mean model
    evaluations per final sample), and per searched step the NFE allotted and used per sample
    and whether the step accepted early (rollover)."""

    x: Tensor
    rewards: Tensor
    ledger: Ledger
    nfe: float = 0.0
    allotted: list[Tensor] = field(default_factory=list)
    used: list[Tensor] = field(default_factory=list)
    rolled_over: list[Tensor] = field(default_factory=list)
    quota: int = 0
    method: str = ""


def _rbf_spec(sampler: Sampler | None = None, **shortcuts: Any) -> Sampler:
    """The spec of a particle method: ``sampler`` (default :data:`RBF_SAMPLER`) with the keyword
    shortcuts applied, its seed drawn from torch's global generator if it has none; its solver
    must be ``sde_euler`` (the proposal kernel) and it must take at least 2 steps."""
    spec = as_sampler(RBF_SAMPLER if sampler is None else sampler, **shortcuts)
    if not isinstance(spec.solver, SDEEuler):
        raise UserError(
            f"particle sampling proposes sde_euler steps; got solver {spec.solver!r} "
            "(use Sampler(SDEEuler(g=diffusion_coefficient(...)), ...))"
        )
    if spec.steps_used() < 2:
        raise UserError(f"particle sampling needs >= 2 steps, got {spec.steps_used()}")
    return spec if spec.seed is not None else spec.replace(seed=fresh_seed())


class _Particles:
    """Shared machinery: the (converted) model on the spec's grid, its SDE step, per-sample
    streams, batched candidate proposal and scoring, all charged to the ledger."""

    def __init__(
        self,
        model: Model,
        reward: Reward,
        spec: Sampler,
        path: GaussianPath | str | None,
        batch: int,
        ledger: Ledger,
        cond: dict[str, Any] | None,
        reward_cond: dict[str, Any] | None,
        stride: int,
    ) -> None:
        if spec.seed is None:
            raise UserError("particle methods take their spec (with its seed) from _rbf_spec")
        # Interpolant conversion: sample the model on the chosen path.
        self.model = model if path is None else convert_path(model, get_path(path))
        t_max = min(spec.t_max, float(getattr(self.model, "t_max", 1.0)))
        self.nodes = make_nodes(self.model.path, spec.replace(t_max=t_max).times(self.model.path))
        self.steps, self.solver = len(self.nodes) - 1, spec.solver
        self.dtype, self.device = spec.dtype or torch.float64, placement(model)[1]
        self.streams, self.stride = Streams(spec.seed, batch), stride
        self.seed = spec.seed
        self.evaluations = Evaluations()
        self.reward, self.ledger = reward, ledger
        self.cond, self.reward_cond = dict(cond or {}), dict(reward_cond or {})
        self.spent = 0

    @staticmethod
    def _take(cond: dict[str, Any], rows: Tensor, repeats: int) -> dict[str, Any]:
        """Conditioning tensors (batch B) for the rows ``rows``, each repeated ``repeats`` times."""
        picked = {k: v[rows.to(v.device)] if isinstance(v, Tensor) else v for k, v in cond.items()}
        return repeat_cond(picked, repeats)

    def evaluate(self, x: Tensor, node: Node, rows: Tensor, repeats: int) -> Prediction:
        """The model at ``node`` for a batch grouped by sample (charged: one NFE per row)."""
        self.ledger.charge(model_evals=x.shape[0], what=f"t={node.t:.4g}")
        self.spent += x.shape[0]
        with torch.no_grad():
            return self.model.at(x, node, self.evaluations, self._take(self.cond, rows, repeats))

    def score(self, x0: Tensor, rows: Tensor, repeats: int) -> Tensor:
        """Rewards of the x0 estimates, shaped (len(rows), repeats), on the CPU in float64 (the
        bookkeeping of the search runs there; states stay on their device)."""
        with torch.no_grad():
            r = self.reward(x0, **self._take(self.reward_cond, rows, repeats))
        check_rewards(r, x0.shape[0], "particle reward")
        self.ledger.charge(reward_evals=x0.shape[0])
        return r.to("cpu", torch.float64).view(len(rows), repeats)

    def noise(self, rows: Tensor, count: int, shape: Sequence[int], k: int, j: int) -> Tensor:
        """``count`` standard normals per sample of ``rows`` for round ``j`` of step ``k``,
        grouped. The draw number is (k stride + j), not a shared counter: a sample's d-th draw
        depends only on its key and d, so its noise does not depend on the other samples."""
        draw = k * self.stride + j + 1
        z = self.streams.normal((count, *shape), rows=rows, dtype=self.dtype, draw=draw)
        return z.reshape(-1, *shape).to(self.device)

    def propose(
        self, x: Tensor, value: Tensor, k: int, rows: Tensor, count: int, j: int = 0
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``count`` SDE candidates per row from node k to k + 1 (round ``j``), evaluated and
        scored there: (states, model outputs, x0 estimates, rewards (rows, count))."""
        now, nxt = self.nodes[k], self.nodes[k + 1]
        x_rep, v_rep = x.repeat_interleave(count, 0), value.repeat_interleave(count, 0)
        pred = Prediction(x_rep, now.t, self.model.predicts, v_rep, now.coeffs)
        z = self.noise(rows, count, x.shape[1:], k, j)
        run = fixed_run(self.model.path, self.steps, k, lambda *_: pred, lambda like: z.to(like))
        # Stochastic step (SDE conversion): the sde_euler solver with g(t).
        x_new = self.solver.step(State(x_rep), pred, now, nxt, run).x
        pred_new = self.evaluate(x_new, nxt, rows, count)
        x0 = pred_new.x0
        return x_new, pred_new.value, x0, self.score(x0, rows, count)


def _pick(t: Tensor, rows: Tensor, count: int, best: Tensor) -> Tensor:
    """Row i's candidate best[i] out of a grouped batch (len(rows) * count, ...)."""
    return t[(torch.arange(len(rows)) * count + best).to(t.device)]


def particle_sample(
    model: Model,
    reward: Reward,
    noise: Tensor,
    sampler: Sampler | None = None,
    *,
    n_particles: int,
    path: GaussianPath | str | None = "vp",
    cond: dict[str, Any] | None = None,
    reward_cond: dict[str, Any] | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> ParticleResult:
    """Particle sampling ("best-of-N at each step", Kim et al. 2025): from x =
    sigma(t_max) noise, each of the ``steps - 1`` stochastic steps of the spec (default
    :data:`RBF_SAMPLER`) draws ``n_particles`` candidates, scores their x0_hat and keeps the
    best; the last step returns the chosen particle's x0_hat (Tweedie; on the linear path this
    is the Euler step to t = 0).

    NFE per sample: 1 + (steps - 1) n_particles. With ``n_particles = 1`` this is exactly
    ``sample(convert_path(model, path), noise, spec)`` read at its last x0 estimate (the test
    checks it bit for bit). ``path`` is the sampling path ("vp" converts the model as the paper
    does; None keeps the model's own path).
    """
    _check_count("n_particles", n_particles)
    if not isinstance(noise, Tensor) or noise.ndim < 2:
        raise UserError("noise must be a tensor of shape (batch, ...)")
    spec = _rbf_spec(sampler, **shortcuts)
    batch = noise.shape[0]
    ledger = Ledger()
    p = _Particles(model, reward, spec, path, batch, ledger, cond, reward_cond, stride=1)
    rows = torch.arange(batch)
    x = noise.to(device=p.device, dtype=p.dtype) * p.nodes[0].sigma
    value = p.evaluate(x, p.nodes[0], rows, 1).value
    rewards = torch.full((batch,), -math.inf, dtype=torch.float64)
    x0 = x
    for k in range(p.steps - 1):
        # Particle step: n candidates per sample, keep the best by the reward of x0_hat.
        xs, values, x0s, r = p.propose(x, value, k, rows, n_particles)
        best = r.argmax(1)
        x, value, x0 = (_pick(t, rows, n_particles, best) for t in (xs, values, x0s))
        rewards = r.gather(1, best[:, None])[:, 0]
    nfe = p.spent / batch
    return ParticleResult(x0.to(noise.dtype), rewards, ledger, nfe, method="particle")


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be an int >= 1, got {value!r}")


def rbf_sample(
    model: Model,
    reward: Reward,
    budget: int,
    shape: Sequence[int],
    sampler: Sampler | None = None,
    *,
    n: int = 1,
    n_init: int = 25,
    parallel: int = 1,
    rollover: bool = True,
    path: GaussianPath | str | None = "vp",
    cond: dict[str, Any] | None = None,
    reward_cond: dict[str, Any] | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> ParticleResult:
    """Rollover budget forcing (Kim et al. 2025; the official ``rbf/rbf.py``).

    For each of ``n`` final samples (shape ``shape``), with B = ``budget`` model evaluations and
    the spec's ``steps`` (default :data:`RBF_SAMPLER`):

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

    States are in the spec's solver dtype (default float64) on the model's device; the
    network is called in its own dtype; ``cond`` / ``reward_cond`` tensors have batch ``n``.
    """
    for name, count in (("budget", budget), ("n", n), ("n_init", n_init), ("parallel", parallel)):
        _check_count(name, count)
    spec = _rbf_spec(sampler, **shortcuts)
    steps = spec.steps_used()
    quota = (budget - n_init) // (steps - 1)
    if quota < parallel:
        raise UserError(
            f"budget={budget} is too small: after n_init={n_init} initial evaluations each of the "
            f"{steps - 1} stochastic steps needs at least parallel={parallel} NFE "
            f"(budget >= {n_init + (steps - 1) * parallel})"
        )
    ledger = Ledger(budget=budget * n)
    # A step takes at most `budget` rounds: the draw numbers (k * stride + j) never collide.
    p = _Particles(model, reward, spec, path, n, ledger, cond, reward_cond, stride=budget + 1)
    rows = torch.arange(n)
    shape = tuple(shape)

    # Initial particles (the official "pre_correct"): n_init noises, one NFE each.
    init = Streams(p.seed, n, INIT_STREAM).normal((n_init, *shape), dtype=p.dtype)
    x_init = init.reshape(-1, *shape).to(p.device) * p.nodes[0].sigma
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
        for j in range(budget + 1):
            active = ~accepted & (used + parallel <= allot)
            if not bool(active.any()):
                break
            idx = active.nonzero().flatten()
            xs, values, x0s, r = p.propose(x[idx], value[idx], k, idx, parallel, j)
            used[idx] += parallel
            r_best, i_best = r.max(1)
            cand = [_pick(t, idx, parallel, i_best) for t in (xs, values, x0s)]
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
            result.x, result.rewards = step_x0.to(placement(model)[0]), step_reward
    result.nfe = p.spent / n
    return result


__all__ = [
    "G_FAMILIES",
    "RBF_SAMPLER",
    "ParticleResult",
    "diffusion_coefficient",
    "particle_sample",
    "rbf_sample",
]
