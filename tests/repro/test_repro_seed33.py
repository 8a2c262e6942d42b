"""Seed 33 reproduction (denoising task routing): the quick run's numbers and the claim rule."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.repro import seed33_task_routing as seed33


@pytest.fixture(scope="module")
def quick_result():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield seed33.REPRO(quick=True, seed=0)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_quick_run_numbers_are_finite_and_the_flag_is_the_rule(quick_result) -> None:
    n = quick_result.numbers
    steps = seed33.QUICK.checkpoints
    assert set(n) == {"FD floor (train vs held-out digits)"} | {
        f"{arm} FD @ {c}" for arm in seed33.ARMS for c in steps
    }
    assert all(math.isfinite(v) and v >= 0 for v in n.values())
    fd = {arm: [[n[f"{arm} FD @ {c}"] for c in steps]] for arm in seed33.ARMS}
    assert quick_result.claim_held is seed33.claim_rule(fd)
    assert ("claim holds" in quick_result.summary) is quick_result.claim_held


@pytest.mark.parametrize(
    ("dtr", "random", "held"),
    [
        ([[9.0, 4.0], [11.0, 4.0]], [[12.0, 6.0], [12.0, 6.0]], True),
        ([[12.0, 4.0], [11.0, 4.0]], [[12.0, 6.0], [12.0, 6.0]], False),  # worse early
        ([[9.0, 6.0], [9.0, 6.0]], [[12.0, 6.0], [12.0, 6.0]], False),  # worse at the end
        ([[9.0, 4.0], [9.0, 4.0]], [[8.0, 4.0], [8.0, 4.0]], False),  # random masks as good
    ],
)
def test_claim_rule(dtr, random, held) -> None:
    vanilla = [[10.0, 5.0], [10.0, 5.0]]
    fd = {"vanilla": vanilla, "DTR": dtr, "random DTR": random, "DTR + ANT-UW": dtr}
    assert seed33.claim_rule(fd) is held
