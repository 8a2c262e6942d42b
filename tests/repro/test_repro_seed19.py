"""Quick run of the seed-19 (EDLM) reproduction: numbers finite and consistent."""

from __future__ import annotations

import math

from interpolant.repro import get_repro
from interpolant.repro.seed19_edlm import QUICK


def test_quick_run_is_consistent() -> None:
    result = get_repro("seed19_edlm")(quick=True)
    n = result.numbers
    assert all(math.isfinite(v) for v in n.values())
    k = max(QUICK.proposals)
    for t in QUICK.steps:
        gain = n[f"T={t} K=1: true NLL/token"] - n[f"T={t} K={k}: true NLL/token"]
        assert math.isclose(n[f"T={t}: NLL gain of K={k} over MDLM"], gain)
        assert n[f"T={t} K=1: true NLL/token"] > 0
    assert isinstance(result.claim_held, bool)
