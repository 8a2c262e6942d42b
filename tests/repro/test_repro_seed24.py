"""Seed 24 reproduction (CycleDiffusion): exact encoder, translation numbers, the rule."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.repro import seed24_cyclediffusion as seed24


@pytest.fixture(scope="module")
def quick_result():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield seed24.REPRO(quick=True, seed=0)
    finally:
        torch.set_num_threads(threads)


def test_quick_run_numbers_are_finite_and_the_encoder_is_exact(quick_result) -> None:
    n, s = quick_result.numbers, seed24.QUICK
    assert all(math.isfinite(v) for v in n.values())
    # Exact property: the decoded trajectory is the encoded one to float64 round-off.
    assert n["max trajectory reconstruction error"] < 1e-10
    for t in s.t_es:
        for method in ("cyclediffusion", "sdedit"):
            assert n[f"pair MSE {method} t_es={t:g}"] >= 0
            assert 0 <= n[f"label agreement {method} t_es={t:g}"] <= 1


def test_quick_run_flag_is_the_rule_applied_to_its_numbers(quick_result) -> None:
    n, s = quick_result.numbers, seed24.QUICK
    held = n["max trajectory reconstruction error"] < s.max_trajectory_error and all(
        n[f"pair MSE cyclediffusion t_es={t:g}"] < 0.5 * n["pair MSE random"]
        and n[f"pair MSE cyclediffusion t_es={t:g}"] <= n[f"pair MSE sdedit t_es={t:g}"]
        for t in s.t_es
    )
    assert quick_result.claim_held is held


def test_mapped_mixture_is_the_affine_image() -> None:
    a = seed24.lowrank64(dim=4)
    b = seed24.mapped_mixture(a, 0.5, 1.0)
    x = a.sample(5, torch.Generator().manual_seed(0))
    # Change of variables: log p_B(T x) = log p_A(x) - d log(scale).
    torch.testing.assert_close(b.log_prob(0.5 * x + 1.0), a.log_prob(x) - 4 * math.log(0.5))
