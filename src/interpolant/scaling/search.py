"""Search over the sampler's noise and paths (Ma et al. 2025, "Inference-Time Scaling for
Diffusion Models beyond Scaling Denoising Steps", arXiv 2501.09732, sec. 3.2).

A fixed pretrained sampler (a :class:`~interpolant.solvers.Sampler` spec; by default the
deterministic :data:`SEARCH_SAMPLER`) maps an initial noise to a sample; a verifier scores
samples; a search algorithm spends model evaluations (NFE) to find better noises or paths:

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
budget is in model evaluations per final sample. Randomness: final sample i draws its noises from
row i of the named stream ``search-noise`` under the spec's seed, so its search does not depend
on ``n``; a stochastic base solver's k-th run of a search uses the seed
``derive_seed("search-run", seed, k)``, its rows numbered by (final sample, candidate).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from typing_extensions import Unpack

from ..errors import UserError
from ..predictions import Model
from ..randomness import Streams, derive_seed, fresh_seed
from ..solvers import Sampler, Trajectory, as_sampler, node_at, sample
from ..solvers.dpm import DPMSolverPP2M
from ..solvers.grids import Karras
from ..solvers.spec import SamplerOptions
from .base import BudgetError, Ledger, Reward, placement, repeat_cond

METHODS = ("best_of_n", "random", "zero_order", "paths")
#: The base sampler searched over by default: deterministic DPM-Solver++(2M), 10 NFE on the
#: Karras grid, seed 0.
SEARCH_SAMPLER = Sampler(DPMSolverPP2M(), nfe=10, grid=Karras(), seed=0)
#: The named streams of the searched noises (one row per final sample) and of the base
#: solver's runs (one seed per run).
NOISE_STREAM, RUN_STREAM = "search-noise", "search-run"
_SAMPLER_FIELDS = frozenset(f.name for f in dataclasses.fields(Sampler))


@dataclass
class SearchResult:
    """The chosen samples (n, ...), their rewards (n,), the chosen initial noises (n, ...; None
    for path search), the ledger, ``nfe`` (the model evaluations per final sample this search
    spent) and ``trace``: (model evaluations per final sample so far, mean over final samples of
    the best reward so far)."""

    x: Tensor
    rewards: Tensor
    noise: Tensor | None
    ledger: Ledger
    nfe: int
    trace: list[tuple[int, float]] = field(default_factory=list)
    method: str = ""


def _search_spec(sampler: Sampler | None = None, **shortcuts: Any) -> Sampler:
    """The base sampler of a search: ``sampler`` (default :data:`SEARCH_SAMPLER`) with the
    keyword shortcuts applied, its seed drawn from torch's global generator if it has none."""
    spec = as_sampler(SEARCH_SAMPLER if sampler is None else sampler, **shortcuts)
    return spec if spec.seed is not None else spec.replace(seed=fresh_seed())


class _Search:
    """One search run: the fixed sampler on its grid (called on noise, or on a state between two
    grid nodes for path search), the ledger, the noise streams of the final samples and the
    counted reward."""

    def __init__(
        self,
        model: Model,
        spec: Sampler,
        reward: Reward,
        n: int,
        budget: int | None,
        cond: dict[str, Any] | None,
        reward_cond: dict[str, Any] | None,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise UserError(f"n must be an int >= 1, got {n!r}")
        if spec.seed is None:
            raise UserError("a search's base sampler needs a seed")
        self.model, self.spec, self.n, self.seed = model, spec, n, spec.seed
        self.grid = spec.times(model.path)
        self.steps = self.grid.numel() - 1
        self.ledger = Ledger(None if budget is None else budget * n)
        self.streams = Streams(spec.seed, n, NOISE_STREAM)
        self.cond, self.reward_cond = cond, reward_cond
        self.reward = self.ledger.counted_reward(reward, "search reward")
        self.dtype, self.device = placement(model)
        self.runs = 0

    def draw(self, count: int, shape: Sequence[int]) -> Tensor:
        """``count`` standard normals per final sample (float64, CPU): (n * count, *shape),
        grouped by final sample."""
        z = self.streams.normal((count, *shape), dtype=torch.float64)
        return z.reshape(-1, *shape)

    def score(self, x: Tensor, repeats: int) -> Tensor:
        """Rewards (float64, no gradients) of samples grouped ``repeats`` per final sample."""
        with torch.no_grad():
            return self.reward(x, **repeat_cond(self.reward_cond, repeats)).to(torch.float64)

    def cost(self, start: int, end: int) -> int:
        """Model evaluations per sample from grid node ``start`` to ``end`` (a segment that ends
        at t = 0 costs what the solver spends on a full run of its steps, e.g. Heun's last step
        is one Euler evaluation)."""
        solver = self.spec.solver
        if end == self.steps:
            return solver.nfe_for_steps(end - start) if end > start else 0
        return (end - start) * solver.evals_per_step

    def segment(
        self, x: Tensor, start: int, end: int, repeats: int, scale: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Integrate ``x`` (B = n * repeats, grouped by final sample) from grid node ``start`` to
        ``end``; returns the state and the data prediction of the segment's last step (None
        for a segment that ends at t = 0). Charged to the ledger (its bound checked first)."""
        bound = self.cost(start, end) * x.shape[0]
        if self.ledger.remaining is not None and bound > self.ledger.remaining:
            raise BudgetError(
                f"NFE budget exceeded: {bound} needed, {self.ledger.remaining} left (the budget is "
                "model evaluations per final sample; one plain sample costs the solver's NFE)"
            )
        self.runs += 1
        spec = self.spec.replace(
            grid=self.grid[start : end + 1],
            nfe=None,
            steps=None,
            seed=derive_seed(RUN_STREAM, self.seed, self.runs),
        )
        # The x0 of the segment's last step, for path search's intermediate scores.
        record = Trajectory(every=end - start)
        hooks = [record] if end < self.steps else []
        out = sample(
            self.model,
            x.to(device=self.device, dtype=self.dtype) if scale else x,
            spec,
            hooks=hooks,
            scale_noise=scale,
            cond=repeat_cond(self.cond, repeats),
        )
        self.ledger.charge(model_evals=out.nfe * x.shape[0], what=f"steps {start}->{end}")
        x0 = out.state(record).x0 if hooks else []
        return out.x, x0[-1] if x0 else None

    def __call__(self, noise: Tensor, repeats: int) -> Tensor:
        """Samples from standard-normal ``noise`` (the full grid)."""
        return self.segment(noise, 0, self.steps, repeats, scale=True)[0]

    def spent(self) -> int:
        """Model evaluations per final sample spent so far."""
        return self.ledger.model_evals // self.n

    def result(
        self,
        x: Tensor,
        rewards: Tensor,
        noise: Tensor | None,
        trace: list[tuple[int, float]],
        method: str,
    ) -> SearchResult:
        return SearchResult(x, rewards, noise, self.ledger, self.spent(), trace, method)


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be an int >= 1, got {value!r}")


def best_of_n(
    model: Model,
    reward: Reward,
    candidates: int,
    sampler: Sampler | None = None,
    *,
    n: int = 1,
    shape: Sequence[int],
    cond: dict[str, Any] | None = None,
    reward_cond: dict[str, Any] | None = None,
    budget: int | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> SearchResult:
    """Best-of-N: ``candidates`` noises per final sample through the base sampler (``sampler``,
    default :data:`SEARCH_SAMPLER`, changed by ``shortcuts``), keep the highest-reward sample.
    ``cond`` and ``reward_cond`` hold batch-n tensors; ``budget`` is per final sample."""
    _check_count("candidates", candidates)
    s = _Search(model, _search_spec(sampler, **shortcuts), reward, n, budget, cond, reward_cond)
    noise = s.draw(candidates, shape)
    x = s(noise, candidates)
    r = s.score(x, candidates).view(n, candidates)
    best = r.argmax(1).cpu() + torch.arange(n) * candidates
    running = r.cummax(1).values.mean(0)
    per_candidate = s.spent() // candidates
    trace = [((c + 1) * per_candidate, float(running[c])) for c in range(candidates)]
    return s.result(
        x[best.to(x.device)], r.flatten()[best.to(r.device)], noise[best], trace, "best_of_n"
    )


def random_search(
    model: Model,
    reward: Reward,
    budget: int,
    sampler: Sampler | None = None,
    *,
    n: int = 1,
    shape: Sequence[int],
    cond: dict[str, Any] | None = None,
    reward_cond: dict[str, Any] | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> SearchResult:
    """Random search (Ma et al. sec. 3.2): best-of-N with N = budget // NFE per sample."""
    spec = _search_spec(sampler, **shortcuts)
    candidates = budget // spec.nfe_used()
    if candidates < 1:
        raise UserError(f"budget={budget} NFE is below one sample ({spec.nfe_used()} NFE)")
    out = best_of_n(
        model,
        reward,
        candidates,
        spec,
        n=n,
        shape=shape,
        cond=cond,
        reward_cond=reward_cond,
        budget=budget,
    )
    return dataclasses.replace(out, method="random")


def neighbours(pivot: Tensor, count: int, cosine: float, streams: Streams) -> Tensor:
    """``count`` noises per pivot row at cosine ``cosine`` with the same norm (tt-scale-flux's
    generator): n' = |n| (lambda u + sqrt(1 - lambda^2) w), w a random unit vector orthogonal to
    u = n / |n|, drawn from row i of ``streams`` for pivot i. Returns (n * count, ...) grouped by
    pivot."""
    flat = pivot.reshape(pivot.shape[0], -1).to(torch.float64)
    if flat.shape[1] < 2:
        raise UserError("zero-order search needs noise of at least 2 numbers per sample")
    if len(streams) != flat.shape[0]:
        raise UserError(f"{len(streams)} random streams for {flat.shape[0]} pivots")
    norm = flat.norm(dim=1, keepdim=True)
    u = (flat / norm).repeat_interleave(count, 0)
    w = streams.normal((count, flat.shape[1]), dtype=torch.float64).reshape(-1, flat.shape[1])
    w = w - (w * u).sum(1, keepdim=True) * u  # project out the pivot direction
    w = w / w.norm(dim=1, keepdim=True)
    out = norm.repeat_interleave(count, 0) * (cosine * u + math.sqrt(1.0 - cosine**2) * w)
    return out.reshape(-1, *pivot.shape[1:])


def zero_order_search(
    model: Model,
    reward: Reward,
    budget: int | None = None,
    sampler: Sampler | None = None,
    *,
    n: int = 1,
    shape: Sequence[int],
    neighbors: int = 4,
    cosine: float = 0.95,
    iterations: int | None = None,
    cond: dict[str, Any] | None = None,
    reward_cond: dict[str, Any] | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> SearchResult:
    """Zero-order search (Ma et al. sec. 3.2) around a pivot noise: each iteration scores
    ``neighbors`` neighbours at cosine ``cosine`` and moves to the best if it improves. With
    ``iterations`` None, as many iterations as ``budget`` allows: (1 + neighbors * iterations)
    samples per final sample."""
    _check_count("neighbors", neighbors)
    if not 0 <= cosine < 1:
        raise UserError(f"cosine must lie in [0, 1), got {cosine!r}")
    spec = _search_spec(sampler, **shortcuts)
    nfe = spec.nfe_used()
    if iterations is None:
        if budget is None:
            raise UserError("give budget= or iterations=")
        iterations = (budget // nfe - 1) // neighbors
        if iterations < 1:
            # Zero rounds would return the pivot's plain samples as if they were searched.
            raise BudgetError(
                f"budget={budget} NFE cannot fit one zero-order round: the pivot and "
                f"{neighbors} neighbours cost (1 + {neighbors}) x {nfe} = {(1 + neighbors) * nfe}"
                f" NFE per final sample; raise the budget or lower neighbors= or nfe"
            )
    if iterations < 0 or (budget is not None and budget < nfe * (1 + neighbors * iterations)):
        raise BudgetError(
            f"budget={budget} NFE cannot pay {iterations} iterations of {neighbors} neighbours "
            f"at {nfe} NFE per sample ({nfe * (1 + neighbors * iterations)} NFE)"
        )
    s = _Search(model, spec, reward, n, budget, cond, reward_cond)
    pivot = s.draw(1, shape)
    x = s(pivot, 1)
    r = s.score(x, 1)
    trace = [(s.spent(), float(r.mean()))]
    for _ in range(iterations):
        cand = neighbours(pivot, neighbors, cosine, s.streams)
        xc = s(cand, neighbors)
        rc = s.score(xc, neighbors).view(n, neighbors)
        best_r, best = rc.max(1)
        better = best_r > r  # keep the pivot unless a neighbour improves
        pick = best.cpu() + torch.arange(n) * neighbors
        pivot = torch.where(_rows(better, pivot), cand[pick], pivot)
        x = torch.where(_rows(better, x), xc[pick.to(xc.device)], x)
        r = torch.where(better, best_r, r)
        trace.append((s.spent(), float(r.mean())))
    return s.result(x, r, pivot, trace, "zero_order")


def _rows(mask: Tensor, like: Tensor) -> Tensor:
    return mask.to(like.device).reshape(-1, *([1] * (like.ndim - 1)))


def renoise(model: Model, x: Tensor, t_from: float, t_to: float, z: Tensor) -> Tensor:
    """The path's forward kernel from t_from to a noisier t_to (Ma et al.'s search over paths):
    x' = (alpha' / alpha) x + sqrt(sigma'^2 - (alpha' / alpha)^2 sigma^2) z."""
    if not t_to > t_from:
        raise UserError(f"re-noising goes to a noisier time, got {t_from} -> {t_to}")
    now, to = node_at(model.path, t_from), node_at(model.path, t_to)
    ratio = to.alpha / now.alpha
    return ratio * x + math.sqrt(max(to.sigma**2 - (ratio * now.sigma) ** 2, 0.0)) * z.to(x)


def search_over_paths(
    model: Model,
    reward: Reward,
    budget: int | None = None,
    sampler: Sampler | None = None,
    *,
    n: int = 1,
    shape: Sequence[int],
    width: int = 4,
    branches: int = 4,
    start: int | None = None,
    forward: int = 1,
    backward: int = 2,
    cond: dict[str, Any] | None = None,
    reward_cond: dict[str, Any] | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> SearchResult:
    """Search over paths (Ma et al. sec. 3.2), in grid steps: ``width`` paths run to step
    ``start`` (default a quarter of the grid); then, while the budget allows a round and the
    finish, each path is re-noised ``forward`` steps back into ``branches`` copies, each copy is
    integrated ``backward`` steps ahead and scored on the data prediction of its last step
    (free: no extra NFE), and the best ``width`` per final sample are kept. The survivors finish
    without branching; the best final reward wins."""
    s = _Search(model, _search_spec(sampler, **shortcuts), reward, n, budget, cond, reward_cond)
    steps = s.steps
    start = max(forward, steps // 4) if start is None else start
    for name, value in (("width", width), ("branches", branches), ("forward", forward)):
        _check_count(name, value)
    if not (backward > forward and forward <= start < steps):
        raise UserError(
            f"need backward > forward and forward <= start < steps={steps}; got "
            f"backward={backward}, forward={forward}, start={start}"
        )
    remaining = s.ledger.remaining
    if remaining is not None and remaining < width * n * s.cost(0, steps):
        raise BudgetError(
            f"budget={budget} NFE cannot pay {width} full paths "
            f"({width * s.cost(0, steps)} NFE per final sample)"
        )
    j_to = min(start - forward + backward, steps)
    first = width * s.cost(0, start) + width * branches * s.cost(start - forward, j_to)
    first += width * s.cost(j_to, steps)
    if remaining is not None and remaining < n * first:
        # No branching round fits: the result would be best-of-width with nothing searched.
        raise BudgetError(
            f"budget={budget} NFE cannot fit one search round: {width} paths to step {start}, "
            f"{width * branches} branches and the finish cost {first} NFE per final sample; "
            f"raise the budget or use best_of_n:{width}"
        )
    x, _ = s.segment(s.draw(width, shape), 0, start, width, scale=True)
    j = start
    trace: list[tuple[int, float]] = []
    while j < steps:
        j_from, j_to = j - forward, min(j - forward + backward, steps)
        # The round's copies, and the finish of the survivors it must leave room for.
        round_cost = n * (width * branches * s.cost(j_from, j_to) + width * s.cost(j_to, steps))
        remaining = s.ledger.remaining
        if remaining is not None and remaining < round_cost:
            break
        # Re-noise every path `forward` steps back into `branches` copies (one draw per sample).
        copies = x.repeat_interleave(branches, 0)
        z = s.draw(width * branches, x.shape[1:])
        copies = renoise(model, copies, float(s.grid[j]), float(s.grid[j_from]), z)
        xb, x0_hat = s.segment(copies, j_from, j_to, width * branches)
        rb = s.score(xb if j_to == steps or x0_hat is None else x0_hat, width * branches)
        keep = rb.view(n, width * branches).topk(width, dim=1).indices.cpu()
        keep = (keep + torch.arange(n)[:, None] * width * branches).flatten()
        x, j = xb[keep.to(xb.device)], j_to
        trace.append((s.spent(), float(rb.view(n, -1).max(1).values.mean())))
    if j < steps:
        x, _ = s.segment(x, j, steps, width)
    r = s.score(x, width).view(n, width)
    best = r.argmax(1).cpu() + torch.arange(n) * width
    trace.append((s.spent(), float(r.max(1).values.mean())))
    return s.result(x[best.to(x.device)], r.flatten()[best.to(r.device)], None, trace, "paths")


def parse_method(method: str) -> tuple[str, int | None]:
    """``"random:16"`` -> ("random", 16); ``"paths"`` -> ("paths", None)."""
    name, _, count = method.partition(":")
    name = {"bon": "best_of_n", "zo": "zero_order"}.get(name, name)
    if name not in METHODS or (count and not count.isdigit()):
        raise UserError(f"search method must be one of {METHODS} (optionally ':N'), got {method!r}")
    return name, int(count) if count else None


def search(
    model: Model,
    method: str,
    reward: Reward,
    budget: int | None = None,
    sampler: Sampler | None = None,
    *,
    n: int = 1,
    shape: Sequence[int],
    cond: dict[str, Any] | None = None,
    reward_cond: dict[str, Any] | None = None,
    **options: Any,
) -> SearchResult:
    """Search for ``n`` samples of shape ``shape`` with ``method`` (``interpolant sample --search
    METHOD[:N] --reward SPEC``):

    * ``best_of_n:N`` / ``random:N``: N candidates (or ``random`` with ``budget`` NFE per sample)
    * ``zero_order[:K]``: K iterations (or as many as ``budget`` allows); options ``neighbors``,
      ``cosine``
    * ``paths[:W]``: width W; options ``branches``, ``start``, ``forward``, ``backward``

    ``budget`` is in model evaluations per final sample; the base sampler is ``sampler``
    (default :data:`SEARCH_SAMPLER`); options named like its fields (solver=, nfe=, steps=,
    grid=, t_max=, solver_dtype=, seed=) are its shortcuts, the others the method's.
    """
    name, count = parse_method(method)
    shortcuts = {k: options.pop(k) for k in list(options) if k in _SAMPLER_FIELDS}
    spec = _search_spec(sampler, **shortcuts)
    common: dict[str, Any] = {
        "n": n,
        "shape": tuple(shape),
        "cond": cond,
        "reward_cond": reward_cond,
    }
    if name in ("best_of_n", "random"):
        if count is None:
            if budget is None:
                raise UserError(f"{name} needs a candidate count ({name}:N) or budget=")
            return random_search(model, reward, budget, spec, **common)
        out = best_of_n(model, reward, count, spec, budget=budget, **common, **options)
        return dataclasses.replace(out, method=name)
    if name == "zero_order":
        return zero_order_search(model, reward, budget, spec, iterations=count, **common, **options)
    if count is not None:
        options["width"] = count
    return search_over_paths(model, reward, budget, spec, **common, **options)


__all__ = [
    "METHODS",
    "SEARCH_SAMPLER",
    "SearchResult",
    "best_of_n",
    "neighbours",
    "parse_method",
    "random_search",
    "renoise",
    "search",
    "search_over_paths",
    "zero_order_search",
]
