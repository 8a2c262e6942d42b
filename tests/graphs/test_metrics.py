"""Graph MMDs, orbit counts and uniqueness/novelty against hand and direct computations."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from interpolant.graphs import metrics as gm
from interpolant.graphs.orbits import orbit_counts, orbit_counts_brute_force


@pytest.mark.parametrize("statistic", gm.STATISTICS)
@pytest.mark.parametrize("protocol", ["gdss", "gran"])
def test_mmd_is_zero_for_identical_sets(statistic: str, protocol: str) -> None:
    graphs = [nx.gnp_random_graph(10, 0.3, seed=i) for i in range(6)]
    assert gm.statistic_mmd(graphs, list(graphs), statistic, protocol) == pytest.approx(
        0, abs=1e-12
    )


def test_degree_mmd_hand_computed_on_tiny_sets() -> None:
    # P2: degree histogram [0, 2] -> pmf [0, 1, 0]; P3: [0, 2, 1] -> [0, 2/3, 1/3].
    # CDFs [0, 1, 1] and [0, 2/3, 1]: EMD = 1/3, k = exp(-(1/3)^2 / 2) (sigma = 1).
    mmd = gm.graph_mmds([nx.path_graph(2)], [nx.path_graph(3)], ["degree"])["degree"]
    assert mmd == pytest.approx(2 - 2 * math.exp(-1 / 18), rel=1e-12)
    # TV = (1/3 + 1/3) / 2 = 1/3 too under GRAN's kernel.
    tv = gm.graph_mmds([nx.path_graph(2)], [nx.path_graph(3)], ["degree"], "gran")["degree"]
    assert tv == pytest.approx(2 - 2 * math.exp(-1 / 18), rel=1e-12)
    # Orbit statistic (raw, Gaussian sigma 30): P2 -> [1, 0, ...]; P3 -> node means of
    # orbit 0 (4/3), orbit 1 (2/3), orbit 2 (1/3).
    d2 = (4 / 3 - 1) ** 2 + (2 / 3) ** 2 + (1 / 3) ** 2
    orbit = gm.graph_mmds([nx.path_graph(2)], [nx.path_graph(3)], ["orbit"])["orbit"]
    assert orbit == pytest.approx(2 - 2 * math.exp(-d2 / 1800), rel=1e-9)


def test_degree_mmd_between_two_er_families_matches_a_direct_computation() -> None:
    a = [nx.gnp_random_graph(12, 0.2, seed=i) for i in range(15)]
    b = [nx.gnp_random_graph(12, 0.45, seed=100 + i) for i in range(12)]

    def pmf(g: nx.Graph) -> np.ndarray:
        deg = nx.to_numpy_array(g).sum(1).astype(int)
        return np.bincount(deg, minlength=12) / len(deg)

    def k(p: np.ndarray, q: np.ndarray) -> float:  # EMD from scipy's 1-D Wasserstein distance
        support = np.arange(len(p))
        w = wasserstein_distance(support, support, p, q)
        return math.exp(-(w**2) / 2)

    pa, pb = [pmf(g) for g in a], [pmf(g) for g in b]
    direct = (
        sum(k(p, q) for p in pa for q in pa) / len(pa) ** 2
        + sum(k(p, q) for p in pb for q in pb) / len(pb) ** 2
        - 2 * sum(k(p, q) for p in pa for q in pb) / (len(pa) * len(pb))
    )
    assert gm.graph_mmds(a, b, ["degree"])["degree"] == pytest.approx(direct, rel=1e-9)
    assert direct > 0.1  # the two densities are far apart


def test_orbit_counts_by_hand_and_against_brute_force() -> None:
    k4 = orbit_counts(nx.to_numpy_array(nx.complete_graph(4)))
    assert k4[0].tolist() == [3, 0, 0, 3] + [0] * 10 + [1]
    star = orbit_counts(nx.to_numpy_array(nx.star_graph(3)))  # node 0 is the centre
    assert star[0].tolist() == [3, 0, 3] + [0] * 4 + [1] + [0] * 7
    assert star[1].tolist() == [1, 2, 0, 0, 0, 0, 1] + [0] * 8
    paw = nx.Graph([(0, 1), (1, 2), (0, 2), (2, 3)])
    assert orbit_counts(nx.to_numpy_array(paw))[:, 9:12].tolist() == [
        [0, 1, 0],
        [0, 1, 0],
        [0, 0, 1],
        [1, 0, 0],
    ]
    for seed in range(6):
        a = nx.to_numpy_array(nx.gnp_random_graph(11, 0.35, seed=seed))
        assert np.array_equal(orbit_counts(a), orbit_counts_brute_force(a))


def test_uniqueness_and_novelty_up_to_isomorphism() -> None:
    p4 = nx.path_graph(4)
    p4_relabelled = nx.relabel_nodes(p4, {0: 3, 1: 0, 2: 2, 3: 1})
    star = nx.star_graph(3)
    assert gm.uniqueness([p4, p4_relabelled, star]) == pytest.approx(2 / 3)
    assert gm.novelty([p4_relabelled, star], train=[p4]) == pytest.approx(1 / 2)
    assert gm.validity([p4, star, nx.cycle_graph(4)], nx.is_tree) == pytest.approx(2 / 3)


def test_molecule_metrics() -> None:
    out = gm.molecule_metrics(["CCO", "OCC", None, "c1ccccc1"], train=["CCO"])
    assert out == {"validity": 0.75, "uniqueness": pytest.approx(2 / 3), "novelty": 0.5}
