"""Seed 3 SMC row: the MMD z statistic reads ~N(0, 1) on exact draws and far off on a shifted
set, and the quick run's numbers obey the stated rule."""

from __future__ import annotations

import torch

from interpolant.repro import seed03_smc_posterior as smc

torch.set_num_threads(1)


def test_mmd_z_is_standard_on_exact_draws_and_large_off_target() -> None:
    g = torch.Generator().manual_seed(0)
    exact = torch.randn(64 * 9, 3, generator=g, dtype=torch.float64)
    same = torch.randn(64, 3, generator=g, dtype=torch.float64)
    assert abs(smc.mmd_z(same, exact, 8)) < 4
    assert smc.mmd_z(same + 1.0, exact, 8) > 10


def test_quick_run_follows_its_rule() -> None:
    result = smc.REPRO(quick=True, seed=0)
    n = result.numbers
    k_max, k_min = max(smc.QUICK.particles), min(smc.QUICK.particles)
    expected = all(
        n[f"{m} K={k_max} z"] < smc.QUICK.z_target and n[f"{m} K={k_max} z"] < n[f"{m} K={k_min} z"]
        for m in smc.QUICK.methods
    )
    assert result.claim_held == expected
    # Convergence itself: 16 particles are far closer to the exact posterior than one.
    for m in smc.QUICK.methods:
        assert n[f"{m} K={k_max} z"] < n[f"{m} K={k_min} z"] / 2
