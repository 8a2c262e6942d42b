"""Seed 23 reproduction: the quick run's numbers and its rule."""

from __future__ import annotations

import math

import pytest

from interpolant.repro import seed23_pard as seed23


@pytest.mark.slow
def test_quick_run_applies_its_rule():
    r = seed23.REPRO(quick=True, seed=0)
    n = r.numbers
    for key, value in n.items():
        assert math.isfinite(value), key
    for arm in ("PARD", "one-shot", "ER"):
        assert 0 <= n[f"{arm} validity"] <= 1 and n[f"{arm} MMD sum"] >= 0
    rule = (
        n["PARD validity"] >= n["one-shot validity"] and n["PARD MMD sum"] <= n["one-shot MMD sum"]
    )
    assert r.claim_held is rule
    # One-shot graphs are one block of round(N x mean blocks) steps (0 for an empty graph).
    assert n["one-shot denoising steps per graph"] <= round(
        seed23.QUICK.steps_per_block * n["mean blocks (hops 1)"]
    )
