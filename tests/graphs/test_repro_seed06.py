"""Seed 6 reproduction (quick mode): what it measures and how the rule reads the numbers."""

from __future__ import annotations

from interpolant.repro import seed06_gdss as seed06


def test_quick_run_measures_equal_cost_and_applies_the_rule() -> None:
    result = seed06.REPRO(quick=True, seed=0)
    n = result.numbers
    steps = seed06.QUICK.steps
    # Equal cost: S4 with N steps and EM + Langevin with N / 2 steps both use N evaluations.
    assert n["S4 nfe"] == n["EM+Langevin equal NFE nfe"] == steps
    assert n["EM+Langevin equal steps nfe"] == 2 * steps
    # ER with matched density cannot make 0.7-dense communities: its clustering MMD is large.
    assert n["ER clustering"] > 0.5
    held = (
        n["S4 clustering"] < n["ER clustering"] / 2
        and n["S4 degree"] < 0.1
        and sum(n[f"S4 {k}"] for k in ("degree", "clustering", "orbit"))
        <= sum(n[f"EM+Langevin equal NFE {k}"] for k in ("degree", "clustering", "orbit")) + 0.02
        and n["S4 clustering"] <= n["A-only S4 clustering"] + 0.02
    )
    assert result.claim_held == held and result.quick
