"""The aromatic bond encoding (PARD's MOSES setting) and GDSS's valency correction: exact round
trips on the MOSES subset, the [nH] atom type, kekulisation failures, and corrections checked
by hand."""

from __future__ import annotations

import pytest
import torch

from interpolant.graphs import data as gdata
from interpolant.graphs.convert import (
    AROMATIC_BOND,
    AROMATIC_NH,
    canonical_smiles,
    correct_valence,
    corrected_smiles,
    failure_reasons,
    from_smiles,
    graph_to_molecule,
    to_smiles,
)
from interpolant.graphs.pard import molecule_graphs
from interpolant.graphs.types import GraphBatch

ARO = gdata.MOSES_AROMATIC_ATOMS


def test_aromatic_encoding_keeps_ring_bonds_as_one_type():
    batch, _ = from_smiles(["c1ccccc1O"], atoms=ARO, max_atoms=7, aromatic=True)
    upper = batch.adj[0].triu(1)
    assert int((upper == AROMATIC_BOND).sum()) == 6 and int((upper == 1).sum()) == 1
    assert to_smiles(batch, ARO, aromatic=True) == ["Oc1ccccc1"]
    kek, _ = from_smiles(["c1ccccc1O"], atoms=ARO, max_atoms=7)  # alternating 1/2 instead
    assert sorted(kek.adj[0].triu(1)[kek.adj[0].triu(1) > 0].tolist()) == [1, 1, 1, 1, 2, 2, 2]


def test_pyrrole_nitrogen_gets_its_own_type_and_round_trips():
    smiles = "c1cc[nH]c1"
    batch, _ = from_smiles([smiles], atoms=ARO, max_atoms=5, aromatic=True)
    labels = [ARO[int(i)] for i in batch.x[0].argmax(-1)]
    assert sorted(labels) == ["C", "C", "C", "C", AROMATIC_NH]
    assert to_smiles(batch, ARO, aromatic=True) == [canonical_smiles(smiles)]
    # Without the [nH] type the same graph has a plain N and cannot be kekulised.
    plain, _ = from_smiles([smiles], atoms=gdata.MOSES_ATOMS, max_atoms=5, aromatic=True)
    assert to_smiles(plain, gdata.MOSES_ATOMS, aromatic=True) == [None]
    assert failure_reasons(plain, gdata.MOSES_ATOMS, aromatic=True) == {"kekulize": 1}


@pytest.mark.parametrize("max_atoms", [9, 12])
def test_every_moses_molecule_round_trips_in_both_encodings(max_atoms):
    train = gdata.moses_smiles("train", max_atoms)
    expected = [canonical_smiles(s) for s in train]
    for aromatic, atoms in ((True, ARO), (False, gdata.MOSES_ATOMS)):
        batch, report = from_smiles(train, atoms=atoms, max_atoms=max_atoms, aromatic=aromatic)
        assert report.kept == len(train)
        assert to_smiles(batch, atoms, aromatic=aromatic) == expected
    graphs = molecule_graphs(train[:5], ARO, max_atoms, aromatic=True)
    assert max(int(a.max()) for _, a in graphs) == AROMATIC_BOND


def test_a_broken_aromatic_ring_is_invalid_not_repaired():
    # Five aromatic carbons in a ring (cyclopentadienyl without H count): no Kekule structure.
    batch, _ = from_smiles(["c1ccccc1"], atoms=ARO, max_atoms=6, aromatic=True)
    adj = batch.adj.clone()
    adj[0, 0, 5] = adj[0, 5, 0] = 0.0  # open the ring: a chain of aromatic bonds
    broken = GraphBatch(batch.x, adj, batch.mask, edge_types=True)
    assert to_smiles(broken, ARO, aromatic=True) == [None]
    assert failure_reasons(broken, ARO, aromatic=True) == {"kekulize": 1}
    # In the kekulised reading the same type 4 is clamped to a triple bond (GDSS's rounding).
    mol = graph_to_molecule(batch.x[0], batch.adj[0], batch.mask[0], ARO)
    assert {int(b.GetBondTypeAsDouble()) for b in mol.GetBonds()} == {3}


def _carbon_chain(bonds: dict[tuple[int, int], int], n: int) -> GraphBatch:
    x = torch.zeros(1, n, len(ARO))
    x[0, :, 0] = 1.0
    adj = torch.zeros(1, n, n)
    for (i, j), order in bonds.items():
        adj[0, i, j] = adj[0, j, i] = float(order)
    return GraphBatch(x, adj, torch.ones(1, n, dtype=torch.bool), edge_types=True)


def test_valency_correction_lowers_the_highest_bond_of_the_offending_atom():
    # C(=C)(C)(C)C: the centre has valence 5; GDSS lowers its double bond to a single one.
    b = _carbon_chain({(0, 1): 2, (1, 2): 1, (1, 3): 1, (1, 4): 1}, 5)
    assert to_smiles(b, ARO) == [None]
    assert corrected_smiles(b, ARO) == ["CC(C)(C)C"]
    # C#C#C: the middle carbon has valence 6 -> one triple becomes double (C=C#C, valence 5)
    # -> the other triple becomes double (C=C=C, valence 4): allene.
    b = _carbon_chain({(0, 1): 3, (1, 2): 3}, 3)
    assert corrected_smiles(b, ARO) == ["C=C=C"]
    # A valid molecule is unchanged, and a fragment is dropped (largest component kept).
    b = _carbon_chain({(0, 1): 1, (1, 2): 2}, 4)  # C-C=C plus an isolated C
    assert to_smiles(b, ARO) == ["C.C=CC"] and corrected_smiles(b, ARO) == ["C=CC"]


def test_correction_repairs_valences_next_to_rings_but_not_kekulisation():
    # tert-butylbenzene with the quaternary carbon's bond to a methyl raised to double: valence
    # 5 off the ring; the correction lowers that bond and restores the molecule.
    smiles = "CC(C)(C)c1ccccc1"
    batch, _ = from_smiles([smiles], atoms=ARO, max_atoms=10, aromatic=True)
    adj = batch.adj.clone()
    adj[0, 0, 1] = adj[0, 1, 0] = 2.0
    b = GraphBatch(batch.x, adj, batch.mask, edge_types=True)
    assert to_smiles(b, ARO, aromatic=True) == [None]
    assert corrected_smiles(b, ARO, aromatic=True) == [canonical_smiles(smiles)]
    # A double bond out of a ring atom passes RDKit's valence check (aromatic bonds are counted
    # leniently) and fails kekulisation: as in GDSS / PARD, the correction does not apply and
    # the molecule stays invalid.
    batch, _ = from_smiles(["Cc1ccccc1"], atoms=ARO, max_atoms=7, aromatic=True)
    adj = batch.adj.clone()
    adj[0, 0, 1] = adj[0, 1, 0] = 2.0
    b = GraphBatch(batch.x, adj, batch.mask, edge_types=True)
    assert failure_reasons(b, ARO, aromatic=True) == {"kekulize": 1}
    mol = graph_to_molecule(b.x[0], b.adj[0], b.mask[0], ARO, aromatic=True)
    assert correct_valence(mol) is not None  # nothing to correct by the valence rule
    assert corrected_smiles(b, ARO, aromatic=True) == [None]
