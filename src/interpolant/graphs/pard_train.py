"""Training and sampling PARD (see :mod:`.pard` for the maths).

Training covers every block of every graph each epoch: the (graph, block) examples of
:func:`~.pard.block_examples` are shuffled into minibatches, each with its own discrete time
t = k / N, k uniform in 1..N; the pairs touching the block are noised by q(x_t | x_0), earlier
blocks stay clean and later blocks are masked out. This is PARD's "batched sequential" layout;
its parallel layout (the graph padded to 2n nodes, one pass for all blocks) computes the same loss
with fewer passes on large graphs and is not implemented. The block-size predictor is trained in
the same steps (PARD's ``combine_training``) with a cross-entropy on |B_k| (0 = stop).

Sampling grows graphs block by block: draw |B_k| from the predictor, add that many nodes, draw
their pairs from the prior m, run N reverse steps x_s ~ p_theta(x_s | x_t) on those pairs, and
repeat until the predictor says stop or ``max_nodes`` is reached. Every draw comes from
:class:`~interpolant.randomness.Streams` with one stream per purpose and one row per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..errors import UserError
from ..randomness import Streams, derive_seed, inverse_cdf
from .pard import block_examples, kl_loss, marginal, node_marginal, q_t0, reverse_probs
from .pard_nets import BlockDenoiser, BlockSizePredictor


@dataclass
class PARD:
    """A trained PARD model: the denoiser, the size predictor and the settings they share.

    ``m`` is the edge-type marginal, ``m_nodes`` the node-type marginal (one class for plain
    graphs)."""

    denoiser: BlockDenoiser
    sizes: BlockSizePredictor
    m: Tensor
    max_hops: int
    steps: int
    max_nodes: int
    m_nodes: Tensor = field(default_factory=lambda: torch.ones(1, dtype=torch.float64))

    @property
    def node_classes(self) -> int:
        return int(self.m_nodes.shape[0])


def _noised(adj: Tensor, target: Tensor, t: Tensor, m: Tensor, u: Tensor) -> Tensor:
    """x_t on the target pairs (symmetric: the upper triangle's draw is mirrored)."""
    probs = q_t0(adj, t[:, None, None], m)
    xt = inverse_cdf(probs, u)
    xt = torch.triu(xt, 1) + torch.triu(xt, 1).transpose(1, 2)
    return torch.where(target, xt, adj)


def _noised_nodes(nodes: Tensor, new: Tensor, t: Tensor, m: Tensor, u: Tensor) -> Tensor:
    """x_t of the new block's node types; the other nodes stay clean."""
    xt = inverse_cdf(q_t0(nodes, t[:, None], m), u)
    return torch.where(new, xt, nodes)


def train_pard(
    graphs: Sequence[Any],
    *,
    max_hops: int = 1,
    steps: int = 20,
    max_nodes: int | None = None,
    epochs: int = 100,
    batch_size: int = 64,
    lr: float = 2e-3,
    channels: int = 32,
    layers: int = 3,
    ce_weight: float = 0.1,
    node_classes: int | None = None,
    edge_classes: int | None = None,
    valences: tuple[Sequence[float], Sequence[float]] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[PARD, list[float]]:
    """Train PARD; returns the model and the mean loss per epoch.

    ``graphs`` are networkx graphs (one node type, edges 0/1) or typed pairs (node types (n,),
    edge types (n, n)), e.g. :func:`~.pard.molecule_graphs`; ``node_classes`` / ``edge_classes``
    default to the largest type seen + 1 (at least 1 and 2). ``valences`` = (largest valence per
    node type, bond order per edge type), e.g. :func:`~.pard.molecule_valences`, gives both
    networks the valence features of :mod:`.pard_nets` (molecules); the class counts then default
    to the tables' lengths.
    """
    if steps < 1:
        raise UserError(f"train_pard: steps must be >= 1, got {steps}")
    if not graphs:
        raise UserError("train_pard: no training graphs")
    n_max = max_nodes or max(_num_nodes(g) for g in graphs)
    diff, size = block_examples(graphs, max_hops, n_max)
    final = size["size"] == 0  # one complete graph per training graph
    counts = size["visible"][final].sum(-1).tolist()
    if valences is not None:  # the tables name every type, seen in the data or not
        node_classes = len(valences[0]) if node_classes is None else node_classes
        edge_classes = len(valences[1]) if edge_classes is None else edge_classes
    c_edges = max(2, int(size["adj"].max()) + 1) if edge_classes is None else edge_classes
    c_nodes = max(1, int(size["nodes"].max()) + 1) if node_classes is None else node_classes
    m = marginal([a[:n, :n] for a, n in zip(size["adj"][final], counts, strict=True)], c_edges)
    m_nodes = node_marginal(
        [x[:n] for x, n in zip(size["nodes"][final], counts, strict=True)], c_nodes
    )
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed("pard-init", seed))
        vals, orders = valences if valences is not None else (None, None)
        denoiser = BlockDenoiser(c_edges, channels, layers, c_nodes, vals, orders)
        sizes = BlockSizePredictor(
            int(size["size"].max()), channels, max(1, layers - 1), c_edges, c_nodes, vals, orders
        )
    params = list(denoiser.parameters()) + list(sizes.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    losses: list[float] = []
    n_diff, n_size = len(diff["adj"]), len(size["adj"])
    seen = 0
    for epoch in tqdm(range(epochs), desc="PARD training", disable=not progress):
        order = Streams(seed, [epoch], "pard-epoch-order").permutation(n_diff)[0]
        size_order = Streams(seed, [epoch], "pard-size-order").permutation(n_size)[0]
        per = max(1, -(-n_size // max(1, -(-n_diff // batch_size))))
        total, batches = 0.0, 0
        for b, start in enumerate(range(0, n_diff, batch_size)):
            rows = order[start : start + batch_size]
            index = torch.arange(seen, seen + len(rows))
            seen += len(rows)
            k = (Streams(seed, index, "pard-train-step").uniform(()) * steps).long() + 1
            t, s = k.double() / steps, (k - 1).double() / steps
            adj, target = diff["adj"][rows], diff["target"][rows]
            nodes, new = diff["nodes"][rows], diff["new"][rows]
            u = Streams(seed, index, "pard-train-noise").uniform((n_max, n_max))
            xt = _noised(adj, target, t, m, u)
            u_nodes = Streams(seed, index, "pard-train-node-noise").uniform((n_max,))
            nodes_t = _noised_nodes(nodes, new, t, m_nodes, u_nodes)
            logits, node_logits = denoiser.denoise(
                xt, nodes_t, diff["visible"][rows], new, target, t
            )
            upper = target & torch.ones_like(target).triu(1)
            kl = kl_loss(logits.softmax(-1), adj, xt, t[:, None, None], s[:, None, None], m)
            ce = nn.functional.cross_entropy(logits[upper], adj[upper])
            loss_diff = kl[upper].mean() + ce_weight * ce
            if c_nodes > 1:  # one node type: the node diffusion is trivial
                kl_x = kl_loss(
                    node_logits.softmax(-1), nodes, nodes_t, t[:, None], s[:, None], m_nodes
                )
                ce_x = nn.functional.cross_entropy(node_logits[new], nodes[new])
                loss_diff = loss_diff + kl_x[new].mean() + ce_weight * ce_x
            srows = size_order[b * per : (b + 1) * per]
            loss_size = (
                nn.functional.cross_entropy(
                    sizes(size["adj"][srows], size["visible"][srows], size["nodes"][srows]),
                    size["size"][srows],
                )
                if len(srows)
                else torch.zeros(())
            )
            loss = loss_diff.float() + loss_size
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            total += float(loss.detach())
            batches += 1
        sched.step()
        losses.append(total / max(batches, 1))
    denoiser.eval()
    sizes.eval()
    return PARD(denoiser, sizes, m, max_hops, steps, n_max, m_nodes), losses


def _num_nodes(g: Any) -> int:
    return int(g[0].shape[0]) if isinstance(g, tuple) else int(g.number_of_nodes())


@dataclass(frozen=True)
class PARDSample:
    """Sampled graphs (dense, ``adj`` (B, N, N) edge types, ``nodes`` (B, N) node types and
    ``mask``), the blocks each one took, and the network evaluations of the batch (a block's N
    steps run while any graph is still growing)."""

    adj: Tensor
    mask: Tensor
    blocks: Tensor
    denoiser_nfe: int
    size_nfe: int
    steps: int
    nodes: Tensor | None = None

    @property
    def steps_per_graph(self) -> Tensor:
        """(B,) denoising steps spent on each graph: N x its number of blocks."""
        return self.blocks * self.steps

    def graphs(self) -> list[Any]:
        from .convert import require_networkx

        nx = require_networkx()
        out = []
        for a, mk in zip(self.adj, self.mask, strict=True):
            idx = mk.nonzero().flatten()
            out.append(nx.from_numpy_array((a[idx][:, idx] != 0).long().numpy()))
        return out

    def batch(self) -> Any:
        """The samples as a molecule-style :class:`~.types.GraphBatch`: one-hot node types in
        ``x`` and integer edge types in ``adj`` (``edge_types = True``)."""
        from .types import GraphBatch

        nodes = torch.zeros_like(self.mask, dtype=torch.long) if self.nodes is None else self.nodes
        classes = int(nodes.max()) + 1 if self.nodes is not None else 1
        x = nn.functional.one_hot(nodes, classes).to(torch.float32) * self.mask[..., None]
        return GraphBatch(x, self.adj.to(torch.float32), self.mask, edge_types=True)

    def molecule_batch(self, atoms: Sequence[str]) -> Any:
        """:meth:`batch` with the one-hot width padded up to the vocabulary ``atoms``."""
        b = self.batch()
        if b.num_features < len(atoms):
            pad = torch.zeros(*b.x.shape[:2], len(atoms) - b.num_features)
            b = type(b)(torch.cat([b.x, pad], -1), b.adj, b.mask, True)
        return b

    def smiles(self, atoms: Sequence[str], *, aromatic: bool = False) -> list[str | None]:
        """One SMILES per sample, built without any valency correction (None: RDKit sanitisation
        fails), with node type i = ``atoms[i]`` (``aromatic``: edge type 4 is aromatic)."""
        from .convert import to_smiles

        return to_smiles(self.molecule_batch(atoms), atoms, aromatic=aromatic)


@torch.no_grad()
def sample_pard(model: PARD, count: int, *, seed: int = 0, steps: int | None = None) -> PARDSample:
    """Draw ``count`` graphs block by block (``steps`` reverse steps per block, default the
    training N). Sample i depends on (seed, i) only."""
    n_max, steps = model.max_nodes, steps or model.steps
    adj = torch.zeros(count, n_max, n_max, dtype=torch.long)
    nodes = torch.zeros(count, n_max, dtype=torch.long)
    m_nodes = model.m_nodes
    filled = torch.zeros(count, dtype=torch.long)
    done = torch.zeros(count, dtype=torch.bool)
    blocks = torch.zeros(count, dtype=torch.long)
    ar = torch.arange(n_max)
    sizes_stream = Streams(seed, count, "pard-sample-size")
    prior_stream = Streams(seed, count, "pard-sample-prior")
    step_stream = Streams(seed, count, "pard-sample-step")
    node_prior_stream = Streams(seed, count, "pard-sample-node-prior")
    node_step_stream = Streams(seed, count, "pard-sample-node-step")
    den_nfe = size_nfe = 0
    while not bool(done.all()):
        visible = ar[None] < filled[:, None]
        probs = model.sizes(adj, visible, nodes).softmax(-1)
        size_nfe += 1
        draw = inverse_cdf(probs, sizes_stream.uniform(()))
        draw = torch.minimum(draw, n_max - filled)
        done |= draw == 0
        if model.max_hops == 0:
            done |= blocks > 0  # one-shot: the whole graph is one block
        draw = torch.where(done, torch.zeros_like(draw), draw)
        if bool(done.all()):
            break
        new = (ar[None] >= filled[:, None]) & (ar[None] < (filled + draw)[:, None])
        visible = visible | new
        eye = torch.eye(n_max, dtype=torch.bool)
        target = (
            visible[:, :, None] & visible[:, None, :] & ~eye & (new[:, :, None] | new[:, None, :])
        )
        u = prior_stream.uniform((n_max, n_max))
        x = inverse_cdf(model.m.expand(count, n_max, n_max, -1), u)
        x = torch.triu(x, 1) + torch.triu(x, 1).transpose(1, 2)
        state = torch.where(target, x, adj)
        x_nodes = inverse_cdf(m_nodes.expand(count, n_max, -1), node_prior_stream.uniform((n_max,)))
        state_nodes = torch.where(new, x_nodes, nodes)
        for k in range(steps, 0, -1):
            t = torch.full((count,), k / steps, dtype=torch.float64)
            logits, node_logits = model.denoiser.denoise(
                state, state_nodes, visible, new, target, t
            )
            p0, p0_nodes = logits.softmax(-1), node_logits.softmax(-1)
            den_nfe += 1
            if k > 1:
                s_time = t - 1 / steps
                probs = reverse_probs(p0, state, t[:, None, None], s_time[:, None, None], model.m)
                probs_nodes = reverse_probs(
                    p0_nodes, state_nodes, t[:, None], s_time[:, None], m_nodes
                )
            else:  # PARD takes p_theta(x_0) at the last step
                probs, probs_nodes = p0.double(), p0_nodes.double()
            u = step_stream.uniform((n_max, n_max))
            x = inverse_cdf(probs, u)
            x = torch.triu(x, 1) + torch.triu(x, 1).transpose(1, 2)
            state = torch.where(target, x, state)
            x_nodes = inverse_cdf(probs_nodes, node_step_stream.uniform((n_max,)))
            state_nodes = torch.where(new, x_nodes, state_nodes)
        adj = torch.where(done[:, None, None], adj, state)
        nodes = torch.where(done[:, None], nodes, state_nodes)
        filled = filled + draw
        blocks = blocks + (~done).long()
    mask = ar[None] < filled[:, None]
    nodes = nodes * mask
    return PARDSample(adj, mask, blocks, den_nfe, size_nfe, steps, nodes)


__all__ = ["PARD", "PARDSample", "sample_pard", "train_pard"]
