"""Graph data, never downloaded: networkx generator families, MOSES SMILES, the user's files.

Synthetic families (networkx generators with the papers' settings; graph i of a family is drawn
from its own generator ``derive_seed("graphs-<family>", seed, i)``, so it does not depend on how
many graphs are asked for):

* ``community_small`` — GDSS / GraphRNN: 2 communities of n/2 nodes, n uniform in 12..20
  (6-10 nodes per community), G(n/2, p = 0.7) inside; each cross pair is a bridge with
  probability p_inter * 2 / ((k - 1) * n/2), p_inter = 0.05, and when no bridge was drawn one
  edge joins the first nodes (GDSS ``data/data_generators.py::n_community``). GDSS seeds
  community c with ``seed=c`` so both communities of a given size are the same graph in every
  sample; we draw them independently (a stated difference).
* ``grid`` — GraphRNN / GDSS: 2-D grids m x n with m, n uniform in 10..19 (100-361 nodes);
  ``grid_small``: m, n in 2..5 (4-25 nodes) for CPU runs.
* ``sbm`` — SPECTRE/PARD: 2-5 blocks of 20-40 nodes, p_intra 0.3, p_inter 0.05 (options make a
  small variant).
* ``trees`` — uniformly random labelled trees (``nx.random_labeled_tree``) on n nodes.
* ``planar`` — SPECTRE: Delaunay triangulation of n uniform points in the unit square.
* ``ladder`` — ``nx.ladder_graph(L)``, L in a range.
* ``ego_small`` cannot be built: it is made of 1-hop ego nets of the Citeseer citation graph,
  which networkx does not ship and we never download. :func:`family` says so.

Molecules: the MOSES SMILES inside the ``molsets`` wheel (``moses/dataset/data/train.csv.gz``,
``test.csv.gz``), read without importing ``moses``; :func:`moses_smiles` filters them by heavy
atom count. MOSES molecules weigh 250-350 Da, so the QM9-sized subsets are small: 37 training
molecules with <= 9 heavy atoms and 435 with <= 12 (measured here).
"""

from __future__ import annotations

import gzip
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependencyError, MissingFileError, UserError
from ..randomness import derive_seed
from .convert import AROMATIC_NH, SmilesReport, require_networkx, require_rdkit

#: Heavy atoms seen in the small MOSES subsets (C, N, O, F, S, Cl, Br).
MOSES_ATOMS: tuple[str, ...] = ("C", "N", "O", "F", "S", "Cl", "Br")
#: The vocabulary of the aromatic encoding: MOSES_ATOMS and the pyrrole-type [nH].
MOSES_AROMATIC_ATOMS: tuple[str, ...] = (*MOSES_ATOMS, AROMATIC_NH)


def _rng(family: str, seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(derive_seed(f"graphs-{family}", seed, index))


def community_graph(
    rng: np.random.Generator,
    num_nodes: int,
    p: float = 0.7,
    p_inter: float = 0.05,
    communities: int = 2,
) -> Any:
    """One community graph by GDSS's rule (see the module docstring)."""
    nx = require_networkx()
    size = num_nodes // communities
    parts = [
        nx.gnp_random_graph(size, p, seed=int(rng.integers(2**31))) for _ in range(communities)
    ]
    g = nx.disjoint_union_all(parts)
    p_bridge = p_inter * 2 / ((communities - 1) * size)
    for i in range(communities):
        for j in range(i + 1, communities):
            a_nodes = range(i * size, (i + 1) * size)
            b_nodes = range(j * size, (j + 1) * size)
            draws = rng.random((size, size)) < p_bridge
            for a, b in zip(*np.nonzero(draws), strict=True):
                g.add_edge(a_nodes[a], b_nodes[b])
            if not draws.any():
                g.add_edge(a_nodes[0], b_nodes[0])
    return g


def community_small(count: int = 100, seed: int = 0) -> list[Any]:
    """GDSS's community-small: 100 graphs of 12-20 nodes."""
    out = []
    for i in range(count):
        rng = _rng("community_small", seed, i)
        out.append(community_graph(rng, int(rng.integers(12, 21))))
    return out


def grid(count: int = 100, seed: int = 0, sides: tuple[int, int] = (10, 19)) -> list[Any]:
    """2-D grid graphs with both sides uniform in ``sides`` (inclusive); relabelled 0..n-1."""
    nx = require_networkx()
    out = []
    for i in range(count):
        rng = _rng("grid", seed, i)
        m, n = (int(v) for v in rng.integers(sides[0], sides[1] + 1, size=2))
        out.append(nx.convert_node_labels_to_integers(nx.grid_2d_graph(m, n)))
    return out


def grid_small(count: int = 100, seed: int = 0) -> list[Any]:
    """Small grids (sides 2..5, 4-25 nodes) for CPU runs."""
    return grid(count, seed, sides=(2, 5))


def sbm(
    count: int = 200,
    seed: int = 0,
    blocks: tuple[int, int] = (2, 5),
    block_size: tuple[int, int] = (20, 40),
    p_intra: float = 0.3,
    p_inter: float = 0.05,
) -> list[Any]:
    """Stochastic block models (SPECTRE's settings by default)."""
    nx = require_networkx()
    out = []
    for i in range(count):
        rng = _rng("sbm", seed, i)
        k = int(rng.integers(blocks[0], blocks[1] + 1))
        sizes = [int(s) for s in rng.integers(block_size[0], block_size[1] + 1, size=k)]
        probs = [[p_intra if a == b else p_inter for b in range(k)] for a in range(k)]
        g = nx.stochastic_block_model(sizes, probs, seed=int(rng.integers(2**31)))
        out.append(nx.Graph(g))
    return out


def trees(count: int = 200, seed: int = 0, nodes: tuple[int, int] = (10, 20)) -> list[Any]:
    """Uniform random labelled trees with a node count uniform in ``nodes``."""
    nx = require_networkx()
    out = []
    for i in range(count):
        rng = _rng("trees", seed, i)
        n = int(rng.integers(nodes[0], nodes[1] + 1))
        out.append(nx.random_labeled_tree(n, seed=int(rng.integers(2**31))))
    return out


def planar(count: int = 200, seed: int = 0, nodes: int = 64) -> list[Any]:
    """SPECTRE's planar graphs: Delaunay triangulations of uniform points in [0, 1]^2."""
    nx = require_networkx()
    from scipy.spatial import Delaunay

    out = []
    for i in range(count):
        pts = _rng("planar", seed, i).random((nodes, 2))
        g = nx.Graph()
        g.add_nodes_from(range(nodes))
        for simplex in Delaunay(pts).simplices:
            a, b, c = (int(v) for v in simplex)
            g.add_edges_from([(a, b), (b, c), (a, c)])
        out.append(g)
    return out


def ladder(count: int = 100, seed: int = 0, lengths: tuple[int, int] = (3, 10)) -> list[Any]:
    """Ladder graphs (2 x L) with L uniform in ``lengths``."""
    nx = require_networkx()
    return [
        nx.ladder_graph(int(_rng("ladder", seed, i).integers(lengths[0], lengths[1] + 1)))
        for i in range(count)
    ]


FAMILIES: dict[str, Callable[..., list[Any]]] = {
    "community_small": community_small,
    "grid": grid,
    "grid_small": grid_small,
    "sbm": sbm,
    "trees": trees,
    "planar": planar,
    "ladder": ladder,
}


def family(name: str, count: int | None = None, seed: int = 0) -> list[Any]:
    """The graphs of a named family (``count`` defaults to the paper's dataset size)."""
    key = name.replace("-", "_")
    if key == "ego_small":
        raise UserError(
            "ego_small cannot be built: it is made of ego nets of the Citeseer citation graph, "
            "which is not shipped with networkx and is never downloaded; use community_small, or "
            "pass your own graphs with read_graph_folder(...)"
        )
    if key not in FAMILIES:
        raise UserError(f"unknown graph family {name!r}; choose one of {sorted(FAMILIES)}")
    fn = FAMILIES[key]
    return fn(seed=seed) if count is None else fn(count=count, seed=seed)


def split(graphs: Sequence[Any], test_fraction: float = 0.2, seed: int = 42) -> tuple[list, list]:
    """(train, test): the first ``test_fraction`` of a shuffled list is the test split (GDSS)."""
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(graphs))
    n_test = int(test_fraction * len(graphs))
    shuffled = [graphs[int(i)] for i in order]
    return shuffled[n_test:], shuffled[:n_test]


# ---- molecules ------------------------------------------------------------------------------
def moses_file(split_name: str = "train") -> Path:
    """The path of MOSES's ``train`` / ``test`` SMILES inside the installed ``molsets`` wheel."""
    spec = importlib.util.find_spec("moses")  # never import moses: its __init__ needs fcd_torch
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "MOSES SMILES need the molsets wheel: pip install 'interpolant[graphs]' "
            "(or pip install molsets --no-deps)"
        )
    if split_name not in ("train", "test"):
        raise UserError(f"MOSES split must be 'train' or 'test', got {split_name!r}")
    path = Path(spec.submodule_search_locations[0]) / "dataset" / "data" / f"{split_name}.csv.gz"
    if not path.exists():
        raise MissingFileError(f"{path} is missing from the molsets installation")
    return path


def moses_smiles(split_name: str = "train", max_atoms: int = 12) -> list[str]:
    """MOSES SMILES with at most ``max_atoms`` heavy atoms (RDKit count), in file order.

    The default 12 gives 435 training and 48 test molecules; 9 (QM9-sized) gives only 37
    training molecules, too few to learn from."""
    import re

    chem = require_rdkit()
    with gzip.open(moses_file(split_name), "rt") as fh:
        lines = fh.read().split()[1:]  # first line is the header "SMILES"
    # A cheap upper bound on the heavy-atom count first: RDKit parses only the candidates.
    atom_token = re.compile(r"Cl|Br|\[[^\]]+\]|[BCNOSPFI]|[cnosp]")
    out = []
    for s in lines:
        if len(atom_token.findall(s)) <= max_atoms:
            mol = chem.MolFromSmiles(s)
            if mol is not None and mol.GetNumAtoms() <= max_atoms:
                out.append(s)
    return out


def read_smiles_file(path: str | Path) -> tuple[list[str], SmilesReport]:
    """SMILES from a text/CSV file (first column; a header ``smiles`` is skipped).

    Unparsable lines are skipped and counted in the report (with their line numbers).
    """
    chem = require_rdkit()
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"SMILES file {p} does not exist")
    report = SmilesReport()
    kept = []
    for line_no, raw in enumerate(p.read_text().splitlines(), start=1):
        s = raw.split(",")[0].split()[0] if raw.strip() else ""
        if not s or (line_no == 1 and s.lower() == "smiles"):
            continue
        report.total += 1
        if chem.MolFromSmiles(s) is None:
            report.unparsable.append((line_no, s))
            continue
        kept.append(s)
        report.kept += 1
    if not kept:
        raise UserError(f"{p}: no parsable SMILES ({report.summary()})")
    return kept, report


GRAPH_SUFFIXES = (".edgelist", ".edges", ".txt", ".graphml")


def read_graph_folder(path: str | Path, *, allow_self_loops: bool = False) -> list[Any]:
    """Every graph in a folder: edge lists (``u v`` per line; .edgelist/.edges/.txt) or GraphML.

    Directed GraphML is made undirected; self-loops are refused unless ``allow_self_loops``
    (then dropped), naming the file.
    """
    nx = require_networkx()
    root = Path(path)
    if not root.is_dir():
        raise MissingFileError(f"graph folder {root} does not exist")
    files = sorted(f for f in root.iterdir() if f.suffix.lower() in GRAPH_SUFFIXES)
    if not files:
        raise UserError(f"{root}: no graph files (looked for {', '.join(GRAPH_SUFFIXES)})")
    graphs = []
    for f in files:
        try:
            g = (
                nx.read_graphml(f)
                if f.suffix.lower() == ".graphml"
                else nx.read_edgelist(f, nodetype=str, data=False)
            )
        except Exception as err:  # networkx raises several parse error types
            raise UserError(f"{f}: cannot read it as a graph ({err})") from err
        g = nx.Graph(g)
        loops = nx.number_of_selfloops(g)
        if loops:
            if not allow_self_loops:
                raise UserError(
                    f"{f}: {loops} self-loop(s) (e.g. node {next(iter(nx.selfloop_edges(g)))[0]}); "
                    "remove them or pass allow_self_loops=True"
                )
            g.remove_edges_from(list(nx.selfloop_edges(g)))
        graphs.append(nx.convert_node_labels_to_integers(g))
    return graphs


def density(graphs: Sequence[Any]) -> float:
    """Edge density pooled over a set: sum |E| / sum n(n-1)/2 (for the matched-density ER)."""
    pairs = sum(g.number_of_nodes() * (g.number_of_nodes() - 1) / 2 for g in graphs)
    return sum(g.number_of_edges() for g in graphs) / max(pairs, 1.0)


def erdos_renyi_like(graphs: Sequence[Any], count: int, seed: int = 0) -> list[Any]:
    """The Erdos-Renyi baseline: node counts drawn from ``graphs``, p = their pooled density."""
    nx = require_networkx()
    p = density(graphs)
    sizes = [g.number_of_nodes() for g in graphs]
    out = []
    for i in range(count):
        rng = _rng("erdos_renyi", seed, i)
        n = sizes[int(rng.integers(len(sizes)))]
        out.append(nx.gnp_random_graph(n, p, seed=int(rng.integers(2**31))))
    return out


def max_nodes_of(graphs: Sequence[Any]) -> int:
    return int(max(g.number_of_nodes() for g in graphs))


__all__ = [
    "FAMILIES",
    "MOSES_AROMATIC_ATOMS",
    "MOSES_ATOMS",
    "community_graph",
    "community_small",
    "density",
    "erdos_renyi_like",
    "family",
    "grid",
    "grid_small",
    "ladder",
    "max_nodes_of",
    "moses_file",
    "moses_smiles",
    "planar",
    "read_graph_folder",
    "read_smiles_file",
    "sbm",
    "split",
    "trees",
]
