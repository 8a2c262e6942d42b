"""Seed 35 reproduction (RED-diff vs DPS on a digits mixture with an exact posterior)."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.inverse.operators import make_operator
from interpolant.inverse.posterior import mixture_posterior
from interpolant.repro import seed35_red_diff as seed35

S = seed35.QUICK


@pytest.fixture(scope="module")
def quick_result():
    return seed35.REPRO(quick=True, seed=0)


def test_quick_numbers_are_finite_and_consistent(quick_result) -> None:
    n = quick_result.numbers
    assert all(math.isfinite(v) for v in n.values())
    for task in S.tasks:
        ceiling = n[f"{task} PSNR exact posterior mean"]
        # The exact posterior mean is the MMSE estimate: no method is far above it on average.
        for label in ("RED-diff", "DPS", "RED-diff ascending"):
            assert n[f"{task} PSNR {label}"] < ceiling + 1.0
            assert n[f"{task} posterior-mean RMSE {label}"] >= 0
        # Every method improves on the measurement's pseudo-inverse for inpainting.
        if task.startswith("inpaint"):
            assert n[f"{task} PSNR DPS"] > n[f"{task} PSNR pinv"]
    mean = sum(n[f"{t} PSNR RED-diff"] for t in S.tasks) / len(S.tasks)
    assert n["mean PSNR RED-diff"] == pytest.approx(mean)


def test_flag_is_the_rule_applied(quick_result) -> None:
    n = quick_result.numbers
    red = {t: n[f"{t} PSNR RED-diff"] for t in S.tasks}
    dps = {t: n[f"{t} PSNR DPS"] for t in S.tasks}
    assert quick_result.claim_held is seed35.claim_rule(red, dps, S)


def test_claim_rule() -> None:
    s = seed35.Settings()
    assert seed35.claim_rule({"a": 10.0, "b": 12.0}, {"a": 11.0, "b": 10.0}, s)
    assert not seed35.claim_rule({"a": 10.0, "b": 10.5}, {"a": 11.0, "b": 10.0}, s)


def test_exact_posterior_mean_is_the_best_estimate_on_prior_draws() -> None:
    # On truths drawn from the prior itself, the posterior mean has the lowest MSE.
    _, prior = seed35.digits_prior_model(1e-2)
    x = prior.sample(64, torch.Generator().manual_seed(0)).reshape(64, 1, 8, 8)
    op = make_operator("inpaint-random:0.5", (1, 8, 8), noise_std=0.01)
    y = op(x)
    mean = mixture_posterior(prior, op, y).mean().reshape(x.shape)
    assert seed35.psnr(mean, x) > seed35.psnr(op.pinv(y), x)
