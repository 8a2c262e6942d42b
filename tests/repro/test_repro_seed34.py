"""Seed 34 reproduction (FlowChef): quality and cost numbers, the rule."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.repro import seed34_flowchef as seed34


@pytest.fixture(scope="module")
def quick_result():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield seed34.REPRO(quick=True, seed=0)
    finally:
        torch.set_num_threads(threads)


def test_quick_run_numbers_are_finite_and_consistent(quick_result) -> None:
    n, s = quick_result.numbers, seed34.QUICK
    assert all(math.isfinite(v) for v in n.values())
    for task in seed34.tasks():
        for method in ("flowchef", "dps"):
            runs = [n[f"{task} MSE {method} x{m:g}"] for m in s.multipliers]
            assert n[f"{task} best MSE {method}"] == min(runs)
    # The skipped Jacobian keeps no network activations for backward.
    assert n["MLP graph bytes per step flowchef"] < n["MLP graph bytes per step dps"]
    assert n["oracle graph bytes per step flowchef"] < n["oracle graph bytes per step dps"]


def test_quick_run_flag_is_the_rule_applied_to_its_numbers(quick_result) -> None:
    n, s = quick_result.numbers, seed34.QUICK
    held = all(
        n[f"{t} best MSE flowchef"] <= s.quality_ratio * n[f"{t} best MSE dps"]
        and n[f"{t} best MSE flowchef"] < 0.5 * n[f"{t} MSE unguided"]
        for t in seed34.tasks()
    )
    held = held and n["MLP time ratio flowchef/dps"] < 1.0
    held = held and n["MLP graph memory ratio flowchef/dps"] < s.memory_ratio
    assert quick_result.claim_held is held


def test_graph_bytes_counts_saved_tensors() -> None:
    x = torch.ones(10, dtype=torch.float32, requires_grad=True)
    saved, _ = seed34.graph_bytes(lambda: (x * x).sum())
    assert saved == 2 * 10 * 4  # x * x saves both operands
