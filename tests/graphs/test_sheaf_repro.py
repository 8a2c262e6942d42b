"""Seed 17 reproduction: the contextual SBM's homophily, the karate task, and the quick run's
rule applied to its own numbers."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.errors import UserError
from interpolant.graphs.sheaf_nets import GCN
from interpolant.graphs.sheaf_tasks import contextual_sbm, fit_node_classifier, karate_club
from interpolant.repro import seed17_sheaf as seed17


@pytest.mark.parametrize("h", [0.1, 0.5, 0.9])
def test_contextual_sbm_has_the_asked_homophily_and_disjoint_splits(h):
    task = contextual_sbm(h, nodes=400, seed=1)
    assert task.homophily == pytest.approx(h, abs=0.05)
    assert task.index.shape[1] / 400 == pytest.approx(8, rel=0.15)  # mean degree
    total = task.train.int() + task.val.int() + task.test.int()
    assert bool((total == 1).all()) and int(task.train.sum()) == 240
    again = contextual_sbm(h, nodes=400, seed=1)
    assert torch.equal(again.index, task.index) and torch.equal(again.x, task.x)
    with pytest.raises(UserError, match="homophily"):
        contextual_sbm(1.5)


def test_gcn_learns_the_karate_clubs():
    task = karate_club()
    assert task.num_classes == 2 and task.homophily > 0.8
    fit = fit_node_classifier(lambda: GCN(34, 2, hidden=16), task, epochs=40)
    assert fit.val_accuracy >= 0.8 and fit.test_accuracy >= 0.7  # 7 test nodes
    assert 0 <= fit.energy < 2


@pytest.mark.slow
def test_quick_run_applies_its_rule():
    r = seed17.REPRO(quick=True, seed=0)
    n, s = r.numbers, seed17.QUICK
    for key, value in n.items():
        assert math.isfinite(value), key
    gap = {h: n[f"h={h:g} NSD test acc"] - n[f"h={h:g} GCN test acc"] for h in s.homophilies}
    deep, shallow = max(s.depths), min(s.depths)
    rule = (
        all(gap[h] >= s.margin_low for h in s.homophilies if h <= 0.3)
        and abs(gap[max(s.homophilies)]) <= s.tolerance_high
        and n[f"depth {deep} GCN energy"] < s.energy_ratio * n[f"depth {shallow} GCN energy"]
        and n[f"depth {deep} NSD energy"] > n[f"depth {deep} GCN energy"] / s.energy_ratio
    )
    assert r.claim_held is rule
