"""Seed 21 reproduction (diffusion features): label subsets, the quick run and the claim rule."""

from __future__ import annotations

import pytest
import torch

from interpolant.repro import seed21_features as seed21


def test_label_subsets_have_the_asked_count_per_class_and_differ_between_draws():
    labels = torch.arange(100) % 5
    subsets = seed21.label_subsets(labels, per_class=3, draws=2, seed=0)
    for rows in subsets:
        assert rows.unique().numel() == 15
        assert torch.bincount(labels[rows], minlength=5).tolist() == [3] * 5
    assert set(subsets[0].tolist()) != set(subsets[1].tolist())
    again = seed21.label_subsets(labels, per_class=3, draws=2, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(subsets, again))


@pytest.fixture(scope="module")
def quick_result():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield seed21.REPRO(quick=True, seed=0)
    finally:
        torch.set_num_threads(threads)


def test_quick_run_numbers_and_flag(quick_result) -> None:
    n, s = quick_result.numbers, seed21.QUICK
    cells = {
        f"{who} t={t:g} blocks.{k}"
        for who in ("trained", "random-init")
        for t in s.times
        for k in range(s.depth)
    }
    assert cells <= set(n)
    assert all(0.0 <= n[c] <= 1.0 for c in cells)
    assert n["raw pixels"] > 0.5  # ten digits with 10 labels each: far above chance (0.1)
    trained = {
        (t, f"blocks.{k}"): n[f"trained t={t:g} blocks.{k}"]
        for t in s.times
        for k in range(s.depth)
    }
    random = {
        (t, f"blocks.{k}"): n[f"random-init t={t:g} blocks.{k}"]
        for t in s.times
        for k in range(s.depth)
    }
    assert quick_result.claim_held is seed21.claim_rule(trained, random)
    assert n["trained best"] == max(trained.values())


@pytest.mark.parametrize(
    ("trained", "held"),
    [
        ({(0.0, "b"): 0.80, (0.1, "b"): 0.95, (0.7, "b"): 0.3}, True),
        ({(0.0, "b"): 0.96, (0.1, "b"): 0.95, (0.7, "b"): 0.3}, False),  # best at t = 0
        ({(0.0, "b"): 0.80, (0.1, "b"): 0.90, (0.7, "b"): 0.3}, False),  # not 0.05 above random
    ],
)
def test_claim_rule(trained, held) -> None:
    random = {(0.0, "b"): 0.86, (0.1, "b"): 0.8, (0.7, "b"): 0.2}
    assert seed21.claim_rule(trained, random) is held
