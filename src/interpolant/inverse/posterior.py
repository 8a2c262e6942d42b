"""The exact posterior of a Gaussian-mixture prior under a linear Gaussian measurement.

For ``x ~ sum_k pi_k N(mu_k, C_k)`` and ``y = A x + s n`` (n ~ N(0, I)) the posterior is the
mixture of ``N(m_k(y), P_k)`` with (Bishop, PRML eqs. 2.113-2.117)

    S_k   = A C_k A^T + s^2 I
    G_k   = C_k A^T S_k^{-1}
    m_k   = mu_k + G_k (y - A mu_k),        P_k = C_k - G_k A C_k
    w_k  ∝ pi_k N(y; A mu_k, S_k).

A is first reduced to its row space (A = U S V^T, keep the r nonzero singular values): the
discarded measurements U_perp^T y = s U_perp^T n carry no information about x, so the posterior
is the same, and S_k is invertible even for s = 0 (e.g. a mask written as a diagonal matrix).
Everything is float64. The covariances P_k do not depend on y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.oracles import GaussianMixture
from ..errors import UserError
from .base import Operator
from .operators import as_matrix


@dataclass
class MixturePosterior:
    """p(x | y) for a batch of B measurements: ``weights`` (B, K), ``means`` (B, K, D) and
    ``covs`` (K, D, D), shared by all y (they do not depend on y); ``log_evidence`` (B,) is
    log p(y_r), the marginal likelihood of the measurements reduced to A's row space
    (y_r = U_r^T y, see :func:`row_space`): sum_k pi_k N(y_r; A_r mu_k, A_r C_k A_r^T + s^2 I).
    """

    weights: Tensor
    means: Tensor
    covs: Tensor
    log_evidence: Tensor | None = None

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    def mean(self) -> Tensor:
        """E[x | y], shape (B, D)."""
        return (self.weights[..., None] * self.means).sum(1)

    def covariance(self) -> Tensor:
        """Cov[x | y] (law of total covariance), shape (B, D, D)."""
        m = self.mean()
        spread = self.means - m[:, None]
        within = torch.einsum("bk,kij->bij", self.weights, self.covs)
        return within + torch.einsum("bk,bki,bkj->bij", self.weights, spread, spread)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n exact draws per measurement, shape (B, n, D) (covariances may be singular)."""
        lam, q = torch.linalg.eigh(self.covs)
        root = q * lam.clamp_min(0.0).sqrt()[:, None, :]  # (K, D, D), root root^T = P_k
        b = self.weights.shape[0]
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(b, n, self.dim, generator=generator, dtype=torch.float64)
        means = torch.gather(self.means, 1, comp[..., None].expand(b, n, self.dim))
        return means + torch.einsum("bnij,bnj->bni", root[comp], z)


def mixture_posterior(
    prior: GaussianMixture, operator: Operator | Tensor, y: Tensor, noise_std: float | None = None
) -> MixturePosterior:
    """The exact posterior of ``prior`` given measurements ``y`` (B, *y_shape) of a linear
    ``operator`` (or an (m, D) matrix). ``noise_std`` defaults to the operator's."""
    if isinstance(operator, Operator):
        matrix = as_matrix(operator)
        noise = operator.noise_std if noise_std is None else float(noise_std)
    else:
        matrix = torch.as_tensor(operator, dtype=torch.float64)
        if noise_std is None:
            raise UserError("noise_std is required when operator is given as a matrix")
        noise = float(noise_std)
    d = prior.dim
    if matrix.ndim != 2 or matrix.shape[1] != d:
        raise UserError(f"operator matrix must have shape (m, {d}), got {tuple(matrix.shape)}")
    y = y.to(torch.float64).reshape(y.shape[0], -1)
    if y.shape[1] != matrix.shape[0]:
        raise UserError(f"y has {y.shape[1]} entries per sample, the operator {matrix.shape[0]}")
    # Reduce A to its row space: y_r = U_r^T y = S_r V_r^T x + s U_r^T n.
    u_r, a = row_space(matrix)
    r = a.shape[0]
    y_r = y @ u_r  # (B, r)
    cov_a = prior.covs @ a.T  # (K, D, r): C_k A^T
    gram = a @ cov_a + noise**2 * torch.eye(r, dtype=torch.float64)  # S_k, (K, r, r)
    chol = torch.linalg.cholesky(gram)
    gain = torch.linalg.solve(gram, cov_a.mT).mT  # G_k = C_k A^T S_k^{-1}, (K, D, r)
    resid = y_r[:, None, :] - prior.means @ a.T  # (B, K, r)
    means = prior.means[None] + torch.einsum("kdr,bkr->bkd", gain, resid)
    covs = prior.covs - gain @ cov_a.mT
    covs = 0.5 * (covs + covs.mT)
    # log N(y_r; A mu_k, S_k) through the Cholesky factor.
    white = torch.linalg.solve_triangular(chol[None], resid[..., None], upper=False)[..., 0]
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    loglik = -0.5 * ((white**2).sum(-1) + logdet[None] + r * math.log(2 * math.pi))
    joint = torch.log(prior.weights)[None] + loglik
    weights = torch.softmax(joint, dim=1)
    return MixturePosterior(weights, means, covs, torch.logsumexp(joint, dim=1))


def row_space(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """(U_r (m, r), A_r = S_r V_r^T (r, D)) for A = U S V^T with its r nonzero singular values:
    U_r^T y = A_r x + s U_r^T n carries all that y says about x (the rest is pure noise)."""
    u, s, vh = torch.linalg.svd(matrix.to(torch.float64), full_matrices=False)
    r = int((s > s.max() * max(matrix.shape) * 1e-12).sum())
    return u[:, :r], s[:r, None] * vh[:r]


def matheron_update(
    x: Tensor, a: Tensor, y: Tensor, e: Tensor, prior_var: float, s: Tensor
) -> Tensor:
    """Matheron's rule: for x ~ N(m, c^2 I) (rows, flat) and e ~ N(0, V),
    x + c^2 A^T S^{-1} (y - A x - e) with S = c^2 A A^T + V is a draw of x given A x + n = y,
    n ~ N(0, V). ``prior_var`` is c^2, ``s`` is S (r, r) (callers keep it for their weights)."""
    return x + prior_var * torch.linalg.solve(s, (y - x @ a.T - e).T).T @ a


def posterior_error(
    samples: Tensor,
    posterior: MixturePosterior,
    n_reference: int = 512,
    seed: int = 0,
    n_projections: int = 64,
) -> dict[str, float]:
    """How far per-measurement samples (B, n, D) (or point estimates (B, D)) are from the exact
    posterior, averaged over the B measurements:

    - ``mean_rmse``: RMS over coordinates of (mean of the samples - E[x | y]);
    - ``expected_rmse``: sqrt(E||x_hat - x||^2 / D) with x ~ p(x | y), the Bayes risk of the
      estimates (its floor is sqrt(tr Cov[x | y] / D), reached by the posterior mean);
    - ``sliced_w2``: sliced 2-Wasserstein distance to ``n_reference`` exact draws (needs n > 1).
    """
    from ..metrics import sliced_wasserstein

    x = samples.to(torch.float64)
    x = x[:, None] if x.ndim == 2 else x
    b, n, d = x.shape
    if b != posterior.weights.shape[0] or d != posterior.dim:
        raise UserError(
            f"samples of shape {tuple(samples.shape)} do not match a posterior over "
            f"{posterior.weights.shape[0]} measurements in {posterior.dim} dims"
        )
    exact_mean, exact_cov = posterior.mean(), posterior.covariance()
    mean_err = ((x.mean(1) - exact_mean) ** 2).mean()
    trace = torch.diagonal(exact_cov, dim1=-2, dim2=-1).sum(-1)  # (B,)
    risk = (((x - exact_mean[:, None]) ** 2).sum(-1).mean(1) + trace).mean() / d
    out = {"mean_rmse": float(mean_err.sqrt()), "expected_rmse": float(risk.sqrt())}
    out["floor_rmse"] = float((trace.mean() / d).sqrt())
    if n > 1:
        g = torch.Generator().manual_seed(seed)
        reference = posterior.sample(n_reference, g)
        sw = [
            float(sliced_wasserstein(x[i], reference[i], n_projections=n_projections, seed=seed))
            for i in range(b)
        ]
        out["sliced_w2"] = sum(sw) / b
    return out


def fit_mixture(x: Tensor, labels: Tensor, floor: float = 1e-2) -> GaussianMixture:
    """A Gaussian-mixture prior fitted to data: one component per label value, with the
    component's sample mean, sample covariance + ``floor`` I (so it is positive definite) and
    weight equal to its frequency. Gives data-like priors (digits, phantoms) whose posterior
    under any linear measurement is exact (:func:`mixture_posterior`)."""
    flat = x.to(torch.float64).reshape(x.shape[0], -1)
    if labels.shape != (flat.shape[0],):
        raise UserError(f"labels must have shape ({flat.shape[0]},), got {tuple(labels.shape)}")
    if not floor > 0:
        raise UserError(f"floor must be > 0, got {floor}")
    eye = torch.eye(flat.shape[1], dtype=torch.float64)
    means, covs, weights = [], [], []
    for value in labels.unique():
        rows = flat[labels == value]
        if rows.shape[0] < 2:
            raise UserError(f"label {int(value)} has fewer than 2 samples")
        means.append(rows.mean(0))
        covs.append(torch.cov(rows.T).reshape_as(eye) + floor * eye)
        weights.append(float(rows.shape[0]))
    return GaussianMixture(torch.stack(means), torch.stack(covs), torch.tensor(weights))
