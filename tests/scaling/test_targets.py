"""Exact tilted targets against numerical integration, and rewards against their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.data.oracles import GaussianMixture, ring2d
from interpolant.predictions import Coefficients, Prediction
from interpolant.scaling import (
    ClassifierReward,
    ComponentReward,
    LinearReward,
    QuadraticReward,
    best_of_n_expected_reward,
    expected_max_standard_normal,
    expected_reward,
    load_reward,
    reward_from_spec,
    reward_on_x0,
    tilt,
)
from interpolant.scaling.base import check_rewards

D64 = torch.float64


def mixture_1d() -> GaussianMixture:
    means = torch.tensor([[-2.0], [0.5], [3.0]], dtype=D64)
    covs = torch.tensor([0.3, 1.2, 0.5], dtype=D64).reshape(3, 1, 1)
    return GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2]))


def mixture_2d() -> GaussianMixture:
    means = torch.tensor([[-1.0, 0.5], [1.5, -0.5]], dtype=D64)
    covs = torch.tensor([[[0.5, 0.2], [0.2, 0.3]], [[0.2, -0.1], [-0.1, 0.6]]], dtype=D64)
    return GaussianMixture(means, covs, torch.tensor([0.6, 0.4]))


def quadrature(mix: GaussianMixture, reward, temperature: float, lo: float, hi: float, n: int):
    """Tilted density, log Z and E[r] on a tensor grid by the midpoint rule."""
    axis = torch.linspace(lo, hi, n, dtype=D64)
    h = float(axis[1] - axis[0])
    grids = torch.meshgrid(*([axis] * mix.dim), indexing="ij")
    x = torch.stack([g.flatten() for g in grids], dim=1)
    r = reward(x)
    log_unnorm = mix.log_prob(x) + r / temperature
    log_z = float(torch.logsumexp(log_unnorm, 0)) + mix.dim * math.log(h)
    density = torch.exp(log_unnorm - log_z)
    mean_r = float((density * r).sum()) * h**mix.dim
    return x, log_unnorm - log_z, log_z, mean_r


CASES = [
    (mixture_1d, LinearReward([0.8], b=0.3), 0.7, (-9.0, 12.0, 4001)),
    (mixture_1d, QuadraticReward([1.0], [[2.0]]), 0.5, (-9.0, 12.0, 4001)),
    (mixture_2d, LinearReward([0.5, -1.0]), 1.3, (-7.0, 7.0, 401)),
    (mixture_2d, QuadraticReward([0.5, 1.0], [[1.0, 0.3], [0.3, 0.5]]), 0.8, (-7.0, 7.0, 401)),
    # Singular Q: only one direction is rewarded.
    (mixture_2d, QuadraticReward([0.0, 1.0], [0.0, 3.0]), 1.0, (-7.0, 7.0, 401)),
]


@pytest.mark.parametrize(("make", "reward", "temperature", "box"), CASES)
def test_tilt_matches_numerical_integration(make, reward, temperature, box):
    mix = make()
    target = tilt(mix, reward, temperature)
    x, log_density, log_z, mean_r = quadrature(mix, reward, temperature, *box)
    keep = log_density > -12  # where the density matters
    err = (target.mixture.log_prob(x)[keep] - log_density[keep]).abs().max()
    assert float(err) < 1e-6
    assert target.log_partition == pytest.approx(log_z, abs=1e-6)
    assert target.expected_reward == pytest.approx(mean_r, abs=1e-6)


def test_tilt_limits_and_errors():
    mix = mixture_2d()
    reward = LinearReward([1.0, -0.5])
    # A very high temperature leaves the mixture unchanged.
    flat = tilt(mix, reward, 1e9)
    assert torch.allclose(flat.mixture.weights, mix.weights, atol=1e-8)
    assert flat.expected_reward == pytest.approx(expected_reward(mix, reward), abs=1e-8)
    # Lower temperature, higher expected reward (d E[r] / d(1/T) = Var[r] > 0).
    values = [tilt(mix, reward, t).expected_reward for t in (4.0, 1.0, 0.25)]
    assert values[0] < values[1] < values[2]
    with pytest.raises(ValueError, match="temperature"):
        tilt(mix, reward, 0.0)
    with pytest.raises(ValueError, match="dimension"):
        tilt(mix, LinearReward([1.0, 2.0, 3.0]), 1.0)
    with pytest.raises(TypeError, match="no exact tilt"):
        tilt(mix, ComponentReward(mix, 0), 1.0)
    with pytest.raises(ValueError, match="semi-definite"):
        QuadraticReward([0.0, 0.0], [[1.0, 0.0], [0.0, -1.0]])


def test_expected_max_of_normals():
    # Closed forms: E[max of 2] = 1/sqrt(pi), E[max of 3] = 3 / (2 sqrt(pi)).
    assert expected_max_standard_normal(1) == pytest.approx(0.0, abs=1e-10)
    assert expected_max_standard_normal(2) == pytest.approx(1 / math.sqrt(math.pi), abs=1e-8)
    assert expected_max_standard_normal(3) == pytest.approx(1.5 / math.sqrt(math.pi), abs=1e-8)
    # Monte Carlo for a larger n.
    z = torch.randn(200_000, 16, generator=torch.Generator().manual_seed(0), dtype=D64)
    mc = float(z.max(1).values.mean())
    assert expected_max_standard_normal(16) == pytest.approx(mc, abs=0.01)
    assert best_of_n_expected_reward(1.0, 2.0, 2) == pytest.approx(1 + 2 / math.sqrt(math.pi))


def test_rewards_values():
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=D64)
    assert torch.allclose(LinearReward([2.0, -1.0], b=1.0)(x), torch.tensor([1.0, -1.5], dtype=D64))
    q = QuadraticReward([1.0, 0.0], [1.0, 4.0])(x)
    assert torch.allclose(q, torch.tensor([-0.5 * 16, -0.5 * (4 + 1)], dtype=D64))
    mix = ring2d()
    # Posterior log-probabilities of all components sum (in exp) to one.
    logp = torch.stack([ComponentReward(mix, k)(x) for k in range(8)], 1)
    assert torch.allclose(logp.exp().sum(1), torch.ones(2, dtype=D64))
    at_mode = ComponentReward(mix, 2)(mix.means[2:3])
    assert float(at_mode) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="expects samples of 2"):
        LinearReward([1.0, 2.0])(torch.zeros(3, 5))


def test_reward_specs_and_loading():
    x = torch.tensor([[1.0, 2.0]], dtype=D64)
    assert float(reward_from_spec("linear:1,2;b=0.5")(x)) == pytest.approx(5.5)
    assert float(reward_from_spec("quadratic:0,0;q=2")(x)) == pytest.approx(-5.0)
    assert float(reward_from_spec("quadratic:0,0;q=1,4")(x)) == pytest.approx(-8.5)
    assert isinstance(reward_from_spec("classifier:3"), ClassifierReward)
    assert isinstance(reward_from_spec("component:ring2d:1"), ComponentReward)
    user = reward_from_spec("math:fsum")
    assert user is math.fsum
    assert load_reward("interpolant.scaling.rewards:LinearReward.__call__") is not None
    for bad in (
        "linear:1,x",
        "linear:1;c=2",
        "quadratic:1;z=1",
        "classifier:12",
        "nocolon",
        "component:nope:1",
        "no_such_module_xyz:f",
        "math:no_such_function",
    ):
        with pytest.raises(ValueError):
            reward_from_spec(bad)


def test_classifier_reward_prefers_its_class():
    from interpolant.data import load_digits

    test = load_digits("test")
    assert test.labels is not None
    threes = test.x[test.labels == 3][:20]
    sevens = test.x[test.labels == 7][:20]
    reward = ClassifierReward(3)
    assert float(reward(threes).mean()) > float(reward(sevens).mean()) + 3.0
    per_label = reward(sevens, labels=torch.full((20,), 7))
    assert float(per_label.mean()) > -0.5  # log p(7 | a seven) near 0


def test_reward_on_x0_and_check_rewards():
    x = torch.tensor([[1.0, 1.0], [0.0, 2.0]], dtype=D64)
    eps = torch.tensor([[0.5, -0.5], [1.0, 0.0]], dtype=D64)
    c = Coefficients(0.6, 0.8, -1.0, 1.0)
    xt = 0.6 * x + 0.8 * eps
    pred = Prediction(xt, 0.5, "eps", eps, c)
    r = reward_on_x0(LinearReward([1.0, 0.0]), pred)
    assert torch.allclose(r, x[:, 0])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        reward_on_x0(lambda z: z, pred)
    with pytest.raises(ValueError, match="samples 1"):
        check_rewards(torch.tensor([0.0, math.nan]), 2)
