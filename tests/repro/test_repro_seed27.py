"""Seed 27 reproduction (DiffusionMBIR): phantoms, the slice prior, the numbers, the rule."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.repro import seed27_diffusionmbir as seed27


@pytest.fixture(scope="module")
def quick_result():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield seed27.REPRO(quick=True, seed=0)
    finally:
        torch.set_num_threads(threads)


def test_phantoms_lie_in_the_unit_interval_and_vary_slowly_along_z() -> None:
    vols = seed27.phantoms(4, 8, 16, torch.Generator().manual_seed(0))
    assert vols.shape == (4, 8, 16, 16)
    assert float(vols.min()) >= 0 and float(vols.max()) <= 1
    dz = (vols[:, 1:] - vols[:, :-1]).abs().mean()
    dx = (vols[..., 1:] - vols[..., :-1]).abs().mean()
    assert float(dz) < float(dx) * 3


def test_psnr_of_a_known_error() -> None:
    ref = torch.zeros(2, 10, dtype=torch.float64)
    assert seed27.psnr(ref + 0.1, ref) == pytest.approx(20.0)


def test_quick_run_numbers_are_finite_and_consistent(quick_result) -> None:
    n = quick_result.numbers
    assert all(math.isfinite(v) for v in n.values())
    assert n["PSNR gain of z-TV coupling"] == pytest.approx(n["PSNR mbir"] - n["PSNR independent"])
    # Both diffusion reconstructions use the prior: better than filtered back-projection.
    assert n["PSNR independent"] > n["PSNR fbp"]


def test_quick_run_flag_is_the_rule_applied_to_its_numbers(quick_result) -> None:
    n = quick_result.numbers
    held = seed27.claim_rule(n["PSNR mbir"], n["PSNR independent"], seed27.QUICK)
    assert quick_result.claim_held is held
