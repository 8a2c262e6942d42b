"""Cellular sheaves on graphs: restriction maps, sheaf Laplacians and Neural Sheaf Diffusion.

Seed paper 17 (Bodnar, Di Giovanni, Chamberlain, Lio, Bronstein, NeurIPS 2022;
``twitter-research/neural-sheaf-diffusion``). A sheaf on G gives every node and edge a stalk
R^d and every incidence v <| e a restriction map F_{v<|e} in R^{d x d}. The coboundary is
(delta x)_e = F_{v<|e} x_v - F_{u<|e} x_u and the sheaf Laplacian L_F = delta^T delta has blocks

    L_vv = sum_{e ~ v} F_{v<|e}^T F_{v<|e},        L_vu = -F_{v<|e}^T F_{u<|e}   (e = {v, u})

(paper sec. 2, Def. 2.3). The normalised Laplacian (Def. 2.4) is Delta_F = D^-1/2 L_F D^-1/2 with
D = blockdiag(L_vv); the official code uses the augmented D + I (``augmented``, the default).
Both are congruent to L_F, so they are symmetric PSD with ker of the same dimension, the space
of global sections H^0(G; F). Heat diffusion dX/dt = -Delta_F X (eq. 1) tends to the projection
onto that kernel; for the trivial sheaf (d = 1, F = 1) the kernel is the constants per component
(oversmoothing), and the augmented trivial Laplacian is exactly I - GCN's propagation matrix
(D + I)^-1/2 (A + I) (D + I)^-1/2.

The Laplacian is stored sparsely as the blocks of the directed edges: both orientations (v, u)
and (u, v) of each edge are present, and the map of directed edge e = (v, u) is F_{v<|{v,u}}.
Batches of padded dense graphs become one block-diagonal graph (:func:`edge_index`).

Restriction map families (paper sec. 4, "Sheaf classes"): diagonal (d parameters per incidence),
orthogonal O(d) bundles (d(d-1)/2 parameters; Householder as in the official code, or the matrix
exponential of a skew matrix, which gives SO(d)) and general (d^2 parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError
from .types import check_adjacency

#: Restriction-map families, in increasing order of generality.
KINDS: tuple[str, ...] = ("diagonal", "orthogonal", "general")
#: Normalisations of the Laplacian: (D + I)^-1/2 L (D + I)^-1/2, D^-1/2 L D^-1/2, or L itself.
NORMALISATIONS: tuple[str, ...] = ("augmented", "symmetric", "none")
#: Parametrisations of orthogonal maps.
ORTHOGONAL_MAPS: tuple[str, ...] = ("householder", "matrix_exp")


def edge_index(adj: Tensor, mask: Tensor | None = None) -> Tensor:
    """(2, E) directed edges (v, u), both orientations, of a dense adjacency.

    ``adj`` is (N, N) or a batch (B, N, N) with ``mask`` (B, N); node b * N + i of the result is
    node i of graph b (a block-diagonal graph). Self-loops and padded nodes are rejected / dropped.
    """
    check_adjacency(adj, where="sheaf edge_index")
    a = adj if adj.dim() == 3 else adj[None]
    if mask is not None:
        m = mask.to(a.dtype)
        a = a * m[:, :, None] * m[:, None, :]
    b, v, u = (a != 0).nonzero(as_tuple=True)
    n = a.shape[-1]
    return torch.stack([b * n + v, b * n + u])


def reverse_edges(index: Tensor, num_nodes: int) -> Tensor:
    """``rev`` with index[:, rev[e]] = (u, v) for every directed edge e = (v, u)."""
    key = index[0] * num_nodes + index[1]
    order = torch.argsort(key)
    sorted_key = key[order]
    rkey = index[1] * num_nodes + index[0]
    pos = torch.searchsorted(sorted_key, rkey).clamp_max(len(key) - 1)
    if bool((sorted_key[pos] != rkey).any()):
        raise UserError("sheaf Laplacian: the edge list must hold both orientations of each edge")
    return order[pos]


# ---- restriction maps -----------------------------------------------------------------------
def num_map_parameters(kind: str, d: int) -> int:
    """Parameters per incidence: d (diagonal), d(d-1)/2 (orthogonal), d^2 (general)."""
    if kind == "diagonal":
        return d
    if kind == "orthogonal":
        return d * (d - 1) // 2
    if kind == "general":
        return d * d
    raise UserError(f"unknown sheaf kind {kind!r}; choose one of {list(KINDS)}")


def orthogonal_maps(params: Tensor, d: int, method: str = "householder") -> Tensor:
    """(E, d, d) orthogonal matrices from (E, d(d-1)/2) parameters.

    ``householder``: the strictly lower triangle holds Householder vectors v_k (unit k-th entry),
    Q = prod_k (I - 2 v_k v_k^T / |v_k|^2) (LAPACK orgqr, as ``torch_householder_orgqr`` in the
    official code; det Q = (-1)^d). ``matrix_exp``: Q = exp(S - S^T), S the strict lower triangle
    (SO(d)).
    """
    if params.shape[-1] != d * (d - 1) // 2:
        raise UserError(
            f"orthogonal maps in dimension {d} need {d * (d - 1) // 2} parameters, "
            f"got {params.shape[-1]}"
        )
    rows, cols = torch.tril_indices(d, d, offset=-1, device=params.device)
    low = params.new_zeros(params.shape[0], d, d)
    low[:, rows, cols] = params
    if method == "matrix_exp":
        return torch.matrix_exp(low - low.transpose(-1, -2))
    if method != "householder":
        raise UserError(f"unknown orthogonal map {method!r}; choose one of {list(ORTHOGONAL_MAPS)}")
    vectors = low + torch.eye(d, dtype=params.dtype, device=params.device)
    tau = 2.0 / (vectors**2).sum(dim=-2)
    return torch.linalg.householder_product(vectors, tau)


def restriction_maps(params: Tensor, kind: str, d: int, orthogonal: str = "householder") -> Tensor:
    """(E, d, d) restriction maps of one family from their (E, P) parameters."""
    if params.shape[-1] != num_map_parameters(kind, d):
        raise UserError(
            f"{kind} maps in dimension {d} need {num_map_parameters(kind, d)} parameters per "
            f"incidence, got {params.shape[-1]}"
        )
    if kind == "diagonal":
        return torch.diag_embed(params)
    if kind == "orthogonal":
        return orthogonal_maps(params, d, orthogonal)
    return params.reshape(-1, d, d)


def trivial_maps(num_edges: int, d: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Identity restriction maps: the constant sheaf (d = 1 gives the graph Laplacian)."""
    return torch.eye(d, dtype=dtype).expand(num_edges, d, d).clone()


def gauge_maps(index: Tensor, frames: Tensor) -> Tensor:
    """The flat O(d) bundle F_{v<|e} = O_v of node frames ``frames`` (n, d, d): every transport
    O_v^T O_u composes to the identity around cycles, so dim H^0 = d on a connected graph."""
    return frames[index[0]]


# ---- the Laplacian --------------------------------------------------------------------------
@dataclass(frozen=True)
class SheafLaplacian:
    """A sheaf Laplacian in block form: ``diag`` (n, d, d) blocks L_vv, ``off`` (E, d, d) blocks
    L_vu of the directed edges ``index`` (2, E) = (v, u)."""

    index: Tensor
    off: Tensor
    diag: Tensor

    @property
    def num_nodes(self) -> int:
        return int(self.diag.shape[0])

    @property
    def d(self) -> int:
        return int(self.diag.shape[-1])

    def apply(self, x: Tensor) -> Tensor:
        """Delta x for node signals x (n, d, f): (Delta x)_v = L_vv x_v + sum_u L_vu x_u."""
        # Broadcast products rather than many tiny batched matmuls (d is 1..5): faster on CPU.
        out = (self.diag[..., None] * x[:, None, :, :]).sum(-2)
        msg = (self.off[..., None] * x[self.index[1]][:, None, :, :]).sum(-2)
        return out.index_add(0, self.index[0], msg)

    def dense(self) -> Tensor:
        """The (n d, n d) matrix (for spectra and tests)."""
        n, d = self.num_nodes, self.d
        full = self.diag.new_zeros(n, n, d, d)
        idx = torch.arange(n, device=self.diag.device)
        full[idx, idx] = self.diag
        full[self.index[0], self.index[1]] = self.off
        return full.permute(0, 2, 1, 3).reshape(n * d, n * d)


def _inv_sqrt_psd(blocks: Tensor, spread: float) -> Tensor:
    """(S + diag(jitter))^-1/2 of symmetric PSD blocks S (n, d, d) by eigendecomposition.

    ``jitter`` = spread * linspace(-1, 1, d) (zero for d = 1): eigh's gradient is infinite at
    repeated eigenvalues, which the identity-like blocks of untrained maps have; the official
    code perturbs the diagonal by a random U(-1e-3, 1e-3) in training for the same reason, we use
    a fixed perturbation so training and evaluation see the same operator.
    """
    d = blocks.shape[-1]
    if d > 1 and spread > 0:
        jitter = torch.linspace(-spread, spread, d, dtype=blocks.dtype, device=blocks.device)
        blocks = blocks + torch.diag_embed(jitter.expand(blocks.shape[0], d))
    vals, vecs = torch.linalg.eigh(blocks)
    inv = vals.clamp_min(1e-12).rsqrt()
    inv = torch.where(vals > 1e-10, inv, torch.zeros_like(inv))
    return vecs @ torch.diag_embed(inv) @ vecs.transpose(-1, -2)


def sheaf_laplacian(
    index: Tensor,
    maps: Tensor,
    num_nodes: int,
    *,
    normalisation: str = "augmented",
    kind: str = "general",
    jitter: float = 1e-3,
) -> SheafLaplacian:
    """The (normalised) sheaf Laplacian of restriction maps ``maps`` (E, d, d), map e being
    F_{v<|e} of directed edge index[:, e] = (v, u).

    ``kind`` only picks the cheap exact normalisation: for diagonal and orthogonal maps D is
    diagonal (D = deg I for O(d)), so D^-1/2 is elementwise; general maps use a symmetric inverse
    square root (see :func:`_inv_sqrt_psd` for ``jitter``).
    """
    if normalisation not in NORMALISATIONS:
        raise UserError(
            f"unknown normalisation {normalisation!r}; choose one of {list(NORMALISATIONS)}"
        )
    if maps.dim() != 3 or maps.shape[0] != index.shape[1] or maps.shape[1] != maps.shape[2]:
        raise UserError(
            f"restriction maps must be (E, d, d) with E = {index.shape[1]} directed edges, "
            f"got {tuple(maps.shape)}"
        )
    d = maps.shape[-1]
    rev = reverse_edges(index, num_nodes)
    off = -maps.transpose(-1, -2) @ maps[rev]  # L_vu = -F_{v<|e}^T F_{u<|e}
    gram = maps.transpose(-1, -2) @ maps
    diag = maps.new_zeros(num_nodes, d, d).index_add(0, index[0], gram)
    if normalisation == "none":
        return SheafLaplacian(index, off, diag)
    shift = 1.0 if normalisation == "augmented" else 0.0
    eye = torch.eye(d, dtype=maps.dtype, device=maps.device)
    if kind in ("diagonal", "orthogonal"):
        scale = diag.diagonal(dim1=-2, dim2=-1) + shift
        inv = torch.where(scale > 1e-10, scale.clamp_min(1e-12).rsqrt(), torch.zeros_like(scale))
        norm = torch.diag_embed(inv)
    else:
        norm = _inv_sqrt_psd(diag + shift * eye, jitter if shift > 0 else 0.0)
    off = norm[index[0]] @ off @ norm[index[1]]
    diag = norm @ diag @ norm
    return SheafLaplacian(index, off, diag)


def dirichlet_energy(lap: SheafLaplacian, x: Tensor) -> Tensor:
    """Normalised Dirichlet energy tr(X^T Delta X) / ||X||^2 of x (n, d, f) (paper Def. 3.1)."""
    return (x * lap.apply(x)).sum() / (x * x).sum().clamp_min(1e-30)


def heat_flow(lap: SheafLaplacian, x: Tensor, t: float | Tensor) -> Tensor:
    """exp(-t Delta) x for x (n, d, f), exactly (dense eigendecomposition; small graphs).

    As t -> infinity it is the orthogonal projection of x onto ker Delta (paper sec. 3).
    """
    vals, vecs = torch.linalg.eigh(lap.dense().to(torch.float64))
    flat = x.reshape(-1, x.shape[-1]).to(torch.float64)
    decay = torch.exp(-torch.as_tensor(t, dtype=torch.float64) * vals.clamp_min(0.0))
    out = vecs @ (decay[:, None] * (vecs.T @ flat))
    return out.reshape(x.shape).to(x.dtype)


def kernel_dimension(lap: SheafLaplacian, tol: float = 1e-8) -> int:
    """dim ker Delta = dim H^0, counted from the dense spectrum."""
    vals = torch.linalg.eigvalsh(lap.dense().to(torch.float64))
    return int((vals.abs() < tol * max(1.0, float(vals.abs().max()))).sum())


__all__ = [
    "KINDS",
    "NORMALISATIONS",
    "ORTHOGONAL_MAPS",
    "SheafLaplacian",
    "dirichlet_energy",
    "edge_index",
    "gauge_maps",
    "heat_flow",
    "kernel_dimension",
    "num_map_parameters",
    "orthogonal_maps",
    "restriction_maps",
    "reverse_edges",
    "sheaf_laplacian",
    "trivial_maps",
]
