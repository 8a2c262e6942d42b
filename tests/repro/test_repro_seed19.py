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
        nce_gain = n[f"T={t} K=1: true NLL/token"] - n[f"T={t} K={k} NCE: true NLL/token"]
        assert math.isclose(n[f"T={t}: NLL gain of NCE K={k} over MDLM"], nce_gain)
        # A discrete law gives every sample a positive NLL.
        assert n[f"T={t} K={k} NCE: true NLL/token"] > 0
    # The NCE loss of any energy is positive; 2 log 2 is the zero energy's.
    assert 0 < n["NCE held-out loss"] and math.isclose(
        n["NCE loss of a zero energy (2 log 2)"], 2 * math.log(2.0)
    )
    # The exact E* separates data from proposals (most at high masking levels), and no trained
    # energy beats it on the same pairs beyond Monte-Carlo noise (1000 pairs: SE ~0.02).
    best = n["NCE Bayes-optimal loss"]
    assert 0 < best < 2 * math.log(2.0) - 0.3
    assert n["NCE held-out loss"] > best - 0.06
    assert (
        n["NCE Bayes-optimal loss, t in (0.8, 1.0]"] < n["NCE Bayes-optimal loss, t in (0.0, 0.2]"]
    )
    assert n["NCE part held"] in (0.0, 1.0) and n["AR part held"] in (0.0, 1.0)
    assert result.claim_held == bool(n["AR part held"] and n["NCE part held"])
