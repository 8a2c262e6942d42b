"""GDSS (Jo, Lee & Hwang 2022): score-based graph generation with a system of SDEs over (X, A).

Forward process (sec. 3.1, eq. 3): node features X and the symmetric adjacency A diffuse
independently along Gaussian paths of the library (t = 0 data; GDSS's VP-SDE with
beta in [0.1, 1.0] is ``VPLinear(beta_min=0.1, beta_max=1.0)``, its QM9 VE-SDE ``VE``):

    X_t = alpha_X(t) X_0 + sigma_X(t) Z_X,        A_t = alpha_A(t) A_0 + sigma_A(t) Z_A,

with Z_A symmetric (upper triangle drawn, mirrored, zero diagonal) and both masked to the real
nodes. The reverse system (eq. 4) couples them through the joint partial scores
s_X = grad_X log p_t(X, A), s_A = grad_A log p_t(X, A), learnt by two networks
(:mod:`.gdss_nets`) that predict the noise: s = -eps_hat / sigma(t). The loss (eq. 7) is
denoising score matching, ||eps_hat_X - Z_X||^2 + ||eps_hat_A - Z_A||^2 summed over the real
entries (GDSS ``reduce_mean: False``), t ~ U(1e-5, 1).

Linear drift f(t) = alpha'/alpha and g(t)^2 = d sigma^2/dt - 2 f sigma^2 come from the path.

Samplers (sec. 3.2):

* ``"s4"`` — the Symmetric Splitting for System of SDEs: one evaluation of (s_X, s_A) at
  (X, A, t); a Langevin correction with it (step e = 2 a (snr ||z|| / ||s||)^2, noise scaled by
  ``scale_eps``); then the exact linear (OU) half step t -> t - h/2, the score drift
  + g(t)^2 s h, and a second half step to t - h (GDSS ``solver.py::S4_solver``).
* ``"pc"`` — Euler-Maruyama predictor + Langevin corrector: the corrector at t (one evaluation)
  then the reverse-SDE Euler step x <- x - f x h + g^2 s h + g sqrt(h) z (a second evaluation).

So S4 costs one evaluation of the pair per step and PC two: ``nfe`` counts pair evaluations.
Here a = (alpha(t) / alpha(t - h))^2 (GDSS: 1 - beta_i on VP, 1 on VE).

Why a graph-specific loop instead of :func:`interpolant.solvers.sample`: the state is a *pair*
(X, A) advanced by two networks whose scores depend on both, the noise must be symmetric and
masked per graph, and S4's splitting evaluates the score once and then takes two different
half steps of the linear part — a step that does not fit the loop's one-tensor state and
one-prediction-per-node solver step. The loop still follows the library's contracts: per-sample
noise streams (:class:`~interpolant.randomness.Streams`, streams ``gdss-x`` / ``gdss-adj``),
per-sample Langevin norms (GDSS averages them over the batch, which couples the samples: a
stated departure), and every network evaluation is counted.

Differences from GDSS: the time grid is linspace(1, eps, steps + 1) with the actual spacing as
step (GDSS uses dt = -1/N); the last step adds no noise (GDSS returns the noise-free mean).
Molecules: atom types one-hot in X; bond orders 1, 2, 3 divided by 3 in A (so A is in [0, 1])
and quantised back at 0.5, 1.5, 2.5 after multiplying by 3 (GDSS ``quantize_mol``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..paths.base import GaussianPath
from ..paths.gaussian import VPLinear
from ..randomness import Streams
from ..solvers.sde import langevin_move
from .gdss_nets import ScoreNetworkA, ScoreNetworkX, mask_nodes
from .types import GraphBatch, pair_mask, symmetrize_upper

SOLVERS = ("s4", "pc")
#: Bond orders are stored as order / BOND_SCALE in the model's adjacency (molecule mode).
BOND_SCALE = 3.0


def gdss_vp() -> VPLinear:
    """GDSS's VP-SDE for community-small / grid: beta(t) = 0.1 + 0.9 t."""
    return VPLinear(beta_min=0.1, beta_max=1.0)


def linear_sde(path: GaussianPath, t: Tensor) -> tuple[Tensor, Tensor]:
    """(f(t), g(t)^2) of the forward SDE dx = f x dt + g dW whose marginals are the path's."""
    alpha, sigma, d_alpha, d_sigma = path.coefficients(t)
    f = d_alpha / alpha
    return f, 2 * sigma * d_sigma - 2 * f * sigma**2


def transition(path: GaussianPath, t_from: Tensor, t_to: Tensor) -> tuple[Tensor, Tensor]:
    """(mean factor, std) of the linear part's exact step between t_from and t_to.

    Forward (t_to > t_from): the path's transition x_t | x_s ~ N(r x_s, sigma_t^2 - r^2 sigma_s^2),
    r = alpha_t / alpha_s. Backward (t_to < t_from), as GDSS's S4: mean factor alpha_to /
    alpha_from and the variance of the forward step between the same two times.
    """
    lo, hi = torch.minimum(t_from, t_to), torch.maximum(t_from, t_to)
    a_lo, s_lo = path.alpha(lo), path.sigma(lo)
    a_hi, s_hi = path.alpha(hi), path.sigma(hi)
    var = (s_hi**2 - (a_hi / a_lo) ** 2 * s_lo**2).clamp_min(0.0)
    return path.alpha(t_to) / path.alpha(t_from), var.sqrt()


def symmetric_noise(streams: Streams, n: int, mask: Tensor) -> Tensor:
    """(B, N, N) symmetric standard normal noise, zero diagonal, zero on padded nodes."""
    z = streams.normal((n, n)).to(mask.device)
    return symmetrize_upper(z) * pair_mask(mask)


def node_noise(streams: Streams, n: int, f: int, mask: Tensor) -> Tensor:
    return mask_nodes(streams.normal((n, f)).to(mask.device), mask)


class GDSS(nn.Module):
    """The pair of GDSS score networks with their two paths (one for X, one for A)."""

    def __init__(
        self,
        features: int,
        max_nodes: int,
        *,
        path_x: GaussianPath | None = None,
        path_adj: GaussianPath | None = None,
        depth: int = 3,
        hidden: int = 32,
        attn_dim: int = 32,
        layers: int = 5,
        linears: int = 2,
        c_init: int = 2,
        c_hid: int = 8,
        c_final: int = 4,
        heads: int = 4,
        molecule: bool = False,
        adjacency_only: bool = False,
    ) -> None:
        super().__init__()
        self.features, self.max_nodes, self.molecule = features, max_nodes, molecule
        # The ablation "A only": X is held at constant ones and never diffused or scored.
        self.adjacency_only = adjacency_only
        self.path_x = path_x or gdss_vp()
        self.path_adj = path_adj or gdss_vp()
        self.net_x = ScoreNetworkX(features, depth, hidden)
        self.net_adj = ScoreNetworkA(
            features, layers, hidden, attn_dim, linears, c_init, c_hid, c_final, heads
        )

    def predict_noise(self, x: Tensor, adj: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(eps_hat_X, eps_hat_A): one evaluation of the pair of networks."""
        return self.net_x(x, adj, mask), self.net_adj(x, adj, mask)

    def scores(self, x: Tensor, adj: Tensor, mask: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """The partial scores s_X, s_A = -eps_hat / sigma(t) (t a (B,) tensor)."""
        ex, ea = self.predict_noise(x, adj, mask)
        return -ex / self.path_x.sigma(t)[:, None, None], -ea / self.path_adj.sigma(t)[
            :, None, None
        ]

    def encode(self, batch: GraphBatch) -> tuple[Tensor, Tensor]:
        """(X_0, A_0) in model space (molecules: bond orders / 3)."""
        self.check(batch)
        adj = batch.adj / BOND_SCALE if self.molecule else (batch.adj != 0).to(batch.x.dtype)
        return batch.x, adj

    def check(self, batch: GraphBatch) -> None:
        if batch.max_nodes != self.max_nodes:
            raise UserError(
                f"GDSS: graphs padded to {batch.max_nodes} nodes, but the model has max_nodes = "
                f"{self.max_nodes}; pad with from_networkx(..., max_nodes={self.max_nodes}) (a "
                "graph with more nodes than max_nodes cannot be modelled)"
            )
        if batch.num_features != self.features:
            raise UserError(f"GDSS: {batch.num_features} node features, model has {self.features}")

    def loss(self, batch: GraphBatch, t: Tensor, streams: Streams) -> tuple[Tensor, Tensor]:
        """(loss_X, loss_A): eq. 7 summed over real entries, averaged over the batch."""
        x0, a0 = self.encode(batch)
        n = batch.max_nodes
        zx = node_noise(streams, n, self.features, batch.mask)
        za = symmetric_noise(streams, n, batch.mask)
        ax, sx = self.path_x.alpha(t)[:, None, None], self.path_x.sigma(t)[:, None, None]
        aa, sa = self.path_adj.alpha(t)[:, None, None], self.path_adj.sigma(t)[:, None, None]
        xt = mask_nodes(ax * x0 + sx * zx, batch.mask)
        if self.adjacency_only:
            xt = mask_nodes(torch.ones_like(x0), batch.mask)
        at = (aa * a0 + sa * za) * pair_mask(batch.mask)
        ex, ea = self.predict_noise(xt, at, batch.mask)
        lx = ((ex - zx) ** 2).sum(dim=(1, 2)).mean() * (0.0 if self.adjacency_only else 1.0)
        la = ((ea - za) ** 2).sum(dim=(1, 2)).mean()
        return lx, la


@dataclass(frozen=True)
class GDSSSample:
    """Sampled graphs (continuous ``x``, ``adj`` before quantisation) and the evaluations used."""

    x: Tensor
    adj: Tensor
    mask: Tensor
    nfe: int

    def graphs(self, molecule: bool = False) -> GraphBatch:
        """The quantised graphs: adj >= 0.5 for plain graphs; bond orders for molecules."""
        return quantize(self.x, self.adj, self.mask, molecule)


def quantize(x: Tensor, adj: Tensor, mask: Tensor, molecule: bool = False) -> GraphBatch:
    """GDSS's ``quantize`` (threshold 0.5) or ``quantize_mol`` (orders at 0.5 / 1.5 / 2.5)."""
    pm = pair_mask(mask)
    if molecule:
        a = (adj * BOND_SCALE).clamp(0.0, 3.0)
        orders = torch.bucketize(a, torch.tensor([0.5, 1.5, 2.5], device=a.device)).float()
        atoms = torch.nn.functional.one_hot(x.argmax(-1), x.shape[-1]).float()
        return GraphBatch(mask_nodes(atoms, mask), orders * pm, mask, edge_types=True)
    return GraphBatch(mask_nodes(x, mask), (adj >= 0.5).float() * pm, mask)


def _langevin(
    v: Tensor, score: Tensor, z: Tensor, snr: float, scale_eps: float, retention: Tensor
) -> Tensor:
    """GDSS's Langevin corrector with per-sample norms: e = 2 a (snr ||z|| / ||s||)^2."""
    zn = torch.linalg.vector_norm(z.flatten(1), dim=1)
    sn = torch.linalg.vector_norm(score.flatten(1), dim=1).clamp_min(1e-12)
    e = (2 * retention * (snr * zn / sn) ** 2)[:, None, None]
    # scale_eps scales only the noise term (GDSS): x + e s + sqrt(2 e) scale_eps z.
    return langevin_move(v, e, score, scale_eps * z)


@torch.no_grad()
def sample(
    model: GDSS,
    num_nodes: Sequence[int] | Tensor,
    *,
    solver: str = "s4",
    steps: int = 1000,
    snr: float = 0.05,
    scale_eps: float = 0.7,
    eps: float = 1e-4,
    seed: int = 0,
    index: Sequence[int] | Tensor | None = None,
) -> GDSSSample:
    """Generate one graph per entry of ``num_nodes`` (GDSS community defaults: snr 0.05,
    scale_eps 0.7, 1000 steps to t = 1e-4). ``index`` numbers the samples for their noise
    streams (default 0..B-1), so sample i does not depend on the batch it is drawn in."""
    if solver not in SOLVERS:
        raise UserError(f"GDSS sample: solver must be one of {SOLVERS}, got {solver!r}")
    sizes = torch.as_tensor(num_nodes, dtype=torch.long)
    if int(sizes.max()) > model.max_nodes:
        raise UserError(
            f"GDSS sample: {int(sizes.max())} nodes asked, max_nodes = {model.max_nodes}"
        )
    b, n, f = len(sizes), model.max_nodes, model.features
    mask = torch.arange(n)[None, :] < sizes[:, None]
    idx = torch.arange(b) if index is None else torch.as_tensor(index)
    sx, sa = Streams(seed, idx, "gdss-x"), Streams(seed, idx, "gdss-adj")
    x = node_noise(sx, n, f, mask)
    if model.adjacency_only:
        x = mask_nodes(torch.ones(b, n, f), mask)
    x_fixed = x
    adj = symmetric_noise(sa, n, mask)
    grid = torch.linspace(1.0, eps, steps + 1, dtype=torch.float64)
    nfe = 0
    px, pa = model.path_x, model.path_adj
    for i in range(steps):
        t_now, t_next = grid[i], grid[i + 1]
        last = i == steps - 1
        h = float(t_now - t_next)
        tb = torch.full((b,), float(t_now))
        tn = torch.full((b,), float(t_next))
        ret_x = (px.alpha(tb) / px.alpha(tn)) ** 2
        ret_a = (pa.alpha(tb) / pa.alpha(tn)) ** 2
        s_x, s_a = model.scores(x, adj, mask, tb)
        nfe += 1
        # Langevin correction at t (both solvers).
        x = _langevin(x, s_x, node_noise(sx, n, f, mask), snr, scale_eps, ret_x)
        adj = _langevin(adj, s_a, symmetric_noise(sa, n, mask), snr, scale_eps, ret_a)
        if solver == "pc":
            # Euler-Maruyama predictor with a fresh score at the corrected point.
            s_x, s_a = model.scores(x, adj, mask, tb)
            nfe += 1
            x, adj = (
                _euler(p, v, s, tb, h, z, last)
                for p, v, s, z in (
                    (px, x, s_x, node_noise(sx, n, f, mask)),
                    (pa, adj, s_a, symmetric_noise(sa, n, mask)),
                )
            )
        else:
            # S4: half linear step, score drift with the score at t, half linear step.
            tm = torch.full((b,), float(t_now) - h / 2)
            for half in (0, 1):
                t0, t1 = (tb, tm) if half == 0 else (tm, tn)
                x = _ou(px, x, t0, t1, node_noise(sx, n, f, mask), last)
                adj = _ou(pa, adj, t0, t1, symmetric_noise(sa, n, mask), last)
                if half == 0:
                    x = x + linear_sde(px, tb)[1][:, None, None] * s_x * h
                    adj = adj + linear_sde(pa, tb)[1][:, None, None] * s_a * h
        x, adj = mask_nodes(x, mask), adj * pair_mask(mask)
        if model.adjacency_only:
            x = x_fixed
    return GDSSSample(x, adj, mask, nfe)


def _ou(path: GaussianPath, v: Tensor, t0: Tensor, t1: Tensor, z: Tensor, last: bool) -> Tensor:
    r, std = transition(path, t0, t1)
    out = r[:, None, None] * v
    return out if last else out + std[:, None, None] * z


def _euler(
    path: GaussianPath, v: Tensor, score: Tensor, t: Tensor, h: float, z: Tensor, last: bool
) -> Tensor:
    f, g2 = linear_sde(path, t)
    out = v - f[:, None, None] * v * h + g2[:, None, None] * score * h
    return out if last else out + (g2.sqrt() * math.sqrt(h))[:, None, None] * z


__all__ = [
    "BOND_SCALE",
    "GDSS",
    "SOLVERS",
    "GDSSSample",
    "gdss_vp",
    "linear_sde",
    "quantize",
    "sample",
    "symmetric_noise",
    "transition",
]
