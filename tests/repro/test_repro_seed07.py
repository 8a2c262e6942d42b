"""Quick run of the seed-7 reproduction: numbers finite and consistent with the samplers."""

from __future__ import annotations

import math

from interpolant.repro import get_repro
from interpolant.repro.seed07_first_hitting import QUICK


def test_quick_run_is_consistent() -> None:
    result = get_repro("seed07_first_hitting")(quick=True)
    n = result.numbers
    assert all(math.isfinite(v) for v in n.values())
    assert n["fhs: model calls"] == QUICK.length  # one call per token
    for steps in QUICK.ancestral_steps:
        assert n[f"ancestral {steps}: model calls"] == steps
    assert n["call ratio ancestral/fhs"] == max(QUICK.ancestral_steps) / QUICK.length
    for key, value in n.items():
        if "rare fraction" in key or "TV" in key:
            assert 0.0 <= value <= 1.0
    assert isinstance(result.claim_held, bool) and result.quick
