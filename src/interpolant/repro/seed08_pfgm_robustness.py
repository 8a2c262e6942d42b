"""Seed paper 8 (PFGM++, Xu et al. 2023): finite D is more robust than EDM (D -> inf).

PFGM++ perturbs data y in R^N with the heavy-tailed kernel p_r(x | y) ∝ (||x - y||^2 + r^2)^
(-(N+D)/2) (eq. 4), a multivariate Student-t with D degrees of freedom once r = sigma sqrt(D)
(sec. 4); with that alignment the sampling ODE is EDM's, dx/dsigma = (x - D(x, sigma)) / sigma,
where the denoiser D is the posterior mean E[y | x] under the kernel, and only the prior changes.
The paper's experiments (sec. 6; the robustness-rigidity trade-off is argued in sec. 5) inject
noise into the sampler, ``x <- x + alpha sigma_cur eps`` before each solver update
(``generate_alpha.py`` of the official code), and find that FID degrades more slowly for
smaller D.

Experiment (training-free): the target is the empirical measure of a finite set {y_i} (digits
from scikit-learn, 64-D, scaled to [-1, 1]). Its exact PFGM++ denoiser is

    E[y | x] = sum_i w_i y_i,  w_i ∝ (||x - y_i||^2 + r^2)^(-(N+D)/2),  r = sigma sqrt(D),

and the Gaussian posterior exp(-||x - y_i||^2 / (2 sigma^2)) at D = inf. Samples come from EDM's
Heun sampler (18 Karras steps, 35 NFE, sigma in [0.002, 80]) started from the PFGM++ prior
(``PFGM.noise_like`` times sigma_max), for each D and each alpha, with the perturbation applied
to the state as in the paper (a step hook after each step, at the next node's sigma; the first
perturbation, at sigma_max, is added to the initial draw). Common random numbers: every (D,
alpha) run shares the Gaussian directions of the prior and the injected noise (the sampler's
per-sample streams under one seed). Every derived seed comes from ``randomness.derive_seed``.

Metric: sliced W1 (exact 1-D W1 over fixed random directions) between the samples and the set
{y_i} itself, which is the exact target of this sampler; the noise floor is the same distance for
samples drawn from {y_i} with replacement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data import load_digits
from ..errors import UserError
from ..metrics import sliced_wasserstein
from ..paths import PFGM
from ..predictions import Model
from ..randomness import derive_seed, normal
from ..solvers import Hook, Run, Sampler, State, Step, sample
from ..solvers.grids import Karras
from ..solvers.ode import Heun
from .base import Repro, ReproResult, main, settings_dict


@dataclass(frozen=True)
class Settings:
    """Sizes of the experiment (full run; ``quick`` shrinks the data and the sample count)."""

    n_data: int = 500
    n_samples: int = 2_000
    d_values: tuple[float, ...] = (8.0, 32.0, 128.0, 2048.0, math.inf)
    alphas: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2)
    nfe: int = 35  # EDM Heun, 18 Karras steps
    n_directions: int = 512
    floor_draws: int = 5
    # Claim rule (fixed before measuring): with Delta(D) = SW(D, alpha_max) - SW(D, 0), every
    # finite D <= moderate_d has Delta(D) < margin * Delta(inf), and Delta(inf) exceeds
    # noise_sds standard deviations of the floor (the perturbation measurably hurts EDM).
    moderate_d: float = 128.0
    margin: float = 0.9
    noise_sds: float = 2.0


QUICK = Settings(n_data=200, n_samples=400, n_directions=256, floor_draws=3)


def heun_sampler(s: Settings, seed: int) -> Sampler:
    """EDM's Heun sampler at ``s.nfe`` NFE on the Karras grid, float64 arithmetic."""
    return Sampler(Heun(), nfe=s.nfe, grid=Karras(), solver_dtype="float64", seed=seed)


def digits_data(n: int, seed: int) -> Tensor:
    """``n`` training-split digits (64-D, in [-1, 1]) as float64 rows, chosen by ``seed``."""
    images = load_digits("train").x.flatten(1).to(torch.float64)
    if not 1 <= n <= images.shape[0]:
        raise UserError(f"n_data must lie in [1, {images.shape[0]}], got {n}")
    g = torch.Generator().manual_seed(derive_seed("seed08-data", seed))
    pick = torch.randperm(images.shape[0], generator=g)[:n]
    return images[pick]


class ExactPFGMDenoiser:
    """The exact PFGM++ denoiser of a finite set {y_i}: the posterior mean under the Student-t
    kernel of ``path`` (the Gaussian kernel when D = inf), called as ``net(x_t, t)``."""

    def __init__(self, data: Tensor, path: PFGM) -> None:
        self.data = data.to(torch.float64).flatten(1)
        self.path = path
        self.sq_norms = self.data.square().sum(1)

    def log_weights(self, x: Tensor, sigma: Tensor) -> Tensor:
        """Unnormalised log posterior weights (B, M): -(N+D)/2 log(1 + d^2 / r^2), eq. 4, or
        -d^2 / (2 sigma^2) at D = inf (terms constant in i dropped)."""
        d2 = (x.square().sum(1, keepdim=True) + self.sq_norms - 2.0 * x @ self.data.T).clamp_min(0)
        if math.isinf(self.path.D):
            return -d2 / (2.0 * sigma[:, None] ** 2)
        r = self.path.r_of_sigma(sigma)[:, None]
        return -0.5 * (x.shape[1] + self.path.D) * torch.log1p(d2 / r**2)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        flat = x.to(torch.float64).flatten(1)
        sigma = self.path.sigma(t.to(torch.float64))
        weights = torch.softmax(self.log_weights(flat, sigma), dim=1)
        return (weights @ self.data).reshape(x.shape).to(x.dtype)


class InjectNoise(Hook[None]):
    """The paper's robustness probe as a step hook: ``x <- x + alpha sigma eps`` at the node the
    step arrived at, i.e. before the next update (``generate_alpha.py``); a no-op at sigma = 0.
    eps comes from the run's per-sample streams."""

    def __init__(self, alpha: float) -> None:
        self.alpha = float(alpha)

    def on_step(self, x_state: State, step: Step, run: Run, state: None) -> State:
        sigma = step.nxt.sigma
        if self.alpha == 0 or sigma == 0:
            return x_state
        return x_state.replace(x=x_state.x + self.alpha * sigma * run.noise(x_state.x))

    def __repr__(self) -> str:
        return f"InjectNoise(alpha={self.alpha})"


def pfgm_samples(data: Tensor, D: float, alpha: float, s: Settings, seed: int) -> Tensor:
    """Heun samples at ``s.nfe`` NFE from the PFGM++ prior of ``D``, injected noise ``alpha``."""
    path = PFGM(D=D)
    n, dim = s.n_samples, data.shape[1]
    # The prior (Student-t eps, times sigma_max in `sample`); its Gaussian part is shared by all D.
    g = torch.Generator().manual_seed(derive_seed("seed08-prior", seed))
    noise = path.noise_like(torch.zeros(n, dim, dtype=torch.float64), g)
    # First injection, at sigma_max: x + alpha sigma_max z = sigma_max (noise + alpha z).
    z = normal((dim,), seed, range(n), "seed08-first-injection", dtype=torch.float64)
    model = Model(ExactPFGMDenoiser(data, path), path, predicts="x0")
    return sample(model, noise + alpha * z, heun_sampler(s, seed), hooks=[InjectNoise(alpha)]).x


def sw1(x: Tensor, data: Tensor, s: Settings, seed: int) -> float:
    """Sliced W1 to ``data`` over the same ``s.n_directions`` directions for every call."""
    return float(sliced_wasserstein(x, data, p=1, n_projections=s.n_directions, seed=seed))


def nearest_distance(x: Tensor, data: Tensor) -> float:
    """Mean over samples of the RMS-per-coordinate distance to the nearest point of ``data``."""
    return float(torch.cdist(x, data).min(1).values.mean() / math.sqrt(x.shape[1]))


def d_label(D: float) -> str:
    return "inf" if math.isinf(D) else f"{D:g}"


def claim_rule(delta: dict[float, float], floor_sd: float, s: Settings) -> bool:
    """Every finite D <= moderate_d degrades by less than margin x the degradation of D = inf,
    and the degradation of D = inf is larger than noise_sds floor standard deviations."""
    ref = delta[math.inf]
    small = [D for D in delta if D <= s.moderate_d]
    return ref > s.noise_sds * floor_sd and all(delta[D] < s.margin * ref for D in small)


def run(quick: bool = False, seed: int = 0) -> ReproResult:
    """Sliced W1 to the data for each (D, alpha); degradation from alpha = 0 to alpha_max."""
    s = QUICK if quick else Settings()
    if math.inf not in s.d_values:
        raise UserError("d_values must include math.inf (EDM), the reference of the claim")
    data = digits_data(s.n_data, seed)
    g = torch.Generator().manual_seed(derive_seed("seed08-floor", seed))
    floors = torch.tensor(
        [
            sw1(data[torch.randint(s.n_data, (s.n_samples,), generator=g)], data, s, seed)
            for _ in range(s.floor_draws)
        ]
    )
    floor, floor_sd = float(floors.mean()), float(floors.std())
    numbers: dict[str, float] = {"noise floor SW1": floor, "noise floor SW1 sd": floor_sd}
    sw: dict[tuple[float, float], float] = {}
    nn_max = 0.0
    for D in s.d_values:
        for alpha in s.alphas:
            x = pfgm_samples(data, D, alpha, s, seed)
            sw[D, alpha] = sw1(x, data, s, seed)
            numbers[f"SW1 D={d_label(D)} alpha={alpha:g}"] = sw[D, alpha]
            nn_max = max(nn_max, nearest_distance(x, data))
    a0, a1 = s.alphas[0], s.alphas[-1]
    delta = {D: sw[D, a1] - sw[D, a0] for D in s.d_values}
    for D in s.d_values:
        numbers[f"degradation D={d_label(D)}"] = delta[D]
    numbers["largest mean NN distance to the data"] = nn_max
    held = claim_rule(delta, floor_sd, s)
    rule = (
        f"Delta(D) = SW1(D, alpha={a1:g}) - SW1(D, alpha={a0:g}); held iff Delta(inf) > "
        f"{s.noise_sds:g} x sd(floor) and Delta(D) < {s.margin:g} x Delta(inf) for every finite "
        f"D <= {s.moderate_d:g}"
    )
    per_d = ", ".join(f"D={d_label(D)} {delta[D]:+.4f}" for D in s.d_values)
    headline = f"SW1 rise at alpha={a1:g}: {per_d} (floor {floor:.4f} +- {floor_sd:.4f})"
    summary = (
        f"Exact PFGM++ denoisers of {s.n_data} digits (N = {data.shape[1]}), EDM Heun at "
        f"{s.nfe} NFE, {s.n_samples} samples. Sliced W1 to the data at alpha = {a0:g} is "
        + ", ".join(f"{sw[D, a0]:.3f} (D={d_label(D)})" for D in s.d_values)
        + f"; injecting noise with alpha = {a1:g} raises it by {per_d} (floor {floor:.4f} +- "
        f"{floor_sd:.4f}). "
        + (
            f"Every sample ends on a data point (mean nearest-neighbour distance at most "
            f"{nn_max:.2g}): the exact denoiser memorises the set, so the perturbation can only "
            "re-weight the data points. "
            if nn_max < 1e-3
            else f"Samples end off the data (mean nearest-neighbour distance up to {nn_max:.2g}). "
        )
        + (
            "Small and moderate D degrade less than EDM: the claim holds for exact denoisers."
            if held
            else "Small and moderate D do not degrade measurably less than EDM (D = inf) by the "
            "stated rule: the claim is not confirmed in this training-free setting."
        )
    )
    settings = {
        **settings_dict(s),
        "d_values": [d_label(D) for D in s.d_values],
        "data": "sklearn digits scaled to [-1, 1]",
        "solver": "heun",
        "grid": "karras (sigma 0.002..80, rho 7)",
    }
    return ReproResult(numbers, held, headline, summary, settings, rule)


REPRO = Repro(
    name="seed08_pfgm_robustness",
    paper=8,
    title="PFGM++: Unlocking the Potential of Physics-Inspired Generative Models",
    claim=(
        "At equal NFE, PFGM++ with small or moderate D degrades less than EDM (D -> inf) when "
        "the sampler is perturbed by injected noise alpha sigma eps."
    ),
    run=run,
)

if __name__ == "__main__":
    main(REPRO)
