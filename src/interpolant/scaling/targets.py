"""Exact reward-tilted targets of Gaussian mixtures, and the best-of-N order statistic.

Inference-time steering targets p*(x) ∝ p(x) exp(r(x) / temperature) (Singhal et al. 2025,
eq. 1, with their lambda = 1 / temperature). For a Gaussian mixture p = sum_k pi_k N(mu_k, C_k)
and a linear or concave quadratic reward the tilt is again a Gaussian mixture, component by
component (completing the square), so every method's output can be compared with the exact
target:

* linear r = a.x + b, with u = a / temperature:
      mu_k' = mu_k + C_k u,  C_k' = C_k,  pi_k' ∝ pi_k exp(u.mu_k + u^T C_k u / 2)
* quadratic r = -1/2 (x - c)^T Q (x - c), Q positive semi-definite, A = Q / temperature:
      C_k' = (C_k^{-1} + A)^{-1} = (I + C_k A)^{-1} C_k,  mu_k' = mu_k - C_k' A (mu_k - c),
      pi_k' ∝ pi_k det(I + C_k A)^{-1/2} exp(-1/2 (mu_k - c)^T A (I + C_k A)^{-1} (mu_k - c))

The log-partition log Z = log E_p[exp(r / temperature)] comes out of the same weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..data.oracles import GaussianMixture
from ..errors import UserError, WrongTypeError
from .rewards import LinearReward, QuadraticReward


@dataclass(frozen=True)
class TiltedTarget:
    """The exact tilted mixture, E_{p*}[r], and log Z = log E_p[exp(r / temperature)]."""

    mixture: GaussianMixture
    expected_reward: float
    log_partition: float
    temperature: float


def _check_temperature(temperature: float) -> float:
    if not (
        isinstance(temperature, float | int) and math.isfinite(temperature) and temperature > 0
    ):
        raise UserError(f"temperature must be a finite number > 0, got {temperature!r}")
    return float(temperature)


def _check_dim(mixture: GaussianMixture, dim: int, name: str) -> None:
    if mixture.dim != dim:
        raise UserError(f"{name} acts on {dim} numbers but the mixture has dimension {mixture.dim}")


def expected_reward(mixture: GaussianMixture, reward: LinearReward | QuadraticReward) -> float:
    """E_p[r] under a Gaussian mixture, exactly: a.mu + b, or -1/2 ((mu - c)^T Q (mu - c) +
    tr(Q C)) per component, averaged with the weights."""
    if isinstance(reward, LinearReward):
        _check_dim(mixture, reward.a.numel(), "the linear reward")
        per = mixture.means @ reward.a + reward.b
    elif isinstance(reward, QuadraticReward):
        _check_dim(mixture, reward.center.numel(), "the quadratic reward")
        diff = mixture.means - reward.center
        quad = torch.einsum("ki,ij,kj->k", diff, reward.Q, diff)
        trace = torch.einsum("ij,kji->k", reward.Q, mixture.covs)
        per = -0.5 * (quad + trace)
    else:
        raise WrongTypeError(
            f"no exact expectation for {type(reward).__name__}; use a linear or quadratic reward"
        )
    return float((mixture.weights * per).sum())


def _tilt_linear(mixture: GaussianMixture, reward: LinearReward, temperature: float):
    """Component-wise tilt by exp(u.x), u = a / temperature (b cancels in p*)."""
    u = reward.a / temperature
    shift = torch.einsum("kij,j->ki", mixture.covs, u)  # C_k u
    means = mixture.means + shift
    # log int N(x; mu, C) exp(u.x) dx = u.mu + u^T C u / 2 (the Gaussian moment generator).
    log_mass = mixture.means @ u + 0.5 * (shift @ u)
    return means, mixture.covs, log_mass


def _tilt_quadratic(mixture: GaussianMixture, reward: QuadraticReward, temperature: float):
    """Component-wise tilt by exp(-(x - c)^T A (x - c) / 2), A = Q / temperature."""
    a = reward.Q / temperature
    d = mixture.dim
    eye = torch.eye(d, dtype=torch.float64)
    m_t = eye + mixture.covs @ a  # (I + C A) = M^T with M = I + A C
    covs = torch.linalg.solve(m_t, mixture.covs)  # C' = (I + C A)^{-1} C = (C^{-1} + A)^{-1}
    covs = 0.5 * (covs + covs.mT)
    diff = mixture.means - reward.center  # (K, d)
    means = mixture.means - torch.einsum("kij,jl,kl->ki", covs, a, diff)
    # log int N(x; mu, C) exp(-(x-c)^T A (x-c)/2) dx
    #   = -1/2 log det(I + C A) - 1/2 (mu - c)^T A (I + C A)^{-1} (mu - c)   (Woodbury form).
    solved = torch.linalg.solve(m_t, diff[..., None])[..., 0]  # (I + C A)^{-1} (mu - c)
    quad = torch.einsum("ki,ij,kj->k", diff, a, solved)
    log_mass = -0.5 * torch.linalg.slogdet(m_t).logabsdet - 0.5 * quad
    return means, covs, log_mass


def tilt(
    mixture: GaussianMixture, reward: LinearReward | QuadraticReward, temperature: float = 1.0
) -> TiltedTarget:
    """The exact tilted target p*(x) ∝ p(x) exp(r(x) / temperature) of a Gaussian mixture under a
    linear or quadratic reward, with E_{p*}[r] and log E_p[exp(r / temperature)]."""
    temperature = _check_temperature(temperature)
    if isinstance(reward, LinearReward):
        _check_dim(mixture, reward.a.numel(), "the linear reward")
        means, covs, log_mass = _tilt_linear(mixture, reward, temperature)
        offset = reward.b / temperature
    elif isinstance(reward, QuadraticReward):
        _check_dim(mixture, reward.center.numel(), "the quadratic reward")
        means, covs, log_mass = _tilt_quadratic(mixture, reward, temperature)
        offset = 0.0
    else:
        raise WrongTypeError(
            f"no exact tilt for {type(reward).__name__}; use LinearReward or QuadraticReward"
        )
    log_weights = torch.log(mixture.weights) + log_mass
    log_partition = float(torch.logsumexp(log_weights, 0)) + offset
    tilted = GaussianMixture(means, covs, torch.softmax(log_weights, 0))
    return TiltedTarget(tilted, expected_reward(tilted, reward), log_partition, temperature)


def expected_max_standard_normal(n: int, points: int = 4001) -> float:
    """E[max of n iid N(0, 1)] = int z n phi(z) Phi(z)^(n-1) dz (trapezoid rule on [-10, 10]):
    the best-of-n gain, in standard deviations, of a reward that is Gaussian under the sampler."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"n must be an int >= 1, got {n!r}")
    z = torch.linspace(-10.0, 10.0, points, dtype=torch.float64)
    log_phi = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
    log_cdf = torch.special.log_ndtr(z)
    density = torch.exp(math.log(n) + log_phi + (n - 1) * log_cdf)
    return float(torch.trapezoid(z * density, z))


def best_of_n_expected_reward(mean: float, std: float, n: int) -> float:
    """E[max_i r_i] for n iid rewards r_i ~ N(mean, std^2): the order-statistic formula
    mean + std E[max of n standard normals] (exact for a linear reward of a Gaussian)."""
    if not (math.isfinite(std) and std >= 0):
        raise UserError(f"std must be a finite number >= 0, got {std}")
    return float(mean) + float(std) * expected_max_standard_normal(n)
