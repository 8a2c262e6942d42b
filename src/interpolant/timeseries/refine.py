"""TSDiff's refinement (Kollovieh et al. 2023, sec. 3.2): improve any base forecaster's samples
with the unconditional window model as an energy.

For a window y (model space, channel 0 optimised, lag channels rebuilt from it):

    E(y) = || eps - eps_theta(sqrt(abar*) y + sqrt(1 - abar*) eps, t*) ||^2 + s R(y)     (eq. 10)

with a fresh eps every iteration (a stochastic estimate of the diffusion loss at one step t*)
and the observation prior R: ``"mse"``, sum over the context of (y - y_obs)^2, or
``"quantile"``, sum over the whole window of pinball(y_obs - y, q_k) against the window whose
horizon holds the initial forecast (sample k of S, sorted per point, at level k / (S + 1)), so
the prior also anchors the forecast to its start, as the official code does.

t* is chosen as the paper's code chooses it (``get_best_diffusion_step``): the step n whose
loss on a batch of windows is closest to the mean loss over steps, argmin_n (L_n - mean L)^2.

Optimisers: ``"most_likely"``: SGD (lr 0.1) with ReduceLROnPlateau on E, ``iterations`` steps
(eq. 11, the mode); ``"mcmc"``: overdamped Langevin y <- y - eta grad E + sqrt(2 eta) gamma xi
(eta = 0.1, gamma = 0.1 as in the official code; eq. 12), noise from the per-sample stream
``"timeseries-refine"``; it targets p(y) ~ exp(-E(y) / gamma^2) without a correction.
``"hmc"``: Hamiltonian Monte Carlo on the same law (Neal 2011, sec. 5.3.2): each of the
``iterations`` transitions draws a momentum p ~ N(0, I), runs ``leapfrog_steps`` leapfrog
steps of size ``hmc_step`` on U = E / gamma^2, and accepts per sample with probability
min(1, exp(H_0 - H_1)), H = U + |p|^2 / 2 (the Metropolis correction). The diffusion energy is
stochastic (its eps); it is drawn once per transition, so each transition is an exact
Metropolis-corrected move for the energy with that eps (the same role the fresh eps plays in
the other two optimisers). ``RefineResult.acceptance`` reports the mean acceptance rate.

Every network evaluation is counted in ``RefineResult.nfe`` (per sample: one per iteration;
HMC: leapfrog_steps + 1 per transition).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from ..guidance.energy import pinball
from ..predictions import Model
from ..randomness import Streams
from .forecast import check_windows
from .windows import Windows

OPTIMISERS = ("most_likely", "mcmc", "hmc")


@dataclass
class RefineResult:
    """Refined forecasts (N, S, H) in the series' units, the step t* used, and the network
    evaluations per sample."""

    samples: Tensor
    step: int
    nfe: int
    acceptance: float | None = None
    #: iterations k -> the forecasts after the first k iterations (``snapshots`` of refine).
    snapshots: dict[int, Tensor] = field(default_factory=dict)


@dataclass
class HMCResult:
    """The chains' final states (B, ...), per-chain acceptance rates (B,) and the energy
    gradient evaluations per chain."""

    x: Tensor
    acceptance: Tensor
    evaluations: int


def hmc(
    energy: Callable[[Tensor, int], Tensor],
    x: Tensor,
    streams: Streams,
    *,
    step_size: float,
    leapfrog_steps: int = 10,
    iterations: int = 100,
    jitter: float = 0.5,
) -> HMCResult:
    """Hamiltonian Monte Carlo with one chain per row of ``x`` (B, ...) on p(x) ~ exp(-U(x)).

    ``energy(x, k)`` is U per row (B,) during transition k (a deterministic energy ignores k).
    Each transition: p ~ N(0, I) from ``streams``; leapfrog p <- p - h/2 grad U,
    (x <- x + h p, p <- p - h grad U) x L with the last momentum step halved; accept row b
    when u_b < exp(H_0 - H_1), u_b ~ U(0, 1) from ``streams`` (Neal 2011, eqs. 5.18-5.20).
    The step size of each chain and transition is drawn from h (1 +- ``jitter``): a fixed
    trajectory length h L can be close to a multiple of half the period of a direction (for a
    Gaussian, pi sd), which then never mixes (Neal 2011, sec. 5.4.2.2)."""
    if step_size <= 0 or leapfrog_steps < 1 or iterations < 1 or not 0 <= jitter < 1:
        raise UserError(
            f"HMC needs step_size > 0, leapfrog_steps >= 1, iterations >= 1 and jitter in "
            f"[0, 1); got {step_size}, {leapfrog_steps}, {iterations}, {jitter}"
        )
    if len(streams) != x.shape[0]:
        raise UserError(f"{len(streams)} random streams for {x.shape[0]} chains")

    def value_and_grad(y: Tensor, k: int) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            u = energy(y, k)
            (g,) = torch.autograd.grad(u.sum(), y)
        return u.detach(), g.detach()

    dims = tuple(range(1, x.ndim))
    current = x.detach().clone()
    accepted = torch.zeros(x.shape[0], dtype=torch.float64)
    for k in range(iterations):
        u0, g = value_and_grad(current, k)
        p = streams.normal(x.shape[1:], dtype=x.dtype, device=x.device)
        spread = 2 * streams.uniform((), dtype=torch.float64) - 1
        h = (step_size * (1 + jitter * spread)).to(x).reshape(-1, *[1] * len(dims))
        h0 = u0 + 0.5 * p.square().sum(dims)
        y = current.clone()
        p = p - 0.5 * h * g
        for step in range(leapfrog_steps):
            y = y + h * p
            u1, g = value_and_grad(y, k)
            p = p - (h if step < leapfrog_steps - 1 else 0.5 * h) * g
        h1 = u1 + 0.5 * p.square().sum(dims)
        log_u = streams.uniform((), dtype=torch.float64).log().to(h0)
        accept = torch.isfinite(h1) & (log_u < (h0 - h1))
        current = torch.where(accept.reshape(-1, *[1] * len(dims)), y, current)
        accepted += accept.to(torch.float64).cpu()
    return HMCResult(current, accepted / iterations, iterations * (leapfrog_steps + 1))


def step_time(model: Model, n: int) -> float:
    """Path time of the discrete step n (0-based) of a DiscreteVP path, t_n = (n + 1) / N."""
    steps = int(model.path.alphas_cumprod.numel())  # type: ignore[attr-defined]
    return (n + 1) / steps


def step_losses(model: Model, reference: Tensor, seed: int = 0) -> Tensor:
    """Mean eps-loss of ``model`` on ``reference`` (B, C, L) at every discrete step (N,)."""
    abar = model.path.alphas_cumprod  # type: ignore[attr-defined]
    eps = Streams(seed, reference.shape[0], "timeseries-tstar").normal(reference.shape[1:])
    losses = []
    with torch.no_grad():
        for n in range(abar.numel()):
            a = float(abar[n])
            x_t = a**0.5 * reference + (1 - a) ** 0.5 * eps
            pred = model(x_t.float(), step_time(model, n)).eps
            losses.append(float((pred - eps).square().mean()))
    return torch.tensor(losses, dtype=torch.float64)


def best_step(losses: Tensor) -> int:
    """The paper's t*: argmin_n (L_n - mean_n L_n)^2."""
    return int((losses - losses.mean()).square().argmin())


def _assemble(y0: Tensor, windows: Windows, samples: int) -> Tensor:
    """(N S, C, L) windows from channel 0 ``y0`` (N S, L): lag channel l holds y0 shifted by l,
    and the data's values where the shifted source lies before the window."""
    spec = windows.spec
    fixed = windows.values.repeat_interleave(samples, 0).to(y0)
    rows = [y0]
    for lag in spec.lags:
        inside = torch.cat([fixed[:, 1 + len(rows) - 1, :lag], y0[:, : spec.length - lag]], 1)
        rows.append(inside)
    return torch.stack(rows, 1)


def refine(
    model: Model,
    windows: Windows,
    base: Tensor,
    *,
    optimiser: str = "most_likely",
    prior: str = "quantile",
    iterations: int = 20,
    prior_scale: float = 1.0,
    lr: float = 0.1,
    noise_scale: float = 0.1,
    leapfrog_steps: int = 5,
    hmc_step: float = 0.01,
    step: int | None = None,
    reference: Tensor | None = None,
    seed: int = 0,
    snapshots: tuple[int, ...] = (),
) -> RefineResult:
    """Refine ``base`` forecasts (N, S, H) (series units; H = the spec's horizon) of ``windows``.

    ``step``: t* as a 0-based discrete step (default: :func:`best_step` on ``reference``, a
    batch of model-space windows, by default ``windows.values``). ``optimiser="hmc"``:
    ``iterations`` transitions of ``leapfrog_steps`` leapfrog steps of size ``hmc_step`` on
    E / noise_scale^2 (see the module docstring). ``snapshots``: iteration counts k (0 <= k <=
    ``iterations``, SGD / Langevin only) whose forecasts are kept in ``RefineResult.snapshots``;
    a run of k iterations is the first k iterations of a longer one (same eps and noise draws,
    the plateau schedule sees the same history), so one run gives every k of a grid."""
    check_windows(model, windows)
    spec = windows.spec
    n, s_count = len(windows), base.shape[1] if base.ndim == 3 else 0
    if base.shape != (n, s_count, spec.horizon) or s_count < 1:
        raise UserError(
            f"base forecasts must have shape ({n}, S, {spec.horizon}), got {tuple(base.shape)}"
        )
    if not bool(base.isfinite().all()):
        raise UserError("base forecasts hold non-finite values")
    if optimiser not in OPTIMISERS:
        raise UserError(f"optimiser must be one of {OPTIMISERS}, got {optimiser!r}")
    if prior not in ("mse", "quantile"):
        raise UserError(f"prior must be 'mse' or 'quantile', got {prior!r}")
    if any(not 0 <= k <= iterations for k in snapshots) or (snapshots and optimiser == "hmc"):
        raise UserError(
            f"snapshots must lie in [0, iterations={iterations}] and need the 'most_likely' or "
            f"'mcmc' optimiser; got {list(snapshots)} with {optimiser!r}"
        )
    if step is None:
        ref = windows.values if reference is None else reference
        step = best_step(step_losses(model, ref.float(), seed))
    abar = float(model.path.alphas_cumprod[step])  # type: ignore[attr-defined]
    t_star = step_time(model, step)

    # Start: the base samples sorted per point, scaled like the window, after the context.
    scale = windows.scale.to(torch.float32)[:, None, None]
    loc = windows.loc.to(torch.float32)[:, None, None]
    start = (base.to(torch.float32).sort(1).values - loc) / scale
    ctx = windows.values[:, 0, : spec.context].to(torch.float32)
    obs = torch.cat([ctx[:, None].expand(-1, s_count, -1), start], -1).reshape(n * s_count, -1)
    ctx_mask = torch.zeros(spec.length)
    ctx_mask[: spec.context] = 1.0
    ctx_mask = ctx_mask * windows.observed[:, 0].repeat_interleave(s_count, 0).float()
    q = torch.arange(1, s_count + 1, dtype=torch.float32) / (s_count + 1)
    q = q.repeat(n)[:, None]

    def energy(y0: Tensor, eps: Tensor) -> Tensor:
        """E per sample (N S,)."""
        y = _assemble(y0, windows, s_count)
        x_t = abar**0.5 * y + (1 - abar) ** 0.5 * eps
        diffusion = (eps - model(x_t, t_star).eps).square().sum((1, 2))
        if prior == "mse":
            reg = ((y0 - obs).square() * ctx_mask).sum(1)
        else:
            reg = pinball(obs - y0, q).sum(1)
        return diffusion + prior_scale * reg

    streams = Streams(seed, n * s_count, "timeseries-refine")
    channels = spec.channels
    if optimiser == "hmc":
        noises = Streams(seed, n * s_count, "timeseries-refine-eps")
        drawn: dict[int, Tensor] = {}

        def potential(y0: Tensor, k: int) -> Tensor:
            if k not in drawn:  # one eps per transition, shared by its leapfrog steps
                drawn.clear()
                drawn[k] = noises.normal((channels, spec.length))
            return energy(y0, drawn[k]) / noise_scale**2

        chains = hmc(
            potential, obs, streams, step_size=hmc_step, leapfrog_steps=leapfrog_steps,
            iterations=iterations,
        )  # fmt: skip
        horizon = chains.x[:, spec.context :].reshape(n, s_count, spec.horizon)
        rate = float(chains.acceptance.mean())
        return RefineResult(horizon * scale + loc, step, chains.evaluations, rate)
    y0 = obs.clone().requires_grad_(True)
    sgd = torch.optim.SGD([y0], lr=lr)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(sgd)

    def unscaled() -> Tensor:
        return y0.detach()[:, spec.context :].reshape(n, s_count, spec.horizon) * scale + loc

    kept = {0: unscaled()} if 0 in snapshots else {}
    with torch.enable_grad():
        for done in range(1, iterations + 1):
            eps = streams.normal((channels, spec.length))
            value = energy(y0, eps).sum()
            (grad,) = torch.autograd.grad(value, y0)
            if optimiser == "most_likely":
                y0.grad = grad
                sgd.step()
                plateau.step(float(value.detach()))
            else:
                xi = streams.normal((spec.length,))
                with torch.no_grad():
                    y0 -= lr * grad - (2 * lr) ** 0.5 * noise_scale * xi
            if done in snapshots:
                kept[done] = unscaled()
    return RefineResult(unscaled(), step, iterations, snapshots=kept)


#: Refinement strengths tried on validation windows: the optimiser's iterations (0 = the base
#: forecasts unchanged) and the observation prior's weight s of eq. 10. A weak model's energy
#: can pull good forecasts away from the truth (sunspots: DeepAR's CRPS 0.247 -> 0.286 after 20
#: iterations at s = 1, -> 0.237 after 10 at s = 4), which only held-out windows can tell.
ITERATION_GRID = (0, 5, 10, 20)
PRIOR_SCALES = (1.0, 4.0, 16.0)


@dataclass(frozen=True)
class RefineChoice:
    """The refinement strength chosen on validation windows and the CRPS of every candidate
    (keys ``"s=PRIOR,k=ITERATIONS"``)."""

    prior_scale: float
    iterations: int
    validation_crps: dict[str, float]


def choose_refinement(
    model: Model,
    val: Windows,
    base_val: Tensor,
    *,
    optimiser: str = "most_likely",
    iterations: tuple[int, ...] = ITERATION_GRID,
    prior_scales: tuple[float, ...] = PRIOR_SCALES,
    seed: int = 0,
    **options: Any,
) -> RefineChoice:
    """The refinement strength for a base forecaster, chosen on validation windows ``val``
    (never the test windows): the (prior weight, iteration count) of ``prior_scales`` x
    ``iterations`` whose refined forecasts of ``base_val`` (N, S, H: the base forecaster's
    samples for ``val``, made without seeing their horizons) have the lowest CRPS; ties go to
    fewer iterations, then the smaller weight, and every weight's k = 0 is the base itself.
    One run of max(iterations) per weight gives every count (``snapshots``). ``options`` go to
    :func:`refine` (``step``, ``reference``, ``lr``, ...)."""
    from .metrics import scores

    if not iterations or any(k < 0 for k in iterations) or not prior_scales:
        raise UserError(
            f"the refinement grid needs iteration counts >= 0 and at least one prior weight, "
            f"got {list(iterations)} and {list(prior_scales)}"
        )
    counts = tuple(sorted(set(iterations)))
    y, mask = val.horizon(), val.horizon_observed().double()
    table: dict[str, float] = {}
    candidates: list[tuple[float, int, float]] = []
    for weight in sorted(set(prior_scales)):
        run = refine(
            model, val, base_val, optimiser=optimiser, iterations=max(counts), snapshots=counts,
            prior_scale=weight, seed=seed, **options,
        )  # fmt: skip
        for k in counts:
            value = scores(run.snapshots[k].double(), y, mask)["crps"]
            table[f"s={weight:g},k={k}"] = value
            candidates.append((value, k, weight))
    _, best_k, best_weight = min(candidates)
    return RefineChoice(best_weight, best_k, table)


def reference_windows(train: Windows, count: int = 256) -> Tensor:
    """Up to ``count`` evenly spaced training windows (model space): the batch on which t* is
    chosen (:func:`best_step`), deterministic and made of training windows only."""
    rows = torch.linspace(0, len(train) - 1, min(count, len(train))).round().long()
    return train.values[rows.unique()]


def refine_chosen(
    model: Model,
    train: Windows,
    val: Windows,
    test: Windows,
    base_val: Tensor,
    base_test: Tensor,
    *,
    optimiser: str = "most_likely",
    seed: int = 0,
) -> tuple[RefineResult, RefineChoice]:
    """Refine a base forecaster's ``base_test`` samples of ``test`` with everything chosen
    before the test windows: t* on training windows (:func:`reference_windows`), the strength
    (prior weight, iterations) on the validation windows from ``base_val``
    (:func:`choose_refinement`, "most likely"); then ``optimiser`` applies that strength."""
    step = best_step(step_losses(model, reference_windows(train).float(), seed))
    choice = choose_refinement(model, val, base_val, step=step, seed=seed)
    result = refine(
        model, test, base_test, optimiser=optimiser, prior_scale=choice.prior_scale,
        iterations=choice.iterations, step=step, seed=seed,
    )  # fmt: skip
    return result, choice
