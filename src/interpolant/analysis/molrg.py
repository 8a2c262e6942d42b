"""Mixtures of low-rank Gaussians on orthogonal subspaces (seed paper 25, Wang et al. 2024).

MoLRG: ``k ~ U{1..K}``, ``x0 = U_k a``, ``a ~ N(0, I_d)``, with orthonormal ``U_k`` (n x d) and
mutually orthogonal subspaces. On a Gaussian path its exact denoiser is (paper eq. 7)

    E[x0 | x_t] = sum_k w_k(x_t) alpha / (alpha^2 + sigma^2) U_k U_k^T x_t,
    w_k = softmax_k(phi_t |U_k^T x_t|^2),   phi_t = alpha^2 / (2 sigma^2 (alpha^2 + sigma^2)),

and the paper's network is the same formula with learned ``U_k`` (:class:`SubspaceDenoiser`);
so one function serves the oracle and the model. Score and log-density come from the
library's exact mixture (``data.oracles.GaussianMixture`` with covariances ``U_k U_k^T + floor I``;
the floor, 1e-8 by default, only makes them positive definite).

Tools: DSM training of the subspace model with a QR retraction onto the Stiefel manifold,
subspace distance with Hungarian matching, PCA and K-subspaces baselines, and the numerical rank
of any denoiser's Jacobian against the noise level, and the generalisation (non-memorisation)
score of generated samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..data.oracles import GaussianMixture
from ..errors import UserError
from ..paths import GaussianPath, as_time
from ..predictions import Model
from ..randomness import derive_seed
from .derivatives import jacobian


def _generator(name: str, seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(f"molrg-{name}", seed))


def orthonormal(n: int, k: int, d: int, generator: torch.Generator) -> Tensor:
    """K mutually orthogonal orthonormal bases (K, n, d): columns of one random orthogonal
    matrix (the paper's ``svd(randn(n, n))``, classes taking consecutive blocks)."""
    if k * d > n:
        raise UserError(f"K d = {k * d} orthogonal directions do not fit in n = {n} dimensions")
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return q[:, : k * d].reshape(n, k, d).permute(1, 0, 2).contiguous()


def subspace_denoiser(bases: Tensor, x: Tensor, t: Tensor, path: GaussianPath) -> Tensor:
    """The MoLRG denoiser with bases (K, n, d) at x (B, n), t (B,) (module docstring)."""
    tt = as_time(t, x).to(x.dtype).reshape(-1, 1)
    a, s = path.alpha(tt), path.sigma(tt)
    coords = torch.einsum("knd,bn->bkd", bases.to(x.dtype), x)  # U_k^T x
    phi = a**2 / (2 * s**2 * (a**2 + s**2))
    w = torch.softmax(phi * coords.square().sum(-1), dim=1)  # (B, K)
    proj = torch.einsum("knd,bkd->bkn", bases.to(x.dtype), coords)  # U_k U_k^T x
    return (a / (a**2 + s**2)) * (w[..., None] * proj).sum(1)


class MoLRG:
    """The MoLRG distribution: ``molrg = MoLRG.random(n=48, k=2, d=7, seed=0)``."""

    def __init__(self, bases: Tensor, floor: float = 1e-8) -> None:
        bases = torch.as_tensor(bases, dtype=torch.float64)
        if bases.ndim != 3:
            raise UserError(f"bases must have shape (K, n, d), got {tuple(bases.shape)}")
        k, n, d = bases.shape
        gram = torch.einsum("knd,lne->kdle", bases, bases).reshape(k * d, k * d)
        if not torch.allclose(gram, torch.eye(k * d, dtype=torch.float64), atol=1e-8):
            raise UserError("bases must be orthonormal and the subspaces mutually orthogonal")
        self.bases = bases
        covs = bases @ bases.mT + floor * torch.eye(n, dtype=torch.float64)
        self.mixture = GaussianMixture(torch.zeros(k, n, dtype=torch.float64), covs)

    @classmethod
    def random(cls, n: int, k: int, d: int, seed: int = 0) -> MoLRG:
        return cls(orthonormal(n, k, d, _generator("bases", seed)))

    @property
    def shape(self) -> tuple[int, int, int]:
        k, n, d = self.bases.shape
        return k, n, d

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n exact draws (float64) and their components."""
        k, _, d = self.shape
        comp = torch.randint(0, k, (n,), generator=generator)
        a = torch.randn(n, d, generator=generator, dtype=torch.float64)
        return torch.einsum("bnd,bd->bn", self.bases[comp], a), comp

    def denoiser(self, x: Tensor, t: float | Tensor, path: GaussianPath) -> Tensor:
        return subspace_denoiser(self.bases, x.to(torch.float64), as_time(t, x), path)

    def score(self, x: Tensor, t: float | Tensor, path: GaussianPath) -> Tensor:
        return self.mixture.score(x, t, path)

    def log_prob(self, x: Tensor, t: float | Tensor, path: GaussianPath) -> Tensor:
        return self.mixture.log_prob(x, t, path)

    def model(self, path: GaussianPath) -> Model:
        """The exact denoiser as a Model predicting x0 on ``path``."""
        return Model(lambda x, t: self.denoiser(x, t, path).to(x.dtype), path, predicts="x0")


class SubspaceDenoiser(nn.Module):
    """The paper's parametrised denoiser: :func:`subspace_denoiser` with learned bases (K, n, d),
    kept on the Stiefel manifold by :meth:`retract` (QR) after each optimiser step."""

    def __init__(
        self, path: GaussianPath, n: int, k: int, d: int, seed: int = 0, init: Tensor | None = None
    ) -> None:
        super().__init__()
        if init is None:
            g = _generator("init", seed)
            init = torch.randn(k, n, d, generator=g, dtype=torch.float64)
        self.bases = nn.Parameter(torch.linalg.qr(torch.as_tensor(init, dtype=torch.float64))[0])
        self.path = path

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return subspace_denoiser(self.bases, x, t, self.path)

    @torch.no_grad()
    def retract(self) -> None:
        q, r = torch.linalg.qr(self.bases)
        self.bases.copy_(q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :])


def dsm_batch(
    data: Tensor,
    path: GaussianPath,
    batch: int,
    sigma_range: tuple[float, float],
    g: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    """(x0, x_t, t) with the EDM noise level sigma/alpha log-uniform on ``sigma_range``."""
    x0 = data[torch.randint(0, data.shape[0], (batch,), generator=g)]
    lo, hi = (math.log(v) for v in sigma_range)
    level = torch.exp(lo + (hi - lo) * torch.rand(batch, generator=g, dtype=torch.float64))
    t = path.t_of_edm_sigma(level)
    return x0, path.sample_xt(x0, t, torch.randn(x0.shape, generator=g, dtype=torch.float64)), t


def train_subspace_denoiser(
    data: Tensor,
    path: GaussianPath,
    k: int,
    d: int,
    steps: int = 300,
    lr: float = 0.05,
    batch: int = 256,
    sigma_range: tuple[float, float] = (0.01, 10.0),
    seed: int = 0,
    init: str = "data",
    restarts: int = 1,
) -> SubspaceDenoiser:
    """Fit :class:`SubspaceDenoiser` by DSM, ``E |D(alpha x0 + sigma eps, t) - x0|^2`` with the
    EDM noise level sigma/alpha log-uniform on ``sigma_range`` (paper), Adam with a cosine decay
    of ``lr`` and a QR retraction after every step. ``init="data"`` starts each basis spanned by
    d random training points (as K-subspaces starts); ``"random"`` from random orthonormal bases.
    For K > 1 the loss has local minima whose bases mix two subspaces (like K-subspaces), so
    ``restarts`` fits are made and the one with the lowest DSM loss on a fixed held batch kept.
    """
    data = torch.as_tensor(data, dtype=torch.float64)
    if data.ndim != 2 or data.shape[0] < 1:
        raise UserError(f"data must be (N, n), got {tuple(data.shape)}")
    if init not in ("data", "random"):
        raise UserError(f"init must be 'data' or 'random', got {init!r}")
    if restarts < 1 or steps < 1:
        raise UserError(f"steps and restarts must be >= 1, got {steps}, {restarts}")
    x0_held, xt_held, t_held = dsm_batch(data, path, 4096, sigma_range, _generator("held", seed))
    best, best_loss = None, math.inf
    for r in range(restarts):
        g = _generator(f"dsm-{r}", seed)
        start = _data_start(data, k, d, g) if init == "data" else None
        model = SubspaceDenoiser(path, data.shape[1], k, d, derive_seed("restart", seed, r), start)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        # Cosine decay: the stochastic DSM gradient then settles at the minimiser.
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        for _ in range(steps):
            x0, xt, t = dsm_batch(data, path, batch, sigma_range, g)
            loss = (model(xt, t) - x0).square().sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            model.retract()
        with torch.no_grad():
            held = float((model(xt_held, t_held) - x0_held).square().sum(1).mean())
        if held < best_loss:
            best, best_loss = model, held
    assert best is not None
    return best


def _data_start(x: Tensor, k: int, d: int, g: torch.Generator) -> Tensor:
    """(K, n, d) bases spanned by d random rows of x each (random directions if too few rows)."""
    cols = torch.randn(k * d, x.shape[1], generator=g, dtype=torch.float64)
    picks = torch.randperm(x.shape[0], generator=g)[: k * d]
    cols[: picks.numel()] = x[picks]
    return torch.linalg.qr(cols.reshape(k, d, -1).mT)[0]


def subspace_distance(estimate: Tensor, truth: Tensor) -> Tensor:
    """``|U_hat U_hat^T - U U^T|_F`` per true subspace after Hungarian matching (K,)."""
    from scipy.optimize import linear_sum_assignment

    est, tru = torch.as_tensor(estimate, dtype=torch.float64), torch.as_tensor(truth).double()
    if est.ndim == 2:
        est, tru = est[None], tru[None] if tru.ndim == 2 else tru
    if est.shape[:2] != tru.shape[:2]:
        raise UserError(f"estimate {tuple(est.shape)} and truth {tuple(tru.shape)} differ")
    pe, pt = est @ est.mT, tru @ tru.mT
    cost = (pe[:, None] - pt[None]).flatten(2).norm(dim=-1)  # (K_est, K_true)
    rows, cols = linear_sum_assignment(cost.numpy())
    out = torch.empty(tru.shape[0], dtype=torch.float64)
    out[torch.as_tensor(cols)] = cost[torch.as_tensor(rows), torch.as_tensor(cols)]
    return out


def pca_subspace(data: Tensor, d: int) -> Tensor:
    """The top-d left singular vectors of the (uncentred) data (n, d): Theorem 1's optimum."""
    x = torch.as_tensor(data, dtype=torch.float64)
    return torch.linalg.svd(x.T, full_matrices=False)[0][:, :d]


def k_subspaces(
    data: Tensor, k: int, d: int, iters: int = 30, restarts: int = 10, seed: int = 0
) -> Tensor:
    """K-subspaces clustering (Lloyd style; Theorem 3's optimum): assign each point to the basis
    with the largest projection, refit each basis by PCA of its points; the best of ``restarts``
    starts (each basis spanned by d random data points; fewer than d points leave the other
    directions random) by the objective
    ``sum_k sum_{i in C_k} |U_k^T x_i|^2``. Returns (K, n, d)."""
    x = torch.as_tensor(data, dtype=torch.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise UserError(f"data must be (N, n), got {tuple(x.shape)}")
    g = _generator("ksub", seed)
    best, best_value = None, -math.inf
    for _ in range(restarts):
        bases = _data_start(x, k, d, g)
        for _ in range(iters):
            energy = torch.einsum("knd,bn->bkd", bases, x).square().sum(-1)  # (B, K)
            label = energy.argmax(1)
            for j in range(k):
                members = x[label == j]
                if members.shape[0] > 0:
                    u = pca_subspace(members, d)  # fewer than d columns for < d points
                    bases[j] = torch.linalg.qr(torch.cat([u, bases[j, :, u.shape[1] :]], 1))[0]
        value = float(torch.einsum("knd,bn->bkd", bases, x).square().sum(-1).max(1).values.sum())
        if value > best_value:
            best, best_value = bases.clone(), value
    assert best is not None
    return best


def generalization_score(samples: Tensor, train: Tensor, ratio: float = 1 / 3) -> float:
    """The fraction of generated samples that are not copies of training points (the paper's
    GL score): a sample is memorised when its distance to the nearest training point is below
    ``ratio`` times its distance to the second nearest."""
    x = torch.as_tensor(samples, dtype=torch.float64).flatten(1)
    y = torch.as_tensor(train, dtype=torch.float64).flatten(1)
    if y.shape[0] < 2 or x.shape[1] != y.shape[1]:
        raise UserError("need >= 2 training points of the samples' dimension")
    nearest = torch.cdist(x, y).topk(2, dim=1, largest=False).values  # (N, 2), ascending
    memorised = nearest[:, 0] < ratio * nearest[:, 1]
    return float(1.0 - memorised.double().mean())


def jacobian_rank(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    t: float,
    path: GaussianPath,
    rel_tol: float = 1e-3,
) -> tuple[Tensor, Tensor]:
    """(numerical rank per sample, singular values (B, D)) of ``d denoiser(x_t, t) / d x_t`` at
    ``x_t = x`` (B, D): singular values above ``rel_tol`` times the largest count."""
    if not 0 < t <= 1:
        raise UserError(f"t must lie in (0, 1] on the path, got {t}")
    tt = torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)
    sv = torch.linalg.svdvals(jacobian(lambda y: denoiser(y, tt), x))
    return (sv > rel_tol * sv[:, :1]).sum(1), sv


__all__ = [
    "MoLRG",
    "SubspaceDenoiser",
    "generalization_score",
    "jacobian_rank",
    "k_subspaces",
    "orthonormal",
    "pca_subspace",
    "subspace_denoiser",
    "subspace_distance",
    "train_subspace_denoiser",
]
