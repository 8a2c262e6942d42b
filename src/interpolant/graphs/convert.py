"""Conversions between :class:`~.types.GraphBatch` and networkx graphs / RDKit molecules.

networkx and RDKit are optional (the ``graphs`` extra) and imported inside the functions; a
missing one raises :class:`~interpolant.errors.MissingDependencyError` naming the extra.

Molecules: heavy atoms only (hydrogens implicit), node features are the one-hot atom type over
``atoms`` (default C, N, O, F as QM9), and ``adj`` holds the bond type with ``edge_types = True``.
Two encodings:

* kekulised (GDSS's QM9/ZINC setting, the default): 1 single, 2 double, 3 triple; aromatic bonds
  become alternating 1/2 by ``Chem.Kekulize``, so a model must learn the alternation;
* ``aromatic=True`` (PARD's and DiGress's MOSES setting, ``pard/dataset/moses.py``: SINGLE,
  DOUBLE, TRIPLE, AROMATIC): aromatic bonds keep their own type 4 (:data:`AROMATIC_BOND`) and
  RDKit kekulises them when the molecule is sanitised; a ring it cannot kekulise is invalid. A
  heavy-atom graph cannot say which aromatic nitrogen carries the hydrogen of a pyrrole-type ring
  ([nH]; 19 of the 435 MOSES molecules with <= 12 atoms), so that atom gets its own type
  :data:`AROMATIC_NH` when it is in ``atoms`` (4.4% of those molecules fail the round trip
  without it; PARD drops such training molecules with its ``filter_dataset``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import MissingDependencyError, UserError
from .types import GraphBatch, check_adjacency, check_max_nodes, degree_features

#: QM9's heavy atoms, GDSS's node vocabulary for QM9.
QM9_ATOMS: tuple[str, ...] = ("C", "N", "O", "F")
#: Bond orders of the kekulised graph (0 = no bond).
BOND_ORDERS: tuple[int, ...] = (1, 2, 3)
#: The edge type of an aromatic bond in the ``aromatic`` encoding.
AROMATIC_BOND = 4
#: The atom type of an aromatic nitrogen with one hydrogen ([nH]) in the ``aromatic`` encoding.
AROMATIC_NH = "nH"
#: Maximum valence per element used by the valency check (RDKit's default, neutral atoms).
MAX_VALENCE: dict[str, int] = {
    "C": 4,
    "N": 3,
    "O": 2,
    "F": 1,
    "S": 6,
    "Cl": 1,
    "Br": 1,
    "I": 1,
    "P": 5,
    "B": 3,
}


def require_networkx() -> Any:
    try:
        import networkx as nx
    except ImportError as err:  # pragma: no cover - networkx is installed in CI
        raise MissingDependencyError(
            "graphs need networkx, an optional dependency: pip install 'interpolant[graphs]'"
        ) from err
    return nx


def require_rdkit() -> Any:
    try:
        from rdkit import Chem, RDLogger
    except ImportError as err:  # pragma: no cover - rdkit is installed in CI
        raise MissingDependencyError(
            "molecules need RDKit, an optional dependency: pip install 'interpolant[graphs]'"
        ) from err
    RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]  # we count and report unparsable SMILES ourselves
    return Chem


# ---- networkx -------------------------------------------------------------------------------
def from_networkx(
    graphs: Sequence[Any],
    max_nodes: int | None = None,
    *,
    features: str = "degree",
    max_degree: int = 10,
    allow_self_loops: bool = False,
) -> GraphBatch:
    """A padded :class:`GraphBatch` of networkx graphs (node order = ``G.nodes`` order).

    ``features``: ``"degree"`` one-hot degrees clipped to ``max_degree`` (GDSS's ``init: deg``,
    ``max_feat_num = 10``) or ``"ones"`` (a single constant feature). ``max_nodes`` defaults to
    the largest graph; a larger graph is a :class:`UserError`, as is a self-loop unless allowed
    (then it is dropped: the dense type has a zero diagonal).
    """
    nx = require_networkx()
    graphs = list(graphs)
    if not graphs:
        raise UserError("from_networkx: no graphs given")
    sizes = [g.number_of_nodes() for g in graphs]
    n_max = max(sizes) if max_nodes is None else int(max_nodes)
    check_max_nodes(sizes, n_max)
    adj = torch.zeros(len(graphs), n_max, n_max)
    mask = torch.zeros(len(graphs), n_max, dtype=torch.bool)
    for i, g in enumerate(graphs):
        if g.is_directed():
            raise UserError(f"from_networkx: graph {i} is directed; pass undirected nx.Graph")
        loops = nx.number_of_selfloops(g)
        if loops and not allow_self_loops:
            raise UserError(
                f"from_networkx: graph {i} has {loops} self-loop(s); remove them "
                "(G.remove_edges_from(nx.selfloop_edges(G))) or pass allow_self_loops=True"
            )
        a = nx.to_numpy_array(g, nodelist=list(g.nodes), weight=None)
        np.fill_diagonal(a, 0.0)
        n = a.shape[0]
        adj[i, :n, :n] = torch.from_numpy((a != 0).astype(np.float32))
        mask[i, :n] = True
    if features == "degree":
        x = degree_features(adj, mask, max_degree)
    elif features == "ones":
        x = mask[..., None].to(torch.float32)
    else:
        raise UserError(f"from_networkx: features must be 'degree' or 'ones', got {features!r}")
    return GraphBatch(x, adj, mask)


def to_networkx(batch: GraphBatch, *, threshold: float = 0.5) -> list[Any]:
    """The graphs of a batch as ``nx.Graph`` with nodes 0..n-1 (real nodes only).

    Entries with ``adj >= threshold`` are edges (GDSS's ``quantize``); with ``edge_types`` the
    integer type is kept as the edge attribute ``type``.
    """
    nx = require_networkx()
    out = []
    for b in range(batch.batch_size):
        idx = batch.mask[b].nonzero().flatten()
        a = batch.adj[b][idx][:, idx].detach().cpu().numpy()
        if batch.edge_types:
            g = nx.Graph()
            g.add_nodes_from(range(len(idx)))
            for i, j in zip(*np.nonzero(np.triu(a, 1)), strict=True):
                g.add_edge(int(i), int(j), type=round(float(a[i, j])))
        else:
            g = nx.from_numpy_array((a >= threshold).astype(np.int64))
            g.remove_edges_from(nx.selfloop_edges(g))
        out.append(g)
    return out


def from_adjacency(adj: np.ndarray | torch.Tensor, *, where: str = "adjacency") -> Any:
    """One ``nx.Graph`` from a dense adjacency, refusing non-symmetric input and self-loops."""
    nx = require_networkx()
    a = torch.as_tensor(np.asarray(adj, dtype=np.float64))
    check_adjacency(a, where=where)
    return nx.from_numpy_array((a.numpy() != 0).astype(np.int64))


# ---- RDKit ----------------------------------------------------------------------------------
@dataclass
class SmilesReport:
    """What happened to each input SMILES: how many were kept and why the others were not."""

    total: int = 0
    kept: int = 0
    unparsable: list[tuple[int, str]] = field(default_factory=list)
    too_large: int = 0

    def summary(self) -> str:
        bad = len(self.unparsable)
        first = f" (first: line {self.unparsable[0][0]}: {self.unparsable[0][1]!r})" if bad else ""
        return (
            f"{self.kept} of {self.total} SMILES kept; {bad} unparsable{first}; "
            f"{self.too_large} larger than max_atoms"
        )


def _atom_label(atom: Any, atoms: Sequence[str], aromatic: bool) -> str:
    """The vocabulary entry of an RDKit atom: its symbol, or :data:`AROMATIC_NH` for an aromatic
    N with one hydrogen in the aromatic encoding (when the vocabulary has it)."""
    if (
        aromatic
        and AROMATIC_NH in atoms
        and atom.GetSymbol() == "N"
        and atom.GetIsAromatic()
        and atom.GetTotalNumHs() == 1
    ):
        return AROMATIC_NH
    return str(atom.GetSymbol())


def molecule_to_graph(
    mol: Any, atoms: Sequence[str], max_atoms: int, *, aromatic: bool = False
) -> tuple[Any, Any]:
    """(x (N, len(atoms)), adj (N, N) bond types) of one RDKit molecule: kekulised bond orders,
    or with ``aromatic`` aromatic bonds as type :data:`AROMATIC_BOND` (see the module doc)."""
    chem = require_rdkit()
    mol = chem.Mol(mol)
    if not aromatic:
        chem.Kekulize(mol, clearAromaticFlags=True)
    n = mol.GetNumAtoms()
    check_max_nodes([n], max_atoms, where="molecule")
    x = torch.zeros(max_atoms, len(atoms))
    for a in mol.GetAtoms():
        sym = _atom_label(a, atoms, aromatic)
        if sym not in atoms:
            raise UserError(
                f"molecule has atom type {sym!r}, not in the vocabulary {list(atoms)}; pass "
                "atoms=... including it or filter the data"
            )
        x[a.GetIdx(), atoms.index(sym)] = 1.0
    adj = torch.zeros(max_atoms, max_atoms)
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        aromatic_bond = bond.GetBondType() == chem.BondType.AROMATIC
        order = AROMATIC_BOND if aromatic_bond else int(bond.GetBondTypeAsDouble())
        adj[i, j] = adj[j, i] = float(order)
    return x, adj


def from_smiles(
    smiles: Iterable[str],
    *,
    atoms: Sequence[str] = QM9_ATOMS,
    max_atoms: int = 9,
    skip_too_large: bool = True,
    aromatic: bool = False,
) -> tuple[GraphBatch, SmilesReport]:
    """Parse SMILES into a molecule :class:`GraphBatch` (edge types = kekulised bond orders, or
    with ``aromatic`` the aromatic encoding of the module doc).

    Unparsable lines are skipped and counted in the returned :class:`SmilesReport` (never
    silently dropped); molecules with more than ``max_atoms`` heavy atoms are skipped and counted
    when ``skip_too_large``, else refused. An atom outside ``atoms`` is a :class:`UserError`.
    """
    chem = require_rdkit()
    report = SmilesReport()
    xs, adjs, masks = [], [], []
    for line_no, s in enumerate(smiles, start=1):
        s = s.strip()
        if not s:
            continue
        report.total += 1
        mol = chem.MolFromSmiles(s)
        if mol is None:
            report.unparsable.append((line_no, s))
            continue
        if mol.GetNumAtoms() > max_atoms:
            if skip_too_large:
                report.too_large += 1
                continue
            check_max_nodes([mol.GetNumAtoms()], max_atoms, where=f"SMILES line {line_no}")
        try:
            x, adj = molecule_to_graph(mol, atoms, max_atoms, aromatic=aromatic)
        except UserError as err:
            raise UserError(f"SMILES line {line_no} ({s!r}): {err}") from err
        mask = torch.zeros(max_atoms, dtype=torch.bool)
        mask[: mol.GetNumAtoms()] = True
        xs.append(x)
        adjs.append(adj)
        masks.append(mask)
        report.kept += 1
    if not xs:
        raise UserError(f"from_smiles: no usable molecule: {report.summary()}")
    batch = GraphBatch(torch.stack(xs), torch.stack(adjs), torch.stack(masks), edge_types=True)
    return batch, report


_BOND_NAMES = {1: "SINGLE", 2: "DOUBLE", 3: "TRIPLE", AROMATIC_BOND: "AROMATIC"}
#: GDSS ``utils/mol_utils.py::ATOM_VALENCY`` (by symbol): the neutral valence its decoder
#: compares with before putting a +1 charge on N, O or S.
GDSS_VALENCY: dict[str, int] = {
    "C": 4,
    "N": 3,
    "O": 2,
    "F": 1,
    "P": 3,
    "S": 2,
    "Cl": 1,
    "Br": 1,
    "I": 1,
}
_VALENCE_MESSAGE = re.compile(r"#\s*(\d+)\s*\w*,\s*(\d+)")


def _valence_violation(mol: Any) -> tuple[int, int] | None:
    """(atom index, explicit valence) of the atom RDKit's property check rejects, or None when
    every valence is allowed (GDSS ``check_valency``, which parses the same message)."""
    chem = require_rdkit()
    try:
        chem.SanitizeMol(mol, sanitizeOps=chem.SanitizeFlags.SANITIZE_PROPERTIES)
        return None
    except Exception as err:  # AtomValenceException and friends
        found = _VALENCE_MESSAGE.search(str(err))
        return (int(found.group(1)), int(found.group(2))) if found else (-1, -1)


def graph_to_molecule(
    x: Any,
    adj: Any,
    mask: Any,
    atoms: Sequence[str],
    *,
    formal_charges: bool = False,
    aromatic: bool = False,
) -> Any:
    """An RDKit ``RWMol`` (unsanitised) from one graph's one-hot atoms and bond orders.

    Kekulised encoding: orders above 3 are read as triple (GDSS rounds a continuous adjacency).
    ``aromatic``: type :data:`AROMATIC_BOND` is an aromatic bond (RDKit kekulises it when the
    molecule is sanitised, as PARD's ``build_molecule``) and :data:`AROMATIC_NH` an N with one
    explicit hydrogen.

    ``formal_charges`` applies GDSS's decoder rule (``construct_mol``): after each bond is
    added, an N, O or S atom whose valence exceeds its neutral one by exactly 1 gets charge +1
    ([N+], [O+], [S+]; QM9 has such atoms). GDSS's "validity w/o correction" is measured on
    molecules built this way; it changes no bond, so it is not a correction.
    """
    chem = require_rdkit()
    mol = chem.RWMol()
    idx = mask.nonzero().flatten().tolist()
    for i in idx:
        label = atoms[int(x[i].argmax())]
        atom = chem.Atom("N" if label == AROMATIC_NH else label)
        if label == AROMATIC_NH:
            atom.SetNumExplicitHs(1)
        mol.AddAtom(atom)
    pos = {node: k for k, node in enumerate(idx)}
    top = AROMATIC_BOND if aromatic else 3
    for a_i in idx:
        for a_j in idx:
            order = round(float(adj[a_i, a_j]))
            if a_j > a_i and order > 0:
                bt = getattr(chem.BondType, _BOND_NAMES[min(order, top)])
                mol.AddBond(pos[a_i], pos[a_j], bt)
                if not formal_charges:
                    continue
                bad = _valence_violation(mol)
                if bad is None or bad[0] < 0:
                    continue
                atom = mol.GetAtomWithIdx(bad[0])
                sym = atom.GetSymbol()
                if sym in ("N", "O", "S") and bad[1] - GDSS_VALENCY[sym] == 1:
                    atom.SetFormalCharge(1)
    return mol


def sanitize_failure(mol: Any) -> str | None:
    """Why RDKit refuses a molecule as built, or None when it sanitises: ``"empty"`` (no
    atoms), ``"valence <atom>+<k>"`` (an atom k above the largest valence RDKit allows it, +1
    for a positive charge), ``"kekulize"``, or the exception's name."""
    chem = require_rdkit()
    m = chem.Mol(mol)
    if m.GetNumAtoms() == 0:
        return "empty"
    bad = _valence_violation(m)
    if bad is not None:
        if bad[0] < 0:
            return "valence (unparsed)"
        atom = m.GetAtomWithIdx(bad[0])
        table = chem.GetPeriodicTable()
        allowed = max(table.GetValenceList(atom.GetSymbol())) + max(atom.GetFormalCharge(), 0)
        return f"valence {atom.GetSymbol()}+{bad[1] - allowed}"
    try:
        chem.SanitizeMol(m)
    except Exception as err:
        name = type(err).__name__
        return "kekulize" if "Kekul" in name else name
    return None


def to_molecules(
    batch: GraphBatch,
    atoms: Sequence[str] = QM9_ATOMS,
    *,
    formal_charges: bool = False,
    aromatic: bool = False,
) -> list[Any]:
    """One sanitised RDKit molecule per graph, or None where sanitisation fails (invalid).

    No bond is changed (validity *without* correction); ``formal_charges`` and ``aromatic`` as
    in :func:`graph_to_molecule`.
    """
    chem = require_rdkit()
    out = []
    for b in range(batch.batch_size):
        mol = graph_to_molecule(
            batch.x[b],
            batch.adj[b],
            batch.mask[b],
            atoms,
            formal_charges=formal_charges,
            aromatic=aromatic,
        )
        try:
            chem.SanitizeMol(mol)
            out.append(mol.GetMol())
        except Exception:  # RDKit raises several exception types for invalid valences
            out.append(None)
    return out


def to_smiles(
    batch: GraphBatch,
    atoms: Sequence[str] = QM9_ATOMS,
    *,
    formal_charges: bool = False,
    aromatic: bool = False,
) -> list[str | None]:
    """Canonical SMILES per graph (None for molecules that fail sanitisation)."""
    chem = require_rdkit()
    mols = to_molecules(batch, atoms, formal_charges=formal_charges, aromatic=aromatic)
    return [None if m is None else chem.MolToSmiles(m) for m in mols]


def failure_reasons(
    batch: GraphBatch,
    atoms: Sequence[str] = QM9_ATOMS,
    *,
    formal_charges: bool = False,
    aromatic: bool = False,
) -> dict[str, int]:
    """Counts of :func:`sanitize_failure` reasons over a batch (``"valid"`` for the others)."""
    counts: dict[str, int] = {}
    for b in range(batch.batch_size):
        mol = graph_to_molecule(
            batch.x[b],
            batch.adj[b],
            batch.mask[b],
            atoms,
            formal_charges=formal_charges,
            aromatic=aromatic,
        )
        reason = sanitize_failure(mol) or "valid"
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def correct_valence(mol: Any) -> Any | None:
    """GDSS's valency correction (``utils/mol_utils.py::correct_mol``) with PARD's rule for
    aromatic bonds (``pard/analysis/rdkit_functions.py``): while RDKit's valence check fails,
    lower by one the highest-order non-aromatic bond of the offending atom (a single bond is
    removed). Returns the corrected ``RWMol`` (a copy), or None when only aromatic bonds could
    be lowered. This *changes bonds*: its validity is reported apart from validity without
    correction."""
    chem = require_rdkit()
    mol = chem.RWMol(mol)
    names = {1: "SINGLE", 2: "DOUBLE"}
    while True:
        bad = _valence_violation(mol)
        if bad is None:
            return mol
        if bad[0] < 0:
            return None
        bonds = sorted(
            (
                (int(b.GetBondType()), b.GetBeginAtomIdx(), b.GetEndAtomIdx())
                for b in mol.GetAtomWithIdx(bad[0]).GetBonds()
                if b.GetBondType() != chem.BondType.AROMATIC
            ),
            reverse=True,
        )
        if not bonds:
            return None
        order, i, j = bonds[0]
        mol.RemoveBond(i, j)
        if order - 1 >= 1:
            mol.AddBond(i, j, getattr(chem.BondType, names[order - 1]))


def corrected_smiles(
    batch: GraphBatch, atoms: Sequence[str] = QM9_ATOMS, *, aromatic: bool = False
) -> list[str | None]:
    """SMILES after the field's correction pipeline (GDSS ``gen_mol``): build with the +1-charge
    rule, :func:`correct_valence`, keep the largest fragment (``valid_mol_can_with_seg``); None
    where it still fails. Validity of these is "validity with correction"."""
    chem = require_rdkit()
    out: list[str | None] = []
    for b in range(batch.batch_size):
        mol = graph_to_molecule(
            batch.x[b], batch.adj[b], batch.mask[b], atoms, formal_charges=True, aromatic=aromatic
        )
        fixed = correct_valence(mol)
        if fixed is None or fixed.GetNumAtoms() == 0:
            out.append(None)
            continue
        try:
            chem.SanitizeMol(fixed)
        except Exception:  # an aromatic ring that cannot be kekulised
            out.append(None)
            continue
        largest = max(chem.MolToSmiles(fixed).split("."), key=len)
        out.append(canonical_smiles(largest))
    return out


def canonical_smiles(smiles: str) -> str | None:
    """RDKit's canonical SMILES of ``smiles`` or None when it does not parse."""
    chem = require_rdkit()
    mol = chem.MolFromSmiles(smiles)
    return None if mol is None else chem.MolToSmiles(mol)


__all__ = [
    "AROMATIC_BOND",
    "AROMATIC_NH",
    "BOND_ORDERS",
    "GDSS_VALENCY",
    "MAX_VALENCE",
    "QM9_ATOMS",
    "SmilesReport",
    "canonical_smiles",
    "correct_valence",
    "corrected_smiles",
    "failure_reasons",
    "from_adjacency",
    "from_networkx",
    "from_smiles",
    "graph_to_molecule",
    "molecule_to_graph",
    "require_networkx",
    "require_rdkit",
    "sanitize_failure",
    "to_molecules",
    "to_networkx",
    "to_smiles",
]
