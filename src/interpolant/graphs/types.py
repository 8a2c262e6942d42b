"""The dense batched graph type and permutation helpers.

A batch of ``B`` graphs padded to ``N = max_nodes`` nodes is three tensors:

* ``x``    (B, N, F) node features (one-hot atom types, one-hot degrees, or any real features);
* ``adj``  (B, N, N) symmetric adjacency with a zero diagonal. Its entries are edge weights in
  {0, 1} for plain graphs, or integer *edge types* (bond orders 1, 2, 3 for molecules; 0 means
  "no edge") when ``edge_types`` is set;
* ``mask`` (B, N) booleans, True for real nodes. Padded nodes have zero features and no edges.

Everything in :mod:`interpolant.graphs` (paths, networks, metrics, conversions) takes and returns
this type; the other graph methods (sheaf layers, PARD) read ``x``, ``adj`` and ``mask`` directly.
A permutation ``perm`` of the nodes acts as ``x -> x[perm]``, ``adj -> adj[perm][:, perm]``
(``P X`` and ``P A P^T`` with ``P[i, perm[i]] = 1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError, WrongTypeError
from ..randomness import Streams

#: Absolute tolerance for the symmetry check of a real-valued adjacency.
SYMMETRY_ATOL = 1e-6


def check_adjacency(
    adj: Tensor, *, where: str = "adjacency", allow_self_loops: bool = False
) -> None:
    """Raise :class:`UserError` unless ``adj`` (..., N, N) is square, symmetric and loop-free.

    ``where`` names the offending input in the message (a file, a graph index).
    """
    if not isinstance(adj, Tensor):
        raise WrongTypeError(f"{where}: expected a torch.Tensor, got {type(adj).__name__}")
    if adj.dim() < 2 or adj.shape[-1] != adj.shape[-2]:
        raise UserError(f"{where}: adjacency must be square (..., N, N), got {tuple(adj.shape)}")
    diff = (adj - adj.transpose(-1, -2)).abs()
    if diff.numel() and float(diff.max()) > SYMMETRY_ATOL:
        idx = (diff > SYMMETRY_ATOL).nonzero()[0].tolist()
        raise UserError(
            f"{where}: adjacency is not symmetric (entry {idx[-2:]} differs from its transpose "
            f"by {float(diff.max()):.3g}); undirected graph models need A = A^T — symmetrise "
            "it, e.g. (A + A^T) / 2 or max(A, A^T)"
        )
    if not allow_self_loops:
        diag = adj.diagonal(dim1=-2, dim2=-1)
        if diag.numel() and bool((diag != 0).any()):
            node = int((diag != 0).nonzero()[0][-1])
            raise UserError(
                f"{where}: self-loop at node {node}; these models take simple graphs — remove "
                "self-loops (nx.Graph.remove_edges_from(nx.selfloop_edges(G)))"
            )


def symmetrize_upper(upper: Tensor) -> Tensor:
    """The symmetric matrix with zero diagonal whose strict upper triangle is that of ``upper``.

    Used for symmetric noise (GDSS sec. 3.1: draw the upper triangle, mirror it), so each
    unordered pair {i, j} gets one value.
    """
    triu = torch.triu(upper, diagonal=1)
    return triu + triu.transpose(-1, -2)


def pair_mask(mask: Tensor) -> Tensor:
    """(B, N, N) float mask of the off-diagonal pairs of real nodes: m_i m_j (1 - delta_ij)."""
    m = mask.to(torch.float32)
    pm = m[..., :, None] * m[..., None, :]
    eye = torch.eye(mask.shape[-1], dtype=pm.dtype, device=mask.device)
    return pm * (1.0 - eye)


def permute_nodes(x: Tensor, adj: Tensor, perm: Tensor) -> tuple[Tensor, Tensor]:
    """(P X, P A P^T) for a batch: ``perm`` is (N,) or (B, N) with x' [b, i] = x[b, perm[b, i]]."""
    if perm.dim() == 1:
        return x[:, perm], adj[:, perm][:, :, perm]
    rows = torch.arange(x.shape[0], device=x.device)[:, None]
    xp = x[rows, perm]
    ap = adj[rows[:, :, None], perm[:, :, None], perm[:, None, :]]
    return xp, ap


def random_permutations(n: int, count: int, *, seed: int) -> Tensor:
    """(count, n) node permutations from the ``graph-permutation`` stream, one per sample index."""
    return Streams(seed, torch.arange(count), "graph-permutation").permutation(n)


@dataclass(frozen=True)
class GraphBatch:
    """A batch of dense padded graphs: ``x`` (B, N, F), ``adj`` (B, N, N), ``mask`` (B, N) bool.

    ``edge_types`` is True when ``adj`` holds integer edge types (bond orders) instead of 0/1
    weights. Construction checks shapes, symmetry, the zero diagonal and that padded nodes are
    empty; it raises :class:`UserError` naming what is wrong.
    """

    x: Tensor
    adj: Tensor
    mask: Tensor
    edge_types: bool = False

    def __post_init__(self) -> None:
        if self.x.dim() != 3 or self.adj.dim() != 3 or self.mask.dim() != 2:
            raise UserError(
                "GraphBatch needs x (B, N, F), adj (B, N, N), mask (B, N); got "
                f"{tuple(self.x.shape)}, {tuple(self.adj.shape)}, {tuple(self.mask.shape)}"
            )
        b, n = self.mask.shape
        if self.x.shape[:2] != (b, n) or self.adj.shape != (b, n, n):
            raise UserError(
                f"GraphBatch: shapes disagree: x {tuple(self.x.shape)}, adj "
                f"{tuple(self.adj.shape)}, mask {tuple(self.mask.shape)}"
            )
        if self.mask.dtype != torch.bool:
            object.__setattr__(self, "mask", self.mask.bool())
        check_adjacency(self.adj, where="GraphBatch.adj")
        pad = ~self.mask
        if bool(self.adj[pad].ne(0).any()) or bool(self.x[pad].ne(0).any()):
            raise UserError("GraphBatch: padded nodes (mask False) must have no features and edges")

    # ---- sizes -------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def max_nodes(self) -> int:
        return int(self.mask.shape[1])

    @property
    def num_features(self) -> int:
        return int(self.x.shape[2])

    @property
    def num_nodes(self) -> Tensor:
        """(B,) number of real nodes per graph."""
        return self.mask.sum(dim=1)

    def pair_mask(self) -> Tensor:
        """(B, N, N) mask of the off-diagonal pairs of real nodes (see :func:`pair_mask`)."""
        return pair_mask(self.mask)

    # ---- transforms --------------------------------------------------------------------------
    def permute(self, perm: Tensor) -> GraphBatch:
        """The same graphs with their nodes relabelled: (P X, P A P^T, P m)."""
        x, adj = permute_nodes(self.x, self.adj, perm)
        mask = self.mask[:, perm] if perm.dim() == 1 else self.mask.gather(1, perm)
        return GraphBatch(x, adj, mask, self.edge_types)

    def to(self, device: torch.device | str) -> GraphBatch:
        return GraphBatch(
            self.x.to(device), self.adj.to(device), self.mask.to(device), self.edge_types
        )

    def __getitem__(self, index: int | slice | Tensor | Sequence[int]) -> GraphBatch:
        if isinstance(index, int):
            index = slice(index, index + 1)
        idx = index if isinstance(index, slice) else torch.as_tensor(index)
        return GraphBatch(self.x[idx], self.adj[idx], self.mask[idx], self.edge_types)

    def __len__(self) -> int:
        return self.batch_size

    @staticmethod
    def cat(batches: Sequence[GraphBatch]) -> GraphBatch:
        """Concatenate batches with the same ``max_nodes`` and feature width."""
        if not batches:
            raise UserError("GraphBatch.cat: nothing to concatenate")
        return GraphBatch(
            torch.cat([b.x for b in batches]),
            torch.cat([b.adj for b in batches]),
            torch.cat([b.mask for b in batches]),
            batches[0].edge_types,
        )


def degree_features(adj: Tensor, mask: Tensor, max_degree: int) -> Tensor:
    """One-hot node degrees, clipped to ``max_degree - 1`` (GDSS's ``init: deg`` features).

    Returns (B, N, max_degree); padded nodes get zero rows.
    """
    deg = (adj != 0).sum(dim=-1).clamp_max(max_degree - 1).long()
    onehot = torch.nn.functional.one_hot(deg, max_degree).to(torch.float32)
    return onehot * mask[..., None].to(torch.float32)


def check_max_nodes(sizes: Sequence[int], max_nodes: int, *, where: str = "graphs") -> None:
    """Raise :class:`UserError` naming the first graph with more than ``max_nodes`` nodes."""
    for i, n in enumerate(sizes):
        if n > max_nodes:
            raise UserError(
                f"{where}: graph {i} has {n} nodes, more than max_nodes = {max_nodes}; raise "
                "max_nodes (the model's size) or filter the data"
            )


__all__ = [
    "SYMMETRY_ATOL",
    "GraphBatch",
    "check_adjacency",
    "check_max_nodes",
    "degree_features",
    "pair_mask",
    "permute_nodes",
    "random_permutations",
    "symmetrize_upper",
]
