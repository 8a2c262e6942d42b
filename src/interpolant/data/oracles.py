"""Gaussian mixtures with exact denoisers, scores, velocities and log-densities on every path.

For data ``x0 ~ sum_k pi_k N(mu_k, C_k)`` and ``x_t = alpha x0 + sigma eps`` the marginal is the
mixture of ``N(alpha mu_k, alpha^2 C_k + sigma^2 I)``, and with posterior weights
``w_k(x) = P(k | x_t = x)``:

    E[x0 | x_t] = sum_k w_k (mu_k + alpha C_k (alpha^2 C_k + sigma^2 I)^{-1} (x - alpha mu_k))
    grad log p_t(x) = -sum_k w_k (alpha^2 C_k + sigma^2 I)^{-1} (x - alpha mu_k)

Covariances are stored by eigendecomposition C_k = Q_k diag(lam_k) Q_k^T, so every quantity is a
few batched matrix products in float64 in any dimension.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import UserError, WrongTypeError
from ..paths import GaussianPath, as_time
from ..predictions import Model


class GaussianMixture:
    """A Gaussian mixture with exact quantities on every Gaussian path (float64 inside)."""

    def __init__(self, means: Tensor, covs: Tensor, weights: Tensor | None = None) -> None:
        means = torch.as_tensor(means, dtype=torch.float64)
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
        k, d = means.shape
        if covs.shape != (k, d, d):
            raise ValueError(f"covs must have shape {(k, d, d)}, got {tuple(covs.shape)}")
        w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else weights
        w = torch.as_tensor(w, dtype=torch.float64)
        if w.shape != (k,) or bool((w < 0).any()):
            raise ValueError(f"weights must be {k} nonnegative numbers")
        self.means, self.covs, self.weights = means, 0.5 * (covs + covs.mT), w / w.sum()
        self.eigvals, self.eigvecs = torch.linalg.eigh(self.covs)
        if float(self.eigvals.min()) <= 0:
            raise ValueError("covariances must be positive definite")
        self.chol = torch.linalg.cholesky(self.covs)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n exact draws (float64)."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[comp] + torch.einsum("nij,nj->ni", self.chol[comp], z)

    def _parts(self, x: Tensor, t: float | Tensor, path: GaussianPath):
        """Per-component whitened residuals: (log w_k(x) unnormalised, y / M, lam, alpha)."""
        x = x.to(torch.float64).reshape(x.shape[0], -1)
        tt = as_time(
            t if isinstance(t, Tensor) else torch.tensor(float(t), dtype=torch.float64), x
        ).to(torch.float64)
        a = path.alpha(tt).reshape(-1, 1, 1)  # (B or 1, 1, 1)
        s = path.sigma(tt).reshape(-1, 1, 1)
        resid = x[:, None, :] - a * self.means[None]  # (B, K, d)
        y = torch.einsum("kdj,bkd->bkj", self.eigvecs, resid)  # eigen-coordinates
        m = a**2 * self.eigvals[None] + s**2  # (B, K, d) marginal variances per direction
        quad = (y**2 / m).sum(-1)
        logdet = torch.log(m).sum(-1)
        logw = torch.log(self.weights)[None] - 0.5 * (
            quad + logdet + self.dim * math.log(2 * math.pi)
        )
        return logw, y / m, a, x

    def log_prob(
        self, x: Tensor, t: float | Tensor = 0.0, path: GaussianPath | None = None
    ) -> Tensor:
        """Exact log p_t(x) (at t = 0, the data density; path defaults to any, unused there)."""
        from ..paths import Linear

        logw, _, _, _ = self._parts(x, t, path or Linear())
        return torch.logsumexp(logw, dim=1)

    def posterior_weights(self, x: Tensor, t: float | Tensor, path: GaussianPath) -> Tensor:
        """P(component k | x_t = x), shape (B, K)."""
        logw, _, _, _ = self._parts(x, t, path)
        return torch.softmax(logw, dim=1)

    def score(self, x: Tensor, t: float | Tensor, path: GaussianPath) -> Tensor:
        """Exact grad_x log p_t(x)."""
        logw, ym, _, _ = self._parts(x, t, path)
        w = torch.softmax(logw, dim=1)
        per = torch.einsum("kdj,bkj->bkd", self.eigvecs, ym)  # (alpha^2 C + sigma^2)^{-1} resid
        return (-(w[..., None] * per).sum(1)).reshape(x.shape)

    def denoiser(self, x: Tensor, t: float | Tensor, path: GaussianPath) -> Tensor:
        """Exact E[x0 | x_t = x] (Tweedie)."""
        logw, ym, a, _ = self._parts(x, t, path)
        w = torch.softmax(logw, dim=1)
        gain = torch.einsum("kdj,bkj->bkd", self.eigvecs, self.eigvals[None] * ym)
        post_mean = self.means[None] + a * gain
        return (w[..., None] * post_mean).sum(1).reshape(x.shape)

    def velocity(self, x: Tensor, t: float | Tensor, path: GaussianPath) -> Tensor:
        """Exact probability-flow velocity alpha' x0_hat + sigma' eps_hat."""
        from ..predictions import convert

        return convert(self.denoiser(x, t, path), "x0", "velocity", x.to(torch.float64), t, path)

    def flow_map(self, x: Tensor, t_from: float, t_to: float, path: GaussianPath) -> Tensor:
        """The exact probability-flow ODE solution from (x, t_from) to t_to for one Gaussian.

        For x0 ~ N(mu, C), C = Q diag(lam) Q^T, the marginal of x_t is N(alpha mu, S_t) with
        S_t = Q diag(alpha^2 lam + sigma^2) Q^T, and the probability-flow velocity is
        alpha' mu + (S_t' / 2) S_t^{-1} (x - alpha mu). In eigen-coordinates y = Q^T (x - alpha mu)
        every mode therefore obeys dy_k/dt = (m_k' / 2 m_k) y_k with m_k = alpha^2 lam_k + sigma^2,
        whose solution is (Wang & Vastola 2023 for VE and VP; the same on any Gaussian path)

            y_k(t_to) = sqrt(m_k(t_to) / m_k(t_from)) y_k(t_from).

        High-variance modes (lam_k >> sigma^2) settle first: the outline before the details.
        Needs one component (K = 1) and m_k(t_from) > 0; float64 inside, x's dtype out.
        """
        if self.means.shape[0] != 1:
            raise ValueError(
                f"flow_map needs a single Gaussian (K = 1), this mixture has {self.means.shape[0]}"
            )
        flat = x.to(torch.float64).reshape(x.shape[0], -1)
        if flat.shape[1] != self.dim:
            raise ValueError(f"x must have {self.dim} features per sample, got {flat.shape[1]}")
        times = torch.tensor([float(t_from), float(t_to)], dtype=torch.float64)
        a, s = path.alpha(times).tolist(), path.sigma(times).tolist()
        lam, q, mu = (v[0].to(flat.device) for v in (self.eigvals, self.eigvecs, self.means))
        m_from, m_to = a[0] ** 2 * lam + s[0] ** 2, a[1] ** 2 * lam + s[1] ** 2
        y = (flat - a[0] * mu) @ q  # eigen-coordinates at t_from
        y = y * torch.sqrt(m_to / m_from)
        return (a[1] * mu + y @ q.T).reshape(x.shape).to(x.dtype)

    def model(self, path: GaussianPath, dtype: torch.dtype = torch.float64) -> Model:
        """This mixture's exact denoiser as a :class:`Model` predicting x0 on ``path``."""

        def net(x: Tensor, t: Tensor) -> Tensor:
            return self.denoiser(x, t.to(torch.float64), path).to(dtype)

        return Model(net, path, predicts="x0")


def as_gaussian(gaussian: GaussianMixture | Tensor) -> GaussianMixture:
    """A one-component :class:`GaussianMixture`: itself, or fitted to a data tensor (N, ...)
    (what Gaussian teleportation jumps along)."""
    if isinstance(gaussian, GaussianMixture):
        if gaussian.means.shape[0] != 1:
            raise UserError(
                f"gaussian must have one component, got a mixture of {gaussian.means.shape[0]}"
            )
        return gaussian
    if isinstance(gaussian, Tensor):
        return fit_gaussian(gaussian)
    raise WrongTypeError(
        f"gaussian must be a GaussianMixture with one component or a data tensor, "
        f"got {type(gaussian).__name__}"
    )


def fit_gaussian(data: Tensor, floor: float = 1e-6) -> GaussianMixture:
    """The Gaussian N(mean, covariance) of ``data`` (N, ...) as a one-component mixture.

    Directions of zero variance (constant pixels) get ``floor`` times the mean variance, so the
    covariance is positive definite; such a floor changes the fit by that relative amount only.
    """
    flat = torch.as_tensor(data).detach().to("cpu", torch.float64).reshape(len(data), -1)
    if flat.shape[0] < 2:
        raise ValueError(f"data must have at least 2 rows, got {flat.shape[0]}")
    if not floor > 0:
        raise ValueError(f"floor must be > 0, got {floor}")
    mean = flat.mean(0)
    cov = torch.cov(flat.T).reshape(flat.shape[1], flat.shape[1])
    level = floor * max(float(torch.diagonal(cov).mean()), 1e-12)
    cov = cov + level * torch.eye(flat.shape[1], dtype=torch.float64)
    return GaussianMixture(mean[None], cov[None])


def three_modes(scale: float = 1.0) -> GaussianMixture:
    """Three equally weighted isotropic 2-D Gaussians at (-1, 0.5), (1, -0.5), (0.3, 1.2) with
    standard deviations (0.4, 0.5, 0.6) x ``scale``: the small oracle whose exact score the
    solver tests integrate (at ``scale=2`` the components overlap and the probability-flow ODE
    is smooth, as convergence-order tests need)."""
    means = torch.tensor([[-1.0, 0.5], [1.0, -0.5], [0.3, 1.2]], dtype=torch.float64)
    stds = scale * torch.tensor([0.4, 0.5, 0.6], dtype=torch.float64)
    covs = stds[:, None, None] ** 2 * torch.eye(2, dtype=torch.float64)
    return GaussianMixture(means, covs)


def ring2d(n_modes: int = 8, radius: float = 2.0, std: float = 0.05) -> GaussianMixture:
    """8 Gaussians of std 0.05 on a circle of radius 2 (the ``ring2d`` oracle)."""
    angle = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
    means = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    covs = (std**2) * torch.eye(2, dtype=torch.float64).expand(n_modes, 2, 2).clone()
    return GaussianMixture(means, covs)


def lowrank64(
    n_modes: int = 10, dim: int = 64, rank: int = 4, floor: float = 1e-4, seed: int = 0
) -> GaussianMixture:
    """10 components in 64 dims with rank-4 covariances plus 1e-4 I (the ``lowrank64`` oracle).

    Means are N(0, I) and each covariance is U U^T + floor I with U of entries N(0, 0.25^2 / ...)
    scaled so that the within-component variance is 0.25 per dimension on average; all drawn
    from a fixed seed.
    """
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n_modes, dim, generator=g, dtype=torch.float64)
    factors = torch.randn(n_modes, dim, rank, generator=g, dtype=torch.float64) * (
        0.5 / math.sqrt(rank)
    )
    covs = factors @ factors.mT + floor * torch.eye(dim, dtype=torch.float64)
    return GaussianMixture(means, covs)


def aniso16(
    n_modes: int = 6, dim: int = 16, std_max: float = 0.5, std_min: float = 0.005, seed: int = 1
) -> GaussianMixture:
    """6 components in 16 dims whose standard deviations are log-spaced from 0.5 to 0.005 in
    randomly rotated directions (the ``aniso16`` oracle): every scale between the modes and
    the finest detail is present, so no single noise level settles all directions.

    Means are N(0, 1.5^2 I); each component has its own rotation (QR of a Gaussian matrix) and
    a random order of the 16 standard deviations; all drawn from a fixed seed.
    """
    g = torch.Generator().manual_seed(seed)
    means = 1.5 * torch.randn(n_modes, dim, generator=g, dtype=torch.float64)
    stds = torch.logspace(math.log10(std_max), math.log10(std_min), dim, dtype=torch.float64)
    covs = []
    for _ in range(n_modes):
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
        lam = stds[torch.randperm(dim, generator=g)] ** 2
        covs.append(q @ torch.diag(lam) @ q.T)
    return GaussianMixture(means, torch.stack(covs))


def digits_mixture(floor: float = 1e-3) -> GaussianMixture:
    """A 10-component mixture fitted to scikit-learn's 8x8 digits (the ``digits_mixture``
    oracle): one component per class, its mean and covariance those of the class's training
    images in [-1, 1]
    (``data.load_digits("train")``, 64 dims), plus ``floor`` I (std 0.03) so that the constant
    border pixels have a positive variance; weights are the class frequencies. Deterministic
    (no EM): the fit is the per-class moments."""
    from .digits import load_digits

    data = load_digits("train")
    x = data.x.to(torch.float64).reshape(len(data.x), -1)
    means, covs, weights = [], [], []
    for c in range(10):
        rows = x[data.labels == c]
        means.append(rows.mean(0))
        covs.append(torch.cov(rows.T) + floor * torch.eye(x.shape[1], dtype=torch.float64))
        weights.append(float(rows.shape[0]))
    return GaussianMixture(torch.stack(means), torch.stack(covs), torch.tensor(weights))


def data_std(mixture: GaussianMixture) -> float:
    """The data's standard deviation over all entries (EDM's sigma_data, as
    ``data.estimate_sigma_data`` computes it from draws) of a mixture, exactly:
    sqrt(E[x_i^2] - E[x_i]^2) with the expectations over the data and the coordinates i."""
    w = mixture.weights
    mean = (w[:, None] * mixture.means).sum(0)
    second = (w[:, None] * (torch.diagonal(mixture.covs, dim1=1, dim2=2) + mixture.means**2)).sum(0)
    return math.sqrt(float(second.mean() - mean.mean() ** 2))


ORACLES: dict[str, Callable[..., GaussianMixture]] = {
    "ring2d": ring2d,
    "lowrank64": lowrank64,
    "aniso16": aniso16,
    "digits_mixture": digits_mixture,
}
