"""Seed 8 reproduction: the exact PFGM++ denoiser of a finite set, the noise probe, the rule."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.paths import PFGM
from interpolant.predictions import Prediction
from interpolant.repro import seed08_pfgm_robustness as seed08
from interpolant.solvers import Node, State, Step, fixed_run, node_at

S = seed08.QUICK


@pytest.fixture(scope="module")
def quick_result():
    return seed08.REPRO(quick=True, seed=0)


def _data(n: int = 6, dim: int = 3) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.mark.parametrize("D", [1.0, 3.0, 20.0])
def test_denoiser_is_the_posterior_mean_under_the_student_t_kernel(D) -> None:
    data, path = _data(), PFGM(D=D)
    x = 2.0 * _data(4)
    t = torch.full((4,), 0.01, dtype=torch.float64)  # sigma = 0.8
    r2 = (0.8 * math.sqrt(D)) ** 2
    d2 = ((x[:, None, :] - data[None]) ** 2).sum(-1)
    w = (d2 + r2) ** (-(3 + D) / 2)  # eq. 4, brute force
    expected = (w / w.sum(1, keepdim=True)) @ data
    torch.testing.assert_close(seed08.ExactPFGMDenoiser(data, path)(x, t), expected)


def test_large_d_tends_to_the_gaussian_posterior() -> None:
    data, x = _data(), _data(4)
    t = torch.full((4,), 0.005, dtype=torch.float64)
    gauss = seed08.ExactPFGMDenoiser(data, PFGM(D=math.inf))(x, t)
    student = seed08.ExactPFGMDenoiser(data, PFGM(D=1e9))(x, t)
    torch.testing.assert_close(student, gauss, rtol=1e-6, atol=1e-6)


def test_denoiser_end_points() -> None:
    data, path = _data(), PFGM(D=8.0)
    den = seed08.ExactPFGMDenoiser(data, path)
    far = torch.ones(2, 3, dtype=torch.float64)
    # Huge noise: the posterior is (nearly) the prior, the data mean.
    torch.testing.assert_close(
        den(far, torch.ones(2, dtype=torch.float64) * 1.0),
        data.mean(0).expand(2, 3),
        atol=1e-3,
        rtol=0,
    )
    # Tiny noise at a data point: the point itself.
    torch.testing.assert_close(den(data[:2], torch.full((2,), 1e-6, dtype=torch.float64)), data[:2])


def test_inject_noise_adds_alpha_sigma_gaussian() -> None:
    path, x = PFGM(D=8.0), torch.zeros(20_000, 2, dtype=torch.float64)
    node = node_at(path, 0.025)  # sigma = 2

    def noise(like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=torch.Generator().manual_seed(0), dtype=like.dtype)

    def no_model(x: torch.Tensor, node: Node) -> Prediction:
        raise AssertionError("the hook must not evaluate the model")

    run = fixed_run(path, 2, 0, no_model, noise)

    def after_step_to(nxt):
        return Step(0, node_at(path, 0.05), nxt, None, None)

    out = seed08.InjectNoise(0.1).on_step(State(x), after_step_to(node), run, None).x
    assert abs(float(out.std()) - 0.2) < 0.005
    assert seed08.InjectNoise(0.0).on_step(State(x), after_step_to(node), run, None).x is x
    at_data = after_step_to(node_at(path, 0.0))
    assert seed08.InjectNoise(0.1).on_step(State(x), at_data, run, None).x is x


def test_quick_run_numbers_are_finite_and_complete(quick_result) -> None:
    n = quick_result.numbers
    labels = [seed08.d_label(D) for D in S.d_values]
    expected = {"noise floor SW1", "noise floor SW1 sd"}
    expected |= {f"SW1 D={d} alpha={a:g}" for d in labels for a in S.alphas}
    expected |= {f"degradation D={d}" for d in labels}
    expected.add("largest mean NN distance to the data")
    assert set(n) == expected
    assert all(math.isfinite(v) for v in n.values())
    assert all(n[f"SW1 D={d} alpha=0"] < 10 * n["noise floor SW1"] for d in labels)


def test_quick_run_flag_is_the_rule_applied_to_its_numbers(quick_result) -> None:
    n = quick_result.numbers
    delta = {
        d: n[f"SW1 D={d} alpha={S.alphas[-1]:g}"] - n[f"SW1 D={d} alpha={S.alphas[0]:g}"]
        for d in ("8", "32", "128", "2048", "inf")
    }
    for d, value in delta.items():
        assert n[f"degradation D={d}"] == pytest.approx(value, abs=1e-12)
    rule = delta["inf"] > S.noise_sds * n["noise floor SW1 sd"] and all(
        delta[d] < S.margin * delta["inf"] for d in ("8", "32", "128")
    )
    assert quick_result.claim_held is rule


@pytest.mark.parametrize(
    ("delta", "held"),
    [
        ({8.0: 0.001, 128.0: 0.003, 2048.0: 0.006, math.inf: 0.006}, True),
        ({8.0: 0.001, 128.0: 0.0056, 2048.0: 0.006, math.inf: 0.006}, False),  # not 10% below
        ({8.0: -0.001, 128.0: 0.0001, 2048.0: 0.001, math.inf: 0.0015}, False),  # EDM in noise
    ],
)
def test_claim_rule(delta, held) -> None:
    assert seed08.claim_rule(delta, 0.001, seed08.Settings()) is held
