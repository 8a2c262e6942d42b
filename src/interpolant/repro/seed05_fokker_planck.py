"""Seed paper 5 (Deveney et al. 2023): a Fokker-Planck residual penalty closes the gap between
the probability-flow ODE's and the reverse SDE's samples of a DSM-trained score model.

Data: the paper's ``blob`` (9 Gaussians on a 45-degree rotated 3 x 3 grid, covariance 0.2 I,
all scaled by 0.65), an exact ``GaussianMixture``. Model: the paper's potential parametrisation,
``s = -grad E`` with E an MLP ``[x, t] -> 80 -> 80 -> 80 -> 1`` with softplus activations
(``analysis.ConservativeScore(PotentialNet(2))``), on the VP path (the OU process of the paper,
with t rescaled to [0, 1]). Objective: the library's eps-DSM loss with the ``fokker-planck``
loss term (``analysis.FokkerPlanck``: the log-density residual at collocation points on the
path), weights w_p in {0, 0.1, 1}, trained by the library's ``Trainer``.

Sampling: 200 Euler steps of the probability-flow ODE and of the reverse SDE (SDEEuler with
eps(t) = g(t)^2 / 2, the time reversal of the forward SDE) from the same N(0, I) start draws.
Metric: exact W2 between the two sample sets binned on a 40 x 40 grid on [-4, 4]^2 (POT), and
each set's W2 to exact data draws.

Rule (stated before the run, from the notes' "Expected" line): the claim holds iff
W2(ODE, SDE) at w_p = 1 is at most half of W2(ODE, SDE) at w_p = 0.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..analysis import ConservativeScore, FokkerPlanck, PotentialNet, w2_grid
from ..analysis.fokker_planck import sde_coefficients
from ..data.oracles import GaussianMixture
from ..losses import Objective
from ..paths import VPLinear
from ..predictions import Model
from ..randomness import derive_seed
from ..solvers import Sampler, sample
from ..solvers.sde import SDEEuler
from .base import Repro, ReproResult, default_results_path, main, settings_dict, train_config


@dataclass(frozen=True)
class Settings:
    """Sizes of the experiment (full run; ``quick`` is smaller)."""

    weights: tuple[float, ...] = (0.0, 0.1, 1.0)
    train_steps: int = 1500
    batch: int = 512
    collocation: int = 256
    lr: float = 2e-3
    samples: int = 5000
    steps: int = 200
    bins: int = 40
    width: int = 80
    # Claim rule: W2(ODE, SDE) at the largest weight <= gap_factor x W2(ODE, SDE) at weight 0.
    gap_factor: float = 0.5


QUICK = Settings(
    weights=(0.0, 1.0), train_steps=60, batch=256, collocation=64, samples=800, steps=40
)
PATH = VPLinear()


def blob() -> GaussianMixture:
    """The paper's 9-Gaussian blob, scaled by 0.65."""
    centres = torch.tensor(
        [[0, 0], [2, 2], [2, -2], [-2, 2], [-2, -2], [4, 0], [-4, 0], [0, 4], [0, -4]],
        dtype=torch.float64,
    )
    cov = 0.2 * 0.65**2 * torch.eye(2, dtype=torch.float64).expand(9, 2, 2).clone()
    return GaussianMixture(0.65 * centres, cov)


def fit(
    model: Model, objective: object, data: Tensor, steps: int, batch: int, lr: float, seed: int
) -> Model:
    """Train ``model`` with the library's Trainer (``repro.base.train_config``: cosine lr; no EMA
    here) in a temporary run folder; returns it in eval mode."""
    from ..train import Trainer

    with tempfile.TemporaryDirectory() as run_dir:
        config = train_config(run_dir, seed, steps, batch, lr, ema="none")
        trainer = Trainer(model, objective, data, config)  # type: ignore[arg-type]
        try:
            trainer.run()
        finally:
            trainer.close()
    return model.eval()


def train_potential(weight: float, data: Tensor, s: Settings, seed: int) -> Model:
    """A potential score model trained by DSM + weight x the log-density FP residual."""
    torch.manual_seed(derive_seed("seed05-init", seed))
    model = Model(ConservativeScore(PotentialNet(2, s.width)), PATH, predicts="score")
    terms = [FokkerPlanck(weight, form="log-density", points=s.collocation)] if weight else []
    objective = Objective(PATH, target="eps", terms=terms)
    return fit(model, objective, data, s.train_steps, s.batch, s.lr, seed)


def reverse_sde() -> SDEEuler:
    """The time reversal of the path's forward SDE: eps(t) = g(t)^2 / 2."""

    def eps(t: float) -> float:
        tt = torch.tensor(min(max(t, 1e-6), 1 - 1e-6), dtype=torch.float64)
        return 0.5 * float(sde_coefficients(PATH, tt)[1])

    return SDEEuler(eps=eps)


def ode_and_sde(model: Model, s: Settings, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(derive_seed("seed05-start", seed))
    noise = torch.randn(s.samples, 2, generator=g)
    ode = sample(model, noise, Sampler("euler", steps=s.steps)).x
    sde = sample(model, noise, Sampler(reverse_sde(), steps=s.steps, seed=seed)).x
    return ode.detach().double(), sde.detach().double()


def plot(samples: dict[float, tuple[Tensor, Tensor]], out: Path) -> Path:
    """ODE and SDE samples for each weight, side by side."""
    from ..plots import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(2, len(samples), figsize=(3 * len(samples), 6), squeeze=False)
    for j, (w, (ode, sde)) in enumerate(samples.items()):
        for i, (name, x) in enumerate((("ODE", ode), ("SDE", sde))):
            ax = axes[i][j]
            ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.3)
            ax.set(xlim=(-4, 4), ylim=(-4, 4), title=f"{name}, w_p = {w:g}")
            ax.set_aspect("equal")
    return _save(fig, out)


def run(quick: bool = False, seed: int = 0) -> ReproResult:
    s = QUICK if quick else Settings()
    truth_dist = blob()
    g = torch.Generator().manual_seed(derive_seed("seed05-data", seed))
    data = truth_dist.sample(20_000 if not quick else 2000, g).float()
    truth = truth_dist.sample(s.samples, g)
    numbers: dict[str, float] = {}
    drawn: dict[float, tuple[Tensor, Tensor]] = {}
    for w in s.weights:
        model = train_potential(w, data, s, seed)
        ode, sde = ode_and_sde(model, s, seed)
        drawn[w] = (ode, sde)
        numbers[f"W2(ODE, SDE) w_p={w:g}"] = w2_grid(ode, sde, s.bins)
        numbers[f"W2(ODE, truth) w_p={w:g}"] = w2_grid(ode, truth, s.bins)
        numbers[f"W2(SDE, truth) w_p={w:g}"] = w2_grid(sde, truth, s.bins)
    first, last = s.weights[0], s.weights[-1]
    gap0, gap1 = numbers[f"W2(ODE, SDE) w_p={first:g}"], numbers[f"W2(ODE, SDE) w_p={last:g}"]
    numbers["gap ratio (last / first)"] = gap1 / gap0 if gap0 > 0 else math.inf
    held = gap1 <= s.gap_factor * gap0
    if not quick:
        plot(drawn, default_results_path().parent / "seed05_fokker_planck.png")
    rule = (
        f"held iff W2(ODE, SDE) at w_p = {last:g} <= {s.gap_factor:g} x W2(ODE, SDE) at "
        f"w_p = {first:g} (exact LP on a {s.bins} x {s.bins} grid, {s.samples} samples each)"
    )
    gaps = [f"w_p={w:g} {numbers[f'W2(ODE, SDE) w_p={w:g}']:.3f}" for w in s.weights]
    headline = "W2(ODE, SDE): " + ", ".join(gaps)
    summary = (
        f"Potential score models on the 9-Gaussian blob, {s.train_steps} steps each; ODE and SDE "
        f"({s.steps} Euler steps) from the same start. "
        + "; ".join(
            f"w_p={w:g}: W2(ODE,SDE) {numbers[f'W2(ODE, SDE) w_p={w:g}']:.3f}, "
            f"W2(ODE,truth) {numbers[f'W2(ODE, truth) w_p={w:g}']:.3f}, "
            f"W2(SDE,truth) {numbers[f'W2(SDE, truth) w_p={w:g}']:.3f}"
            for w in s.weights
        )
        + (". The claim holds by the rule." if held else ". The claim fails by the rule.")
    )
    settings = {**settings_dict(s), "path": "VPLinear", "model": "ConservativeScore(PotentialNet)"}
    return ReproResult(numbers, held, headline, summary, settings, rule)


REPRO = Repro(
    name="seed05_fokker_planck",
    paper=5,
    title="Closing the ODE-SDE Gap in Score-Based Diffusion Models through the Fokker-Planck "
    "Equation",
    claim=(
        "Penalising the Fokker-Planck residual of a potential score model shrinks the W2 "
        "distance between its probability-flow ODE and reverse-SDE samples."
    ),
    run=run,
)

if __name__ == "__main__":
    main(REPRO)
