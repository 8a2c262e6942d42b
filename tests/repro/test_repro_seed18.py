"""Seed 18 reproduction (RBF): quick mode runs, its numbers are finite and consistent."""

from __future__ import annotations

import math

import pytest

from interpolant.repro import seed18_rbf as seed18

S = seed18.QUICK
REWARDS = ("linear", "quadratic")


@pytest.fixture(scope="module")
def quick_result():
    return seed18.REPRO(quick=True, seed=0)


def test_quick_numbers_are_finite_and_consistent(quick_result) -> None:
    numbers = quick_result.numbers
    assert all(math.isfinite(v) for v in numbers.values())
    budget = S.budgets[0]
    for name in REWARDS:
        prefix = f"{name} B={budget} "
        rewards = {k: v for k, v in numbers.items() if k.startswith(prefix) and "mean reward" in k}
        assert len(rewards) == 7
        # Every arm that searches raises the mean reward above the unsteered expectation.
        base = numbers[f"{name}: E_p[r] (no steering)"]
        assert all(v > base for v in rewards.values())
        share = numbers[prefix + "RBF (VP-SDE) share of NFE in the last step"]
        assert 0.0 < share <= 1.0
        assert 0.0 <= numbers[prefix + "RBF (VP-SDE) fraction of steps accepted early"] <= 1.0


def test_claim_flag_follows_the_rule(quick_result) -> None:
    n = quick_result.numbers

    def wins(name: str) -> bool:
        def reward(arm: str) -> float:
            return n[f"{name} B={S.budgets[0]} {arm} mean reward"]

        rbf = reward("RBF (VP-SDE)")
        return rbf > reward("best-of-N (ODE)") and rbf > reward("FK (linear-SDE)")

    assert quick_result.claim_held == all(wins(name) for name in REWARDS)
    assert quick_result.quick
