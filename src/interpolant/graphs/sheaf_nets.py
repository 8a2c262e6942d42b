"""Neural Sheaf Diffusion networks (seed paper 17, sec. 5; official ``models/disc_models.py``).

The discrete NSD layer on node signals X in R^{(n d) x f} (stalk dimension d, f channels):

    X_{l+1} = (1 + tanh(eps_l)) (.) X_l - ELU( Delta_{F(X_l)} (I_n (x) W1_l) X_l W2_l )     (eq. 9)

with W1 (d x d, initialised to I, "left weights"), W2 (f x f, orthogonal init, "right weights"),
eps_l in R^d, and the restriction maps learnt from the features: for directed edge (v, u),
F_{v<|{v,u}} = family(tanh(V [x_v || x_u])) with V a linear map without bias (eq. 10,
``LocalConcatSheafLearner``). As in the official default (``nonlinear = False``) one sheaf is
learnt from the first layer's input and reused by every layer.

:class:`NeuralSheafDiffusion` is the node classifier (input dropout, Linear(in, f d), ELU,
reshape to (n, d, f), the layers, Linear back, logits). :class:`GCN` (Kipf-Welling, the trivial
sheaf) and :class:`MLP` are the baselines; :class:`SheafBackbone` is the equivariant node
encoder offered to the graph denoisers (dense padded batches in, (B, N, F) out).
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError
from .sheaf import (
    KINDS,
    SheafLaplacian,
    edge_index,
    num_map_parameters,
    restriction_maps,
    sheaf_laplacian,
    trivial_maps,
)


class SheafLearner(nn.Module):
    """Restriction maps from node features: F_e = family(tanh(V [h_v || h_u])) (eq. 10)."""

    def __init__(self, in_features: int, d: int, kind: str, orthogonal: str = "householder"):
        super().__init__()
        if kind not in KINDS:
            raise UserError(f"unknown sheaf kind {kind!r}; choose one of {list(KINDS)}")
        if kind == "orthogonal" and d < 2:
            raise UserError("orthogonal (O(d) bundle) sheaves need stalk dimension d >= 2")
        self.d, self.kind, self.orthogonal = d, kind, orthogonal
        self.linear = nn.Linear(2 * in_features, num_map_parameters(kind, d), bias=False)

    def forward(self, h: Tensor, index: Tensor) -> Tensor:
        """(E, d, d) maps of the directed edges ``index`` from node features h (n, in)."""
        params = torch.tanh(self.linear(torch.cat([h[index[0]], h[index[1]]], dim=-1)))
        return restriction_maps(params, self.kind, self.d, self.orthogonal)


class SheafDiffusionLayer(nn.Module):
    """One discrete NSD step (eq. 9) given the Laplacian."""

    def __init__(self, d: int, channels: int, dropout: float = 0.0):
        super().__init__()
        self.left = nn.Linear(d, d, bias=False)
        self.right = nn.Linear(channels, channels, bias=False)
        nn.init.eye_(self.left.weight)
        nn.init.orthogonal_(self.right.weight)
        self.eps = nn.Parameter(torch.zeros(d, 1))
        self.dropout = dropout

    def forward(self, x: Tensor, lap: SheafLaplacian) -> Tensor:
        """x (n, d, f) -> (n, d, f)."""
        y = F.dropout(x, self.dropout, self.training)
        y = self.left(y.transpose(-1, -2)).transpose(-1, -2)  # (I_n (x) W1) X
        y = self.right(y)  # X W2
        return (1 + torch.tanh(self.eps)) * x - F.elu(lap.apply(y))


class NeuralSheafDiffusion(nn.Module):
    """The discrete NSD node classifier (Diag-, Bundle- or Gen-NSD by ``kind``)."""

    def __init__(
        self,
        in_features: int,
        classes: int,
        *,
        d: int = 3,
        kind: str = "orthogonal",
        layers: int = 4,
        hidden: int = 20,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        normalisation: str = "augmented",
        orthogonal: str = "householder",
        low_pass: bool = False,
    ):
        super().__init__()
        if d < 1 or layers < 1 or hidden < 1:
            raise UserError(f"NSD needs d, layers, hidden >= 1, got {d}, {layers}, {hidden}")
        self.learnt_d, self.low_pass = d, low_pass
        self.d = d + int(low_pass)
        self.hidden, self.kind, self.normalisation = hidden, kind, normalisation
        self.dropout, self.input_dropout = dropout, input_dropout
        self.lin_in = nn.Linear(in_features, hidden * self.d)
        self.learner = SheafLearner(hidden * self.d, d, kind, orthogonal)
        self.layers = nn.ModuleList(
            SheafDiffusionLayer(self.d, hidden, dropout) for _ in range(layers)
        )
        self.lin_out = nn.Linear(hidden * self.d, classes)

    def laplacian(self, h: Tensor, index: Tensor) -> SheafLaplacian:
        """The learnt normalised sheaf Laplacian for hidden features h (n, d, f); with
        ``low_pass`` one more stalk dimension carries the fixed trivial sheaf (the official
        ``add_lp``), so the model contains GCN's diffusion."""
        maps = self.learner(h.reshape(h.shape[0], -1), index)
        if self.low_pass:
            maps = torch.nn.functional.pad(maps, (0, 1, 0, 1))
            maps[:, -1, -1] = 1.0
        return sheaf_laplacian(
            index, maps, h.shape[0], normalisation=self.normalisation, kind=self.kind
        )

    def features(self, x: Tensor, index: Tensor) -> tuple[Tensor, SheafLaplacian]:
        """The last layer's stalk signals (n, d, f) and the Laplacian they diffused on."""
        x = F.dropout(x, self.input_dropout, self.training)
        h = F.elu(self.lin_in(x))
        h = F.dropout(h, self.dropout, self.training).reshape(x.shape[0], self.d, self.hidden)
        lap = self.laplacian(h, index)
        for layer in self.layers:
            h = layer(h, lap)
        return h, lap

    def forward(self, x: Tensor, index: Tensor) -> Tensor:
        """Class logits (n, classes) of node features x (n, in) on directed edges ``index``."""
        h, _ = self.features(x, index)
        return self.lin_out(h.reshape(x.shape[0], -1))


def gcn_laplacian(index: Tensor, num_nodes: int, dtype: torch.dtype = torch.float32):
    """The trivial sheaf's augmented Laplacian, I - (D + I)^-1/2 (A + I) (D + I)^-1/2."""
    return sheaf_laplacian(
        index, trivial_maps(index.shape[1], 1, dtype), num_nodes, kind="diagonal"
    )


class GCN(nn.Module):
    """Kipf-Welling GCN: H_{l+1} = ELU((I - Delta_0) H_l W_l), Delta_0 the trivial sheaf's
    augmented Laplacian (so (I - Delta_0) = (D + I)^-1/2 (A + I) (D + I)^-1/2)."""

    def __init__(
        self,
        in_features: int,
        classes: int,
        *,
        layers: int = 2,
        hidden: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        if layers < 1:
            raise UserError(f"GCN needs layers >= 1, got {layers}")
        dims = [in_features] + [hidden] * layers
        self.convs = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(dims))
        self.lin_out = nn.Linear(hidden, classes)
        self.dropout = dropout

    def features(self, x: Tensor, index: Tensor) -> tuple[Tensor, SheafLaplacian]:
        """The last hidden layer (n, 1, hidden) and the trivial Laplacian."""
        lap = gcn_laplacian(index, x.shape[0], x.dtype)
        h = x
        for conv in self.convs:
            h = F.dropout(h, self.dropout, self.training)
            z = conv(h)[:, None, :]
            h = F.elu(z - lap.apply(z))[:, 0, :]
        return h[:, None, :], lap

    def forward(self, x: Tensor, index: Tensor) -> Tensor:
        h, _ = self.features(x, index)
        return self.lin_out(h[:, 0, :])


class MLP(nn.Module):
    """Graph-blind baseline: ``layers`` hidden ELU layers on the node features alone."""

    def __init__(
        self,
        in_features: int,
        classes: int,
        *,
        layers: int = 2,
        hidden: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        dims = [in_features] + [hidden] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(dims))
        self.lin_out = nn.Linear(hidden, classes)
        self.dropout = dropout

    def forward(self, x: Tensor, index: Tensor) -> Tensor:
        del index  # the graph is ignored
        h = x
        for lin in self.hidden:
            h = F.elu(lin(F.dropout(h, self.dropout, self.training)))
        return self.lin_out(h)


class SheafBackbone(nn.Module):
    """A permutation-equivariant NSD node encoder for dense padded batches (graph denoisers).

    ``forward(x (B, N, F), adj (B, N, N), mask (B, N)) -> (B, N, out)``; the sheaf is learnt from
    the features and relearnt every layer (``nonlinear``), padded nodes stay zero. Relabelling
    the nodes (P X, P A P^T, P m) permutes the output rows the same way.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        d: int = 2,
        kind: str = "orthogonal",
        layers: int = 2,
        hidden: int = 16,
    ):
        super().__init__()
        self.d, self.hidden = d, hidden
        self.lin_in = nn.Linear(in_features, hidden * d)
        self.learners = nn.ModuleList(SheafLearner(hidden * d, d, kind) for _ in range(layers))
        self.layers = nn.ModuleList(SheafDiffusionLayer(d, hidden) for _ in range(layers))
        self.lin_out = nn.Linear(hidden * d, out_features)
        self.kind = kind

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        b, n, _ = x.shape
        index = edge_index(adj, mask)
        m = mask.reshape(-1, 1).to(x.dtype)
        h = F.elu(self.lin_in(x.reshape(b * n, -1))) * m
        h = h.reshape(b * n, self.d, self.hidden)
        for learner, layer in zip(self.learners, self.layers, strict=True):
            maps = learner(h.reshape(b * n, -1), index)
            lap = sheaf_laplacian(index, maps, b * n, kind=self.kind)
            h = layer(h, lap) * m[:, :, None]
        return (self.lin_out(h.reshape(b * n, -1)) * m).reshape(b, n, -1)


__all__ = [
    "GCN",
    "MLP",
    "NeuralSheafDiffusion",
    "SheafBackbone",
    "SheafDiffusionLayer",
    "SheafLearner",
    "gcn_laplacian",
]
