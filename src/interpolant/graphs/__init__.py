"""Graph generation: the dense graph type, conversions, data, metrics, GDSS (and PARD, sheaves).

``GraphBatch`` (x, adj, mask) in :mod:`.types` is the one graph type; :mod:`.convert` goes to
and from networkx / RDKit (the optional ``graphs`` extra), :mod:`.data` builds the synthetic
families and reads molecules and the user's files, :mod:`.metrics` holds the GraphRNN/GDSS MMDs
and validity/uniqueness/novelty, :mod:`.nspdk` the NSPDK MMD of molecules, :mod:`.gdss` the
system of SDEs (seed paper 6), :mod:`.pard` block-wise discrete diffusion with node and edge
types (seed paper 23).
"""

from __future__ import annotations

from .metrics import compute_mmd, graph_mmds, molecule_metrics, novelty, uniqueness
from .types import (
    GraphBatch,
    check_adjacency,
    degree_features,
    pair_mask,
    permute_nodes,
    random_permutations,
    symmetrize_upper,
)

__all__ = [
    "GraphBatch",
    "check_adjacency",
    "compute_mmd",
    "degree_features",
    "graph_mmds",
    "molecule_metrics",
    "novelty",
    "pair_mask",
    "permute_nodes",
    "random_permutations",
    "symmetrize_upper",
    "uniqueness",
]
