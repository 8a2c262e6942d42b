"""PARD's networks, dense and small: a PPGN-style pair network (Maron et al. 2019; PARD's
"higher-order graph transformer" without the transformer part) and the block-size predictor.

Pair features h (B, N, N, c) start from the one-hot edge state, a flag for the pairs being
diffused, the two nodes' roles (earlier block / new block) and the time. Each layer forms, per
channel, the matrix product of two pair MLPs, summed only over *visible* nodes (the causal mask:
blocks after the current one do not exist; PARD's restricted matrix multiplication), and mixes
it back: h <- LN(h + MLP([h, (M1 h)(M2 h) / n_visible])). The product is what lifts the network
beyond message passing (3-WL power), which PARD needs to tell apart nodes of one block. All
operations commute with relabelling the nodes, so the networks are permutation equivariant
(edge logits) and invariant (block sizes).

Molecules (``valences`` given): every visible node also gets DiGress's extra molecular features
(``ExtraMolecularFeatures``: valency and charge) computed on the current noisy state: its
valency v_i = sum_j order(x_ij) over visible j, its free valence c_i = maxval(type_i) - v_i and
the excess max(0, -c_i). A sum of bond orders over a row is hard for a small pair network to
learn from few molecules, and the commonest invalid samples are atoms one bond order too many
("valence C+1"), which these features expose directly. PARD's own network adds cycle and
spectral features instead; this is a stated difference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import UserError


def _mlp(d_in: int, d_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.SiLU(), nn.Linear(hidden, d_out))


class PPGNLayer(nn.Module):
    """One masked PPGN block on pair features."""

    def __init__(self, channels: int):
        super().__init__()
        self.m1 = nn.Linear(channels, channels)
        self.m2 = nn.Linear(channels, channels)
        self.mix = _mlp(2 * channels, channels, channels)
        self.norm = nn.LayerNorm(channels)

    def forward(self, h: Tensor, pair: Tensor, visible: Tensor) -> Tensor:
        """h (B, N, N, c); pair (B, N, N, 1) float mask of visible pairs (diagonal included)."""
        a = (self.m1(h) * pair).permute(0, 3, 1, 2)
        b = (self.m2(h) * pair).permute(0, 3, 1, 2)
        count = visible.sum(-1).clamp_min(1).to(h.dtype)[:, None, None, None]
        prod = (a @ b / count).permute(0, 2, 3, 1)
        return self.norm(h + self.mix(torch.cat([h, prod], dim=-1))) * pair


#: Valence features per node in molecule mode: valency, free valence, excess.
VALENCE_FEATURES = 3


def valence_features(
    state: Tensor, nodes: Tensor, visible: Tensor, valences: Tensor, bond_orders: Tensor
) -> Tensor:
    """(B, N, 3) valency v_i / 4, free valence (maxval_i - v_i) / 4 and excess max(0, v_i -
    maxval_i) of every visible node (zero elsewhere) on the current edge state (B, N, N)."""
    vis = visible.to(torch.float32)
    n = state.shape[-1]
    off = ~torch.eye(n, dtype=torch.bool, device=state.device)
    orders = bond_orders.to(torch.float32)[state.long()] * off * vis[:, None, :]
    valency = orders.sum(-1)
    free = valences.to(torch.float32)[nodes.long()] - valency
    feats = torch.stack([valency / 4, free / 4, (-free).clamp_min(0.0)], dim=-1)
    return feats * vis[..., None]


class PairNetwork(nn.Module):
    """The shared trunk: pair embedding plus ``layers`` PPGN layers.

    ``valences`` (one maximum valence per node type) and ``bond_orders`` (one order per edge
    type, 0 for no edge) switch on the molecule features of the module doc."""

    valences: Tensor
    bond_orders: Tensor

    def __init__(
        self,
        edge_classes: int,
        channels: int = 32,
        layers: int = 3,
        node_classes: int = 1,
        valences: Sequence[float] | None = None,
        bond_orders: Sequence[float] | None = None,
    ):
        super().__init__()
        if (valences is None) != (bond_orders is None):
            raise UserError("PairNetwork: give both valences and bond_orders, or neither")
        if valences is not None and bond_orders is not None:
            if len(valences) != node_classes or len(bond_orders) != edge_classes:
                raise UserError(
                    f"PairNetwork: {len(valences)} valences for {node_classes} node types and "
                    f"{len(bond_orders)} bond orders for {edge_classes} edge types; give one "
                    "per type"
                )
            self.register_buffer("valences", torch.tensor(valences, dtype=torch.float32))
            self.register_buffer("bond_orders", torch.tensor(bond_orders, dtype=torch.float32))
        self.extra = 0 if valences is None else VALENCE_FEATURES
        # edge one-hot, target flag, node roles, types and valence features of i and j (visible
        # old / new, one-hot type), time, diagonal.
        node_dim = 2 + node_classes + self.extra
        self.embed = nn.Linear(edge_classes + 1 + 2 * node_dim + 1 + 1, channels)
        self.layers = nn.ModuleList(PPGNLayer(channels) for _ in range(layers))
        self.edge_classes, self.node_classes = edge_classes, node_classes

    def forward(
        self,
        state: Tensor,
        visible: Tensor,
        new: Tensor,
        target: Tensor,
        t: Tensor,
        nodes: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Pair features (B, N, N, c) and the visible-pair mask (B, N, N, 1); ``nodes`` (B, N)
        are the current node types (None: all type 0)."""
        n = state.shape[-1]
        eye = torch.eye(n, dtype=torch.bool, device=state.device)
        vis = visible.to(torch.float32)
        pair = (vis[:, :, None] * vis[:, None, :])[..., None]
        old = visible & ~new
        if nodes is None:
            nodes = torch.zeros_like(visible, dtype=torch.long)
        types = nn.functional.one_hot(nodes.long(), self.node_classes).to(torch.float32)
        role = torch.cat([torch.stack([old, new], dim=-1).to(torch.float32), types], -1)
        if self.extra:
            role = torch.cat(
                [role, valence_features(state, nodes, visible, self.valences, self.bond_orders)],
                -1,
            )
        role = role * vis[..., None]  # (B, N, 2 + node classes + extra)
        onehot = nn.functional.one_hot(state.long(), self.edge_classes).to(torch.float32)
        onehot = onehot * (~eye)[None, :, :, None]
        feats = torch.cat(
            [
                onehot,
                target[..., None].to(torch.float32),
                role[:, :, None, :].expand(-1, -1, n, -1),
                role[:, None, :, :].expand(-1, n, -1, -1),
                t.to(torch.float32)[:, None, None, None].expand(-1, n, n, 1),
                eye[None, :, :, None].expand(state.shape[0], -1, -1, -1).to(torch.float32),
            ],
            dim=-1,
        )
        h = self.embed(feats) * pair
        for layer in self.layers:
            h = layer(h, pair, visible)
        return h, pair


class BlockDenoiser(nn.Module):
    """p_theta(x_0 | x_t) of the edge types of the pairs touching the new block (symmetric
    logits (B, N, N, C)) and of the new nodes' types (logits (B, N, C_X), from the pair
    features' diagonal and visible row mean)."""

    def __init__(
        self,
        edge_classes: int = 2,
        channels: int = 32,
        layers: int = 3,
        node_classes: int = 1,
        valences: Sequence[float] | None = None,
        bond_orders: Sequence[float] | None = None,
    ):
        super().__init__()
        self.trunk = PairNetwork(
            edge_classes, channels, layers, node_classes, valences, bond_orders
        )
        self.head = nn.Linear(channels, edge_classes)
        self.node_head = _mlp(2 * channels, node_classes, channels)

    def denoise(
        self,
        state: Tensor,
        nodes: Tensor,
        visible: Tensor,
        new: Tensor,
        target: Tensor,
        t: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """(edge logits (B, N, N, C), node logits (B, N, C_X))."""
        h, _ = self.trunk(state, visible, new, target, t, nodes)
        diag = h.diagonal(dim1=1, dim2=2).transpose(1, 2)  # (B, N, c)
        row = h.sum(2) / visible.sum(-1).clamp_min(1).to(h.dtype)[:, None, None]
        node_logits = self.node_head(torch.cat([diag, row], -1))
        h = h + h.transpose(1, 2)
        return self.head(h), node_logits

    def forward(
        self, state: Tensor, visible: Tensor, new: Tensor, target: Tensor, t: Tensor
    ) -> Tensor:
        """Edge logits only, for graphs with one node type."""
        nodes = torch.zeros_like(visible, dtype=torch.long)
        return self.denoise(state, nodes, visible, new, target, t)[0]


class BlockSizePredictor(nn.Module):
    """p(|B_k| | B_<k): logits over sizes 0..max_size (0 = stop) from the clean prefix."""

    def __init__(
        self,
        max_size: int,
        channels: int = 32,
        layers: int = 2,
        edge_classes: int = 2,
        node_classes: int = 1,
        valences: Sequence[float] | None = None,
        bond_orders: Sequence[float] | None = None,
    ):
        super().__init__()
        self.trunk = PairNetwork(
            edge_classes, channels, layers, node_classes, valences, bond_orders
        )
        self.head = _mlp(2 * channels + 1, max_size + 1, channels)
        self.max_size = max_size

    def forward(self, state: Tensor, visible: Tensor, nodes: Tensor | None = None) -> Tensor:
        b, n = visible.shape
        none = torch.zeros_like(visible)
        zeros_t = torch.zeros(b, dtype=torch.float32, device=state.device)
        h, pair = self.trunk(
            state, visible, none, torch.zeros_like(state, dtype=torch.bool), zeros_t, nodes
        )
        count = pair.sum((1, 2)).clamp_min(1.0)
        eye = torch.eye(n, dtype=h.dtype, device=h.device)[None, :, :, None]
        diag = (h * eye).sum((1, 2)) / visible.sum(-1, keepdim=True).clamp_min(1)
        pooled = torch.cat([h.sum((1, 2)) / count, diag, visible.sum(-1, keepdim=True) / n], -1)
        return self.head(pooled)


__all__ = [
    "VALENCE_FEATURES",
    "BlockDenoiser",
    "BlockSizePredictor",
    "PPGNLayer",
    "PairNetwork",
    "valence_features",
]
