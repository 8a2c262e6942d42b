"""Seed 3 reproduction (data-consistency recipe on MRI and CT phantoms)."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.repro import seed03_data_consistency as seed03

S = seed03.QUICK


@pytest.fixture(scope="module")
def quick_result():
    return seed03.REPRO(quick=True, seed=0)


def test_phantoms_are_images_in_range_and_seeded() -> None:
    a, b = seed03.phantoms(4, 16, 0), seed03.phantoms(4, 16, 0)
    torch.testing.assert_close(a, b)
    assert a.shape == (4, 1, 16, 16) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert float(a[:, :, 0, 0].abs().max()) == 0  # corners lie outside the skull
    assert not torch.equal(a, seed03.phantoms(4, 16, 1))


def test_quick_numbers_are_finite_and_consistent(quick_result) -> None:
    n = quick_result.numbers
    assert all(math.isfinite(v) for v in n.values())
    for task in S.tasks:
        base = "zero-filled" if task.startswith("mri") else "FBP"
        gain = n[f"{task} PSNR diffusion + DC"] - n[f"{task} PSNR {base}"]
        assert n[f"{task} gain over {base} (dB)"] == pytest.approx(gain)
        assert n[f"{task} PSNR diffusion + DC"] < n[f"{task} PSNR exact posterior mean"] + 2.0


def test_flag_is_the_rule_applied(quick_result) -> None:
    n = quick_result.numbers
    gains = {
        t: n[f"{t} gain over {'zero-filled' if t.startswith('mri') else 'FBP'} (dB)"]
        for t in S.tasks
    }
    assert quick_result.claim_held is seed03.claim_rule(gains, S)
    assert seed03.claim_rule({"mri:4": 3.5, "ct:16": 4.0, "mri:8": 0.1, "ct:8": 1.0}, S)
    assert not seed03.claim_rule({"mri:4": 3.5, "ct:16": 4.0, "mri:8": -0.1, "ct:8": 1.0}, S)
