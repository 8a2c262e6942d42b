"""Seed 22 reproduction (Smooth Diffusion): the quick run's numbers and the claim rule."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from interpolant.repro import seed22_smooth as seed22


@pytest.fixture(scope="module")
def quick_result():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield seed22.REPRO(quick=True, seed=0)
    finally:
        torch.set_num_threads(threads)


def test_quick_run_numbers_are_finite_and_complete(quick_result) -> None:
    numbers = quick_result.numbers
    keys = ("ISTD", "inversion MSE", "energy")
    expected = {
        f"lambda {lam:g} {k}{se}"
        for lam in seed22.QUICK.lambdas
        for k in keys
        for se in ("", " SE")[: 1 + (seed22.QUICK.seeds > 1)]
    }
    assert set(numbers) == expected
    assert all(math.isfinite(v) for v in numbers.values())
    assert all(numbers[f"lambda {lam:g} ISTD"] > 0 for lam in seed22.QUICK.lambdas)


def test_quick_run_flag_is_the_rule_applied_to_its_numbers(quick_result) -> None:
    n, lams = quick_result.numbers, seed22.QUICK.lambdas
    istds = [n[f"lambda {lam:g} ISTD"] for lam in lams]
    held = all(b < a for a, b in itertools.pairwise(istds)) and (
        n[f"lambda {lams[-1]:g} inversion MSE"] < n["lambda 0 inversion MSE"]
    )
    assert quick_result.claim_held is held
    assert ("claim holds" in quick_result.summary) is held


@pytest.mark.parametrize(
    ("istds", "inversion", "held"),
    [
        ({0.0: [1.0, 1.2], 0.1: [0.5, 0.6], 1.0: [0.2, 0.3]}, {0.0: [2.0], 1.0: [1.0]}, True),
        # Falling means, but one seed where the largest lambda does not beat lambda = 0.
        ({0.0: [1.0, 0.2], 0.1: [0.5, 0.3], 1.0: [0.2, 0.25]}, {0.0: [2.0], 1.0: [1.0]}, False),
        # Not monotone in lambda.
        ({0.0: [1.0], 0.1: [0.1], 1.0: [0.2]}, {0.0: [2.0], 1.0: [1.0]}, False),
        # Smoother but inversion got worse.
        ({0.0: [1.0], 0.1: [0.5], 1.0: [0.2]}, {0.0: [1.0], 1.0: [2.0]}, False),
    ],
)
def test_claim_rule(istds, inversion, held) -> None:
    assert seed22.claim_rule(istds, inversion) is held
