"""Seed 26 reproduction (DiffuseVAE): the quick run's numbers and its claim rule."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.repro import seed26_diffusevae as seed26


@pytest.fixture(scope="module")
def quick_result():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield seed26.REPRO(quick=True, seed=0)
    finally:
        torch.set_num_threads(threads)


def test_quick_run_numbers_are_complete_and_finite(quick_result) -> None:
    n = quick_result.numbers
    for form in seed26.FORMS:
        for steps in seed26.QUICK.sample_steps:
            assert math.isfinite(n[f"digit-FD {form} {steps} steps"])
    assert n["digit-FD data floor (test vs train)"] > 0
    for form in ("form1", "form2"):
        assert 0 < n[f"{form} label agreement"] <= 1
        assert n[f"{form} spread ratio"] > 0
    assert quick_result.quick and "5 and at 10" in quick_result.rule


def test_quick_run_flag_is_the_rule_applied_to_its_numbers(quick_result) -> None:
    n = quick_result.numbers
    beats = all(
        n[f"digit-FD {f} {k} steps"] < n[f"digit-FD unconditional {k} steps"]
        for f in ("form1", "form2")
        for k in (5, 10)
    )
    worst = all(n["digit-FD vae only"] > n[f"digit-FD {f} 10 steps"] for f in ("form1", "form2"))
    agree = all(n[f"{f} label agreement"] >= 0.9 for f in ("form1", "form2"))
    assert quick_result.claim_held == (beats and worst and agree)
