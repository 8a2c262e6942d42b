"""AutoDiffusion: the evolution's operators keep grids valid, the fitness is deterministic, the
search never returns a grid worse than the uniform one it starts from and, on an exact oracle,
a searched 4-step grid beats uniform on fresh seeds; block skipping leaves models unchanged when
nothing is skipped and is exact identity-skipping otherwise."""

from __future__ import annotations

import random

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import lowrank64
from interpolant.models.dit import DiT
from interpolant.models.mlp import MLP
from interpolant.models.unet import UNet
from interpolant.predictions import Model
from interpolant.randomness import normal
from interpolant.scaling.autodiffusion import (
    NOISE_STREAM,
    EvolutionConfig,
    SkipPlan,
    SubsetGenome,
    autodiffusion_search,
    genes_to_grid,
    grid_fitness,
    grid_to_genes,
    search_skips,
    skipping,
    with_skip_plan,
)
from interpolant.solvers import Sampler, get_grid, sample

SMALL = EvolutionConfig(population=12, select=4, mutation=8, crossover=4, epochs=4)


def _noise(n: int, dim: int, seed: int) -> torch.Tensor:
    """The search's fixed noise for ``seed`` (its stream; other seeds are fresh noise)."""
    return normal((dim,), seed, n, NOISE_STREAM, dtype=torch.float64)


@pytest.fixture(scope="module")
def oracle():
    mixture = lowrank64()
    model = mixture.model(paths.VPLinear())
    reference = mixture.sample(2000, torch.Generator().manual_seed(1))
    return model, reference


def test_operators_keep_candidates_valid():
    rng = random.Random(0)
    genome = SubsetGenome(5, 1, 40)
    for _ in range(300):
        a, b = genome.draw(rng), genome.draw(rng)
        for genes in (a, genome.mutate(a, 0.5, rng), genome.cross(a, b, rng)):
            if genes is None:  # a crossover that repeats an item is rejected
                continue
            assert len(genes) == 5 and len(set(genes)) == 5 and list(genes) == sorted(genes)
            assert all(1 <= g < 40 for g in genes)
            grid = genes_to_grid(genes, 40, t_max=1.0)
            assert grid.shape == (7,) and float(grid[0]) == 1.0 and float(grid[-1]) == 0.0
            assert bool((grid[1:] < grid[:-1]).all())
            assert grid_to_genes(grid, 40) == genes


def test_mutation_probability_zero_and_one():
    rng = random.Random(1)
    genome = SubsetGenome(3, 1, 10)
    assert genome.mutate((2, 5, 7), 0.0, rng) == (2, 5, 7)
    assert not set(genome.mutate((2, 5, 7), 1.0, rng)) & {2, 5, 7}


def test_fitness_is_deterministic_for_fixed_seeds(oracle):
    model, reference = oracle
    score = grid_fitness(model, _noise(128, 64, 0), reference, solver="ddim")
    grid = get_grid("uniform", model.path, 4)
    assert score(grid) == score(grid)
    stochastic = grid_fitness(model, _noise(128, 64, 0), reference, solver="pc", seed=3)
    assert stochastic(grid) == stochastic(grid)


def test_search_never_worse_than_uniform_and_returns_a_valid_grid(oracle):
    model, reference = oracle
    for steps in (4, 5):  # uniform grids on the lattice of 1000 points
        result = autodiffusion_search(
            model, reference, steps=steps, n_samples=128, config=SMALL, start=(), seed=2
        )
        grid = result.grid
        assert grid.shape == (steps + 1,) and float(grid[0]) == 1.0 and float(grid[-1]) == 0.0
        assert bool((grid[1:] < grid[:-1]).all()) and float(grid.min()) >= 0.0
        assert result.fitness <= result.uniform_fitness
        assert result.history == sorted(result.history, reverse=True)
        # The reported fitness is the fitness of the returned grid on the same seeds.
        rescore = grid_fitness(model, _noise(128, 64, 2), reference, solver="ddim", seed=2)
        assert rescore(grid) == pytest.approx(result.fitness, rel=1e-12)
        assert rescore(get_grid("uniform", model.path, steps)) == pytest.approx(
            result.uniform_fitness, rel=1e-12
        )


def test_searched_four_step_grid_beats_uniform_on_fresh_seeds(oracle):
    _, reference = oracle
    model = lowrank64().model(paths.Linear())
    result = autodiffusion_search(model, reference, steps=4, n_samples=256, config=SMALL, seed=0)
    fresh = grid_fitness(model, _noise(1000, 64, 10**6), reference, solver="ddim")
    uniform = fresh(get_grid("uniform", model.path, 4))
    assert fresh(result.grid) < 0.9 * uniform


def _nets():
    torch.manual_seed(0)
    mlp = MLP(16, width=32, depth=3)
    dit = DiT(image_size=8, in_channels=1, patch_size=2, depth=3, hidden_size=32, num_heads=2)
    unet = UNet(
        image_size=8,
        in_channels=1,
        model_channels=8,
        channel_mult=(1, 2),
        attn_resolutions=(4,),
        head_channels=8,
    )
    for net in (mlp, dit, unet):  # zero-initialised outputs would hide any difference
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.2)
    return [
        (mlp, torch.randn(4, 16)),
        (dit, torch.randn(4, 1, 8, 8)),
        (unet, torch.randn(4, 1, 8, 8)),
    ]


def test_skipping_nothing_reproduces_the_model_exactly():
    for net, x in _nets():
        t = torch.rand(4)
        with torch.no_grad():
            base = net(x, t)
            assert net.skip_blocks == frozenset()
            with skipping(net, ()):
                same = net(x, t)
            with skipping(net, net.skippable_blocks[:1]):
                other = net(x, t)
            after = net(x, t)
        assert torch.equal(base, same) and torch.equal(base, after)
        assert not torch.allclose(base, other)
        assert net.skip_blocks == frozenset()


def test_skipping_a_block_is_the_identity_block():
    net = MLP(16, width=32, depth=3)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x, t = torch.randn(4, 16), torch.rand(4)
    with torch.no_grad():
        with skipping(net, {1}):
            skipped = net(x, t)
        removed = net.blocks[1]
        net.blocks[1] = torch.nn.Identity()
        net.blocks[1].forward = lambda h, emb: h  # type: ignore[method-assign]
        expected = net(x, t)
        net.blocks[1] = removed
    assert torch.equal(skipped, expected)


def test_unskippable_blocks_are_refused():
    unet = _nets()[2][0]
    assert 2 not in unet.skippable_blocks  # the level that doubles the channels
    with pytest.raises(ValueError, match="skip_blocks"):
        unet.skip_blocks = {2}


def test_skip_search_at_a_budget_keeps_the_budget():
    torch.manual_seed(0)
    net = MLP(4, width=16, depth=2)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    model = Model(net, paths.Linear(), predicts="velocity")
    grid = get_grid("uniform", model.path, 3)
    reference = torch.randn(200, 4, dtype=torch.float64)
    noise = _noise(64, 4, 0).float()

    def score(planned: Model) -> float:
        return grid_fitness(planned, noise, reference, solver="euler", solver_dtype=None)(grid)

    with torch.no_grad():
        run = search_skips(score, model, grid, 2, config=SMALL, seed=0)
        assert sum(len(s) for s in run.plan) == 2 and len(run.plan) == 3
        assert run.fitness <= run.start_fitness
        assert score(with_skip_plan(model, grid, run.plan, None)) == run.fitness
        none = score(with_skip_plan(model, grid, [frozenset()] * 3, None))
        assert none == score(model)
        # The plan as a hook of a run is the planned model.
        spec = Sampler("euler", grid=grid)
        planned = sample(with_skip_plan(model, grid, run.plan, None), noise, spec).x
        hooked = sample(model, noise, spec, hooks=[SkipPlan(run.plan)])
        assert torch.equal(hooked.x, planned) and hooked.nfe == 3
        assert not torch.equal(hooked.x, sample(model, noise, spec).x)
