"""Seed paper 11 (Aithal et al. 2024): diffusion models hallucinate by interpolating between
nearby modes, and the variance of the late trajectory of x0_hat detects it.

Data: the paper's 1-D mixture with modes {1, 2, 3}, sigma = 0.05. Model: an eps-prediction
``models.MLP`` (3 blocks of 128) on the VP path, trained by the library's Trainer. Sampling:
ancestral DDPM (``ddim`` with eta = 1) over 250 uniform steps, recording x0_hat at every step
with ``analysis.TrajectoryRecorder`` (no extra model evaluations). A hallucination is a sample
farther than 6 sigma from every mode (the data's mass there is ~1e-9). Detector:
``analysis.hallucination_score`` over the last K = 10 steps (4 %, as the notes' CPU recipe).

Recursive training (the notes' CPU recipe, step 4; ``analysis.recursive_training``): generation
0 is the same MLP trained on ``recursive_n`` data points (fewer steps than the main model, as the
notes' 60-s generations); each generation draws ``oversample`` x n samples (ancestral DDPM,
``recursive_sample_steps`` steps, score over the last 4 %), and generation g + 1 trains on n of
them: the first n (unfiltered) or the n with the lowest score (filtered). The fraction f of
hallucinated draws is measured for every generation of both arms.

Rule (stated before the run, from the notes' "Expected" lines): the detector part holds iff at
least 10 hallucinations occur, the score's AUROC (hallucinated vs in-support) is > 0.9, the
threshold that retains 96 % of in-support samples removes >= 90 % of hallucinations, and >= 90 %
of the hallucinations lie between neighbouring modes (1 < x < 3), i.e. they interpolate. The
recursive part holds iff generation 0 draws at least 20 hallucinations, the unfiltered arm's last
generation has f >= 1.5 f_0 and more than 2 standard errors above f_0 (it grows), and the
filtered arm's last generation is at most 2 standard errors above f_0 (flat) and below the
unfiltered one's. The claim holds iff both parts do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..analysis import (
    Generation,
    TrajectoryRecorder,
    auroc,
    hallucination_score,
    recursive_training,
    threshold_at_retention,
)
from ..data.oracles import GaussianMixture
from ..losses import Objective
from ..models import MLP
from ..paths import VPLinear
from ..predictions import Model
from ..randomness import derive_seed, normal
from ..solvers import Sampler, sample
from ..solvers.dpm import DDIM
from ..solvers.grids import Uniform
from .base import Repro, ReproResult, default_results_path, main, settings_dict
from .seed05_fokker_planck import fit


@dataclass(frozen=True)
class Settings:
    """Sizes of the experiment (full run; ``quick`` is smaller)."""

    modes: tuple[float, ...] = (1.0, 2.0, 3.0)
    std: float = 0.05
    train_n: int = 20_000
    train_steps: int = 3000
    batch: int = 1024
    lr: float = 1e-3
    samples: int = 20_000
    steps: int = 250
    last_k: int = 10
    retain: float = 0.96
    # Claim thresholds.
    min_hallucinations: int = 10
    auroc: float = 0.9
    removed: float = 0.9
    # Recursive training (both arms share generation 0).
    generations: int = 3
    recursive_n: int = 4000
    oversample: int = 5
    recursive_train_steps: int = 1000
    recursive_batch: int = 512
    recursive_sample_steps: int = 100
    recursive_last_k: int = 4
    # Claim thresholds of the recursive part.
    min_first_hallucinations: int = 20
    growth: float = 1.5
    z: float = 2.0


QUICK = Settings(
    train_n=2000,
    train_steps=40,
    batch=256,
    samples=2000,
    steps=50,
    generations=1,
    recursive_n=200,
    oversample=2,
    recursive_train_steps=20,
    recursive_batch=128,
    recursive_sample_steps=20,
)
PATH = VPLinear()


def mixture(s: Settings) -> GaussianMixture:
    k = len(s.modes)
    return GaussianMixture(
        torch.tensor(s.modes, dtype=torch.float64)[:, None],
        s.std**2 * torch.ones(k, 1, 1, dtype=torch.float64),
    )


def distance_to_modes(x: Tensor, s: Settings) -> Tensor:
    return (x.reshape(-1, 1) - torch.tensor(s.modes, dtype=x.dtype)).abs().min(1).values


def plot(x: Tensor, scores: Tensor, bad: Tensor, out: Path) -> Path:
    """The sample histogram (log counts) and the score histograms of both groups."""
    from ..plots import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    axes[0].hist(x.numpy(), bins=300, log=True)
    axes[0].set(xlabel="x", ylabel="count (log)", title="samples: mass between the modes")
    logs = scores.clamp_min(1e-12).log10()
    axes[1].hist(logs[~bad].numpy(), bins=60, alpha=0.6, label="in support", log=True)
    axes[1].hist(logs[bad].numpy(), bins=60, alpha=0.6, label="hallucinated", log=True)
    axes[1].set(xlabel="log10 Var of x0_hat over the last K steps", title="detector score")
    axes[1].legend()
    return _save(fig, out)


def draw_scored(
    model: Model, noise: Tensor, steps: int, last_k: int, seed: int
) -> tuple[Tensor, Tensor, int]:
    """Ancestral DDPM samples from ``noise``, their hallucination scores and the NFE."""
    hook = TrajectoryRecorder()
    with torch.no_grad():
        result = sample(
            model,
            noise,
            Sampler(DDIM(eta=1.0), steps=steps, grid=Uniform(), seed=seed),
            hooks=[hook],
        )
    return result.x.double(), hallucination_score(result.state(hook), last_k), result.nfe


def recursive(s: Settings, seed: int) -> dict[str, list[Generation]]:
    """Both arms of recursive training from one generation 0 trained on fresh data."""
    gm = mixture(s)
    data = gm.sample(s.recursive_n, torch.Generator().manual_seed(derive_seed("seed11-rec", seed)))

    def train(rows: Tensor, generation: int, arm: str) -> Model:
        torch.manual_seed(derive_seed(f"seed11-rec-init-{arm}-{generation}", seed))
        model = Model(MLP(1, 128, 3), PATH, predicts="eps")
        return fit(
            model,
            Objective(PATH, target="eps"),
            rows.float(),
            s.recursive_train_steps,
            s.recursive_batch,
            s.lr,
            derive_seed(f"seed11-rec-train-{arm}-{generation}", seed),
        )

    def draw(model: Model, count: int, generation: int, arm: str) -> tuple[Tensor, Tensor]:
        stream = f"seed11-rec-draw-{arm}-{generation}"
        noise = normal((1,), seed, range(count), stream)
        x, scores, _ = draw_scored(
            model, noise, s.recursive_sample_steps, s.recursive_last_k, derive_seed(stream, seed)
        )
        return x, scores

    def bad(x: Tensor) -> Tensor:
        return distance_to_modes(x, s) > 6 * s.std

    return recursive_training(train, draw, data, s.generations, bad, s.oversample)


def recursive_rule(chains: dict[str, list[Generation]], s: Settings) -> bool:
    """The recursive part of the rule (module docstring)."""
    first, plain, kept = chains["unfiltered"][0], chains["unfiltered"][-1], chains["filtered"][-1]

    def z(a: Generation, b: Generation) -> float:
        se = (a.standard_error**2 + b.standard_error**2) ** 0.5
        return (a.fraction - b.fraction) / se if se > 0 else 0.0

    grows = plain.fraction >= s.growth * first.fraction and z(plain, first) > s.z
    flat = z(kept, first) <= s.z and kept.fraction < plain.fraction
    return first.count >= s.min_first_hallucinations and grows and flat


def plot_recursive(chains: dict[str, list[Generation]], out: Path) -> Path:
    """Hallucinated fraction per generation, both arms (bars: 2 standard errors)."""
    from ..plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for arm, chain in chains.items():
        gens = [g.index for g in chain]
        ax.errorbar(
            gens,
            [100 * g.fraction for g in chain],
            yerr=[200 * g.standard_error for g in chain],
            marker="o",
            capsize=3,
            label=f"{arm} (keep lowest score)" if arm == "filtered" else arm,
        )
    ax.set(xlabel="generation", ylabel="hallucinated draws (%)", title="recursive training")
    ax.set_xticks([g.index for g in chains["unfiltered"]])
    ax.legend()
    return _save(fig, out)


def run(quick: bool = False, seed: int = 0) -> ReproResult:
    s = QUICK if quick else Settings()
    gm = mixture(s)
    data = gm.sample(s.train_n, torch.Generator().manual_seed(derive_seed("seed11-data", seed)))
    torch.manual_seed(derive_seed("seed11-init", seed))
    model = Model(MLP(1, 128, 3), PATH, predicts="eps")
    model = fit(
        model, Objective(PATH, target="eps"), data.float(), s.train_steps, s.batch, s.lr, seed
    )
    g = torch.Generator().manual_seed(derive_seed("seed11-noise", seed))
    noise = torch.randn(s.samples, 1, generator=g)
    x, scores, nfe = draw_scored(model, noise, s.steps, s.last_k, seed)
    x = x.flatten()
    bad = distance_to_modes(x, s) > 6 * s.std
    n_bad = int(bad.sum())
    numbers: dict[str, float] = {
        "hallucination rate": n_bad / s.samples,
        "hallucinations": float(n_bad),
        "NFE": float(nfe),
    }
    if 0 < n_bad < s.samples:
        thr = threshold_at_retention(scores, ~bad, s.retain)
        numbers["AUROC"] = auroc(scores, bad)
        numbers["removed at 96% retention"] = float((scores[bad] > thr).double().mean())
        numbers["between neighbouring modes"] = float(
            ((x[bad] > min(s.modes)) & (x[bad] < max(s.modes))).double().mean()
        )
    detector = (
        n_bad >= s.min_hallucinations
        and numbers.get("AUROC", 0.0) > s.auroc
        and numbers.get("removed at 96% retention", 0.0) >= s.removed
        and numbers.get("between neighbouring modes", 0.0) >= 0.9
    )
    chains = recursive(s, seed)
    for arm, chain in chains.items():
        for gen in chain:
            numbers[f"recursive {arm} generation {gen.index} hallucinated"] = gen.fraction
    recursion = recursive_rule(chains, s)
    numbers["detector rule held"] = float(detector)
    numbers["recursive rule held"] = float(recursion)
    held = detector and recursion
    if not quick:
        folder = default_results_path().parent
        plot(x, scores, bad, folder / "seed11_hallucination.png")
        plot_recursive(chains, folder / "seed11_hallucination_recursive.png")
    rule = (
        f"held iff >= {s.min_hallucinations} hallucinations (> 6 sigma from every mode) occur, "
        f"AUROC > {s.auroc:g}, the threshold retaining {s.retain:.0%} of in-support samples "
        f"removes >= {s.removed:.0%} of hallucinations, >= 90% of them lie between modes, and in "
        f"recursive training ({s.generations} generations) generation 0 draws >= "
        f"{s.min_first_hallucinations} hallucinations, the unfiltered arm's last fraction is >= "
        f"{s.growth:g} x and > {s.z:g} SE above generation 0's, the filtered arm's is <= "
        f"{s.z:g} SE above it and below the unfiltered one's"
    )
    arms = {
        arm: " -> ".join(f"{100 * g.fraction:.2f}%" for g in chain) for arm, chain in chains.items()
    }
    headline = (
        f"hallucination rate {numbers['hallucination rate']:.2%}; AUROC "
        f"{numbers.get('AUROC', float('nan')):.3f}; removed at 96% retention "
        f"{numbers.get('removed at 96% retention', float('nan')):.1%}; recursive: unfiltered "
        f"{arms['unfiltered']}, filtered {arms['filtered']}"
    )
    summary = (
        f"1-D modes {list(s.modes)} (sigma {s.std}), MLP eps-model {s.train_steps} steps, "
        f"{s.samples} ancestral samples over {s.steps} steps (NFE {nfe}, the recorder "
        f"adds none); {headline}; between neighbouring modes "
        f"{numbers.get('between neighbouring modes', float('nan')):.1%}. Recursive training: "
        f"n = {s.recursive_n}, {s.recursive_train_steps} steps per generation, "
        f"{s.oversample} x n draws over {s.recursive_sample_steps} steps each. Detector part "
        f"{'holds' if detector else 'fails'}, recursive part {'holds' if recursion else 'fails'}."
        + (" The claim holds by the rule." if held else " The claim fails by the rule.")
    )
    return ReproResult(numbers, held, headline, summary, settings_dict(s), rule)


REPRO = Repro(
    name="seed11_hallucination",
    paper=11,
    title="Understanding Hallucinations in Diffusion Models through Mode Interpolation",
    claim=(
        "A diffusion model trained on well-separated modes samples between neighbouring modes "
        "(hallucinations), the variance of x0_hat over the last steps detects them, and in "
        "recursive training filtering by it keeps the hallucinated fraction flat while it grows "
        "without the filter."
    ),
    run=run,
)

if __name__ == "__main__":
    main(REPRO)
