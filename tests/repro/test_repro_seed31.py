"""Quick run of the seed-31 (remasking / semi-AR) reproduction: numbers finite, call counts."""

from __future__ import annotations

import math

from interpolant.repro import get_repro
from interpolant.repro.seed31_remasking import QUICK


def test_quick_run_is_consistent() -> None:
    result = get_repro("seed31_remasking")(quick=True)
    n = result.numbers
    assert all(math.isfinite(v) for v in n.values())
    assert n["first-hitting: model calls"] == QUICK.length
    for t in QUICK.steps:
        assert n[f"T={t} ancestral: model calls"] == t
        assert n[f"T={t} remask-confidence: model calls"] == t
        assert 0 <= n[f"T={t} remask-random: bigram TV"] <= 1
