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
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..errors import UserError
from ..randomness import Streams, derive_seed, inverse_cdf
from .pard import block_examples, kl_loss, marginal, q_t0, reverse_probs
from .pard_nets import BlockDenoiser, BlockSizePredictor


@dataclass
class PARD:
    """A trained PARD model: the denoiser, the size predictor and the settings they share."""

    denoiser: BlockDenoiser
    sizes: BlockSizePredictor
    m: Tensor
    max_hops: int
    steps: int
    max_nodes: int


def _noised(adj: Tensor, target: Tensor, t: Tensor, m: Tensor, u: Tensor) -> Tensor:
    """x_t on the target pairs (symmetric: the upper triangle's draw is mirrored)."""
    probs = q_t0(adj, t[:, None, None], m)
    xt = inverse_cdf(probs, u)
    xt = torch.triu(xt, 1) + torch.triu(xt, 1).transpose(1, 2)
    return torch.where(target, xt, adj)


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
    seed: int = 0,
    progress: bool = True,
) -> tuple[PARD, list[float]]:
    """Train PARD on networkx graphs; returns the model and the mean loss per epoch."""
    if steps < 1:
        raise UserError(f"train_pard: steps must be >= 1, got {steps}")
    n_max = max_nodes or max(g.number_of_nodes() for g in graphs)
    diff, size = block_examples(graphs, max_hops, n_max)
    m = marginal(
        [
            a[: g.number_of_nodes(), : g.number_of_nodes()]
            for a, g in zip(size["adj"][size["size"] == 0], graphs, strict=True)
        ]
    )
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed("pard-init", seed))
        denoiser = BlockDenoiser(2, channels, layers)
        sizes = BlockSizePredictor(int(size["size"].max()), channels, max(1, layers - 1))
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
            u = Streams(seed, index, "pard-train-noise").uniform((n_max, n_max))
            xt = _noised(adj, target, t, m, u)
            logits = denoiser(xt, diff["visible"][rows], diff["new"][rows], target, t)
            p0 = logits.softmax(-1)
            upper = target & torch.ones_like(target).triu(1)
            kl = kl_loss(p0, adj, xt, t[:, None, None], s[:, None, None], m)
            ce = nn.functional.cross_entropy(logits[upper], adj[upper])
            loss_diff = kl[upper].mean() + ce_weight * ce
            srows = size_order[b * per : (b + 1) * per]
            loss_size = (
                nn.functional.cross_entropy(
                    sizes(size["adj"][srows], size["visible"][srows]), size["size"][srows]
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
    return PARD(denoiser, sizes, m, max_hops, steps, n_max), losses


@dataclass(frozen=True)
class PARDSample:
    """Sampled graphs (dense, ``adj`` (B, N, N) and ``mask``), the blocks each one took, and the
    network evaluations of the batch (a block's N steps run while any graph is still growing)."""

    adj: Tensor
    mask: Tensor
    blocks: Tensor
    denoiser_nfe: int
    size_nfe: int
    steps: int

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
            out.append(nx.from_numpy_array(a[idx][:, idx].numpy()))
        return out


@torch.no_grad()
def sample_pard(model: PARD, count: int, *, seed: int = 0, steps: int | None = None) -> PARDSample:
    """Draw ``count`` graphs block by block (``steps`` reverse steps per block, default the
    training N). Sample i depends on (seed, i) only."""
    n_max, steps = model.max_nodes, steps or model.steps
    adj = torch.zeros(count, n_max, n_max, dtype=torch.long)
    filled = torch.zeros(count, dtype=torch.long)
    done = torch.zeros(count, dtype=torch.bool)
    blocks = torch.zeros(count, dtype=torch.long)
    ar = torch.arange(n_max)
    sizes_stream = Streams(seed, count, "pard-sample-size")
    prior_stream = Streams(seed, count, "pard-sample-prior")
    step_stream = Streams(seed, count, "pard-sample-step")
    den_nfe = size_nfe = 0
    while not bool(done.all()):
        visible = ar[None] < filled[:, None]
        probs = model.sizes(adj, visible).softmax(-1)
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
        for k in range(steps, 0, -1):
            t = torch.full((count,), k / steps, dtype=torch.float64)
            p0 = model.denoiser(state, visible, new, target, t).softmax(-1)
            den_nfe += 1
            if k > 1:
                probs = reverse_probs(
                    p0, state, t[:, None, None], t[:, None, None] - 1 / steps, model.m
                )
            else:
                probs = p0.double()  # PARD takes p_theta(x_0) at the last step
            u = step_stream.uniform((n_max, n_max))
            x = inverse_cdf(probs, u)
            x = torch.triu(x, 1) + torch.triu(x, 1).transpose(1, 2)
            state = torch.where(target, x, state)
        adj = torch.where(done[:, None, None], adj, state)
        filled = filled + draw
        blocks = blocks + (~done).long()
    mask = ar[None] < filled[:, None]
    return PARDSample(adj, mask, blocks, den_nfe, size_nfe, steps)


__all__ = ["PARD", "PARDSample", "sample_pard", "train_pard"]
