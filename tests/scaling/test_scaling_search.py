"""Noise and path search: the best-of-N order statistic, exact ledgers, zero-order neighbours,
the re-noising kernel, batch invariance and the dispatcher."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from interpolant.data.oracles import GaussianMixture, ring2d
from interpolant.paths import get_path
from interpolant.randomness import Streams
from interpolant.scaling import (
    ComponentReward,
    LinearReward,
    best_of_n,
    best_of_n_expected_reward,
    random_search,
    search,
    search_over_paths,
    zero_order_search,
)
from interpolant.scaling.search import neighbours, parse_method, renoise
from interpolant.solvers import Sampler, sample

D64 = torch.float64
MEAN, STD = 0.5, 0.8


@pytest.fixture(scope="module")
def gaussian_model():
    mix = GaussianMixture(torch.tensor([[MEAN]], dtype=D64), torch.tensor([[[STD**2]]], dtype=D64))
    return mix.model(get_path("linear"))


def test_best_of_n_matches_the_order_statistic(gaussian_model):
    # The sampler maps N(0, 1) noise to N(0.5, 0.8^2) (checked), so r = 2x ~ N(1, 1.6^2) and
    # E[max of N] = 1 + 1.6 E[max of N standard normals].
    sampler = Sampler("dpmpp_2m", steps=20, grid="uniform", seed=0)
    reward = LinearReward([2.0])
    n, candidates = 3000, 4
    out = best_of_n(gaussian_model, reward, candidates, sampler, n=n, shape=(1,))
    base = sample(gaussian_model, torch.randn(20000, 1, dtype=D64), sampler).x
    assert float(base.mean()) == pytest.approx(MEAN, abs=0.02)
    assert float(base.std()) == pytest.approx(STD, abs=0.02)
    exact = best_of_n_expected_reward(2 * MEAN, 2 * STD, candidates)
    se = 2 * STD * 0.70 / math.sqrt(n)  # sd of the max of 4 normals is ~0.70
    assert float(out.rewards.mean()) == pytest.approx(exact, abs=4 * se)
    # The trace is the running best: at one candidate it is the plain mean reward.
    assert out.trace[0][0] == 20 and out.trace[-1][0] == candidates * 20 == out.nfe
    assert out.trace[0][1] == pytest.approx(2 * MEAN, abs=4 * 2 * STD / math.sqrt(n))
    assert out.trace[-1][1] == pytest.approx(float(out.rewards.mean()))


def test_random_search_ledger_is_exact(gaussian_model):
    sampler = Sampler("heun", steps=5, grid="uniform")
    assert sampler.nfe_used() == 9
    out = random_search(gaussian_model, LinearReward([1.0]), 40, sampler, n=3, shape=(1,))
    assert len(out.trace) == 40 // 9
    assert out.ledger.model_evals == 3 * 4 * 9 and out.ledger.reward_evals == 3 * 4
    assert out.ledger.model_evals <= out.ledger.budget and out.nfe == 4 * 9
    with pytest.raises(ValueError, match="below one sample"):
        random_search(gaussian_model, LinearReward([1.0]), 8, sampler, n=1, shape=(1,))


def test_zero_order_neighbours_and_monotone_trace():
    pivot = torch.randn(3, 5, 4, dtype=D64)
    cand = neighbours(pivot, 6, 0.9, Streams(0, 3, "test")).reshape(3, 6, 20)
    flat = pivot.reshape(3, 1, 20)
    cosine = (cand * flat).sum(-1) / (cand.norm(dim=-1) * flat.norm(dim=-1))
    assert torch.allclose(cosine, torch.full((3, 6), 0.9, dtype=D64))
    assert torch.allclose(cand.norm(dim=-1), flat.norm(dim=-1).expand(3, 6))

    ring = ring2d().model(get_path("linear"))
    sampler = Sampler("dpmpp_2m", steps=6, grid="uniform", seed=0)
    out = zero_order_search(
        ring, LinearReward([1.0, 0.0]), 6 * 13, sampler, n=4, shape=(2,), neighbors=4, cosine=0.5
    )
    assert len(out.trace) == 1 + 3  # (1 + 4 * 3) samples = 13 samples per final sample
    values = [v for _, v in out.trace]
    assert all(b >= a for a, b in itertools.pairwise(values))
    assert out.ledger.model_evals == 4 * 13 * 6 and out.ledger.reward_evals == 4 * 13
    assert out.nfe == 13 * 6 and out.trace[-1][0] == out.nfe
    # The returned noise reproduces the returned sample.
    assert out.noise is not None
    again = sample(ring, out.noise, sampler).x
    assert torch.allclose(again, out.x)


def test_renoise_is_the_forward_kernel():
    # x_t ~ N(alpha_t m, alpha_t^2 v + sigma_t^2) -> x_s ~ N(alpha_s m, alpha_s^2 v + sigma_s^2).
    path = get_path("vp")
    model = GaussianMixture(torch.zeros(1, 1, dtype=D64), torch.ones(1, 1, 1, dtype=D64)).model(
        path
    )
    g = torch.Generator().manual_seed(0)
    m, v, t, s = 1.5, 0.25, 0.3, 0.7
    a_t, s_t = float(path.alpha(torch.tensor(t))), float(path.sigma(torch.tensor(t)))
    a_s, s_s = float(path.alpha(torch.tensor(s))), float(path.sigma(torch.tensor(s)))
    x0 = m + math.sqrt(v) * torch.randn(200_000, 1, generator=g, dtype=D64)
    xt = a_t * x0 + s_t * torch.randn(200_000, 1, generator=g, dtype=D64)
    xs = renoise(model, xt, t, s, torch.randn(200_000, 1, generator=g, dtype=D64))
    assert float(xs.mean()) == pytest.approx(a_s * m, abs=0.01)
    assert float(xs.var()) == pytest.approx(a_s**2 * v + s_s**2, rel=0.01)
    with pytest.raises(ValueError, match="noisier"):
        renoise(model, xt, s, t, xt)


def test_path_search_budget_and_quality():
    mix = ring2d()
    path = get_path("linear")
    model = mix.model(path)
    sampler = Sampler("dpmpp_2m", steps=8, grid="uniform", seed=0)
    reward = ComponentReward(mix, 0)
    n = 64
    options = dict(n=n, shape=(2,), width=2, branches=3, start=2, forward=1, backward=2)
    out = search_over_paths(model, reward, 200, sampler, **options)
    # Start: 2 paths x 2 steps; rounds 2->3->4->...->8 (six rounds of 2x3 copies x 2 steps).
    assert out.ledger.model_evals == n * (2 * 2 + 6 * 2 * 3 * 2)
    assert out.ledger.reward_evals == n * (6 * 2 * 3 + 2)
    # A smaller budget stops branching early and finishes the survivors.
    small = search_over_paths(model, reward, 60, sampler, **options)
    assert small.ledger.model_evals <= 60 * n
    assert small.ledger.model_evals == n * (2 * 2 + 4 * 12 + 2 * 2)  # 4 rounds, then finish
    accuracy = float((mix.posterior_weights(out.x, 0.0, path).argmax(1) == 0).double().mean())
    assert accuracy > 0.9  # plain sampling hits mode 0 with probability 1/8
    with pytest.raises(ValueError, match="full paths"):
        search_over_paths(model, reward, 10, sampler, n=1, shape=(2,))
    with pytest.raises(ValueError, match="backward > forward"):
        search_over_paths(model, reward, None, sampler, n=1, shape=(2,), forward=2, backward=2)


def test_search_is_batch_invariant_and_dispatches(gaussian_model):
    kwargs = dict(shape=(1,), steps=5, grid="uniform", seed=3)
    ancestral = {"name": "ddim", "eta": 1.0}  # a stochastic base solver: its noise too
    for method, solver in (
        ("random:5", "dpmpp_2m"),
        ("paths:2", "dpmpp_2m"),
        ("paths:2", ancestral),
    ):
        few = search(gaussian_model, method, LinearReward([1.0]), n=2, solver=solver, **kwargs)
        many = search(gaussian_model, method, LinearReward([1.0]), n=5, solver=solver, **kwargs)
        assert torch.allclose(few.x, many.x[:2]), method
    assert parse_method("bon:3") == ("best_of_n", 3)
    assert parse_method("zo") == ("zero_order", None)
    out = search(gaussian_model, "random", LinearReward([1.0]), 25, n=2, **kwargs)
    assert out.method == "random" and out.ledger.model_evals == 2 * 5 * 5
    for bad in ("annealing", "random:x"):
        with pytest.raises(ValueError, match="search method"):
            search(gaussian_model, bad, LinearReward([1.0]), 10, **kwargs)
    with pytest.raises(ValueError, match="candidate count"):
        search(gaussian_model, "random", LinearReward([1.0]), **kwargs)
    with pytest.raises(ValueError, match="at least 2 numbers"):
        search(gaussian_model, "zero_order:2", LinearReward([1.0]), **kwargs)
    with pytest.raises(ValueError, match="non-finite"):
        search(gaussian_model, "random:2", lambda x: x[:, 0] * math.inf, **kwargs)
