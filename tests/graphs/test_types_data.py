"""The dense graph type, conversions (networkx, RDKit) and the data families."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from interpolant.errors import UserError
from interpolant.graphs import GraphBatch, check_adjacency, permute_nodes, random_permutations
from interpolant.graphs import data as gdata
from interpolant.graphs.convert import (
    from_adjacency,
    from_networkx,
    from_smiles,
    to_molecules,
    to_networkx,
    to_smiles,
)


def test_networkx_round_trip_keeps_graphs_isomorphic() -> None:
    graphs = [nx.gnp_random_graph(n, 0.4, seed=n) for n in (5, 9, 12)]
    batch = from_networkx(graphs, max_nodes=14)
    assert batch.adj.shape == (3, 14, 14) and batch.num_nodes.tolist() == [5, 9, 12]
    back = to_networkx(batch)
    assert all(set(a.edges) == set(b.edges) for a, b in zip(graphs, back, strict=True))
    # Degree features: row i of x is one-hot of node i's degree.
    deg = batch.x.argmax(-1)[1, :9]
    assert deg.tolist() == [d for _, d in graphs[1].degree()]


def test_permutation_acts_as_p_x_and_p_a_pt() -> None:
    batch = from_networkx([nx.path_graph(4), nx.star_graph(3)])
    perm = torch.tensor([2, 0, 3, 1])
    p = torch.eye(4)[perm]
    xp, ap = permute_nodes(batch.x, batch.adj, perm)
    assert torch.equal(xp, p @ batch.x) and torch.equal(ap, p @ batch.adj @ p.T)
    perms = random_permutations(4, 2, seed=3)
    assert sorted(perms[0].tolist()) == [0, 1, 2, 3]
    assert torch.equal(perms[1], random_permutations(4, 5, seed=3)[1])  # batch-size invariant
    moved = batch.permute(perms)
    assert all(
        nx.is_isomorphic(a, b) for a, b in zip(to_networkx(batch), to_networkx(moved), strict=True)
    )


def test_bad_adjacency_is_refused_with_a_reason() -> None:
    a = torch.zeros(3, 3)
    a[0, 1] = 1.0
    with pytest.raises(UserError, match="not symmetric"):
        check_adjacency(a)
    with pytest.raises(UserError, match="self-loop"):
        from_adjacency(np.eye(3))
    g = nx.path_graph(3)
    g.add_edge(1, 1)
    with pytest.raises(UserError, match="self-loop"):
        from_networkx([g])
    with pytest.raises(UserError, match="max_nodes = 4"):
        from_networkx([nx.path_graph(6)], max_nodes=4)
    with pytest.raises(UserError, match="padded nodes"):
        GraphBatch(torch.ones(1, 2, 1), torch.zeros(1, 2, 2), torch.tensor([[True, False]]))


def test_smiles_round_trip_kekulised_and_bad_lines_counted() -> None:
    smiles = ["c1ccccc1O", "not a smiles", "CC#N", "C" * 12, "CC(=O)F"]
    batch, report = from_smiles(smiles, max_atoms=9)
    assert report.kept == 3 and report.too_large == 1 and report.unparsable == [(2, "not a smiles")]
    assert batch.edge_types
    # Benzene ring kekulised: 3 double and 3 single bonds in the ring (+ the C-O single bond).
    ring = torch.triu(batch.adj[0], 1)
    assert int((ring == 2).sum()) == 3 and int((ring == 1).sum()) == 4
    assert int((torch.triu(batch.adj[1], 1) == 3).sum()) == 1  # the nitrile's triple bond
    assert to_smiles(batch) == ["Oc1ccccc1", "CC#N", "CC(=O)F"]
    with pytest.raises(UserError, match="atom type 'S'"):
        from_smiles(["CCS"], max_atoms=9)


def test_invalid_valence_gives_none() -> None:
    batch, _ = from_smiles(["CC"], max_atoms=3)
    adj = batch.adj.clone()
    adj[0, 0, 1] = adj[0, 1, 0] = 3.0
    x = batch.x.clone()
    x[0, :2] = torch.tensor([0.0, 0.0, 0.0, 1.0])  # F#F: fluorine has valence 1
    bad = GraphBatch(x, adj, batch.mask, edge_types=True)
    assert to_molecules(bad) == [None]


def test_families_have_the_papers_settings() -> None:
    cs = gdata.community_small()
    assert len(cs) == 100 and {g.number_of_nodes() for g in cs} <= set(range(12, 21))
    # Bridge rule: every graph has at least one edge between the two halves.
    for g in cs[:20]:
        half = g.number_of_nodes() // 2
        assert any((u < half) != (v < half) for u, v in g.edges())
    assert gdata.community_small(5, seed=1)[3].edges == gdata.community_small(9, seed=1)[3].edges
    assert all(nx.is_tree(t) for t in gdata.trees(10))
    assert all(nx.check_planarity(g)[0] for g in gdata.planar(3, nodes=30))
    assert {g.number_of_nodes() for g in gdata.grid_small(50)} <= {
        a * b for a in range(2, 6) for b in range(2, 6)
    }
    with pytest.raises(UserError, match="Citeseer"):
        gdata.family("ego-small")
    train, test = gdata.split(cs)
    assert len(test) == 20 and len(train) == 80


def test_erdos_renyi_baseline_matches_density() -> None:
    cs = gdata.community_small()
    er = gdata.erdos_renyi_like(cs, 400)
    assert abs(gdata.density(er) - gdata.density(cs)) < 0.02


def test_user_folder_and_smiles_file(tmp_path) -> None:
    (tmp_path / "a.edgelist").write_text("0 1\n1 2\n")
    nx.write_graphml(nx.cycle_graph(4), tmp_path / "b.graphml")
    graphs = gdata.read_graph_folder(tmp_path)
    assert [g.number_of_edges() for g in graphs] == [2, 4]
    (tmp_path / "c.edges").write_text("0 0\n0 1\n")
    with pytest.raises(UserError, match=r"c\.edges: 1 self-loop"):
        gdata.read_graph_folder(tmp_path)
    f = tmp_path / "mols.csv"
    f.write_text("smiles\nCCO\n((bad\nc1ccccc1\n")
    kept, report = gdata.read_smiles_file(f)
    assert kept == ["CCO", "c1ccccc1"] and report.unparsable == [(3, "((bad")]


def test_moses_small_subset_is_read_from_the_wheel() -> None:
    small = gdata.moses_smiles("test", max_atoms=9)
    batch, report = from_smiles(small, atoms=gdata.MOSES_ATOMS, max_atoms=9)
    assert report.kept == len(small) > 0
    assert all(
        m is not None and m.GetNumAtoms() <= 9 for m in to_molecules(batch, gdata.MOSES_ATOMS)
    )


def test_moses_default_subset_has_at_most_12_heavy_atoms() -> None:
    test = gdata.moses_smiles("test")  # the default: <= 12 heavy atoms (48 test molecules)
    assert len(test) == 48
    assert set(gdata.moses_smiles("test", max_atoms=9)) < set(test)
    assert (
        max(
            m.GetNumAtoms()
            for m in to_molecules(
                from_smiles(test, atoms=gdata.MOSES_ATOMS, max_atoms=12)[0], gdata.MOSES_ATOMS
            )
            if m
        )
        <= 12
    )
