"""Seed 20 reproduction (diffusion with forward models): the quick run's numbers and the rule."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.repro import seed20_forward_models as seed20

METRICS = ("context error", "accuracy", "confidence", "diversity", "best-of-k MSE")


@pytest.fixture(scope="module")
def quick_result():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield seed20.REPRO(quick=True, seed=0)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_quick_run_numbers_are_finite_and_the_flag_is_the_rule(quick_result) -> None:
    n = quick_result.numbers
    assert set(n) == {f"{arm} {m}" for arm in seed20.ARMS for m in METRICS}
    assert all(math.isfinite(v) for v in n.values())
    assert n["deterministic diversity"] == 0.0  # one prediction per digit, by construction
    means = {arm: {m: n[f"{arm} {m}"] for m in METRICS} for arm in seed20.ARMS}
    assert quick_result.claim_held is seed20.claim_rule(means)
    assert ("claim holds" in quick_result.summary) is quick_result.claim_held


def _arms(dfm_mse=0.1, det_mse=0.2, dfm_div=0.3, up_div=0.4, dfm_acc=0.8, up_acc=0.85, ctx=0.01):
    base = {"context error": 0.0, "accuracy": 0.9, "confidence": 0.9}
    return {
        "DFM": {**base, "best-of-k MSE": dfm_mse, "diversity": dfm_div, "accuracy": dfm_acc,
                "context error": ctx},
        "deterministic": {**base, "best-of-k MSE": det_mse, "diversity": 0.0},
        "upper bound": {**base, "best-of-k MSE": 0.05, "diversity": up_div, "accuracy": up_acc},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "held"),
    [
        ({}, True),
        ({"dfm_mse": 0.25}, False),  # worse than the regressor at best-of-k
        ({"dfm_div": 0.1}, False),  # less than half the upper bound's diversity
        ({"dfm_acc": 0.7}, False),  # unrealistic completions
        ({"ctx": 0.1}, False),  # inconsistent with the context
    ],
)
def test_claim_rule(changes, held) -> None:
    assert seed20.claim_rule(_arms(**changes)) is held


def test_training_views_differ_and_the_upper_bound_sees_full_digits() -> None:
    gen = torch.Generator().manual_seed(0)
    target, context = seed20.training_views("DFM", 500, gen)
    assert bool((target != context).all()) and int(target.max()) < 8
    target, _ = seed20.training_views("upper bound", 10, gen)
    assert target.tolist() == [seed20.FULL] * 10
    assert seed20.views_of("upper bound")[seed20.FULL].sum() == 64
