"""Issue 13's steering defects: a search whose budget cannot fit one round says so with the
numbers (it used to return plain samples), FK steering samples the tilted target by default,
and FK's normaliser estimate matches the closed form for a Gaussian under a linear reward."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.data.oracles import GaussianMixture
from interpolant.paths import get_path
from interpolant.scaling import FKSteering, LinearReward, fk_steer, search, zero_order_search
from interpolant.scaling.base import BudgetError
from interpolant.solvers import Sampler

torch.set_num_threads(1)
D64 = torch.float64


@pytest.fixture(scope="module")
def model():
    mix = GaussianMixture(torch.tensor([[0.5]], dtype=D64), torch.tensor([[[0.64]]], dtype=D64))
    return mix.model(get_path("linear"))


@pytest.fixture(scope="module")
def model2():
    mix = GaussianMixture(torch.zeros(1, 2, dtype=D64), torch.eye(2, dtype=D64)[None])
    return mix.model(get_path("linear"))


def test_zero_order_budget_below_one_round_raises_with_the_numbers(model2):
    spec = Sampler("euler", nfe=20, seed=0)
    reward = LinearReward([1.0, 0.0])
    with pytest.raises(BudgetError, match=r"budget=80 .* \(1 \+ 4\) x 20 = 100"):
        zero_order_search(model2, reward, 80, spec, shape=(2,))
    out = zero_order_search(model2, reward, 100, spec, shape=(2,))
    assert out.nfe == 100 and len(out.trace) == 2  # exactly one round


def test_path_search_budget_below_one_round_raises(model):
    spec = Sampler("euler", nfe=20, seed=0)
    with pytest.raises(BudgetError, match="cannot fit one search round"):
        search(model, "paths", LinearReward([1.0]), budget=80, sampler=spec, shape=(1,))


def test_fk_default_choice_samples_the_tilted_target(model):
    # p = N(0.5, 0.8^2), r = x, T = 1: the tilted target is N(0.5 + 0.64, 0.8^2) and
    # E_p[exp(r)] = exp(0.5 + 0.32). The default choice must not be the max-reward particle.
    spec = Sampler({"name": "ddim", "eta": 1.0}, steps=50, grid="uniform", seed=0)
    out = fk_steer(model, FKSteering(LinearReward([1.0]), 16), spec, n=400, shape=(1,))
    best = fk_steer(
        model, FKSteering(LinearReward([1.0]), 16), spec, n=400, shape=(1,), choose="max_reward"
    )
    se = 0.8 / math.sqrt(400)
    assert abs(float(out.x.mean()) - 1.14) < 4 * se + 0.05
    assert abs(float(out.x.std()) - 0.8) < 0.1
    assert float(best.x.mean()) > 1.14 + 0.3  # the mode-seeking choice overshoots
    assert out.log_normalizer is not None
    log_z = float(torch.logsumexp(out.log_normalizer, 0) - math.log(400))
    assert abs(log_z - 0.82) < 0.05
