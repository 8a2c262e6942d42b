"""Seed 12 reproduction (LML): the quick run's numbers are finite and consistent; the released
correction at kappa = 0 is plain Langevin in float64 (an exact property)."""

from __future__ import annotations

import math

import pytest

from interpolant.repro import seed12_lml as seed12


@pytest.fixture(scope="module")
def quick_result():
    return seed12.REPRO(quick=True, seed=0)


def test_quick_numbers_are_finite_and_consistent(quick_result) -> None:
    n = quick_result.numbers
    assert quick_result.quick and all(math.isfinite(v) for v in n.values())
    for oracle in seed12.ORACLES:
        for nfe in seed12.QUICK.nfes:
            diff = n[f"{oracle} NFE {nfe} lml - langevin SW2"]
            gap = n[f"{oracle} NFE {nfe} lml SW2"] - n[f"{oracle} NFE {nfe} langevin SW2"]
            assert diff == pytest.approx(gap, abs=1e-12)
            assert n[f"{oracle} NFE {nfe} lml - langevin s.e."] >= 0
    assert n["released float64 max |x - plain| (all cells)"] < 1e-8
    # Also the identity, but the increment of the first steps (alpha'/alpha ~ 12 from t = 1) is
    # large, so rounding amplified by |v|^2 / lambda leaves ~1e-6 even in float64.
    assert n["increment (kappa 0) float64 max |x - ddim| (all cells)"] < 1e-4
    assert quick_result.claim_held in (True, False)


def test_preconditioner_diagnostics_are_contractions(quick_result) -> None:
    # M = lambda (lambda I + g g^T)^{-1} has eigenvalues in (0, 1]: it can only shrink.
    n = quick_result.numbers
    for oracle in seed12.ORACLES:
        nfe = seed12.QUICK.nfes[0]
        assert (
            -1.0 <= n[f"{oracle} NFE {nfe} median cos(g, eps at corrector), mean over levels"] <= 1
        )
        assert 0.0 < n[f"{oracle} NFE {nfe} median |M s|/|s|, mean over levels"] <= 1.0
        assert 0.0 < n[f"{oracle} NFE {nfe} median |M^1/2 z|/|z|, mean over levels"] <= 1.0
        kappa = seed12.QUICK.placement_kappa
        assert -1.0 <= n[f"{oracle} NFE {nfe} DDIM median cos(v, v_prev), mean over steps"] <= 1.0
        assert (
            -1.0 <= n[f"{oracle} NFE {nfe} kappa {kappa:g} median cos(v', v), mean over steps"] <= 1
        )
