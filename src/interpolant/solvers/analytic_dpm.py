"""Analytic-DPM (Bao et al. 2022, "Analytic-DPM: an Analytic Estimate of the Optimal Reverse
Variance in Diffusion Probabilistic Models"; official code ``baofff/Analytic-DPM``): the
per-step average Var[x0 | x_t] that DDIM's ``x0_var`` adds to the ancestral kernel.

By Tweedie, Cov[x0 | x_t] = (sigma^2 / alpha^2) (I + sigma^2 H log p_t), and E[H log p_t] =
-E[score score^T], so the average over coordinates is

    Var_t = (sigma^2 / alpha^2) (1 - sigma^2 Gamma_t),   Gamma_t = E_q ||score(x_t)||^2 / d,

with sigma^2 Gamma_t = E ||eps_hat||^2 / d (eq. 8; the official ``ms_eps``), estimated once
per node by Monte Carlo over x_t = alpha x0 + sigma eps with x0 from data. ``estimator=
"residual"`` uses E ||x0 - x0_hat(x_t)||^2 / d instead: the same number for an exact model
(its MSE is the expected posterior variance), the moment-matched variance about the model's
own mean for an imperfect one (Bao et al. 2022b), and far less noisy at high noise, where the
score form multiplies the Monte Carlo error of E ||eps_hat||^2 / d by sigma^2 / alpha^2.

Clipping: Analytic-DPM's bounds (Theorem 2) 0 <= Var_t <= sigma^2 / alpha^2, and <= ((b - a)
/ 2)^2 for data in [a, b] (``data_range``; the official code clips to [0, 1] for [-1, 1]
pixels); also Var_t <= Var[x0] (law of total variance, the average per-coordinate variance
of the samples; not in the paper), which is also the value where alpha = 0 (x_t carries no
information about x0 there). The official code's extra clip of the first steps' variance for
its discrete pixel decoder is not used: the chain here ends in continuous data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError
from ..predictions import Evaluations, Model
from .base import Run
from .dpm import DDIM
from .spec import Sampler

ESTIMATORS = ("score", "residual")


@dataclass(frozen=True)
class X0Variance:
    """``table``: the clipped average Var[x0 | x_t] per coordinate at each step's start (what
    DDIM's ``x0_var`` takes); ``raw``: before clipping; ``evaluations``: the network
    evaluations on single samples the estimate cost (``n_mc`` per node with alpha > 0);
    ``calls``: the batched model calls (what an :class:`~interpolant.predictions.Evaluations`
    counter reads)."""

    table: tuple[float, ...]
    raw: tuple[float, ...]
    evaluations: int
    calls: int


def analytic_x0_variance(
    model: Model,
    sampler: Sampler,
    x0_samples: Tensor,
    n_mc: int | None = None,
    *,
    estimator: str = "residual",
    data_range: tuple[float, float] | None = None,
    seed: int = 0,
    batch: int = 4096,
) -> X0Variance:
    """The Analytic-DPM table of ``sampler``'s grid on ``model.path`` from data ``x0_samples``
    (N, *shape): ``n_mc`` draws x_t per node (default N; with replacement when more), one model
    evaluation each, so ``n_mc`` x (steps, less a node with alpha = 0) evaluations in all."""
    if estimator not in ESTIMATORS:
        raise UserError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if not isinstance(x0_samples, Tensor) or x0_samples.ndim < 2 or x0_samples.shape[0] < 2:
        raise UserError("x0_samples must be a tensor (N, *shape) of at least 2 data samples")
    n = x0_samples.shape[0] if n_mc is None else n_mc
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"n_mc must be an int >= 1, got {n_mc!r}")
    if data_range is not None and not data_range[1] > data_range[0]:
        raise UserError(f"data_range must be (a, b) with b > a, got {data_range!r}")
    grid = sampler.times(model.path)
    run = Run.for_model(model, grid, solver=sampler.solver, seed=0, rows=1)
    data = x0_samples.to(torch.float64)
    d = data[0].numel()
    # Law of total variance: E Var[x0 | x_t] <= Var[x0], averaged over coordinates.
    total = float(data.flatten(1).var(0).mean())
    box = math.inf if data_range is None else ((data_range[1] - data_range[0]) / 2) ** 2
    gen = torch.Generator().manual_seed(seed)
    counter = Evaluations()
    raw, table, evaluations = [], [], 0
    for i in range(run.n_steps):
        node = run.nodes[i]
        if node.alpha == 0.0:
            raw.append(total)
            table.append(min(total, box))
            continue
        acc = 0.0
        for lo in range(0, n, batch):
            m = min(batch, n - lo)
            if n == data.shape[0]:
                x0 = data[lo : lo + m]
            else:
                x0 = data[torch.randint(data.shape[0], (m,), generator=gen)]
            eps = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
            x_t = node.alpha * x0 + node.sigma * eps
            with torch.no_grad():
                pred = model.at(x_t.to(x0_samples.dtype), node, counter)
            if estimator == "score":
                acc += float(pred.eps.to(torch.float64).square().sum())
            else:
                acc += float((x0 - pred.x0.to(torch.float64)).square().sum())
            evaluations += m
        mean = acc / (n * d)
        snr_inv = (node.sigma / node.alpha) ** 2
        value = snr_inv * (1.0 - mean) if estimator == "score" else mean
        raw.append(value)
        table.append(min(max(value, 0.0), snr_inv, total, box))
    return X0Variance(tuple(table), tuple(raw), evaluations, counter.nfe)


def analytic_sampler(sampler: Sampler, variance: X0Variance | tuple[float, ...]) -> Sampler:
    """``sampler`` (a DDIM solver, any eta) with the Analytic-DPM table ``variance``."""
    solver = sampler.solver
    if not isinstance(solver, DDIM):
        raise UserError(f"Analytic-DPM variances are an option of ddim, got {solver!r}")
    table = variance.table if isinstance(variance, X0Variance) else tuple(variance)
    return sampler.replace(solver=solver.replace(x0_var=table))


__all__ = ["ESTIMATORS", "X0Variance", "analytic_sampler", "analytic_x0_variance"]
