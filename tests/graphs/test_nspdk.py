"""NSPDK: hand-computed kernels on two-atom graphs, a brute-force re-derivation, the MMD."""

from __future__ import annotations

import math
from collections import Counter

import networkx as nx
import numpy as np
import pytest

from interpolant.errors import UserError
from interpolant.graphs import nspdk


def _mol(atoms: list[str], bonds: list[tuple[int, int, int]]) -> nx.Graph:
    g = nx.Graph()
    for i, a in enumerate(atoms):
        g.add_node(i, label=a)
    for i, j, order in bonds:
        g.add_edge(i, j, label=order)
    return g


def _brute_force_phi(g: nx.Graph, complexity: int) -> dict:
    """phi(G) from the definition, through networkx: expanded graph, shortest-path lengths."""
    e = nx.Graph()
    for v, d in g.nodes(data=True):
        e.add_node(("atom", v), label=d["label"])
    for u, v, d in g.edges(data=True):
        e.add_node(("bond", u, v), label=d["label"])
        e.add_edge(("atom", u), ("bond", u, v))
        e.add_edge(("atom", v), ("bond", u, v))
    depth = 2 * complexity
    dist = dict(nx.all_pairs_shortest_path_length(e, cutoff=depth))

    def sig(v: object, radius: int) -> tuple:
        levels = []
        for level in range(radius + 1):
            members = [w for w, d in dist[v].items() if d == level]
            levels.append(
                tuple(sorted(((e.nodes[w]["label"], e.degree[w]) for w in members), key=repr))
            )
        return tuple(levels)

    reach = {v: max(dist[v].values()) + 1 for v in e}
    blocks: dict = {}
    atoms = [v for v in e if v[0] == "atom"]
    for v in atoms:
        for u in atoms:
            d = dist[v].get(u)
            if d is None or d > depth:
                continue
            for r in range(0, depth + 1, 2):
                if r < reach[v] and r < reach[u]:
                    a, b = sorted((sig(v, r), sig(u, r)), key=repr)
                    c = blocks.setdefault((r, d), Counter())
                    c[("pair", a, b, r, d)] += 1
                    c[("half", sig(u, r), r, d)] += 1
    phi = {}
    for c in blocks.values():
        norm = math.sqrt(sum(x * x for x in c.values()))
        phi.update({f: x / norm for f, x in c.items()})
    total = math.sqrt(sum(x * x for x in phi.values()))
    return {f: x / total for f, x in phi.items()}


def test_two_atom_kernels_match_the_hand_computation() -> None:
    cc, co, c = _mol(["C", "C"], [(0, 1, 1)]), _mol(["C", "O"], [(0, 1, 1)]), _mol(["C"], [])
    gram = nspdk.nspdk_gram([cc, co, c])
    assert np.allclose(np.diag(gram), 1.0)  # both normalisations: k(G, G) = 1
    # Each graph has 4 blocks (R, D in {0, 2}), each 1/2 of the unit norm. C-C: every block is
    # {pair: 2, half: 2} -> entries 1/(2 sqrt 2). C-O shares, at radius 0 only: in block (0, 0)
    # {pair(C,C): 1, pair(O,O): 1, half C: 1, half O: 1} -> 1/4 each, the pair (C, C) and the
    # half C; in (0, 2) {pair(C,O): 2, half C: 1, half O: 1} -> 1/(2 sqrt 6) for the half C.
    expected = 2 / (8 * math.sqrt(2)) + 1 / (8 * math.sqrt(3))
    assert gram[0, 1] == pytest.approx(expected, rel=1e-12)
    # A lone C has degree 0 in its signature: nothing in common with a bonded C.
    assert gram[0, 2] == 0.0 and gram[1, 2] == 0.0


def test_features_match_a_brute_force_rederivation() -> None:
    graphs = [
        _mol(["C", "C", "O", "N", "C"], [(0, 1, 1), (1, 2, 2), (1, 3, 1), (3, 4, 1), (4, 0, 1)]),
        _mol(
            ["C", "N", "C", "C", "O", "F"], [(0, 1, 3), (1, 2, 1), (2, 3, 1), (3, 4, 1), (2, 5, 1)]
        ),
        _mol(["S", "C", "C"], [(0, 1, 1), (1, 2, 2)]),
    ]
    for complexity in (1, 2, 4):
        for g in graphs:
            ours = nspdk.nspdk_features(g, complexity)
            brute = _brute_force_phi(g, complexity)
            assert ours.keys() == brute.keys()
            assert all(ours[f] == pytest.approx(brute[f], rel=1e-12) for f in ours)


def test_invariant_to_relabelling_and_mmd_zero_for_identical_sets() -> None:
    g = _mol(["C", "C", "O", "N"], [(0, 1, 1), (1, 2, 2), (2, 3, 1)])
    h = nx.relabel_nodes(g, {0: 3, 1: 0, 2: 2, 3: 1})
    assert nspdk.nspdk_gram([g], [h])[0, 0] == pytest.approx(1.0, rel=1e-12)
    ref = [g, _mol(["C", "O"], [(0, 1, 2)])]
    assert nspdk.nspdk_mmd(ref, list(ref)) == pytest.approx(0.0, abs=1e-12)
    # Disjoint label sets: only k(X, X) and k(Y, Y) remain.
    other = [_mol(["F"], []), _mol(["Cl"], [])]
    kxx = nspdk.nspdk_gram(ref).mean()
    assert nspdk.nspdk_mmd(ref, other) == pytest.approx(kxx + 0.5, rel=1e-12)


def test_smiles_mmd_and_bad_input() -> None:
    same = nspdk.smiles_nspdk_mmd(["CCO", "c1ccccc1"], ["OCC", "C1=CC=CC=C1", None])
    assert same == pytest.approx(0.0, abs=1e-12)  # canonical forms and aromaticity agree
    assert nspdk.smiles_nspdk_mmd(["CCO"], ["CCCCCCN"]) > 0.1
    with pytest.raises(UserError, match="no nodes"):
        nspdk.nspdk_features(nx.Graph())
    with pytest.raises(UserError, match="non-empty"):
        nspdk.nspdk_mmd([_mol(["C"], [])], [nx.Graph()])
