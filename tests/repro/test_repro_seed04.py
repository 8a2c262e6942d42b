"""Seed 4 reproduction (AutoDiffusion): the quick run's numbers are finite and consistent."""

from __future__ import annotations

import math

import pytest

from interpolant.repro import seed04_autodiffusion as seed04


@pytest.fixture(scope="module")
def quick_result():
    return seed04.REPRO(quick=True, seed=0)


def test_quick_numbers_are_finite_and_consistent(quick_result) -> None:
    numbers = quick_result.numbers
    assert quick_result.quick and all(math.isfinite(v) for v in numbers.values())
    for steps in seed04.QUICK.steps:
        # The search never ends worse than the uniform grid on its own seeds.
        searched = numbers[f"{steps} steps searched FD (search seeds)"]
        assert searched <= numbers[f"{steps} steps uniform FD (search seeds)"]
        assert numbers[f"{steps} steps sampler runs"] >= 1
        for name in ("searched", "uniform", "karras"):
            assert numbers[f"{steps} steps {name} FD (eval seeds)"] >= 0
            assert numbers[f"{steps} steps {name} SW2 (eval seeds)"] > 0


def test_claim_flag_follows_the_rule(quick_result) -> None:
    n = quick_result.numbers
    expected = all(
        n[f"{k} steps searched FD (eval seeds)"]
        < min(n[f"{k} steps uniform FD (eval seeds)"], n[f"{k} steps karras FD (eval seeds)"])
        for k in seed04.QUICK.steps
    )
    assert quick_result.claim_held == expected
