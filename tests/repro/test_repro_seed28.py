"""Seed 28 reproduction (FK steering vs best-of-N), quick mode: consistent numbers."""

from __future__ import annotations

import math

import pytest

from interpolant.data.oracles import ring2d
from interpolant.repro import seed28_fk_steering as seed28
from interpolant.scaling import LinearReward, tilt


@pytest.fixture(scope="module")
def quick_result():
    return seed28.REPRO(quick=True, seed=0)


def test_numbers_are_finite_and_consistent(quick_result) -> None:
    numbers, s = quick_result.numbers, seed28.QUICK
    assert all(math.isfinite(v) for v in numbers.values())
    exact = tilt(ring2d(), LinearReward(list(s.reward_weights)), s.temperature).expected_reward
    assert numbers["exact E_p*[r]"] == pytest.approx(exact)
    for k in s.particles:
        # Same particle system, two final choices: the best particle beats a weighted draw.
        assert numbers[f"fk_diff_argmax K={k} reward"] >= numbers[f"fk_diff_sample K={k} reward"]
        assert numbers[f"bon K={k} SW2"] > 0
    # Best-of-N's expected reward grows with N.
    bon = [numbers[f"bon K={k} reward"] for k in s.particles]
    assert bon == sorted(bon)


def test_claim_flag_follows_the_rule(quick_result) -> None:
    numbers, s = quick_result.numbers, seed28.QUICK
    ks = [k for k in s.particles if k >= s.min_particles_for_claim]
    held = all(
        numbers[f"fk_diff_argmax K={k} reward"] > numbers[f"bon K={k} reward"]
        and numbers[f"fk_diff_sample K={k} SW2"] < numbers[f"bon K={k} SW2"]
        for k in ks
    )
    assert quick_result.claim_held == held
