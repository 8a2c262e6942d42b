"""The reproductions' quick modes (seeds 5, 10, 11 and its 2-D grids, 25) run, and their claim
flags follow their stated rules (seeds 5 and 10 train models even when quick: marked slow, run
with ``-m slow``)."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.repro import seed05_fokker_planck as seed05
from interpolant.repro import seed10_gauge as seed10
from interpolant.repro import seed11_hallucination as seed11
from interpolant.repro import seed11_nearest_modes as seed11g
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
    # Both arms of recursive training share generation 0 and report every generation.
    gens = range(seed11.QUICK.generations + 1)
    plain = [n[f"recursive unfiltered generation {g} hallucinated"] for g in gens]
    kept = [n[f"recursive filtered generation {g} hallucinated"] for g in gens]
    assert plain[0] == kept[0] and all(0 <= f <= 1 for f in plain + kept)
    assert r.claim_held is bool(n["detector rule held"] and n["recursive rule held"])


def test_seed11_recursive_rule() -> None:
    # The stated rule on hand-made generations: growth without the filter, flat with it.
    def gen(index, arm, bad, total=10_000):
        flags = torch.zeros(total, dtype=torch.bool)
        flags[:bad] = True
        return seed11.Generation(index, arm, flags, flags.double(), flags, torch.arange(1))

    first = gen(0, "shared", 100)
    s = seed11.Settings()
    chains = {
        "unfiltered": [first, gen(3, "unfiltered", 200)],
        "filtered": [first, gen(3, "f", 110)],
    }
    assert seed11.recursive_rule(chains, s)
    chains["filtered"][-1] = gen(3, "filtered", 150)  # 150 vs 100 of 10k: > 2 SE above f_0
    assert not seed11.recursive_rule(chains, s)
    chains = {"unfiltered": [first, gen(3, "unfiltered", 140)], "filtered": [first, first]}
    assert not seed11.recursive_rule(chains, s)  # grows < 1.5x


def test_seed25_quick() -> None:
    r = seed25.REPRO(quick=True)
    n = r.numbers
    # The exact denoiser's Jacobian has rank d = 2 at small noise.
    assert n["exact Jacobian rank d=2, sigma/alpha=0.01"] == 2.0
    rule = n["DSM success, N_k >= d"] >= 0.8 and n["DSM success, N_k < d"] <= 0.2
    assert r.claim_held is rule


def test_seed11_grid_geometry() -> None:
    s = seed11g.Settings()
    square, diamond = seed11g.grid_modes("square", s), seed11g.grid_modes("diamond", s)
    # Unit total std; 40 grid edges in both layouts; horizontal pairs are the 20 edges along x
    # of the square grid and 16 second-nearest pairs (2 sqrt 2 / sqrt 8 = 1) of the diamond.
    assert float(square.square().mean(0).sum()) == pytest.approx(2.0)
    (near_s, hor_s), (near_d, hor_d) = seed11g.pairs(square), seed11g.pairs(diamond)
    assert len(near_s) == len(near_d) == 40 and len(hor_s) == 20 and len(hor_d) == 16
    gap = torch.cdist(diamond, diamond)
    assert torch.allclose(gap[hor_d[:, 0], hor_d[:, 1]], torch.ones(16, dtype=torch.float64))
    # Distance to a segment: perpendicular inside, to the nearer end outside.
    a, b = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    x = torch.tensor([[1.0, 0.5], [3.0, 0.0], [-1.0, -1.0]])
    d = seed11g.segment_distance(x, a, b)[:, 0]
    assert torch.allclose(d, torch.tensor([0.5, 1.0, 2**0.5]))
    # The diamond's horizontal midpoints (cell centres) are far from every grid edge.
    mid = 0.5 * (diamond[hor_d[:, 0]] + diamond[hor_d[:, 1]])
    assert not bool(seed11g.on_segments(mid, diamond, near_d, 6 * seed11g.scaled_std(s)).any())


def test_seed11_grid_quick() -> None:
    r = seed11g.REPRO(quick=True)
    assert r.claim_held is seed11g.claim_rule(r.numbers, seed11g.QUICK)
    for layout in seed11g.LAYOUTS:
        assert 0 <= r.numbers[f"{layout}: fraction on nearest-neighbour segments"] <= 1


def test_seed11_grid_closest_segment_separates_edges_from_diagonals() -> None:
    # Diamond: a point on an edge just outside a mode's 6-std ball is within 6 std of the
    # horizontal segment leaving that mode at 45 degrees, but its closest segment is the edge;
    # a cell centre belongs to the horizontal (second-nearest) segment only.
    s = seed11g.Settings()
    centres, std = seed11g.grid_modes("diamond", s), seed11g.scaled_std(s)
    near, hor = seed11g.pairs(centres)
    start = int(hor[0, 0])  # a mode with a horizontal segment, and one of its edges
    edge = near[(near == start).any(1)][0]
    a, b = centres[start], centres[int(edge.sum()) - start]
    tail = a + 7 * std * (b - a) / (b - a).norm()
    mid = 0.5 * (centres[hor[0, 0]] + centres[hor[0, 1]])
    x = torch.stack([tail, mid])
    assert bool(seed11g.on_segments(x[:1], centres, hor, 6 * std).all())  # the double count
    on_near, on_hor = seed11g.closest_segment(x, centres, near, hor, 6 * std)
    assert on_near.tolist() == [True, False] and on_hor.tolist() == [False, True]
    # Square: horizontal grid edges are nearest-neighbour segments too.
    sq = seed11g.grid_modes("square", s)
    near_s, hor_s = seed11g.pairs(sq)
    edge_mid = 0.5 * (sq[hor_s[0, 0]] + sq[hor_s[0, 1]])[None]
    assert [v.tolist() for v in seed11g.closest_segment(edge_mid, sq, near_s, hor_s, std)] == [
        [True],
        [True],
    ]
