"""AutoDiffusion (Li et al., ICCV 2023): training-free evolutionary search over the time steps of a
few-step sampler and over the network blocks it may skip.

The paper's recipe (sec. 3; official code ``lilijiangg/AutoDiffusion``,
``search_uncondition_model.py``):

* **Search space.** A candidate is a set of ``K`` time steps taken from the ``T = 1000`` training
  steps (any non-uniform subset); stage 2 adds, per step, a set of network blocks run as the
  identity under a compute budget.
* **Fitness.** FID between samples generated from fixed noise seeds and reference statistics,
  lower is better. Here any distribution distance: ``"fd"`` (the Frechet distance of
  :mod:`interpolant.metrics.fid`, on raw values or the digit classifier's features),
  ``"sw"`` (sliced Wasserstein-2, fixed projections) or ``"mmd"`` (Gaussian-kernel MMD^2), or a
  callable ``(samples, reference) -> float``.
* **Evolution** (``create_argparser`` defaults): population 50; the parents are the 10 best
  candidates seen so far; each generation adds 35 mutants (each gene replaced with probability
  0.1 by an unused value) and 25 uniform crossovers of two parents, then random candidates up
  to the population size (none with the defaults: 35 + 25 >= 50); 20 epochs; a candidate seen
  before is not scored again. Initialisation (``use_ddim_init_x``): the uniform (DDIM) schedule,
  ``population // 2`` random candidates and mutants of the uniform schedule (probability 0.1)
  up to the population size.

What is ours: time is continuous, so a candidate's genes are the ``K - 1`` interior nodes of a
descending grid on a lattice of ``resolution`` points of ``(0, t_max)``; the first node is
``t_max`` (where the source is drawn) and the last is 0 (the data), as for every grid of
:func:`interpolant.solvers.sample`. Genes are kept sorted, and crossover is gene-wise on the
sorted genes (the official code crosses unsorted lists, which can duplicate a step and so
silently drop one; a duplicate here rejects the child). The skip search runs after the time-step
search (the paper's progressive two-stage schedule interleaves them) with an exact budget of
skipped (step, block) pairs; its genome is the same "k distinct items from a finite set", so
both searches share one set of operators.

The best candidate is never worse than the uniform grid on the search's seeds: the uniform grid
is scored first and the parents are the best candidates seen so far. Judge a searched grid on
other seeds (the claim is that it transfers).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from ..errors import UserError
from ..metrics import frechet_distance, mmd, sliced_wasserstein
from ..metrics.fid import (
    FeatureSpec,
    extract_features,
    frechet_distance_from_stats,
    gaussian_stats,
)
from ..models.layers import SkippableBlocks
from ..predictions import Model
from ..randomness import fresh_seed, normal
from ..solvers import Hook, Plan, Sampler, as_sampler
from ..solvers.dpm import DDIM
from ..solvers.grids import Uniform, check_grid, get_grid
from ..solvers.grids import uniform as uniform_grid
from ..solvers.search import sample_on_grid
from ..solvers.spec import SamplerOptions

Genes = tuple[int, ...]
FITNESS = ("fd", "sw", "mmd")
#: AutoDiffusion's default sampler: DDIM (eta = 0, the paper's) with 4 steps (the step count of
#: the searched grid; the grid itself is what is searched), float64 arithmetic, seed 0.
AUTODIFFUSION_SAMPLER = Sampler(DDIM(), steps=4, grid=Uniform(), solver_dtype="float64", seed=0)
#: The named stream of the search's fixed noise (one row per sample).
NOISE_STREAM = "autodiffusion-noise"


# ----------------------------------------------------------------------------- fitness


def distribution_distance(
    x: Tensor,
    reference: Tensor,
    fitness: str | Callable[[Tensor, Tensor], float] = "fd",
    features: FeatureSpec = "raw",
) -> float:
    """Distance between samples and reference data (lower is closer): "fd" (Frechet distance on
    ``features``: "raw", "digits" or a callable), "sw" (sliced W2, 256 fixed projections),
    "mmd" (MMD^2, median bandwidth) or a callable ``(x, reference) -> float``."""
    if callable(fitness):
        return float(fitness(x, reference))
    if fitness == "fd":
        return frechet_distance(x, reference, features=features)
    if fitness == "sw":
        return float(sliced_wasserstein(x, reference, n_projections=256, seed=0))
    if fitness == "mmd":
        return float(mmd(x, reference))
    raise UserError(f"fitness must be one of {FITNESS} or a callable, got {fitness!r}")


def grid_fitness(
    model: Model,
    noise: Tensor,
    reference: Tensor,
    sampler: Sampler | None = None,
    *,
    fitness: str | Callable[[Tensor, Tensor], float] = "fd",
    features: FeatureSpec = "raw",
    cond: dict[str, Any] | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> Callable[[Tensor], float]:
    """``grid -> distance`` of the samples that the sampler spec (default
    :data:`AUTODIFFUSION_SAMPLER`, changed by ``shortcuts``; its grid is replaced) draws from the
    fixed ``noise`` (and the spec's fixed seed, for stochastic solvers) on that grid to
    ``reference``; +inf for a run that diverges. Deterministic: the same grid gives the same
    value."""
    spec = as_sampler(AUTODIFFUSION_SAMPLER if sampler is None else sampler, **shortcuts)
    if fitness == "fd":
        # The reference statistics once, not per candidate.
        ref_stats = gaussian_stats(extract_features(reference, features))

        def distance(x: Tensor) -> float:
            stats = gaussian_stats(extract_features(x, features))
            return frechet_distance_from_stats(*stats, *ref_stats)
    else:

        def distance(x: Tensor) -> float:
            return distribution_distance(x, reference, fitness, features)

    def score(grid: Tensor) -> float:
        x = sample_on_grid(model, noise, grid, spec, cond)
        if x is None:
            return math.inf
        value = distance(x)
        return value if math.isfinite(value) else math.inf

    return score


# ----------------------------------------------------------------------------- the evolution


@dataclass(frozen=True)
class EvolutionConfig:
    """The evolutionary search's settings; defaults are the official ``create_argparser``'s."""

    population: int = 50
    select: int = 10
    mutation: int = 35
    crossover: int = 25
    mutation_prob: float = 0.1
    epochs: int = 20
    #: Lattice points of (0, t_max) for the time-step genes (the paper's T = 1000 steps).
    resolution: int = 1000

    def __post_init__(self) -> None:
        for name in ("population", "select", "epochs", "resolution"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("mutation", "crossover"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.mutation_prob <= 1.0:
            raise UserError(f"mutation_prob must lie in [0, 1], got {self.mutation_prob}")


@dataclass
class Evolution:
    """The record of one evolutionary search: the best genes, their fitness, the fitness of the
    first (seed) candidate, the best fitness after each epoch and every scored candidate."""

    best: Genes
    fitness: float
    start_fitness: float
    history: list[float]
    scored: dict[Genes, float] = field(default_factory=dict)


class SubsetGenome:
    """Candidates are sorted tuples of ``k`` distinct items of ``range(lo, hi)``; the paper's
    operators: random subsets, per-gene replacement by an unused item, gene-wise crossover."""

    def __init__(self, k: int, lo: int, hi: int) -> None:
        if not 0 <= k <= hi - lo:
            raise UserError(f"cannot choose {k} distinct items from range({lo}, {hi})")
        self.k, self.lo, self.hi = k, lo, hi

    def draw(self, rng: random.Random) -> Genes:
        return tuple(sorted(rng.sample(range(self.lo, self.hi), self.k)))

    def mutate(self, genes: Genes, prob: float, rng: random.Random) -> Genes:
        # Each gene is replaced with probability prob by an unused item (official get_mutation).
        out = list(genes)
        unused = sorted(set(range(self.lo, self.hi)) - set(genes))
        for i in range(len(out)):
            if unused and rng.random() < prob:
                out[i] = unused.pop(rng.randrange(len(unused)))
        return tuple(sorted(out))

    def cross(self, a: Genes, b: Genes, rng: random.Random) -> Genes | None:
        # Gene-wise uniform crossover (official get_cross); a repeated item is no candidate.
        child = tuple(sorted(ai if rng.random() < 0.5 else bi for ai, bi in zip(a, b)))
        return child if len(set(child)) == len(child) else None


def evolve(
    score: Callable[[Genes], float],
    genome: SubsetGenome,
    start: Sequence[Genes],
    config: EvolutionConfig,
    rng: random.Random,
) -> Evolution:
    """AutoDiffusion's evolutionary search (official ``EvolutionSearcher.search``), minimising
    ``score``. ``start[0]`` seeds the population with its mutants (the uniform schedule)."""
    if not start:
        raise UserError("evolve needs at least one starting candidate")
    scored: dict[Genes, float] = {}

    def add(genes: Genes | None, batch: list[Genes]) -> bool:
        if genes is None or genes in scored:
            return False
        scored[genes] = score(genes)
        batch.append(genes)
        return True

    def fill(make: Callable[[], Genes | None], count: int, batch: list[Genes]) -> None:
        # At most 10 tries per wanted candidate, as the official loops (duplicates are skipped).
        added, tries = 0, 10 * count
        while added < count and tries > 0:
            tries -= 1
            added += add(make(), batch)

    population: list[Genes] = []
    for genes in start:
        add(genes, population)
    first = scored[start[0]]
    fill(lambda: genome.draw(rng), config.population // 2, population)
    fill(
        lambda: genome.mutate(start[0], config.mutation_prob, rng),
        config.population - len(population),
        population,
    )

    def ranked() -> list[Genes]:
        return sorted(scored, key=lambda g: scored[g])

    def generation(parents: list[Genes]) -> None:
        # Mutants and crossovers of the parents, then random candidates up to the population.
        batch: list[Genes] = []
        prob = config.mutation_prob
        fill(lambda: genome.mutate(rng.choice(parents), prob, rng), config.mutation, batch)
        fill(
            lambda: genome.cross(rng.choice(parents), rng.choice(parents), rng),
            config.crossover,
            batch,
        )
        fill(lambda: genome.draw(rng), config.population - len(batch), batch)

    history = [scored[ranked()[0]]]
    for _ in range(config.epochs - 1):
        generation(ranked()[: config.select])
        history.append(scored[ranked()[0]])
    best = ranked()[0]
    return Evolution(best, scored[best], first, history, scored)


# ----------------------------------------------------------------------------- time steps


def genes_to_grid(genes: Genes, resolution: int, t_max: float = 1.0) -> Tensor:
    """The descending float64 grid ``t_max > interior nodes > 0`` of lattice genes in
    ``1 .. resolution - 1`` (node time ``t_max * gene / resolution``)."""
    interior = sorted(genes, reverse=True)
    t = torch.tensor([1.0 * resolution, *interior, 0.0], dtype=torch.float64) * (t_max / resolution)
    t[0] = t_max
    check_grid(t)
    return t


def grid_to_genes(grid: Tensor, resolution: int, t_max: float = 1.0) -> Genes:
    """The lattice genes nearest to a grid's interior nodes (which must map to distinct points)."""
    interior = grid[1:-1].to(torch.float64) * (resolution / t_max)
    genes = tuple(sorted(int(v) for v in interior.round().clamp(1, resolution - 1).tolist()))
    if len(set(genes)) != len(genes):
        raise UserError(f"grid {grid.tolist()} has nodes closer than the lattice 1/{resolution}")
    return genes


@dataclass
class AutoDiffusionResult:
    """A searched grid (``sample(..., grid=result.grid)``), its fitness on the search's seeds,
    the uniform grid's, the best fitness after each epoch, and the number of sampler runs. After
    a block search, ``skip_plan[i]`` is the set of blocks skipped at step i (a run applies it
    with the hook ``SkipPlan(result.skip_plan)``) and ``skip_fitness`` its fitness."""

    grid: Tensor
    fitness: float
    uniform_fitness: float
    history: list[float]
    evaluations: int
    skip_plan: tuple[frozenset[int], ...] | None = None
    skip_fitness: float | None = None
    skip_history: list[float] = field(default_factory=list)


def search_timesteps(
    score: Callable[[Tensor], float],
    steps: int,
    *,
    config: EvolutionConfig = EvolutionConfig(),
    t_max: float = 1.0,
    start: Sequence[Tensor] = (),
    seed: int = 0,
) -> AutoDiffusionResult:
    """Evolve ``steps``-step grids to minimise ``score(grid)`` (see :func:`grid_fitness`), from
    the uniform grid, extra starting grids ``start`` (e.g. Karras) and the paper's random and
    mutated candidates. The uniform grid is rounded to the lattice (exact when ``steps``
    divides ``config.resolution``)."""
    if steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}")
    if steps > config.resolution:
        raise UserError(f"steps={steps} exceeds the lattice resolution {config.resolution}")
    res = config.resolution
    genome = SubsetGenome(steps - 1, 1, res)
    uniform = grid_to_genes(uniform_grid(steps, t_max), res, t_max)
    seeds = [uniform] + [grid_to_genes(g, res, t_max) for g in start]
    run = evolve(
        lambda g: score(genes_to_grid(g, res, t_max)), genome, seeds, config, random.Random(seed)
    )
    return AutoDiffusionResult(
        grid=genes_to_grid(run.best, res, t_max),
        fitness=run.fitness,
        uniform_fitness=run.start_fitness,
        history=run.history,
        evaluations=len(run.scored),
    )


# ----------------------------------------------------------------------------- skipping blocks


def find_backbone(model: Model | nn.Module) -> SkippableBlocks:
    """The first module with skippable blocks (MLP, DiT, UNet) inside a model or network."""
    net = model.net if isinstance(model, Model) else model
    if isinstance(net, SkippableBlocks):
        return net
    if isinstance(net, nn.Module):
        for module in net.modules():
            if isinstance(module, SkippableBlocks):
                return module
    raise UserError(
        f"no backbone with skippable blocks (MLP, DiT, UNet) inside {type(net).__name__}"
    )


@contextmanager
def skipping(backbone: SkippableBlocks, blocks: Sequence[int] | frozenset[int]) -> Iterator[None]:
    """Run ``backbone`` with ``blocks`` as the identity inside the block; restores the previous
    set afterwards (also on error)."""
    previous = backbone.skip_blocks
    backbone.skip_blocks = frozenset(blocks)
    try:
        yield
    finally:
        backbone.skip_blocks = previous


class _PlannedNet(nn.Module):
    """A model's network that skips ``plan[i]`` when called at grid node i (its parameters are
    the model's, so its dtype and device are too)."""

    def __init__(
        self,
        model: Model,
        grid: Tensor,
        plan: Sequence[frozenset[int]],
        backbone: SkippableBlocks,
    ) -> None:
        super().__init__()
        self.model, self.plan, self.backbone = model, tuple(plan), backbone
        self.nodes = grid[:-1].to(torch.float64)

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        node = int((self.nodes - float(t.reshape(-1)[0])).abs().argmin())
        with skipping(self.backbone, self.plan[node]):
            return self.model.call_net(x, t, cond)


def with_skip_plan(
    model: Model, grid: Tensor, plan: Sequence[frozenset[int]], backbone: SkippableBlocks | None
) -> Model:
    """``model`` whose network skips ``plan[i]`` when called at grid node i (the node nearest to
    the time it is called with; a corrector's extra calls at a node share that node's plan)."""
    if len(plan) != len(grid) - 1:
        raise UserError(f"plan has {len(plan)} entries for a grid of {len(grid) - 1} steps")
    planned = _PlannedNet(model, grid, plan, backbone or find_backbone(model))
    return Model(planned, model.path, model.predicts)


class SkipPlan(Hook[None]):
    """AutoDiffusion's skipped blocks as a plug-in of a run (like any hook): ``blocks[i]`` run
    as the identity at step i of the run's grid (:meth:`prepare` swaps in the planned model,
    :func:`with_skip_plan`). The plan is per step of the grid this hook sees, so give it before
    hooks that shorten the grid (``Teleport``)."""

    def __init__(
        self, blocks: Sequence[Iterable[int]], backbone: SkippableBlocks | None = None
    ) -> None:
        self.blocks = tuple(frozenset(int(b) for b in step) for step in blocks)
        self.backbone = backbone

    def prepare(self, plan: Plan) -> Plan:
        model = with_skip_plan(plan.model, plan.grid, self.blocks, self.backbone)
        return Plan(model, plan.grid, plan.x)

    def __repr__(self) -> str:
        return f"SkipPlan({[sorted(step) for step in self.blocks]})"


@dataclass
class SkipSearch:
    """The best skip plan (``plan[i]``: blocks skipped at step i), its fitness, the fitness of
    the starting plan, the best fitness after each epoch and the number of sampler runs."""

    plan: tuple[frozenset[int], ...]
    fitness: float
    start_fitness: float
    history: list[float]
    evaluations: int


def search_skips(
    score: Callable[[Model], float],
    model: Model,
    grid: Tensor,
    n_skip: int,
    *,
    config: EvolutionConfig = EvolutionConfig(),
    backbone: SkippableBlocks | None = None,
    seed: int = 0,
) -> SkipSearch:
    """Evolve which ``n_skip`` (step, block) pairs run as the identity on a fixed ``grid``
    (the paper's stage 2 at a fixed compute budget), minimising ``score(planned model)``.
    The first candidate skips the first ``n_skip`` pairs in (block, step) order, i.e. the
    first skippable block at every step before the second."""
    inner = backbone or find_backbone(model)
    blocks = inner.skippable_blocks
    steps = len(grid) - 1
    genome = SubsetGenome(n_skip, 0, steps * len(blocks))

    def plan_of(genes: Genes) -> tuple[frozenset[int], ...]:
        return tuple(
            frozenset(blocks[g % len(blocks)] for g in genes if g // len(blocks) == i)
            for i in range(steps)
        )

    order = [s * len(blocks) + b for b in range(len(blocks)) for s in range(steps)]
    first = tuple(sorted(order[:n_skip]))
    run = evolve(
        lambda g: score(with_skip_plan(model, grid, plan_of(g), inner)),
        genome,
        [first],
        config,
        random.Random(seed),
    )
    return SkipSearch(
        plan_of(run.best), run.fitness, run.start_fitness, run.history, len(run.scored)
    )


# ----------------------------------------------------------------------------- the API


def autodiffusion_search(
    model: Model,
    reference: Tensor,
    sampler: Sampler | None = None,
    *,
    n_samples: int = 256,
    fitness: str | Callable[[Tensor, Tensor], float] = "fd",
    features: FeatureSpec = "raw",
    config: EvolutionConfig = EvolutionConfig(),
    start: Sequence[str | Tensor] = ("karras",),
    skip: int = 0,
    skip_config: EvolutionConfig | None = None,
    cond: dict[str, Any] | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> AutoDiffusionResult:
    """AutoDiffusion: search the grid of the sampler spec (then optionally ``skip`` skipped
    blocks) whose samples are closest to ``reference``.

    Args:
        model: the model to sample (any prediction kind, any Gaussian path).
        reference: reference data (N, ...); the samples have its per-sample shape.
        sampler: the spec whose grid is searched (default :data:`AUTODIFFUSION_SAMPLER`: DDIM
            in float64, as in the paper); ``shortcuts`` change it (``steps=`` the number of
            steps of the grid, ``solver=``, ``t_max=``, ``seed=``, ...). Its seed seeds the
            fixed noise (stream ``autodiffusion-noise``), a stochastic solver and the evolution.
        n_samples: samples per fitness evaluation (the same noise for every candidate).
        fitness: "fd", "sw", "mmd" or a callable ``(samples, reference) -> float``.
        features: features of "fd": "raw", "digits" (8x8 digits) or a callable.
        config: evolution settings (the paper's defaults).
        start: grids (names or tensors) added to the initial population besides uniform.
        skip: number of (step, block) pairs to run as the identity (0: no block search).
        skip_config: evolution settings of the block search (default: ``config``).

    Returns:
        An :class:`AutoDiffusionResult`; ``sample(model, noise, spec.replace(grid=result.grid,
        steps=None))`` uses the searched grid (with ``SkipPlan(result.skip_plan)`` in hooks
        after a block search).
    """
    if not isinstance(reference, Tensor) or reference.ndim < 2:
        raise UserError("reference must be a tensor of shape (N, ...) with N >= 2")
    if n_samples < 2:
        raise UserError(f"n_samples must be >= 2, got {n_samples}")
    if skip < 0:
        raise UserError(f"skip must be >= 0, got {skip}")
    spec = as_sampler(AUTODIFFUSION_SAMPLER if sampler is None else sampler, **shortcuts)
    seed = fresh_seed() if spec.seed is None else spec.seed
    spec = spec.replace(seed=seed)
    steps, t_max = spec.steps_used(), spec.t_max
    noise = normal(reference.shape[1:], seed, n_samples, NOISE_STREAM, dtype=reference.dtype)

    def fitness_of(sampled: Model) -> Callable[[Tensor], float]:
        # The same noise, reference and metric for the step search and the skip search.
        return grid_fitness(
            sampled, noise, reference, spec, fitness=fitness, features=features, cond=cond
        )

    score = fitness_of(model)
    grids = [
        get_grid(g, model.path, steps, t_max=t_max) if isinstance(g, str) else g for g in start
    ]
    result = search_timesteps(score, steps, config=config, t_max=t_max, start=grids, seed=seed)
    if skip == 0:
        return result

    def planned_score(planned: Model) -> float:
        return fitness_of(planned)(result.grid)

    run = search_skips(
        planned_score, model, result.grid, skip, config=skip_config or config, seed=seed
    )
    result.skip_plan = run.plan
    result.skip_fitness = run.fitness
    result.skip_history = run.history
    result.evaluations += run.evaluations
    return result


__all__ = [
    "AUTODIFFUSION_SAMPLER",
    "AutoDiffusionResult",
    "EvolutionConfig",
    "SkipPlan",
    "SkipSearch",
    "autodiffusion_search",
    "distribution_distance",
    "grid_fitness",
    "search_skips",
    "search_timesteps",
    "skipping",
    "with_skip_plan",
]
