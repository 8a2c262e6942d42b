"""Training GDSS on a list of graphs (GDSS ``trainer.py``: Adam, weight decay 1e-4, gradient
norm clipped to 1, exponential learning-rate decay 0.999 per epoch; one epoch = one pass)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from ..randomness import Streams
from .convert import from_networkx
from .gdss import GDSS
from .types import GraphBatch


def train_gdss(
    data: GraphBatch | Sequence[Any],
    *,
    epochs: int = 300,
    batch_size: int = 128,
    lr: float = 1e-2,
    seed: int = 0,
    max_nodes: int | None = None,
    progress: bool = True,
    **model_options: Any,
) -> tuple[GDSS, list[float]]:
    """Train a :class:`GDSS` model; ``data`` is a :class:`GraphBatch` or networkx graphs (given
    one-hot degree features, GDSS's ``init: deg``). Returns the model and the loss per epoch."""
    batch = data if isinstance(data, GraphBatch) else from_networkx(data, max_nodes)
    torch.manual_seed(seed)  # network initialisation
    model = GDSS(batch.num_features, batch.max_nodes, molecule=batch.edge_types, **model_options)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.999)
    losses: list[float] = []
    count = 0
    for epoch in tqdm(range(epochs), desc="GDSS training", disable=not progress):
        order = Streams(seed, [epoch], "gdss-epoch-order").permutation(len(batch))[0]
        total = 0.0
        for start in range(0, len(batch), batch_size):
            rows = order[start : start + batch_size]
            part = batch[rows]
            index = torch.arange(count, count + len(part))
            count += len(part)
            t = Streams(seed, index, "gdss-train-t").uniform(()).float() * (1 - 1e-5) + 1e-5
            loss_x, loss_a = model.loss(part, t, Streams(seed, index, "gdss-train-noise"))
            opt.zero_grad()
            (loss_x + loss_a).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += float((loss_x + loss_a).detach()) * len(part)
        sched.step()
        losses.append(total / len(batch))
    return model.eval(), losses


__all__ = ["train_gdss"]
