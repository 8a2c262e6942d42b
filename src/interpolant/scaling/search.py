"""Search over the sampler's noise and paths (Ma et al. 2025, "Inference-Time Scaling for
Diffusion Models beyond Scaling Denoising Steps", arXiv 2501.09732, sec. 3.2).

A fixed pretrained sampler (by default a deterministic solver) maps an initial noise to a sample;
a verifier scores samples; a search algorithm spends model evaluations (NFE) to find better
noises or paths:

* best-of-N / random search: N noises, keep the best sample (random search is best-of-N with N
  set by a budget, N = budget // NFE per sample).
* zero-order search: from a pivot noise n, draw neighbours at a fixed cosine lambda,
  n' = |n| (lambda u + sqrt(1 - lambda^2) w) with u = n / |n| and w a random unit vector
  orthogonal to u (the authors' generator in sayakpaul/tt-scale-flux); move the pivot to the best
  neighbour when it improves; repeat.
* search over paths: run ``width`` paths to an intermediate step, then repeatedly re-noise each
  path ``forward`` steps back with the path's forward kernel, integrate ``backward`` steps ahead
  from ``branches`` copies, score x0_hat and keep the best ``width``; finish and keep the best.

Every model call and reward call is charged to a :class:`~interpolant.scaling.base.Ledger`; the
budget is in model evaluations per final sample. Each final sample i draws its noises from its own
generator (seed ``NOISE_SEED_OFFSET + seed + i``), so its search does not depend on ``n``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..predictions import Model
from ..solvers import SampleResult, Solver, get_grid, get_solver, node_at, sample
from .base import BudgetError, Ledger, Reward

#: Initial-noise generators are seeded apart from the solver's per-sample generators (seed + i).
NOISE_SEED_OFFSET = 1_000_003
METHODS = ("best_of_n", "random", "zero_order", "paths")


def model_dtype(model: Model, dtype: torch.dtype | None = None) -> torch.dtype:
    """``dtype`` if given, else the dtype of the model's parameters, else float64 (a parameter-free
    model such as an exact oracle)."""
    if dtype is not None:
        return dtype
    for param in model.parameters():
        return param.dtype
    return torch.float64


def source_noise(shape: Sequence[int], seeds: Sequence[int]) -> Tensor:
    """Standard normals (len(seeds), *shape) in float64, row i from a generator seeded seeds[i]."""
    return torch.stack(
        [
            torch.randn(
                tuple(shape), generator=torch.Generator().manual_seed(int(s)), dtype=torch.float64
            )
            for s in seeds
        ]
    )


@dataclass
class SearchResult:
    """The chosen samples (n, ...), their rewards (n,), the chosen initial noises (n, ...; None
    for path search), the ledger, and ``trace``: (model evaluations per final sample so far, mean
    over final samples of the best reward so far)."""

    x: Tensor
    rewards: Tensor
    noise: Tensor | None
    ledger: Ledger
    trace: list[tuple[int, float]] = field(default_factory=list)
    method: str = ""


class BaseSampler:
    """The fixed sampler searched over: model, solver, grid and conditioning, called on noise
    (or on a state between two grid nodes, for path search). Noise is cast to ``dtype`` (default:
    the model's parameter dtype, float64 for a parameter-free model)."""

    def __init__(
        self,
        model: Model,
        solver: str | Solver = "dpmpp_2m",
        steps: int | None = None,
        nfe: int | None = None,
        grid: str | Sequence[float] | Tensor = "karras",
        solver_options: dict[str, Any] | None = None,
        solver_dtype: torch.dtype | None = None,
        cond: dict[str, Any] | None = None,
        seed: int = 0,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.model, self.solver = model, get_solver(solver, **(solver_options or {}))
        self.dtype = model_dtype(model, dtype)
        if isinstance(grid, str):
            if (steps is None) == (nfe is None):
                raise ValueError("give exactly one of steps= or nfe= for the base sampler")
            steps = steps if steps is not None else self.solver.steps_for_nfe(int(nfe))  # type: ignore[arg-type]
        self.grid = get_grid(grid, model.path, steps or 0)
        self.steps = self.grid.numel() - 1
        self.nfe = self.solver.nfe_for_steps(self.steps)
        self.solver_dtype, self.cond, self.seed, self.calls = (
            solver_dtype,
            dict(cond or {}),
            seed,
            0,
        )

    def _cond(self, repeats: int) -> dict[str, Any]:
        return {
            k: v.repeat_interleave(repeats, 0) if isinstance(v, Tensor) else v
            for k, v in self.cond.items()
        }

    def _seeds(self, batch: int) -> list[int]:
        """Per-sample solver seeds for a stochastic base solver, distinct across calls (slots of
        one call are seed + i, as in ``sample``; calls are 10^7 apart)."""
        return [self.seed + 10_000_019 * self.calls + i for i in range(batch)]

    def segment(
        self, x: Tensor, start: int, end: int, repeats: int, ledger: Ledger, scale: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Integrate ``x`` (B = n * repeats, grouped by final sample) from grid node ``start`` to
        ``end``; returns the state and the data prediction of the last model call. Charged to
        ``ledger`` (checked against its budget before running)."""
        bound = (end - start) * self.solver.evals_per_step * x.shape[0]
        if ledger.remaining is not None and bound > ledger.remaining:
            raise BudgetError(
                f"NFE budget exceeded: {bound} needed, {ledger.remaining} left (the budget is "
                "model evaluations per final sample; one plain sample costs the solver's NFE)"
            )
        self.calls += 1
        out = sample(
            self.model,
            x.to(self.dtype) if scale else x,
            solver=self.solver,
            grid=self.grid[start : end + 1],
            scale_noise=scale,
            cond=self._cond(repeats),
            solver_dtype=self.solver_dtype,
            seed=self._seeds(x.shape[0]) if self.solver.stochastic else None,
            return_result=True,
            keep_trajectory=end < self.steps,
        )
        assert isinstance(out, SampleResult)
        ledger.charge(model_evals=out.nfe * x.shape[0], what=f"steps {start}->{end}")
        x0 = out.x0_estimates[-1] if out.x0_estimates else None
        return out.x, x0

    def __call__(self, noise: Tensor, repeats: int, ledger: Ledger) -> Tensor:
        """Samples from standard-normal ``noise`` (the full grid)."""
        return self.segment(noise, 0, self.steps, repeats, ledger, scale=True)[0]


def _scorer(reward: Reward, ledger: Ledger, reward_cond: dict[str, Any] | None):
    counted = ledger.counted_reward(reward, "search reward")

    def score(x: Tensor, repeats: int) -> Tensor:
        cond = {
            k: v.repeat_interleave(repeats, 0) if isinstance(v, Tensor) else v
            for k, v in (reward_cond or {}).items()
        }
        with torch.no_grad():
            return counted(x, **cond).to(torch.float64)

    return score


def _generators(n: int, seed: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(NOISE_SEED_OFFSET + seed + i) for i in range(n)]


def _draw(gens: list[torch.Generator], count: int, shape: Sequence[int]) -> Tensor:
    """``count`` normals per final sample from its generator: (n * count, *shape), grouped."""
    return torch.cat([torch.randn((count, *shape), generator=g, dtype=torch.float64) for g in gens])


def _ledger(budget: int | None, n: int, ledger: Ledger | None) -> Ledger:
    return ledger if ledger is not None else Ledger(budget=None if budget is None else budget * n)


def best_of_n(
    sampler: BaseSampler,
    reward: Reward,
    candidates: int,
    *,
    n: int,
    shape: Sequence[int],
    seed: int = 0,
    budget: int | None = None,
    ledger: Ledger | None = None,
    reward_cond: dict[str, Any] | None = None,
) -> SearchResult:
    """Best-of-N: ``candidates`` noises per final sample, keep the highest-reward sample."""
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise ValueError(f"candidates must be an int >= 1, got {candidates!r}")
    ledger = _ledger(budget, n, ledger)
    score = _scorer(reward, ledger, reward_cond)
    noise = _draw(_generators(n, seed), candidates, shape)
    x = sampler(noise, candidates, ledger)
    r = score(x, candidates).view(n, candidates)
    best = r.argmax(1) + torch.arange(n) * candidates
    running = r.cummax(1).values.mean(0)
    trace = [((c + 1) * sampler.nfe, float(running[c])) for c in range(candidates)]
    return SearchResult(x[best], r.flatten()[best], noise[best], ledger, trace, "best_of_n")


def random_search(
    sampler: BaseSampler,
    reward: Reward,
    budget: int,
    *,
    n: int,
    shape: Sequence[int],
    seed: int = 0,
    ledger: Ledger | None = None,
    reward_cond: dict[str, Any] | None = None,
) -> SearchResult:
    """Random search (Ma et al. sec. 3.2): best-of-N with N = budget // NFE per sample."""
    candidates = budget // sampler.nfe
    if candidates < 1:
        raise ValueError(f"budget={budget} NFE is below one sample ({sampler.nfe} NFE)")
    out = best_of_n(
        sampler,
        reward,
        candidates,
        n=n,
        shape=shape,
        seed=seed,
        budget=budget,
        ledger=ledger,
        reward_cond=reward_cond,
    )
    out.method = "random"
    return out


def neighbours(pivot: Tensor, count: int, cosine: float, gens: list[torch.Generator]) -> Tensor:
    """``count`` noises per pivot row at cosine ``cosine`` with the same norm (tt-scale-flux's
    generator): n' = |n| (lambda u + sqrt(1 - lambda^2) w), w a random unit vector orthogonal to
    u = n / |n|. Returns (n * count, ...) grouped by pivot."""
    flat = pivot.reshape(pivot.shape[0], -1)
    if flat.shape[1] < 2:
        raise ValueError("zero-order search needs noise of at least 2 numbers per sample")
    norm = flat.norm(dim=1, keepdim=True)
    u = (flat / norm).repeat_interleave(count, 0)
    w = _draw(gens, count, flat.shape[1:])
    w = w - (w * u).sum(1, keepdim=True) * u  # project out the pivot direction
    w = w / w.norm(dim=1, keepdim=True)
    out = norm.repeat_interleave(count, 0) * (cosine * u + math.sqrt(1.0 - cosine**2) * w)
    return out.reshape(-1, *pivot.shape[1:])


def zero_order_search(
    sampler: BaseSampler,
    reward: Reward,
    budget: int | None = None,
    *,
    n: int,
    shape: Sequence[int],
    neighbors: int = 4,
    cosine: float = 0.95,
    iterations: int | None = None,
    seed: int = 0,
    ledger: Ledger | None = None,
    reward_cond: dict[str, Any] | None = None,
) -> SearchResult:
    """Zero-order search (Ma et al. sec. 3.2) around a pivot noise: each iteration scores
    ``neighbors`` neighbours at cosine ``cosine`` and moves to the best if it improves. With
    ``iterations`` None, as many iterations as ``budget`` allows: (1 + neighbors * iterations)
    samples per final sample."""
    if isinstance(neighbors, bool) or not isinstance(neighbors, int) or neighbors < 1:
        raise ValueError(f"neighbors must be an int >= 1, got {neighbors!r}")
    if not 0 <= cosine < 1:
        raise ValueError(f"cosine must lie in [0, 1), got {cosine!r}")
    if iterations is None:
        if budget is None:
            raise ValueError("give budget= or iterations=")
        iterations = (budget // sampler.nfe - 1) // neighbors
    if iterations < 0 or (budget is not None and budget < sampler.nfe):
        raise ValueError(f"budget={budget} NFE is below one sample ({sampler.nfe} NFE)")
    ledger = _ledger(budget, n, ledger)
    score = _scorer(reward, ledger, reward_cond)
    gens = _generators(n, seed)
    pivot = _draw(gens, 1, shape)
    x = sampler(pivot, 1, ledger)
    r = score(x, 1)
    trace = [(sampler.nfe, float(r.mean()))]
    for it in range(iterations):
        cand = neighbours(pivot, neighbors, cosine, gens)
        xc = sampler(cand, neighbors, ledger)
        rc = score(xc, neighbors).view(n, neighbors)
        best_r, best = rc.max(1)
        better = best_r > r  # keep the pivot unless a neighbour improves
        pick = best + torch.arange(n) * neighbors
        pivot = torch.where(_rows(better, pivot), cand[pick], pivot)
        x = torch.where(_rows(better, x), xc[pick], x)
        r = torch.where(better, best_r, r)
        trace.append(((1 + neighbors * (it + 1)) * sampler.nfe, float(r.mean())))
    return SearchResult(x, r, pivot, ledger, trace, "zero_order")


def _rows(mask: Tensor, like: Tensor) -> Tensor:
    return mask.to(like.device).reshape(-1, *([1] * (like.ndim - 1)))


def renoise(model: Model, x: Tensor, t_from: float, t_to: float, z: Tensor) -> Tensor:
    """The path's forward kernel from t_from to a noisier t_to (Ma et al.'s search over paths):
    x' = (alpha' / alpha) x + sqrt(sigma'^2 - (alpha' / alpha)^2 sigma^2) z."""
    if not t_to > t_from:
        raise ValueError(f"re-noising goes to a noisier time, got {t_from} -> {t_to}")
    now, to = node_at(model.path, t_from), node_at(model.path, t_to)
    ratio = to.alpha / now.alpha
    return ratio * x + math.sqrt(max(to.sigma**2 - (ratio * now.sigma) ** 2, 0.0)) * z.to(x)


def search_over_paths(
    sampler: BaseSampler,
    reward: Reward,
    budget: int | None = None,
    *,
    n: int,
    shape: Sequence[int],
    width: int = 4,
    branches: int = 4,
    start: int | None = None,
    forward: int = 1,
    backward: int = 2,
    seed: int = 0,
    ledger: Ledger | None = None,
    reward_cond: dict[str, Any] | None = None,
) -> SearchResult:
    """Search over paths (Ma et al. sec. 3.2), in grid steps: ``width`` paths run to step
    ``start`` (default a quarter of the grid); then, while the budget allows a round and the
    finish, each path is re-noised ``forward`` steps back into ``branches`` copies, each copy is
    integrated ``backward`` steps ahead and scored on the data prediction of its last model call
    (free: no extra NFE), and the best ``width`` per final sample are kept. The survivors finish
    without branching; the best final reward wins."""
    steps = sampler.steps
    start = max(forward, steps // 4) if start is None else start
    for name, value in (("width", width), ("branches", branches), ("forward", forward)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not (backward > forward and forward <= start < steps):
        raise ValueError(
            f"need backward > forward and forward <= start < steps={steps}; got "
            f"backward={backward}, forward={forward}, start={start}"
        )
    ledger = _ledger(budget, n, ledger)
    score = _scorer(reward, ledger, reward_cond)
    gens = _generators(n, seed)
    epp = sampler.solver.evals_per_step
    if ledger.remaining is not None and ledger.remaining < width * n * steps * epp:
        raise ValueError(
            f"budget={budget} NFE cannot pay {width} full paths "
            f"({width * steps * epp} NFE per final sample)"
        )
    x, _ = sampler.segment(_draw(gens, width, shape), 0, start, width, ledger, scale=True)
    j = start
    trace: list[tuple[int, float]] = []
    while j < steps:
        j_from, j_to = j - forward, min(j - forward + backward, steps)
        round_cost = n * (width * branches * (j_to - j_from) + width * (steps - j_to)) * epp
        if ledger.remaining is not None and ledger.remaining < round_cost:
            break
        copies = x.repeat_interleave(branches, 0)
        z = _draw(gens, width * branches, x.shape[1:])
        copies = renoise(
            sampler.model, copies, float(sampler.grid[j]), float(sampler.grid[j_from]), z
        )
        xb, x0_hat = sampler.segment(copies, j_from, j_to, width * branches, ledger)
        rb = score(xb if j_to == steps or x0_hat is None else x0_hat, width * branches)
        keep = rb.view(n, width * branches).topk(width, dim=1).indices
        keep = (keep + torch.arange(n)[:, None] * width * branches).flatten()
        x, j = xb[keep], j_to
        trace.append((ledger.model_evals // n, float(rb.view(n, -1).max(1).values.mean())))
    if j < steps:
        x, _ = sampler.segment(x, j, steps, width, ledger)
    r = score(x, width).view(n, width)
    best = r.argmax(1) + torch.arange(n) * width
    trace.append((ledger.model_evals // n, float(r.max(1).values.mean())))
    return SearchResult(x[best], r.flatten()[best], None, ledger, trace, "paths")


def parse_method(method: str) -> tuple[str, int | None]:
    """``"random:16"`` -> ("random", 16); ``"paths"`` -> ("paths", None)."""
    name, _, count = method.partition(":")
    name = {"bon": "best_of_n", "zo": "zero_order"}.get(name, name)
    if name not in METHODS or (count and not count.isdigit()):
        raise ValueError(
            f"search method must be one of {METHODS} (optionally ':N'), got {method!r}"
        )
    return name, int(count) if count else None


def search(
    model: Model,
    method: str,
    reward: Reward,
    budget: int | None = None,
    *,
    n: int = 1,
    shape: Sequence[int],
    solver: str | Solver = "dpmpp_2m",
    steps: int | None = None,
    nfe: int | None = None,
    grid: str | Sequence[float] | Tensor = "karras",
    solver_options: dict[str, Any] | None = None,
    solver_dtype: torch.dtype | None = None,
    cond: dict[str, Any] | None = None,
    reward_cond: dict[str, Any] | None = None,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    **options: Any,
) -> SearchResult:
    """Search for ``n`` samples of shape ``shape`` with ``method`` (``interpolant sample --search
    METHOD[:N] --reward SPEC``):

    * ``best_of_n:N`` / ``random:N``: N candidates (or ``random`` with ``budget`` NFE per sample)
    * ``zero_order[:K]``: K iterations (or as many as ``budget`` allows); options ``neighbors``,
      ``cosine``
    * ``paths[:W]``: width W; options ``branches``, ``start``, ``forward``, ``backward``

    ``budget`` is in model evaluations per final sample; the base sampler is ``solver`` with
    ``steps`` (or ``nfe``) on ``grid``; noise is cast to ``dtype`` (default: the model's
    parameter dtype, float64 for a parameter-free model).
    """
    name, count = parse_method(method)
    sampler = BaseSampler(
        model, solver, steps, nfe, grid, solver_options, solver_dtype, cond, seed, dtype
    )
    common: dict[str, Any] = {
        "n": n,
        "shape": tuple(shape),
        "seed": seed,
        "reward_cond": reward_cond,
    }
    if name in ("best_of_n", "random"):
        if count is None:
            if budget is None:
                raise ValueError(f"{name} needs a candidate count ({name}:N) or budget=")
            return random_search(sampler, reward, budget, **common)
        out = best_of_n(sampler, reward, count, budget=budget, **common, **options)
        out.method = name
        return out
    if name == "zero_order":
        return zero_order_search(sampler, reward, budget, iterations=count, **common, **options)
    if count is not None:
        options["width"] = count
    return search_over_paths(sampler, reward, budget, **common, **options)
