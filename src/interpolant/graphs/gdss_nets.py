"""GDSS's score networks (Jo et al. 2022, sec. 3.3; ``harryjo97/GDSS`` ``models/``), dense.

* :class:`ScoreNetworkX` — a stack of dense GCN layers (tanh), the input and every layer's output
  concatenated, then a 3-layer MLP back to the feature width: s_X(X, A) (eq. 8).
* :class:`ScoreNetworkA` — "graph multi-head attention" over the adjacency powers
  [A, A^2, ..., A^{c_init}]: each layer runs, per channel, Q, K, V = GCN(X, A_c),
  attention tanh(Q K^T / sqrt(d)) averaged over heads and symmetrised as the new channel; an MLP
  mixes the channels; a final MLP over all layers' channels gives s_A(X, A) (eq. 9), symmetric,
  zero on the diagonal and on padded nodes.

Both are permutation equivariant (dense GCN and attention commute with P X, P A P^T; the MLPs act
per node or per pair), and, as in GDSS, neither takes t: the noise level is read off the input.
The networks predict -sigma(t) * score (the noise), see :mod:`.gdss`.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mask_nodes(x: Tensor, mask: Tensor) -> Tensor:
    """Zero the rows of padded nodes: x (B, N, F), mask (B, N)."""
    return x * mask[..., None].to(x.dtype)


def mask_pairs(adj: Tensor, mask: Tensor) -> Tensor:
    """Zero the rows and columns of padded nodes: adj (B, [C,] N, N)."""
    m = mask.to(adj.dtype)
    if adj.dim() == 4:
        return adj * m[:, None, :, None] * m[:, None, None, :]
    return adj * m[:, :, None] * m[:, None, :]


class DenseGCN(nn.Module):
    """Kipf-Welling GCN on a dense adjacency: D^-1/2 (A + I) D^-1/2 X W + b (PyG DenseGCNConv)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        n = adj.shape[-1]
        a = adj.clone()
        idx = torch.arange(n, device=adj.device)
        a[..., idx, idx] = 1.0  # self-loops
        d = a.sum(-1).clamp_min(1.0).rsqrt()
        a = d[..., :, None] * a * d[..., None, :]
        return a @ (x @ self.weight) + self.bias


class MLP(nn.Module):
    """``layers`` linear maps with an activation between them (GDSS ``models/layers.py::MLP``)."""

    def __init__(
        self, layers: int, in_dim: int, hidden: int, out_dim: int, act: str = "elu"
    ) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.act = F.elu if act == "elu" else torch.tanh

    def forward(self, x: Tensor) -> Tensor:
        for i, lin in enumerate(self.linears):
            x = lin(x)
            if i < len(self.linears) - 1:
                x = self.act(x)
        return x


class ScoreNetworkX(nn.Module):
    """GCN score network for node features (GDSS defaults: depth 3, nhid 32 on community)."""

    def __init__(self, features: int, depth: int = 3, hidden: int = 32) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            DenseGCN(features if i == 0 else hidden, hidden) for i in range(depth)
        )
        fdim = features + depth * hidden
        self.final = MLP(3, fdim, 2 * fdim, features)

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        hs = [x]
        for conv in self.convs:
            x = torch.tanh(conv(x, adj))
            hs.append(x)
        return mask_nodes(self.final(torch.cat(hs, dim=-1)), mask)


class GraphAttention(nn.Module):
    """One channel of GDSS's attention: V and a symmetric attention map from GCN queries/keys."""

    def __init__(self, in_dim: int, attn_dim: int, out_dim: int, heads: int) -> None:
        super().__init__()
        self.q, self.k = DenseGCN(in_dim, attn_dim), DenseGCN(in_dim, attn_dim)
        self.v = DenseGCN(in_dim, out_dim)
        self.heads, self.out_dim = heads, out_dim

    def forward(self, x: Tensor, adj: Tensor) -> tuple[Tensor, Tensor]:
        b, n, _ = x.shape
        q = self.q(x, adj).view(b, n, self.heads, -1).transpose(1, 2)  # (B, H, N, d)
        k = self.k(x, adj).view(b, n, self.heads, -1).transpose(1, 2)
        att = torch.tanh(q @ k.transpose(-1, -2) / math.sqrt(self.out_dim)).mean(1)
        return self.v(x, adj), (att + att.transpose(-1, -2)) / 2


class AttentionLayer(nn.Module):
    """Per-channel attention, then MLPs mixing channels of X and of the adjacency stack."""

    def __init__(
        self,
        linears: int,
        in_dim: int,
        attn_dim: int,
        out_dim: int,
        channels_in: int,
        channels_out: int,
        heads: int,
    ) -> None:
        super().__init__()
        self.attn = nn.ModuleList(
            GraphAttention(in_dim, attn_dim, out_dim, heads) for _ in range(channels_in)
        )
        hidden = 2 * max(channels_in, channels_out)
        self.mlp = MLP(linears, 2 * channels_in, hidden, channels_out)
        self.multi_channel = MLP(2, channels_in * out_dim, hidden, out_dim)

    def forward(self, x: Tensor, adjc: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        outs = [att(x, adjc[:, c]) for c, att in enumerate(self.attn)]
        x_out = torch.tanh(
            mask_nodes(self.multi_channel(torch.cat([o[0] for o in outs], -1)), mask)
        )
        maps = torch.stack([o[1] for o in outs], dim=-1)  # (B, N, N, C)
        pair_in = torch.cat([maps, adjc.permute(0, 2, 3, 1)], dim=-1)
        new = self.mlp(pair_in).permute(0, 3, 1, 2)
        return x_out, mask_pairs(new + new.transpose(-1, -2), mask)


def adjacency_powers(adj: Tensor, count: int) -> Tensor:
    """(B, count, N, N): A, A^2, ..., A^count (GDSS ``pow_tensor``)."""
    powers, cur = [adj], adj
    for _ in range(count - 1):
        cur = cur @ adj
        powers.append(cur)
    return torch.stack(powers, dim=1)


class ScoreNetworkA(nn.Module):
    """Attention score network for the adjacency (GDSS community-small defaults)."""

    def __init__(
        self,
        features: int,
        layers: int = 6,
        hidden: int = 32,
        attn_dim: int = 32,
        linears: int = 2,
        c_init: int = 2,
        c_hid: int = 8,
        c_final: int = 4,
        heads: int = 4,
    ) -> None:
        super().__init__()
        self.c_init = c_init
        blocks = []
        for i in range(layers):
            c_in = c_init if i == 0 else c_hid
            c_out = c_final if i == layers - 1 else c_hid
            blocks.append(
                AttentionLayer(
                    linears,
                    features if i == 0 else hidden,
                    hidden if i == 0 else attn_dim,
                    hidden,
                    c_in,
                    c_out,
                    heads,
                )
            )
        self.layers = nn.ModuleList(blocks)
        fdim = c_hid * (layers - 1) + c_final + c_init
        self.final = MLP(3, fdim, 2 * fdim, 1)

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        adjc = adjacency_powers(adj, self.c_init)
        stack = [adjc]
        for layer in self.layers:
            x, adjc = layer(x, adjc, mask)
            stack.append(adjc)
        out = self.final(torch.cat(stack, dim=1).permute(0, 2, 3, 1)).squeeze(-1)
        eye = torch.eye(adj.shape[-1], dtype=out.dtype, device=out.device)
        out = (out + out.transpose(-1, -2)) / 2 * (1 - eye)
        return mask_pairs(out, mask)


__all__ = [
    "MLP",
    "AttentionLayer",
    "DenseGCN",
    "GraphAttention",
    "ScoreNetworkA",
    "ScoreNetworkX",
    "adjacency_powers",
    "mask_nodes",
    "mask_pairs",
]
