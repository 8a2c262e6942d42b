"""Seed 14 reproduction (MT-Diffusion): the quick run's numbers and the claim rule."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.repro import seed14_multitask as seed14


@pytest.fixture(scope="module")
def quick_result():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield seed14.REPRO(quick=True, seed=0)
    finally:
        torch.set_num_threads(threads)


def test_quick_run_numbers_are_complete_and_in_range(quick_result) -> None:
    n = quick_result.numbers
    expected = {
        "c_T early",
        "joint agreement",
        "joint FD",
        "joint label head accuracy",
        "joint label entropy",
        "single-task FD",
        "FD ratio joint / single-task",
        "MLP classifier accuracy",
    }
    assert set(n) == expected and all(math.isfinite(v) for v in n.values())
    for key in ("joint agreement", "joint label head accuracy", "MLP classifier accuracy"):
        assert 0.0 <= n[key] <= 1.0
    assert 0.0 <= n["joint label entropy"] <= math.log(10) + 1e-12
    assert n["FD ratio joint / single-task"] == pytest.approx(n["joint FD"] / n["single-task FD"])
    assert 0 <= n["c_T early"] < 0.05  # the prior stays N(0, I)
    # Even 80 steps teach the label head far more than chance on held-out real digits.
    assert n["joint label head accuracy"] > 0.3


def test_quick_run_flag_is_the_rule_applied_to_its_numbers(quick_result) -> None:
    n, s = quick_result.numbers, seed14.QUICK
    want = (
        n["joint agreement"] >= s.min_agreement
        and n["FD ratio joint / single-task"] <= s.max_fd_ratio
        and n["joint label head accuracy"] >= n["MLP classifier accuracy"] - s.accuracy_margin
    )
    assert quick_result.claim_held == want == seed14.claim_rule(n, s)
    assert quick_result.quick and "agreement" in quick_result.rule


def test_label_entropy_is_exact() -> None:
    assert seed14.label_entropy(torch.arange(10)) == pytest.approx(math.log(10))
    assert seed14.label_entropy(torch.zeros(5, dtype=torch.long)) == 0.0
    labels = torch.tensor([0, 0, 1, 1])
    assert seed14.label_entropy(labels) == pytest.approx(math.log(2))
