"""FK steering: resampling primitives, exactness against the tilted mixture, potentials that
telescope, hook bookkeeping, batch invariance and errors."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.data.oracles import GaussianMixture
from interpolant.metrics import sliced_wasserstein
from interpolant.paths import get_path
from interpolant.randomness import Streams
from interpolant.scaling import (
    BudgetError,
    FKSteering,
    LinearReward,
    QuadraticReward,
    effective_sample_size,
    fk_steer,
    resample_indices,
    tilt,
)
from interpolant.solvers import FunctionHook, Output, Sampler, Trajectory, sample
from interpolant.solvers.dpm_sde import BrownianMultistep

D64 = torch.float64


def three_modes() -> GaussianMixture:
    means = torch.tensor([[-2.0, 0.0], [1.0, 1.5], [1.0, -1.5]], dtype=D64)
    covs = 0.16 * torch.eye(2, dtype=D64).expand(3, 2, 2).clone()
    return GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2]))


@pytest.fixture(scope="module")
def setup():
    mix = three_modes()
    model = mix.model(get_path("linear"))
    return mix, model


def test_systematic_resampling_counts_are_floor_or_ceil():
    g = torch.Generator().manual_seed(0)
    logw = torch.randn(50, 7, generator=g, dtype=D64) * 2
    idx = resample_indices(logw, "systematic", Streams(0, 50, "test"))
    counts = torch.stack([torch.bincount(row, minlength=7) for row in idx])
    expected = 7 * torch.softmax(logw, -1)
    assert bool(((counts >= expected.floor()) & (counts <= expected.ceil())).all())


def test_multinomial_resampling_frequencies():
    logw = torch.log(torch.tensor([[0.1, 0.2, 0.7]], dtype=D64)).expand(4000, 3)
    idx = resample_indices(logw, "multinomial", Streams(1, 4000, "test"))
    freq = torch.bincount(idx.flatten(), minlength=3).to(D64) / idx.numel()
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.7], dtype=D64), atol=0.01)
    with pytest.raises(ValueError, match="resampler"):
        resample_indices(logw, "stratified")


def test_ess_and_resampling_the_typed_history():
    assert torch.allclose(effective_sample_size(torch.zeros(2, 5)), torch.tensor([5.0, 5.0]))
    one_hot = torch.tensor([[0.0, -1e9, -1e9]])
    assert float(effective_sample_size(one_hot)) == pytest.approx(1.0)
    # Resampling selects the rows of the state and of the fields its history declares per
    # sample (never guessed from shapes): the logsnr of an Output is not a row.
    from interpolant.solvers import State

    x0 = torch.arange(8.0).reshape(4, 2)
    state = State(x0 + 10, Output(0.5, x0), step=3)
    index = torch.tensor([3, 3, 0, 1])
    out = state.index_select(index)
    assert torch.equal(out.x, (x0 + 10)[index]) and out.step == 3
    assert isinstance(out.history, Output) and out.history.logsnr == 0.5
    assert torch.equal(out.history.x0, x0[index])


def test_fk_approaches_the_exact_tilted_target(setup):
    # Distance to the exact tilted mixture falls with the number of particles, and the expected
    # reward of the returned samples approaches the exact E_{p*}[r]. (The second-order SDE solver
    # keeps the sampler's own bias small at 20 steps; its history is resampled too.)
    mix, model = setup
    reward, temperature = LinearReward([1.0, 0.5]), 1.0
    target = tilt(mix, reward, temperature)
    reference = target.mixture.sample(3000, torch.Generator().manual_seed(5))
    distances, means = [], []
    for k in (1, 4, 32):
        out = fk_steer(
            model,
            FKSteering(reward, k, temperature=temperature),
            Sampler("dpmpp_2m_sde", steps=20, grid="uniform", seed=1),
            n=300,
            shape=(2,),
            choose="sample",
        )
        distances.append(float(sliced_wasserstein(out.x, reference)))
        means.append(float(out.rewards.mean()))
    assert distances[0] > distances[1] > distances[2]
    assert distances[2] < 0.2 * distances[0]
    # Monte Carlo error of the mean: std(r) / sqrt(300) ~ 0.06; allow the sampler's bias too.
    assert means[2] == pytest.approx(target.expected_reward, abs=0.15)
    assert means[0] == pytest.approx(float(mix.means @ reward.a @ mix.weights), abs=0.2)


@pytest.mark.parametrize("potential", ["diff", "max", "sum"])
def test_potentials_multiply_to_the_terminal_tilt(setup, potential):
    # Along every surviving path the product of the potentials is exp(r(x0) / T) exactly.
    _, model = setup
    reward, temperature = QuadraticReward([1.0, 1.0]), 0.7
    steer = FKSteering(reward, 4, temperature=temperature, potential=potential, every=3)
    result = sample(
        model,
        torch.randn(12, 2, dtype=D64, generator=torch.Generator().manual_seed(0)),
        solver={"name": "ddim", "eta": 1.0},
        steps=10,
        grid="uniform",
        hooks=[steer],
        seed=0,
    )
    state = result.state(steer)
    assert torch.allclose(state.log_product, reward(result.x) / temperature, atol=1e-10)
    assert state.resample_steps == [3, 6, 9]
    assert [s for s, _ in state.ess] == [3, 6, 9, 10]


def test_ledger_counts_are_exact(setup):
    _, model = setup
    steer = FKSteering(LinearReward([1.0, 0.0]), 8, every=4)
    out = fk_steer(model, steer, n=3, shape=(2,), steps=12, budget=8 * 12)
    assert out.ledger.model_evals == 3 * 8 * 12 and out.nfe == 8 * 12
    # Weighting at steps 4, 8 and the final step 12: one reward per particle each.
    assert out.ledger.reward_evals == 3 * 8 * 3
    with pytest.raises(BudgetError, match="budget"):
        fk_steer(model, steer, n=3, shape=(2,), steps=12, budget=95)


def test_infinite_temperature_with_ess_is_the_base_sampler(setup):
    # lambda = 1 / T -> 0: weights stay uniform, ESS = K, nothing is resampled.
    _, model = setup
    noise = torch.randn(10, 2, dtype=D64, generator=torch.Generator().manual_seed(3))
    solvers = (
        {"name": "ddim", "eta": 1.0},
        "dpmpp_2m_sde",
        "sde_euler",
        {"name": "pc", "corrector": "ald"},
        {"name": "heun", "s_churn": 2.0, "s_tmax": 10.0},  # churn needs alpha > 0
    )
    steer = FKSteering(LinearReward([1.0, 0.0]), 5, temperature=1e12, ess_threshold=0.5)
    for solver in solvers:
        spec = Sampler(solver, steps=15, grid="uniform", seed=4)
        base = sample(model, noise, spec)
        out = fk_steer(model, steer, spec, n=2, noise=noise)
        assert out.resample_steps == []
        assert torch.equal(out.particles.reshape(10, 2), base.x)
        # Honest NFE: K particles times the loop's evaluations (Heun and pc evaluate twice).
        assert out.nfe == 5 * base.nfe


def test_resampled_copies_get_fresh_noise_and_history_follows(setup):
    # A reward that singles out one particle: after the resampling at step 4 every slot holds
    # the same state, yet the final samples differ (each slot keeps its own stream). The
    # multistep SDE solver's history is resampled with the state, so a copy's next step uses
    # its ancestor's previous x0 (checked by rerunning the ancestor alone from the copy).
    _, model = setup
    k = 6
    noise = torch.randn(k, 2, dtype=D64, generator=torch.Generator().manual_seed(7))
    seen: dict[str, torch.Tensor] = {}

    def record(state, step, run):
        if state.step == 4:
            assert isinstance(state.history, BrownianMultistep)
            seen["x"] = state.x.clone()
            seen["x0_prev"] = state.history.outputs[-1].x0.clone()
        return state

    steer = FKSteering(LinearReward([1.0, 0.0]), k, temperature=1e-6, at_steps=[4])
    result = sample(
        model,
        noise,
        solver="dpmpp_2m_sde",
        steps=10,
        grid="uniform",
        hooks=[steer, FunctionHook(on_step=record)],
        seed=0,
    )
    out = result.x
    assert result.state(steer).resample_steps == [4]
    assert torch.equal(seen["x"], seen["x"][:1].expand(k, 2))
    assert torch.equal(seen["x0_prev"], seen["x0_prev"][:1].expand(k, 2))
    assert float(torch.cdist(out, out).add(torch.eye(k, dtype=D64)).min()) > 1e-3


def test_intermediate_rewards_see_the_guided_prediction_wherever_the_hook_stands(setup):
    # The step hook reads the step's prediction after every prediction hook: a hook that moves
    # x0 and stands after FK in the list still reaches FK's intermediate reward.
    _, model = setup
    seen: list[torch.Tensor] = []

    def reward(x):
        seen.append(x.clone())
        return x[:, 0]

    def shift(pred, node, run):
        return pred.replace("x0", pred.x0 + 0.5)

    steer = FKSteering(reward, 2, at_steps=[1])
    traj = Trajectory()
    noise = torch.randn(4, 2, dtype=D64, generator=torch.Generator().manual_seed(1))
    spec = Sampler({"name": "ddim", "eta": 1.0}, steps=4, grid="uniform", seed=0)
    sample(model, noise, spec, hooks=[steer, FunctionHook(on_prediction=shift), traj])
    first_x0 = sample(model, noise, spec, hooks=[FunctionHook(on_prediction=shift), traj])
    assert torch.equal(seen[0], first_x0.state(traj).x0[0])


def test_groups_are_independent_of_their_number(setup):
    _, model = setup
    steer = FKSteering(LinearReward([1.0, 0.0]), 4, temperature=0.5, resampler="multinomial")
    kwargs = dict(shape=(2,), steps=10, choose="sample", seed=2)
    small = fk_steer(model, steer, n=2, **kwargs)
    large = fk_steer(model, steer, n=5, **kwargs)
    assert torch.equal(small.x, large.x[:2])
    assert torch.equal(small.particles, large.particles[:2])


def test_max_reward_choice_and_errors(setup):
    _, model = setup
    steer6 = FKSteering(LinearReward([0.0, 1.0]), 6)
    out = fk_steer(model, steer6, n=3, shape=(2,), steps=8, choose="max_reward")
    old_name = fk_steer(model, steer6, n=3, shape=(2,), steps=8, choose="argmax")
    assert torch.equal(out.x, old_name.x)
    assert torch.equal(out.rewards, out.particle_rewards.max(1).values)
    assert torch.allclose(out.rewards, out.x[:, 1])
    assert torch.equal(out.chosen, out.particle_rewards.argmax(1))
    steer = FKSteering(LinearReward([1.0, 0.0]), 2)
    with pytest.raises(ValueError, match="stochastic"):
        fk_steer(model, steer, shape=(2,), solver="dpmpp_2m", steps=8)
    with pytest.raises(ValueError, match="stochastic"):
        sample(model, torch.randn(4, 2), solver="heun", steps=4, hooks=[steer])
    with pytest.raises(ValueError, match="multiple of particles"):
        sample(
            model,
            torch.randn(5, 2),
            solver={"name": "ddim", "eta": 1.0},
            steps=4,
            hooks=[steer],
        )
    for bad in (
        {"potential": "prod"},
        {"temperature": 0.0},
        {"every": 0},
        {"ess_threshold": 1.5},
        {"every": 2, "at_steps": [1]},
    ):
        with pytest.raises(ValueError):
            FKSteering(LinearReward([1.0, 0.0]), 2, **bad)
    with pytest.raises(ValueError, match="non-finite"):
        fk_steer(model, FKSteering(lambda x: x[:, 0] / 0.0 * 0.0, 2), shape=(2,), steps=4)
    assert math.isfinite(float(out.rewards.sum()))
