"""EDLM (seed 19, Xu et al. 2025): energy-based correction of parallel masked-diffusion steps.

A masked diffusion model denoises all masked tokens independently, p_theta(x0 | x_t) =
prod_i p_theta(x0^i | x_t), which is wrong when several dependent tokens unmask in one step.
EDLM corrects the joint with a residual energy (eq. 5):

    p_{theta,phi}(x0 | x_t) ∝ p_theta(x0 | x_t) exp(-E(x0, x_t, t)),

and samples it by importance sampling in the steps t of a window [is_end, is_start] (alg. 1,
"parallel importance sampling"): draw K proposals x0^(j) ~ p_theta(. | x_t) (visible tokens
carried over), weight w_j ∝ exp(-E_j / tau), resample one and take the posterior step
q(x_s | x_t, x0^(j)): each masked token becomes x0^i with prob (a_s - a_t) / (1 - a_t).
Outside the window the step is MDLM's.

EDLM-AR (training-free, sec. 3.2): E(x0, x_t) = -log p_AR(x0) + log p_theta(x0 | x_t), so the
corrected joint is p_AR restricted to sequences that agree with x_t, and w_j ∝ p_AR / p_theta
is the ordinary importance weight. The weights are exp(-E) as in the paper; the official code
uses exp(+E) (MinkaiXu/Energy-Diffusion-LLM issue #3): ``sign=-1`` reproduces that flip as an
ablation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from ..paths.discrete import DiscretePath
from .base import Denoiser, check_tokens, mask_id
from .samplers import Randomness, TextSample, denoiser_probs, inverse_cdf, time_grid


class Energy(Protocol):
    """``energy(x0 (N, L), x_t (N, L), proposal_logp (N,)) -> E (N,)``: lower is likelier."""

    def __call__(self, x0: Tensor, x_t: Tensor, proposal_logp: Tensor) -> Tensor: ...


class AREnergy:
    """EDLM-AR: E = -log p_AR(x0) + log p_theta(x0 | x_t) from a sequence log-likelihood
    ``log_prob(x0 (N, L)) -> (N,)`` (an autoregressive model or an exact language)."""

    def __init__(self, log_prob: Callable[[Tensor], Tensor]) -> None:
        self.log_prob = log_prob

    def __call__(self, x0: Tensor, x_t: Tensor, proposal_logp: Tensor) -> Tensor:
        return -self.log_prob(x0).to(torch.float64) + proposal_logp.to(torch.float64)


def importance_weights(energy: Tensor, temperature: float = 1.0, sign: float = 1.0) -> Tensor:
    """Self-normalised weights w_j ∝ exp(-sign E_j / temperature) over the last axis (K);
    rows whose energies are all +inf get uniform weights."""
    logw = -sign * energy.to(torch.float64) / temperature
    all_bad = torch.isneginf(logw).all(-1, keepdim=True)
    return torch.where(all_bad, torch.ones_like(logw), logw).softmax(-1)


def draw_proposals(
    x_t: Tensor, probs: Tensor, n_proposals: int, rng: Randomness
) -> tuple[Tensor, Tensor]:
    """K full sequences per row, masked positions drawn independently from ``probs`` (B, L, V)
    and visible ones carried over: (B, K, L) and their log p_theta(x0 | x_t) (B, K)."""
    batch, length, vocab = probs.shape
    u = rng.uniform((n_proposals, length)).to(probs.device)
    expanded = probs[:, None].expand(batch, n_proposals, length, vocab)
    draws = inverse_cdf(expanded, u)
    masked = (x_t == mask_id(vocab))[:, None].expand_as(draws)
    x0 = torch.where(masked, draws, x_t[:, None].expand_as(draws))
    token_logp = expanded.gather(-1, x0.unsqueeze(-1)).squeeze(-1).clamp_min(1e-300).log()
    return x0, (token_logp * masked).sum(-1)


def edlm_sample(
    denoiser: Denoiser,
    x_init: Tensor,
    vocab_size: int,
    steps: int,
    energy: Energy,
    n_proposals: int = 4,
    window: tuple[float, float] = (0.0, 1.0),
    temperature: float = 1.0,
    sign: float = 1.0,
    path: DiscretePath | None = None,
    generator: torch.Generator | None = None,
    seed: int = 0,
) -> TextSample:
    """EDLM sampling on a uniform grid of ``steps`` steps: importance sampling with
    ``n_proposals`` proposals in the steps whose start time t lies in ``window`` = (is_end,
    is_start) (the paper's defaults 0.4..0.6; its scripts use is_start = 1), MDLM steps
    elsewhere. ``n_proposals = 1`` is MDLM exactly. ``row_evals`` counts denoiser calls."""
    if n_proposals < 1:
        raise ValueError(f"n_proposals must be >= 1, got {n_proposals}")
    if not 0.0 <= window[0] <= window[1] <= 1.0:
        raise ValueError(
            f"window must be (is_end, is_start) with 0 <= is_end <= is_start <= 1, got {window}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    check_tokens(x_init, vocab_size)
    path = DiscretePath("linear") if path is None else path
    x, rng = x_init.clone(), Randomness(x_init.shape[0], seed, generator)
    batch, length = x.shape
    grid = time_grid(steps)
    alpha = path.alpha(grid).to(torch.float64)
    mask = mask_id(vocab_size)
    nfe, start = 0, time.perf_counter()
    for j in range(steps):
        t = grid[j].expand(batch)
        probs = denoiser_probs(denoiser, x, t, vocab_size)
        nfe += 1
        in_window = window[0] <= float(grid[j]) <= window[1]
        k = n_proposals if in_window else 1
        x0, logq = draw_proposals(x, probs, k, rng)
        if k > 1:
            # Parallel importance sampling (alg. 1): resample one proposal by exp(-E).
            x_rep = x[:, None].expand(batch, k, length).reshape(-1, length)
            e = energy(x0.reshape(-1, length), x_rep, logq.reshape(-1)).reshape(batch, k)
            w = importance_weights(e, temperature, sign)
            pick = inverse_cdf(w, rng.uniform(()))
            x0 = x0[torch.arange(batch), pick]
        else:
            x0 = x0[:, 0]
        # Posterior step q(x_s | x_t, x0): unmask each masked token w.p. (a_s - a_t)/(1 - a_t).
        delta = ((alpha[j + 1] - alpha[j]) / (1.0 - alpha[j])).clamp(0.0, 1.0)
        unmask = (x == mask) & (rng.uniform((length,)) < delta)
        x = torch.where(unmask, x0, x)
    row_evals = torch.full((batch,), nfe, dtype=torch.long)
    return TextSample(x, nfe, row_evals, time.perf_counter() - start)
