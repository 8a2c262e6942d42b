"""PARD's valence features (DiGress's valency and charge features on the noisy graph): values on
a hand-checked molecule, permutation equivariance with them switched on, save / load of a run
that uses them, and clear errors."""

from __future__ import annotations

import pytest
import torch

from interpolant.errors import UserError
from interpolant.graphs.io import load_run, save_pard_run
from interpolant.graphs.pard import molecule_graphs, molecule_valences
from interpolant.graphs.pard_nets import BlockDenoiser, BlockSizePredictor, valence_features
from interpolant.graphs.pard_train import train_pard

torch.set_num_threads(1)
ATOMS = ("C", "N", "O", "F")


def test_molecule_valences_are_rdkit_maxima_and_bond_orders():
    vals, orders = molecule_valences(("C", "N", "O", "F", "S", "Br", "nH"))
    assert vals == [4.0, 3.0, 2.0, 1.0, 6.0, 1.0, 3.0]
    assert orders == [0.0, 1.0, 2.0, 3.0]
    assert molecule_valences(("C",), aromatic=True)[1] == [0.0, 1.0, 2.0, 3.0, 1.5]
    assert molecule_valences(("Se",))[0] == [6.0]  # RDKit's periodic table beyond the table
    with pytest.raises(UserError, match="no valence known for atom type 'Xx'"):
        molecule_valences(("C", "Xx"))


def test_valence_features_by_hand():
    # Acetamide CC(=O)N: atoms C, C, O, N; bonds C-C 1, C=O 2, C-N 1. A fifth atom, F, is not
    # visible yet and must not count, even with a bond drawn to it in the state.
    vals, orders = molecule_valences(ATOMS)
    nodes = torch.tensor([[0, 0, 2, 1, 3]])
    adj = torch.zeros(1, 5, 5, dtype=torch.long)
    for i, j, order in ((0, 1, 1), (1, 2, 2), (1, 3, 1), (2, 4, 1)):
        adj[0, i, j] = adj[0, j, i] = order
    visible = torch.tensor([[True, True, True, True, False]])
    f = valence_features(adj, nodes, visible, torch.tensor(vals), torch.tensor(orders))
    valency = torch.tensor([1.0, 4.0, 2.0, 1.0, 0.0])
    free = torch.tensor([3.0, 0.0, 0.0, 2.0, 0.0])
    torch.testing.assert_close(f[0, :, 0], valency / 4)
    torch.testing.assert_close(f[0, :, 1], free / 4)
    torch.testing.assert_close(f[0, :, 2], torch.zeros(5))
    # A second C=O on the carbonyl carbon: valency 6, two over its maximum of 4.
    adj[0, 1, 3] = adj[0, 3, 1] = 3
    f = valence_features(adj, nodes, visible, torch.tensor(vals), torch.tensor(orders))
    assert f[0, 1, 0] == 6 / 4 and f[0, 1, 1] == -2 / 4 and f[0, 1, 2] == 2.0
    assert f[0, 3, 2] == 0.0  # N: valency 3, exactly its maximum


def test_networks_with_valence_features_are_equivariant_and_use_them():
    torch.manual_seed(0)
    vals, orders = molecule_valences(ATOMS)
    net = BlockDenoiser(4, 8, 2, 4, vals, orders)
    sizes = BlockSizePredictor(4, 8, 1, 4, 4, vals, orders)
    n = 6
    a = torch.randint(0, 4, (1, n, n)).triu(1)
    a = a + a.transpose(1, 2)
    nodes = torch.randint(0, 4, (1, n))
    visible = torch.ones(1, n, dtype=torch.bool)
    new = torch.tensor([[False] * 4 + [True] * 2])
    target = (new[:, :, None] | new[:, None, :]) & ~torch.eye(n, dtype=torch.bool)
    t = torch.tensor([0.4])
    edges, node_logits = net.denoise(a, nodes, visible, new, target, t)
    perm = torch.tensor([2, 5, 0, 4, 1, 3])
    ap = a[:, perm][:, :, perm]
    edges_p, node_p = net.denoise(
        ap, nodes[:, perm], visible, new[:, perm], target[:, perm][:, :, perm], t
    )
    torch.testing.assert_close(node_p, node_logits[:, perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(edges_p, edges[:, perm][:, :, perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        sizes(ap, visible, nodes[:, perm]), sizes(a, visible, nodes), atol=1e-5, rtol=1e-4
    )
    # The features enter: zeroing the valence table changes the output.
    net.trunk.valences.zero_()
    assert not torch.allclose(net.denoise(a, nodes, visible, new, target, t)[0], edges)


def test_mismatched_valence_tables_are_refused():
    with pytest.raises(UserError, match="3 valences for 4 node types"):
        BlockDenoiser(4, 8, 1, 4, [4.0, 3.0, 2.0], [0.0, 1.0, 2.0, 3.0])
    with pytest.raises(UserError, match="give both"):
        BlockDenoiser(4, 8, 1, 4, [4.0, 3.0, 2.0, 1.0], None)


def test_run_with_valence_features_saves_and_loads(tmp_path):
    graphs = molecule_graphs(["CCO", "CC(=O)N", "OCCF", "NCC(=O)O"], ATOMS, 7)
    model, _ = train_pard(
        graphs,
        steps=2,
        epochs=1,
        channels=8,
        layers=1,
        node_classes=4,
        edge_classes=4,
        valences=molecule_valences(ATOMS),
        progress=False,
    )
    save_pard_run(tmp_path / "run", model, {"molecule": True, "atoms": list(ATOMS)})
    loaded, meta = load_run(tmp_path / "run")
    assert meta["pard"]["valences"] == [4.0, 3.0, 2.0, 1.0]
    torch.testing.assert_close(loaded.denoiser.trunk.valences, model.denoiser.trunk.valences)
    a = graphs[1][1][None]
    x = graphs[1][0][None]
    vis = torch.ones_like(x, dtype=torch.bool)
    new = torch.zeros_like(vis)
    new[0, -1] = True
    target = (new[:, :, None] | new[:, None, :]) & ~torch.eye(a.shape[-1], dtype=torch.bool)
    t = torch.tensor([0.5])
    for got, want in zip(
        loaded.denoiser.denoise(a, x, vis, new, target, t),
        model.denoiser.denoise(a, x, vis, new, target, t),
        strict=True,
    ):
        torch.testing.assert_close(got, want)
