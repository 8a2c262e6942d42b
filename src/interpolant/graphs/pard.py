"""PARD: permutation-invariant autoregressive diffusion for graphs (seed paper 23; Zhao, Ding,
Akoglu, NeurIPS 2024; ``LingxiaoShawn/Pard``).

**The unique partial order** (paper sec. 3.1; ``pard/parallel/transform.py``). On the graph of
the not-yet-assigned nodes compute, for every node, the higher-order degrees
x_1, ..., x_h with x_0 = 1 and x_{k+1} = x_k + A x_k (walk counts of (I + A)^k, as
``compute_higher_order_degrees``, whose scatter adds into x); the nodes whose vector
(x_1, ..., x_h) is lexicographically smallest form the next block and are deleted with their
edges. Reversing the peel order puts the densest core first (block 0). Ties share a block, so the
blocks are a function of the graph alone: relabelling the nodes relabels the blocks' members and
nothing else. ``max_hops = 0`` puts every node into one block (one-shot diffusion). We compare
the vectors exactly; the official code encodes them as sum_k x_k n^(h-k), which is the same order
while the counts stay below n.

**The factorisation** p(G) = prod_k p(|B_k| | B_<k) p(B_k | B_<k) (eq. 3): a block-size predictor
(size 0 = stop), and one discrete diffusion shared by all blocks over the edge types of every
pair touching the new block (new-new and new-old; class 0 = no edge), the earlier blocks fixed.

**The discrete diffusion** (USD3 notation, ``pard/diffusion.py``): q(x_t | x_0) = abar_t
delta_{x_0} + (1 - abar_t) m with m the training marginal of the edge types and abar the cosine
schedule abar_t = cos(pi/2 (t + a)/(1 + a)) / cos(pi/2 a/(1 + a)), a = 0.008 (PARD takes no
square; it is ``paths.VPCosine().alpha``). With N steps per block, t = k / N, and
q(x_t | x_s) = (abar_t / abar_s) delta + (1 - abar_t / abar_s) m, the posterior is

    q(x_s | x_t, x_0) ∝ q(x_t | x_s) q(x_s | x_0),       p_theta(x_s | x_t) =
        sum_{x_0} q(x_s | x_t, x_0) p_theta(x_0 | x_t).

The loss is the VLB term KL(q(x_s | x_t, x_0) || p_theta(x_s | x_t)) plus ``ce_weight`` times the
cross-entropy of x_0 (PARD's ``ce_coeff``); sampling takes p_theta(x_0 | x_t) at the last step.

**Node types** (molecules: atoms). The new block's node types diffuse with the same schedule and
the same number of steps as its edges, towards the node-type marginal m_X; the network predicts
p_theta(x_0) for both and the loss adds the node terms (PARD's ``Diffusion`` over ``x`` and
``edge_attr``). Plain graphs have one node type, whose diffusion is trivial. The blocks come from
the structure alone (bond orders are ignored by the degree peeling), as in the official code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError
from ..paths.gaussian import VPCosine

_SCHEDULE = VPCosine()


# ---- the partial order ----------------------------------------------------------------------
def block_ids(adj: Tensor | np.ndarray, max_hops: int = 1) -> Tensor:
    """(n,) block of every node of one graph (0 = the first block generated)."""
    a = np.asarray(adj.detach().cpu() if isinstance(adj, Tensor) else adj) != 0
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise UserError(f"block_ids: adjacency must be (n, n), got {a.shape}")
    if (a != a.T).any():
        raise UserError("block_ids: adjacency is not symmetric")
    if np.diag(a).any():
        raise UserError("block_ids: self-loops are not allowed")
    if max_hops < 0:
        raise UserError(f"block_ids: max_hops must be >= 0, got {max_hops}")
    n = a.shape[0]
    if max_hops == 0 or n == 0:
        return torch.zeros(n, dtype=torch.long)
    peel = np.full(n, -1)
    remaining = np.ones(n, dtype=bool)
    a = a.astype(np.int64)
    step = 0
    while remaining.any():
        sub = a * remaining[:, None] * remaining[None, :]
        x = np.ones(n, dtype=object)  # exact integers: walk counts grow fast
        candidates = remaining.copy()
        for _ in range(max_hops):
            x = x + sub.astype(object) @ x
            best = min(x[candidates])
            candidates &= x == best
        peel[candidates] = step
        remaining &= ~candidates
        step += 1
    return torch.as_tensor(peel.max() - peel, dtype=torch.long)


def order_by_blocks(adj: Tensor, max_hops: int = 1) -> tuple[Tensor, Tensor]:
    """The graph with nodes sorted by block (stable) and the sorted block ids."""
    blocks = block_ids(adj, max_hops)
    perm = torch.argsort(blocks, stable=True)
    return adj[perm][:, perm], blocks[perm]


# ---- the discrete diffusion -----------------------------------------------------------------
def alpha_bar(t: Tensor) -> Tensor:
    """PARD's cosine abar_t (the probability that an entry is still clean), abar_0 = 1."""
    return _SCHEDULE.alpha(t.to(torch.float64)).clamp(1e-10, 1.0)


def marginal(adjs: Sequence[Tensor], classes: int = 2) -> Tensor:
    """The edge-type marginal m over all ordered pairs of distinct nodes (PARD
    ``get_node_edge_marginal_distribution``)."""
    counts = torch.zeros(classes, dtype=torch.float64)
    for a in adjs:
        n = a.shape[0]
        off = ~torch.eye(n, dtype=torch.bool)
        counts += torch.bincount(a[off].long(), minlength=classes).to(torch.float64)
    if counts.sum() == 0:
        raise UserError("marginal: the graphs have no node pairs")
    return counts / counts.sum()


def q_t0(x0: Tensor, t: Tensor, m: Tensor) -> Tensor:
    """q(x_t | x_0) (..., C) for classes x0 (...) and times t broadcastable to x0."""
    ab = alpha_bar(t)[..., None]
    onehot = torch.nn.functional.one_hot(x0.long(), m.shape[0]).to(torch.float64)
    return ab * onehot + (1 - ab) * m.to(torch.float64)


def posterior(xt: Tensor, t: Tensor, s: Tensor, m: Tensor) -> Tensor:
    """q(x_s | x_t, x_0 = i) for every clean class i: (..., C_i, C_s), each row sums to 1.

    q(x_s = j | x_t = k, x_0 = i) ∝ [a_ts delta_jk + (1 - a_ts) m_k] [a_s delta_ij + (1 - a_s) m_j]
    with a_ts = abar_t / abar_s and a_s = abar_s.
    """
    c = m.shape[0]
    m = m.to(torch.float64)
    a_s = alpha_bar(s)[..., None, None]
    a_ts = (alpha_bar(t) / alpha_bar(s))[..., None, None]
    eye = torch.eye(c, dtype=torch.float64)
    onehot_t = torch.nn.functional.one_hot(xt.long(), c).to(torch.float64)[..., None, :]
    forward = a_ts * onehot_t + (1 - a_ts) * m[xt.long()][..., None, None]  # q(x_t | x_s = j)
    prior = a_s * eye + (1 - a_s) * m  # q(x_s = j | x_0 = i), rows i
    joint = forward * prior
    return joint / joint.sum(-1, keepdim=True)


def reverse_probs(p0: Tensor, xt: Tensor, t: Tensor, s: Tensor, m: Tensor) -> Tensor:
    """p_theta(x_s | x_t) = sum_i q(x_s | x_t, x_0 = i) p_theta(x_0 = i | x_t) (..., C)."""
    return (p0.to(torch.float64)[..., :, None] * posterior(xt, t, s, m)).sum(-2)


def kl_loss(p0: Tensor, x0: Tensor, xt: Tensor, t: Tensor, s: Tensor, m: Tensor) -> Tensor:
    """KL(q(x_s | x_t, x_0) || p_theta(x_s | x_t)) per entry (...)."""
    q = posterior(xt, t, s, m)
    q_true = q.gather(-2, x0.long()[..., None, None].expand(*x0.shape, 1, q.shape[-1]))[..., 0, :]
    p = reverse_probs(p0, xt, t, s, m)
    return (q_true * (q_true.clamp_min(1e-30).log() - p.clamp_min(1e-30).log())).sum(-1)


# ---- training examples: one per block --------------------------------------------------------
TypedGraph = tuple[Tensor, Tensor]


def typed_graph(g: Any) -> TypedGraph:
    """(node types (n,), edge types (n, n)) of a networkx graph (one node type, edges 0/1) or of
    an already typed pair (returned as long tensors)."""
    if isinstance(g, tuple):
        nodes, adj = g
        return torch.as_tensor(nodes, dtype=torch.long), torch.as_tensor(adj, dtype=torch.long)
    from .convert import require_networkx

    nx = require_networkx()
    adj = torch.as_tensor(nx.to_numpy_array(g, weight=None) != 0, dtype=torch.long)
    return torch.zeros(adj.shape[0], dtype=torch.long), adj


def molecule_graphs(
    smiles: Sequence[str], atoms: Sequence[str], max_atoms: int, *, aromatic: bool = False
) -> list[TypedGraph]:
    """Molecules as typed graphs: atom index into ``atoms`` per node and bond type per pair (0
    none, 1, 2, 3 kekulised orders; with ``aromatic`` also 4 aromatic, PARD's MOSES setting),
    without hydrogens."""
    from .convert import from_smiles

    batch, _ = from_smiles(smiles, atoms=atoms, max_atoms=max_atoms, aromatic=aromatic)
    out = []
    for b in range(batch.batch_size):
        n = int(batch.mask[b].sum())
        out.append((batch.x[b, :n].argmax(-1), batch.adj[b, :n, :n].round().long()))
    return out


def molecule_valences(
    atoms: Sequence[str], *, aromatic: bool = False
) -> tuple[list[float], list[float]]:
    """(largest valence per atom type, bond order per edge type) for the networks' valence
    features: RDKit's neutral maxima (``convert.MAX_VALENCE``, else RDKit's periodic table;
    [nH] as N) and orders 0, 1, 2, 3 (and 1.5 for the aromatic type 4, DiGress's convention)."""
    from .convert import AROMATIC_NH, MAX_VALENCE, require_rdkit

    table = require_rdkit().GetPeriodicTable()
    valences = []
    for a in atoms:
        sym = "N" if a == AROMATIC_NH else a
        if sym in MAX_VALENCE:
            valences.append(float(MAX_VALENCE[sym]))
            continue
        try:
            allowed = max(table.GetValenceList(sym))
        except RuntimeError:  # RDKit: not an element symbol
            allowed = -1
        if allowed < 0:
            raise UserError(
                f"molecule_valences: no valence known for atom type {a!r}; use element "
                f"symbols such as {sorted(MAX_VALENCE)}"
            )
        valences.append(float(allowed))
    return valences, [0.0, 1.0, 2.0, 3.0] + ([1.5] if aromatic else [])


def node_marginal(nodes: Sequence[Tensor], classes: int) -> Tensor:
    """The node-type marginal over all real nodes of the training graphs."""
    counts = torch.zeros(classes, dtype=torch.float64)
    for x in nodes:
        counts += torch.bincount(x.long(), minlength=classes).to(torch.float64)
    if counts.sum() == 0:
        raise UserError("node_marginal: the graphs have no nodes")
    return counts / counts.sum()


def block_examples(
    graphs: Sequence[Any], max_hops: int, max_nodes: int
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Every (graph, block) pair of the training set, for training all blocks at once.

    ``graphs`` are networkx graphs or typed pairs (node types (n,), edge types (n, n)); blocks
    come from the structure alone (edge types ignored, as PARD's ``ToParallelBlocks``).
    Diffusion examples, one per block k of each graph (nodes sorted by block): ``adj`` (M, N, N)
    the clean edge types, ``nodes`` (M, N) the clean node types, ``visible`` (M, N) the nodes of
    blocks <= k (the causal mask: later blocks do not exist yet), ``target`` (M, N, N) the pairs
    touching block k (the ones diffused) and ``new`` (M, N) block k's nodes (whose types are
    diffused). Size examples, one per k = 0..K of each graph: ``adj``, ``nodes``, ``visible`` =
    blocks < k and ``size`` = |B_k| (0 for k = K: stop).
    """
    keys = ("adj", "nodes", "visible", "target", "new")
    diff: dict[str, list[Tensor]] = {k: [] for k in keys}
    size: dict[str, list[Tensor]] = {"adj": [], "nodes": [], "visible": [], "size": []}
    eye = torch.eye(max_nodes, dtype=torch.bool)
    for i, g in enumerate(graphs):
        x, a = typed_graph(g)
        n = int(a.shape[0])
        if n > max_nodes:
            raise UserError(f"PARD: graph {i} has {n} nodes, more than max_nodes = {max_nodes}")
        blocks = block_ids(a, max_hops)
        perm = torch.argsort(blocks, stable=True)
        a, x, blocks = a[perm][:, perm], x[perm], blocks[perm]
        full = torch.zeros(max_nodes, max_nodes, dtype=torch.long)
        full[:n, :n] = a
        types = torch.zeros(max_nodes, dtype=torch.long)
        types[:n] = x
        bid = torch.full((max_nodes,), -1, dtype=torch.long)
        bid[:n] = blocks
        count = int(blocks.max()) + 1 if n else 0
        for k in range(count + 1):
            size["adj"].append(full)
            size["nodes"].append(types)
            size["visible"].append((bid >= 0) & (bid < k))
            size["size"].append(torch.tensor(int((bid == k).sum())))
            if k == count:
                break
            visible, new = (bid >= 0) & (bid <= k), bid == k
            pair = visible[:, None] & visible[None, :] & ~eye
            diff["adj"].append(full)
            diff["nodes"].append(types)
            diff["visible"].append(visible)
            diff["target"].append(pair & (new[:, None] | new[None, :]))
            diff["new"].append(new)
    return (
        {k: torch.stack(v) for k, v in diff.items()},
        {k: torch.stack(v) for k, v in size.items()},
    )


__all__ = [
    "alpha_bar",
    "block_examples",
    "block_ids",
    "kl_loss",
    "marginal",
    "molecule_graphs",
    "molecule_valences",
    "node_marginal",
    "order_by_blocks",
    "posterior",
    "q_t0",
    "reverse_probs",
    "typed_graph",
]
