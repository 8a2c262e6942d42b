"""The four reproductions' quick modes run, and their claim flags follow their stated rules
(seeds 5 and 10 train models even when quick: marked slow, run with ``-m slow``)."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.repro import seed05_fokker_planck as seed05
from interpolant.repro import seed10_gauge as seed10
from interpolant.repro import seed11_hallucination as seed11
from interpolant.repro import seed25_subspace as seed25


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_seed05_quick() -> None:
    r = seed05.REPRO(quick=True)
    n = r.numbers
    first, last = n["W2(ODE, SDE) w_p=0"], n["W2(ODE, SDE) w_p=1"]
    assert all(math.isfinite(v) and v >= 0 for v in n.values())
    assert r.claim_held is (last <= seed05.QUICK.gap_factor * first)


def test_seed05_reverse_sde_matches_the_forward_sde() -> None:
    # eps(t) = g^2 / 2 with g^2 = d sigma^2/dt - 2 f sigma^2 (VP: g^2 = beta(t)).
    eps = seed05.reverse_sde().eps
    assert callable(eps)
    assert eps(0.5) == pytest.approx(0.5 * float(seed05.PATH.beta(torch.tensor(0.5))), rel=1e-6)


@pytest.mark.slow
def test_seed10_quick_gauge_part_is_exact() -> None:
    r = seed10.REPRO(quick=True)
    n = r.numbers
    # The exact score and s + J x have the exact ODE likelihood even in quick mode.
    assert n["|log-lik error| s + 0 Jx"] < 1e-3 and n["|log-lik error| s + 1 Jx"] < 1e-3
    assert n["|log-lik error| 0.8 s"] > 0.05
    assert 0 <= n["ID = 2 fraction, conservative"] <= 1


def test_seed11_quick() -> None:
    r = seed11.REPRO(quick=True)
    n = r.numbers
    assert n["NFE"] == seed11.QUICK.steps  # the recorder adds no evaluations
    assert 0 <= n["hallucination rate"] <= 1
    if "AUROC" in n:
        assert 0 <= n["AUROC"] <= 1


def test_seed25_quick() -> None:
    r = seed25.REPRO(quick=True)
    n = r.numbers
    # The exact denoiser's Jacobian has rank d = 2 at small noise.
    assert n["exact Jacobian rank d=2, sigma/alpha=0.01"] == 2.0
    rule = n["DSM success, N_k >= d"] >= 0.8 and n["DSM success, N_k < d"] <= 0.2
    assert r.claim_held is rule
