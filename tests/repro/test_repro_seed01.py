"""Seed 1 reproduction: exact pieces (class posterior, CFG == classifier guidance) and the quick
run's numbers and rule."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from interpolant.guidance import two_class_mixture
from interpolant.paths import VP
from interpolant.repro import seed01_guidance as seed01

S = seed01.QUICK


@pytest.fixture(scope="module")
def quick_result():
    return seed01.REPRO(quick=True, seed=0)


def test_class_posterior_at_t0_is_the_logistic_of_the_discriminant():
    # For N(+-mu, I) with equal weights, P(+ | x) = sigmoid(2 mu . x).
    lm = two_class_mixture(dim=2, separation=1.5, std=1.0)
    x = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    p = lm.class_log_posterior(x, 0.0, VP()).exp()[:, 0]
    torch.testing.assert_close(p, torch.sigmoid(2 * 1.5 * x[:, 0]), rtol=0, atol=1e-12)


def test_cfg_equals_classifier_guidance_exactly():
    assert seed01.cfg_equals_classifier_guidance(3.0, S, 0) < 1e-10


def test_quick_numbers_are_finite_and_consistent(quick_result):
    n = quick_result.numbers
    assert all(math.isfinite(v) for v in n.values())
    for w in S.weights:
        assert 0.5 < n[f"A w={w:g} confidence P(+|x)"] <= 1.0
        assert n[f"A w={w:g} var along mu"] > 0
    # w = 1 is the exact conditional law N(mu, I): mean 1.5 along mu, unit variances.
    assert n["A w=1 mean along mu"] == pytest.approx(1.5, abs=0.1)
    assert n["A w=1 var along mu"] == pytest.approx(1.0, abs=0.1)
    for k in S.targets:
        assert n[f"B a={k:g} gap a - E f"] == pytest.approx(k - n[f"B a={k:g} mean reward"])


def test_quick_flag_is_the_rule_applied(quick_result):
    n = quick_result.numbers
    assert quick_result.claim_held is (n["A held"] == 1.0 and n["B held"] == 1.0)
    conf = [n[f"A w={w:g} confidence P(+|x)"] for w in S.weights]
    var = [n[f"A w={w:g} var along mu"] for w in S.weights]
    perp = [n[f"A w={w:g} var across mu"] for w in S.weights]
    rule_a = (
        all(b > a for a, b in itertools.pairwise(conf))
        and var[-1] < S.var_drop * var[0]
        and all(abs(v / perp[0] - 1) < S.perp_tol for v in perp)
        and n["A max |CFG - classifier guidance|"] < S.identity_tol
    )
    assert (n["A held"] == 1.0) is rule_a
