"""PARD with node types (atoms) and bond types: typed block examples, node-type marginal,
equivariance of the node head, a tiny molecule run; GDSS's formal-charge decoding rule and the
sanitisation failure reasons."""

from __future__ import annotations

import math

import pytest
import torch
from rdkit import Chem

from interpolant.graphs.convert import (
    failure_reasons,
    from_smiles,
    graph_to_molecule,
    sanitize_failure,
    to_smiles,
)
from interpolant.graphs.pard import block_examples, block_ids, molecule_graphs, node_marginal
from interpolant.graphs.pard_nets import BlockDenoiser, BlockSizePredictor
from interpolant.graphs.pard_train import sample_pard, train_pard

torch.set_num_threads(1)
ATOMS = ("C", "N", "O", "F")


def test_molecule_graphs_keep_atoms_and_kekulised_bonds_sorted_by_block():
    ((x, a),) = molecule_graphs(["OC(=O)CN"], ATOMS, 6)  # glycine: heavy atoms O C O C N
    assert sorted(x.tolist()) == [0, 0, 1, 2, 2]
    assert int(a.triu(1).sum()) == 1 + 2 + 1 + 1  # bond orders: C-O, C=O, C-C, C-N
    diff, size = block_examples([(x, a)], 1, 6)
    # The examples hold the graph sorted by block: the same multiset of atoms, and each atom
    # keeps its bonds (degree sequence and bond-order sums agree with the original).
    nodes, adj = size["nodes"][-1][:5], size["adj"][-1][:5, :5]
    blocks = block_ids(a)
    perm = torch.argsort(blocks, stable=True)
    assert torch.equal(nodes, x[perm]) and torch.equal(adj, a[perm][:, perm])
    assert torch.equal(diff["nodes"][0], size["nodes"][0])
    assert diff["new"].sum(-1).tolist() == torch.bincount(blocks).tolist()


def test_node_marginal_counts_real_nodes():
    m = node_marginal([torch.tensor([0, 0, 2]), torch.tensor([1])], 4)
    torch.testing.assert_close(m, torch.tensor([0.5, 0.25, 0.25, 0.0], dtype=torch.float64))


def test_typed_networks_are_permutation_equivariant():
    torch.manual_seed(0)
    net, sizes = BlockDenoiser(4, 8, 2, node_classes=3), BlockSizePredictor(4, 8, 1, 4, 3)
    n = 6
    a = torch.randint(0, 4, (1, n, n)).triu(1)
    a = a + a.transpose(1, 2)
    nodes = torch.randint(0, 3, (1, n))
    visible = torch.ones(1, n, dtype=torch.bool)
    new = torch.tensor([[False] * 4 + [True] * 2])
    target = (new[:, :, None] | new[:, None, :]) & ~torch.eye(n, dtype=torch.bool)
    t = torch.tensor([0.4])
    edges, node_logits = net.denoise(a, nodes, visible, new, target, t)
    perm = torch.tensor([2, 5, 0, 4, 1, 3])
    edges_p, node_p = net.denoise(
        a[:, perm][:, :, perm],
        nodes[:, perm],
        visible,
        new[:, perm],
        target[:, perm][:, :, perm],
        t,
    )
    torch.testing.assert_close(node_p, node_logits[:, perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(edges_p, edges[:, perm][:, :, perm], atol=1e-5, rtol=1e-4)
    s = sizes(a, visible, nodes)
    torch.testing.assert_close(
        sizes(a[:, perm][:, :, perm], visible, nodes[:, perm]), s, atol=1e-5, rtol=1e-4
    )


def test_tiny_molecule_run_samples_typed_graphs_batch_invariantly():
    smiles = ["CCO", "CC(=O)N", "C#N", "OCCF", "CC=CC", "NCC(=O)O"] * 2
    graphs = molecule_graphs(smiles, ATOMS, 7)
    model, losses = train_pard(
        graphs,
        max_hops=1,
        steps=2,
        epochs=2,
        batch_size=8,
        channels=8,
        layers=1,
        progress=False,
    )
    assert all(math.isfinite(v) for v in losses)
    assert model.node_classes == 4 and model.m.shape == (4,)  # bonds 0..3
    torch.testing.assert_close(model.m_nodes.sum(), torch.tensor(1.0, dtype=torch.float64))
    out = sample_pard(model, 5, seed=1)
    assert out.nodes is not None and int(out.nodes.max()) < 4
    assert bool((out.nodes * ~out.mask).eq(0).all()) and int(out.adj.max()) <= 3
    smi = out.smiles(ATOMS)
    assert len(smi) == 5
    for s, k in zip(smi, out.mask.sum(-1).tolist(), strict=True):
        if s is not None:  # a valid sample has exactly its sampled atoms
            assert Chem.MolFromSmiles(s).GetNumAtoms() == k
    first = sample_pard(model, 2, seed=1)
    assert torch.equal(first.nodes, out.nodes[:2]) and torch.equal(first.adj, out.adj[:2])


def test_gdss_formal_charge_rule_and_failure_reasons():
    # N with four single bonds: invalid as is; GDSS's decoder makes it [N+] (excess exactly 1).
    batch, _ = from_smiles(["CN(C)C"], atoms=ATOMS, max_atoms=5)
    x = torch.zeros(1, 5, 4)
    x[0, :, 0] = 1.0
    x[0, 1] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    adj = torch.zeros(1, 5, 5)
    for j in (0, 2, 3, 4):
        adj[0, 1, j] = adj[0, j, 1] = 1.0
    mask = torch.ones(1, 5, dtype=torch.bool)
    plain = graph_to_molecule(x[0], adj[0], mask[0], ATOMS)
    assert sanitize_failure(plain) == "valence N+1"
    charged = graph_to_molecule(x[0], adj[0], mask[0], ATOMS, formal_charges=True)
    assert sanitize_failure(charged) is None
    from interpolant.graphs.types import GraphBatch

    b = GraphBatch(x, adj, mask, edge_types=True)
    assert to_smiles(b, ATOMS) == [None]
    assert to_smiles(b, ATOMS, formal_charges=True) == ["C[N+](C)(C)C"]
    # A carbon with five bonds is not charged (the rule covers N, O, S only).
    x[0, 1] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    adj5 = torch.zeros(1, 6, 6)
    for j in (0, 2, 3, 4, 5):
        adj5[0, 1, j] = adj5[0, j, 1] = 1.0
    x5 = torch.zeros(1, 6, 4)
    x5[0, :, 0] = 1.0
    b5 = GraphBatch(x5, adj5, torch.ones(1, 6, dtype=torch.bool), edge_types=True)
    assert failure_reasons(b5, ATOMS, formal_charges=True) == {"valence C+1": 1}
    assert failure_reasons(batch, ATOMS) == {"valid": 1}
    with pytest.raises(Chem.AtomValenceException):
        Chem.SanitizeMol(graph_to_molecule(x5[0], adj5[0], b5.mask[0], ATOMS))
