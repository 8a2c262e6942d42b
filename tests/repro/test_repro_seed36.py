"""Seed 36 reproduction (COW): numbers, the replacement baseline, the rule."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.paths import VP
from interpolant.repro import seed36_cow as seed36
from interpolant.solvers import State, Step, node_at


@pytest.fixture(scope="module")
def quick_result():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield seed36.REPRO(quick=True, seed=0)
    finally:
        torch.set_num_threads(threads)


def test_quick_run_numbers_are_finite_and_consistent(quick_result) -> None:
    n = quick_result.numbers
    assert all(math.isfinite(v) for v in n.values())
    for method in ("cow", "cow cycles=0", "sdedit", "replacement"):
        assert 0 <= n[f"agreement {method}"] <= 1 and n[f"seed RMS {method}"] >= 0
    # Replacement ends with the seed itself (the last replacement is at sigma = 0).
    assert n["seed RMS replacement"] < 1e-12


def test_quick_run_flag_is_the_rule_applied_to_its_numbers(quick_result) -> None:
    n, s = quick_result.numbers, seed36.QUICK
    held = (
        n["seed RMS cow"] < s.preserve_ratio * n["seed RMS sdedit"]
        and n["agreement cow"] >= n["agreement sdedit"]
        and n["agreement cow"] >= n["agreement replacement"] - s.harmony_slack
    )
    assert quick_result.claim_held is held


def test_forward_replace_draws_the_forward_marginal_of_the_seed() -> None:
    seed_image = torch.full((1, 4), 2.0, dtype=torch.float64)
    mask = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    node = node_at(VP(), 0.5)

    class Ctx:
        def noise(self, like):
            return torch.zeros_like(like)

    hook = seed36.ForwardReplace(seed_image, mask)
    x = State(torch.full((1, 4), 7.0, dtype=torch.float64))
    out = hook.on_step(x, Step(0, node, node, None, None), Ctx(), None).x  # type: ignore[arg-type]
    expected = torch.tensor([[2 * node.alpha, 2 * node.alpha, 7.0, 7.0]], dtype=torch.float64)
    torch.testing.assert_close(out, expected)
