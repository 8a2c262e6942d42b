"""NSPDK MMD: the neighbourhood subgraph pairwise distance kernel of EDeN (Costa & De Grave,
ICML 2010), as GDSS and PARD evaluate generated molecules (``compute_nspdk_mmd`` with
``vectorize(graphs, complexity=4, discrete=True)`` and a linear kernel).

**The feature map** (EDeN ``graph.Vectorizer`` with its defaults: r = d = complexity,
``normalization`` and ``inner_normalization`` on, unweighted, not positional). Each bond becomes a
vertex of its own (the *expanded* graph: atom - bond - atom, so distances double). For a vertex w
of the expanded graph let ``lab(w)`` be its label (atom symbol, bond order) and ``deg(w)`` its
degree in the expanded graph. The rooted neighbourhood signature of an atom v at radius R is the
sequence, for distances l = 0..R, of the sorted multiset {(lab(w), deg(w)) : dist(v, w) = l}
(EDeN hashes it; ``fast_hash_vec`` makes entry R depend on levels 0..R). For every ordered pair
of atoms (v, u) at expanded distance D in {0, 2, ..., 2d} and every radius R in {0, 2, ..., 2r}
that both atoms' BFS (depth 2 max(r, d)) reaches, two features are counted in block (R, D):

    pair feature  (sorted(sig_R(v), sig_R(u)), R, D)        half feature  (sig_R(u), R, D).

Each (R, D) block is scaled to unit Euclidean norm, then the whole vector (inner, then global
normalisation), so k(G, G) = 1. The kernel is the dot product k(G, H) = <phi(G), phi(H)> and the
reported number is the biased MMD^2 = mean k(X, X) + mean k(Y, Y) - 2 mean k(X, Y) (GDSS
``evaluation/mmd.py::compute_nspdk_mmd``).

**What differs from EDeN.** EDeN hashes labels with Python's ``hash`` (randomised for strings
between processes) and folds every feature into 2^16 buckets, so unrelated features can collide
and its numbers move slightly from run to run. We keep the features as exact tuples: this is the
collision-free kernel EDeN approximates. ``eden-kernel`` itself does not install here (it pins old
scikit-learn); nothing is downloaded.

Molecules are turned into graphs as in GDSS / PARD ``mols_to_nx``: nodes labelled with the atom
symbol, edges with ``int(bond.GetBondTypeAsDouble())`` (aromatic 1.5 becomes 1).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict, deque
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from ..errors import UserError
from .convert import require_networkx

#: GDSS / PARD call EDeN's vectorizer with complexity 4 (r = d = 4).
COMPLEXITY = 4

Feature = tuple[Hashable, ...]


def _expanded(g: Any, node_label: str, edge_label: str) -> tuple[list[Hashable], list[list[int]]]:
    """Labels and adjacency lists of the expanded graph: atoms 0..n-1, then one vertex per bond."""
    nodes = list(g.nodes)
    index = {v: i for i, v in enumerate(nodes)}
    labels: list[Hashable] = [g.nodes[v].get(node_label) for v in nodes]
    adj: list[list[int]] = [[] for _ in nodes]
    for u, v, data in g.edges(data=True):
        if u == v:
            continue  # EDeN drops self-loops when it expands edges into vertices
        w = len(labels)
        labels.append(data.get(edge_label))
        adj.append([index[u], index[v]])
        adj[index[u]].append(w)
        adj[index[v]].append(w)
    return labels, adj


def _bfs_levels(adj: list[list[int]], root: int, depth: int) -> list[list[int]]:
    """Vertices at distance 0, 1, ..., <= depth from ``root`` (only the non-empty levels)."""
    dist = {root: 0}
    levels: list[list[int]] = [[root]]
    queue = deque([root])
    while queue:
        u = queue.popleft()
        d = dist[u] + 1
        if d > depth:
            continue
        for v in adj[u]:
            if v not in dist:
                dist[v] = d
                if d == len(levels):
                    levels.append([])
                levels[d].append(v)
                queue.append(v)
    return levels


def nspdk_features(
    g: Any, complexity: int = COMPLEXITY, *, node_label: str = "label", edge_label: str = "label"
) -> dict[Feature, float]:
    """The normalised NSPDK feature vector phi(G) of one graph as a sparse dict."""
    if g.number_of_nodes() == 0:
        raise UserError("NSPDK: a graph has no nodes (EDeN refuses empty graphs); drop it first")
    labels, adj = _expanded(g, node_label, edge_label)
    n = g.number_of_nodes()
    depth = 2 * complexity
    levels = [_bfs_levels(adj, v, depth) for v in range(n)]
    # sig[v][l]: the signature of levels 0..l, built incrementally (EDeN's fast_hash_vec).
    sigs: list[list[tuple[Any, ...]]] = []
    for lv in levels:
        running: list[tuple[Any, ...]] = []
        acc: tuple[Any, ...] = ()
        for level in lv:
            ms = tuple(sorted(((labels[w], len(adj[w])) for w in level), key=repr))
            acc = (*acc, ms)
            running.append(acc)
        sigs.append(running)
    blocks: dict[tuple[int, int], Counter[Feature]] = defaultdict(Counter)
    for v in range(n):
        for dist in range(0, depth + 1, 2):
            if dist >= len(levels[v]):
                break
            for u in levels[v][dist]:
                if u >= n:
                    continue  # bond vertices are never endpoints of a pair
                for radius in range(0, depth + 1, 2):
                    if radius >= len(sigs[v]) or radius >= len(sigs[u]):
                        continue
                    sv, su = sigs[v][radius], sigs[u][radius]
                    first, second = sorted((sv, su), key=repr)
                    blocks[(radius, dist)][("pair", first, second, radius, dist)] += 1
                    blocks[(radius, dist)][("half", su, radius, dist)] += 1
    phi: dict[Feature, float] = {}
    for counts in blocks.values():
        norm = math.sqrt(sum(c * c for c in counts.values()))
        for f, c in counts.items():
            phi[f] = c / norm
    total = math.sqrt(sum(v * v for v in phi.values()))
    return {f: v / total for f, v in phi.items()}


def nspdk_gram(
    graphs_a: Sequence[Any], graphs_b: Sequence[Any] | None = None, complexity: int = COMPLEXITY
) -> np.ndarray:
    """The kernel matrix k(G_i, H_j) = <phi(G_i), phi(H_j)> (``graphs_b`` defaults to a)."""
    fa = [nspdk_features(g, complexity) for g in graphs_a]
    fb = fa if graphs_b is None else [nspdk_features(g, complexity) for g in graphs_b]
    return _gram(fa, fb)


def _gram(fa: Sequence[dict[Feature, float]], fb: Sequence[dict[Feature, float]]) -> np.ndarray:
    from scipy.sparse import csr_matrix

    vocab: dict[Feature, int] = {}
    for phi in (*fa, *fb):
        for f in phi:
            vocab.setdefault(f, len(vocab))

    def matrix(rows: Sequence[dict[Feature, float]]) -> Any:
        data, r, c = [], [], []
        for i, phi in enumerate(rows):
            for f, v in phi.items():
                data.append(v)
                r.append(i)
                c.append(vocab[f])
        return csr_matrix((data, (r, c)), shape=(len(rows), max(len(vocab), 1)))

    ma, mb = matrix(fa), matrix(fb)
    return np.asarray((ma @ mb.T).todense(), dtype=np.float64)


def nspdk_mmd(
    reference: Sequence[Any], generated: Sequence[Any], complexity: int = COMPLEXITY
) -> float:
    """Biased MMD^2 of the NSPDK between two sets of labelled networkx graphs.

    Generated graphs with no nodes are dropped (as molecules that failed to build are, in PARD).
    """
    generated = [g for g in generated if g.number_of_nodes() > 0]
    if not reference or not generated:
        raise UserError("NSPDK MMD: both sets need at least one non-empty graph")
    fx = [nspdk_features(g, complexity) for g in reference]
    fy = [nspdk_features(g, complexity) for g in generated]
    return float(_gram(fx, fx).mean() + _gram(fy, fy).mean() - 2 * _gram(fx, fy).mean())


def molecules_to_graphs(mols: Sequence[Any]) -> list[Any]:
    """GDSS / PARD ``mols_to_nx``: atom symbols on nodes, integer bond orders on edges (None
    entries, molecules that failed to build, are skipped)."""
    nx = require_networkx()
    out = []
    for mol in mols:
        if mol is None:
            continue
        g = nx.Graph()
        for atom in mol.GetAtoms():
            g.add_node(atom.GetIdx(), label=atom.GetSymbol())
        for bond in mol.GetBonds():
            g.add_edge(
                bond.GetBeginAtomIdx(),
                bond.GetEndAtomIdx(),
                label=int(bond.GetBondTypeAsDouble()),
            )
        out.append(g)
    return out


def smiles_nspdk_mmd(
    reference: Sequence[str], generated: Sequence[str | None], complexity: int = COMPLEXITY
) -> float:
    """NSPDK MMD^2 between reference SMILES (the test set) and generated SMILES (None skipped)."""
    from .convert import require_rdkit

    chem = require_rdkit()
    ref = molecules_to_graphs([chem.MolFromSmiles(s) for s in reference])
    gen = molecules_to_graphs([chem.MolFromSmiles(s) if s else None for s in generated])
    return nspdk_mmd(ref, gen, complexity)


__all__ = [
    "COMPLEXITY",
    "molecules_to_graphs",
    "nspdk_features",
    "nspdk_gram",
    "nspdk_mmd",
    "smiles_nspdk_mmd",
]
