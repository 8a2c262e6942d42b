"""Seed 16 reproduction (search vs denoising steps), quick mode: consistent numbers."""

from __future__ import annotations

import math

import pytest

from interpolant.repro import seed16_search as seed16


@pytest.fixture(scope="module")
def quick_result():
    return seed16.REPRO(quick=True, seed=0)


def test_numbers_are_finite_and_consistent(quick_result) -> None:
    numbers, s = quick_result.numbers, seed16.QUICK
    assert all(math.isfinite(v) for v in numbers.values())
    accuracies = [v for k, v in numbers.items() if k.endswith(") accuracy")]
    assert all(0.0 <= v <= 1.0 for v in accuracies)
    # Random search with one candidate is the plain 10-step sampler on the same noise.
    assert numbers["random search N=1 (NFE 10) accuracy"] == numbers["steps=10 (NFE 10) accuracy"]
    # The sampler is an exact ODE of equal-weight modes: accuracy ~ 1 - (7/8)^N.
    se = 0.5 / math.sqrt(s.n)
    for n in s.candidates:
        measured = numbers[f"random search N={n} (NFE {10 * n}) accuracy"]
        assert measured == pytest.approx(1 - (7 / 8) ** n, abs=4 * se)


def test_claim_flag_follows_the_rule(quick_result) -> None:
    numbers, s = quick_result.numbers, seed16.QUICK
    held = (
        numbers["steps: accuracy change over the last 4x NFE"] < s.saturation
        and numbers["random search: accuracy gain over 16x NFE"] > s.search_gain
    )
    assert quick_result.claim_held == held
