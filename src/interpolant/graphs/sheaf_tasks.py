"""Node classification tasks for sheaf diffusion: contextual SBMs with controlled homophily, the
karate club, full-batch training, and the Dirichlet energy of the features against depth.

**Contextual SBM** (research note for seed 17): n nodes in C equal classes, expected degree k,
edge homophily h (the expected fraction of edges inside a class): p_in = k h / (n/C - 1),
p_out = k (1 - h) / (n - n/C), drawn by ``nx.stochastic_block_model``. Features are
mu_y + sigma N(0, I_F), class means mu_c ~ N(0, I_F) / sqrt(F) * snr: at low SNR the features
alone classify poorly and the graph must help, which it does only if the model can use
heterophilic edges. Splits 60/20/20. Every draw comes from ``derive_seed("sheaf-csbm-...",
seed)``.

**Karate club** (``nx.karate_club_graph``): 34 nodes, labels = the two clubs after the split,
features = one-hot node ids (the graph is the only signal). networkx's les Miserables and
Florentine families graphs carry no node labels, so they have no classification task here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..errors import UserError
from ..randomness import derive_seed
from .convert import require_networkx
from .sheaf import dirichlet_energy


@dataclass(frozen=True)
class NodeTask:
    """One graph with node features, labels and train / validation / test masks."""

    x: Tensor
    labels: Tensor
    index: Tensor
    train: Tensor
    val: Tensor
    test: Tensor
    homophily: float

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1


def edge_homophily(index: Tensor, labels: Tensor) -> float:
    """Fraction of (directed) edges whose ends share a label."""
    if index.shape[1] == 0:
        raise UserError("edge homophily: the graph has no edges")
    return float((labels[index[0]] == labels[index[1]]).double().mean())


def _splits(n: int, rng: np.random.Generator, fractions=(0.6, 0.2)) -> tuple[Tensor, ...]:
    order = torch.as_tensor(rng.permutation(n))
    a, b = int(fractions[0] * n), int((fractions[0] + fractions[1]) * n)
    masks = []
    for part in (order[:a], order[a:b], order[b:]):
        m = torch.zeros(n, dtype=torch.bool)
        m[part] = True
        masks.append(m)
    return tuple(masks)


def _directed(graph: Any) -> Tensor:
    edges = torch.as_tensor(list(graph.edges()), dtype=torch.long).reshape(-1, 2).T
    return torch.cat([edges, edges.flip(0)], dim=1)


def contextual_sbm(
    homophily: float,
    *,
    nodes: int = 400,
    classes: int = 4,
    degree: float = 8.0,
    features: int = 16,
    snr: float = 1.0,
    seed: int = 0,
) -> NodeTask:
    """A contextual SBM with expected edge homophily ``homophily`` (see the module docstring)."""
    if not 0.0 <= homophily <= 1.0:
        raise UserError(f"contextual_sbm: homophily must be in [0, 1], got {homophily}")
    if nodes % classes or nodes // classes < 2:
        raise UserError(f"contextual_sbm: {nodes} nodes do not split into {classes} equal classes")
    nx = require_networkx()
    size = nodes // classes
    p_in = degree * homophily / (size - 1)
    p_out = degree * (1 - homophily) / (nodes - size)
    if p_in > 1 or p_out > 1:
        raise UserError(f"contextual_sbm: degree {degree} is too large for {nodes} nodes")
    probs = [[p_in if i == j else p_out for j in range(classes)] for i in range(classes)]
    graph = nx.stochastic_block_model(
        [size] * classes, probs, seed=derive_seed("sheaf-csbm-graph", seed) % 2**32
    )
    labels = torch.arange(classes).repeat_interleave(size)
    rng = np.random.default_rng(derive_seed("sheaf-csbm-features", seed))
    means = rng.standard_normal((classes, features)) * snr / np.sqrt(features)
    x = means[labels.numpy()] + rng.standard_normal((nodes, features)) / np.sqrt(features)
    index = _directed(graph)
    train, val, test = _splits(nodes, np.random.default_rng(derive_seed("sheaf-csbm-split", seed)))
    return NodeTask(
        torch.as_tensor(x, dtype=torch.float32),
        labels,
        index,
        train,
        val,
        test,
        edge_homophily(index, labels),
    )


def karate_club(seed: int = 0) -> NodeTask:
    """Zachary's karate club: predict the club (``Mr. Hi`` / ``Officer``) from the graph."""
    nx = require_networkx()
    graph = nx.karate_club_graph()
    labels = torch.tensor([int(graph.nodes[v]["club"] != "Mr. Hi") for v in graph.nodes])
    index = _directed(graph)
    n = graph.number_of_nodes()
    train, val, test = _splits(n, np.random.default_rng(derive_seed("sheaf-karate-split", seed)))
    return NodeTask(torch.eye(n), labels, index, train, val, test, edge_homophily(index, labels))


@dataclass(frozen=True)
class FitResult:
    """Test accuracy at the epoch of best validation accuracy, and the final feature energy."""

    test_accuracy: float
    val_accuracy: float
    train_accuracy: float
    energy: float


def _accuracy(logits: Tensor, labels: Tensor, mask: Tensor) -> float:
    return float((logits[mask].argmax(-1) == labels[mask]).double().mean())


def fit_node_classifier(
    make_model: Callable[[], nn.Module],
    task: NodeTask,
    *,
    epochs: int = 200,
    lr: float = 0.02,
    weight_decay: float = 5e-3,
    seed: int = 0,
    progress: bool = False,
) -> FitResult:
    """Full-batch Adam on the training nodes (cross-entropy), model selected by validation
    accuracy. The network's initialisation and dropout use torch's generator seeded with
    ``derive_seed("sheaf-fit", seed)`` inside ``fork_rng`` (the caller's global state is kept)."""
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed("sheaf-fit", seed))
        model = make_model()
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        best: tuple[float, float, float] = (-1.0, 0.0, 0.0)
        for _ in tqdm(range(epochs), desc="node classification", disable=not progress):
            model.train()
            loss = nn.functional.cross_entropy(
                model(task.x, task.index)[task.train], task.labels[task.train]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            model.eval()
            with torch.no_grad():
                logits = model(task.x, task.index)
            val = _accuracy(logits, task.labels, task.val)
            if val > best[0]:
                best = (
                    val,
                    _accuracy(logits, task.labels, task.test),
                    _accuracy(logits, task.labels, task.train),
                )
        model.eval()
        with torch.no_grad():
            energy = feature_energy(model, task)
    return FitResult(best[1], best[0], best[2], energy)


def feature_energy(model: nn.Module, task: NodeTask) -> float:
    """Dirichlet energy tr(X^T Delta X)/||X||^2 of the model's last hidden features on its own
    Laplacian (NSD: the learnt sheaf; GCN: the trivial one). NaN for models without ``features``."""
    features = getattr(model, "features", None)
    if features is None:
        return float("nan")
    h, lap = features(task.x, task.index)
    return float(dirichlet_energy(lap, h))


__all__ = [
    "FitResult",
    "NodeTask",
    "contextual_sbm",
    "edge_homophily",
    "feature_energy",
    "fit_node_classifier",
    "karate_club",
]
