"""Seed 32 reproduction (Gaussian teleportation): quick mode runs, its numbers are finite and
consistent."""

from __future__ import annotations

import math

import pytest

from interpolant.repro import seed32_teleport as seed32

S = seed32.QUICK


@pytest.fixture(scope="module")
def quick_result():
    return seed32.REPRO(quick=True, seed=0)


def test_quick_numbers_are_finite_and_consistent(quick_result) -> None:
    numbers = quick_result.numbers
    assert all(math.isfinite(v) and v >= 0 for v in numbers.values())
    teleport = [k for k in numbers if k.endswith("teleport SW2")]
    assert len(teleport) == len(S.fractions)
    # Teleported samples move further from the full run the more steps are skipped.
    drift = [v for k, v in numbers.items() if k.endswith("mean distance per sample")]
    assert drift == sorted(drift)


def test_claim_flag_follows_the_rule(quick_result) -> None:
    n = quick_result.numbers
    full = n[f"full ({S.steps} steps, {2 * S.steps - 1} NFE) SW2"]
    digits_full = n[f"digits vp-ddim full ({S.digits_steps} steps) FD"]
    expected = True
    for f in S.fractions:
        if f > S.max_fraction:
            continue
        skip = round(f * S.steps)
        tele = n[f"skip {f:g} ({skip} steps, {2 * (S.steps - skip) - 1} NFE) teleport SW2"]
        expected = expected and tele <= (1 + S.tolerance) * full
        skip = round(f * S.digits_steps)
        label = f"digits vp-ddim skip {f:g} ({skip} steps, {S.digits_steps - skip} NFE)"
        expected = expected and n[f"{label} teleport FD"] <= (1 + S.digits_tolerance) * digits_full
    assert quick_result.claim_held == expected


def test_both_digit_samplers_are_reported(quick_result) -> None:
    for name, _, _ in seed32.DIGIT_SAMPLERS:
        keys = [k for k in quick_result.numbers if k.startswith(f"digits {name} ")]
        assert len(keys) == 1 + 2 * len(S.fractions)
