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
    assert quick_result.claim_held in (True, False)
