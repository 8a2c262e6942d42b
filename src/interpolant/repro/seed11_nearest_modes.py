"""Seed paper 11 (Aithal et al. 2024), the 2-D grid experiment: a diffusion model interpolates
only between *nearest* modes.

Data (the paper's ``Gaussian25`` and ``Gaussian25_Rotated``, ``toy_data.py``): 25 modes on a 5 x 5
grid with spacing 2 and per-mode std 0.05, all divided by the grid's total std (sqrt 8 ~ 2.83);
the rotated layout turns the grid by 45 degrees (a diamond), so that neighbours along x are no
longer nearest neighbours (distance 2 sqrt 2 against 2). Model: the eps-MLP of
``seed11_hallucination`` (``models.MLP``, 3 blocks of 128) on the VP path, one per layout, trained
by the library's Trainer. Sampling: ancestral DDPM (``ddim`` with eta = 1) over 250 uniform steps.

A hallucination is a sample farther than 6 std from every mode. Nearest-neighbour pairs are the
mode pairs at the smallest distance (grid edges); horizontal pairs are modes with the same y
next to each other along x (nearest in the square grid, second-nearest in the diamond). Each
hallucination is assigned to the closest segment among both kinds and lies *on* it when within
6 std of it. (The first two full runs, seed 0, tested each kind separately: near a mode, just
outside 6 std along a diamond edge, a sample is also within 6 std of the horizontal segment
leaving that mode at 45 degrees, so tail samples of the edges were counted as "horizontal" too;
assigning to the closest segment removes that double count. The thresholds are unchanged; the
run after the change uses seed 1.)

Rule (stated before the run, from the notes' "Expected" line of the 2-D experiment and the
issue's "interpolation only between nearest modes"): held iff the square grid has at least 10
hallucinations on horizontal segments; the diamond's fraction of hallucinations on horizontal
segments is at most a tenth of the square grid's (~ absent along x); and in both layouts at least
90 % of the hallucinations lie on nearest-neighbour segments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..data.oracles import GaussianMixture
from ..losses import Objective
from ..models import MLP
from ..predictions import Model
from ..randomness import derive_seed, normal
from .base import Repro, ReproResult, default_results_path, main, settings_dict
from .seed05_fokker_planck import fit
from .seed11_hallucination import PATH, draw_scored

LAYOUTS = ("square", "diamond")


@dataclass(frozen=True)
class Settings:
    """Sizes of the experiment (full run; ``quick`` is smaller)."""

    spacing: float = 2.0
    std: float = 0.05
    train_n: int = 20_000
    # 2000 steps under-fitted the 25 modes (half the draws off-support, the inner modes
    # missed): the first full run; the rule is unchanged.
    train_steps: int = 6000
    batch: int = 1024
    lr: float = 1e-3
    samples: int = 10_000
    steps: int = 250
    last_k: int = 10
    # Claim thresholds.
    min_on_horizontal: int = 10
    horizontal_ratio: float = 0.1
    on_nearest: float = 0.9


QUICK = Settings(train_n=2000, train_steps=30, batch=256, samples=500, steps=30)


def grid_modes(layout: str, s: Settings) -> Tensor:
    """The 25 mode centres (25, 2), divided by the grid's total std."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    ticks = s.spacing * torch.arange(-2, 3, dtype=torch.float64)
    centres = torch.cartesian_prod(ticks, ticks)
    if layout == "diamond":
        c = math.cos(math.pi / 4)
        centres = centres @ torch.tensor([[c, c], [-c, c]], dtype=torch.float64)
    return centres / float(ticks.square().mean().sqrt())


def scaled_std(s: Settings) -> float:
    """The per-mode std after the division by the grid's total std."""
    ticks = s.spacing * torch.arange(-2, 3, dtype=torch.float64)
    return s.std / float(ticks.square().mean().sqrt())


def mixture(layout: str, s: Settings) -> GaussianMixture:
    """The 25 equally weighted isotropic modes of ``layout``."""
    centres = grid_modes(layout, s)
    cov = scaled_std(s) ** 2 * torch.eye(2, dtype=torch.float64).expand(25, 2, 2).clone()
    return GaussianMixture(centres, cov)


def pairs(centres: Tensor) -> tuple[Tensor, Tensor]:
    """(nearest-neighbour pairs, horizontal-neighbour pairs) as (P, 2) index tensors."""
    dist = torch.cdist(centres, centres)
    i, j = torch.triu_indices(len(centres), len(centres), 1)
    d = dist[i, j]
    nearest = torch.stack([i, j], 1)[d <= d.min() * (1 + 1e-6)]
    same_row = (centres[i, 1] - centres[j, 1]).abs() < 1e-9
    horizontal = []
    for a, b in torch.stack([i, j], 1)[same_row].tolist():
        lo, hi = sorted((float(centres[a, 0]), float(centres[b, 0])))
        row = (centres[:, 1] - centres[a, 1]).abs() < 1e-9
        between = row & (centres[:, 0] > lo + 1e-9) & (centres[:, 0] < hi - 1e-9)
        if not bool(between.any()):  # next to each other along x
            horizontal.append((a, b))
    return nearest, torch.tensor(horizontal, dtype=torch.long).reshape(-1, 2)


def segment_distance(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Distance of each point (N, 2) to each segment [a_p, b_p] (P, 2): (N, P)."""
    ab = b - a
    u = ((x[:, None, :] - a) * ab).sum(-1) / ab.square().sum(-1)
    foot = a + u.clamp(0, 1)[..., None] * ab
    return (x[:, None, :] - foot).norm(dim=-1)


def on_segments(x: Tensor, centres: Tensor, which: Tensor, tol: float) -> Tensor:
    """Whether each point lies within ``tol`` of one of the segments ``which`` (P, 2)."""
    if which.numel() == 0:
        return torch.zeros(x.shape[0], dtype=torch.bool)
    d = segment_distance(x, centres[which[:, 0]], centres[which[:, 1]])
    return (d <= tol).any(1)


def closest_segment(
    x: Tensor, centres: Tensor, nearest: Tensor, horizontal: Tensor, tol: float
) -> tuple[Tensor, Tensor]:
    """(on a nearest-neighbour segment, on a horizontal segment) per point: the point's closest
    segment among both kinds is of that kind and within ``tol`` (a horizontal grid edge of the
    square grid is both)."""
    both = torch.cat([nearest, horizontal])  # never empty: a grid has edges
    best, which = segment_distance(x, centres[both[:, 0]], centres[both[:, 1]]).min(1)
    close = best <= tol
    pair = both[which]
    is_near = (pair[:, None, :] == nearest[None]).all(-1).any(-1)
    is_horizontal = (pair[:, None, :] == horizontal[None]).all(-1).any(-1)
    return close & is_near, close & is_horizontal


def measure(layout: str, s: Settings, seed: int) -> tuple[dict[str, float], Tensor, Tensor]:
    """Train on one layout, sample, and classify the hallucinations."""
    gm = mixture(layout, s)
    stream = f"seed11-grid-{layout}"
    data = gm.sample(s.train_n, torch.Generator().manual_seed(derive_seed(stream, seed)))
    torch.manual_seed(derive_seed(f"{stream}-init", seed))
    model = Model(MLP(2, 128, 3), PATH, predicts="eps")
    model = fit(
        model, Objective(PATH, target="eps"), data.float(), s.train_steps, s.batch, s.lr, seed
    )
    noise = normal((2,), seed, range(s.samples), f"{stream}-noise")
    x, _, _ = draw_scored(model, noise, s.steps, s.last_k, derive_seed(f"{stream}-sde", seed))
    std = scaled_std(s)
    bad = torch.cdist(x, gm.means).min(1).values > 6 * std
    nearest, horizontal = pairs(gm.means)
    xb = x[bad]
    n_bad = int(bad.sum())
    on_near, on_horizontal = closest_segment(xb, gm.means, nearest, horizontal, 6 * std)

    def frac(mask: Tensor) -> float:
        return float(mask.double().mean()) if n_bad else 0.0

    numbers = {
        f"{layout}: hallucination rate": n_bad / s.samples,
        f"{layout}: hallucinations": float(n_bad),
        f"{layout}: on horizontal segments": float(on_horizontal.sum()),
        f"{layout}: fraction on horizontal segments": frac(on_horizontal),
        f"{layout}: fraction on nearest-neighbour segments": frac(on_near),
    }
    return numbers, x, bad


def claim_rule(numbers: dict[str, float], s: Settings) -> bool:
    """The rule of the module docstring on the measured numbers."""
    square_h = numbers["square: fraction on horizontal segments"]
    diamond_h = numbers["diamond: fraction on horizontal segments"]
    return (
        numbers["square: on horizontal segments"] >= s.min_on_horizontal
        and diamond_h <= s.horizontal_ratio * square_h
        and all(
            numbers[f"{lay}: hallucinations"] > 0
            and numbers[f"{lay}: fraction on nearest-neighbour segments"] >= s.on_nearest
            for lay in LAYOUTS
        )
    )


def plot(drawn: dict[str, tuple[Tensor, Tensor]], s: Settings, out: Path) -> Path:
    """Samples of both layouts, hallucinations in red, modes as crosses."""
    from ..plots import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for ax, (layout, (x, bad)) in zip(axes, drawn.items()):
        centres = grid_modes(layout, s)
        ax.scatter(x[~bad, 0], x[~bad, 1], s=1, alpha=0.2, label="in support")
        ax.scatter(x[bad, 0], x[bad, 1], s=4, c="red", label="hallucinated")
        ax.scatter(centres[:, 0], centres[:, 1], marker="x", c="k", s=12)
        ax.set(title=f"{layout} grid: {int(bad.sum())} hallucinated")
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=7)
    return _save(fig, out)


def run(quick: bool = False, seed: int = 0) -> ReproResult:
    s = QUICK if quick else Settings()
    numbers: dict[str, float] = {}
    drawn: dict[str, tuple[Tensor, Tensor]] = {}
    for layout in LAYOUTS:
        part, x, bad = measure(layout, s, seed)
        numbers.update(part)
        drawn[layout] = (x, bad)
    held = claim_rule(numbers, s)
    if not quick:
        plot(drawn, s, default_results_path().parent / "seed11_nearest_modes.png")
    rule = (
        f"held iff the square grid has >= {s.min_on_horizontal} hallucinations (> 6 std from every "
        f"mode) on horizontal-neighbour segments, the diamond's fraction on horizontal segments "
        f"is <= {s.horizontal_ratio:g} x the square grid's, and >= {s.on_nearest:.0%} of the "
        "hallucinations of both layouts lie on nearest-neighbour segments (within 6 std)"
    )
    headline = ", ".join(
        f"{lay}: {numbers[f'{lay}: hallucinations']:.0f} hallucinated, "
        f"{numbers[f'{lay}: fraction on horizontal segments']:.0%} on horizontal, "
        f"{numbers[f'{lay}: fraction on nearest-neighbour segments']:.0%} on nearest-neighbour "
        "segments"
        for lay in LAYOUTS
    )
    summary = (
        f"25-mode grids (spacing {s.spacing:g}, std {s.std:g}, divided by the total std), one "
        f"eps-MLP per layout trained {s.train_steps} steps on {s.train_n} points, {s.samples} "
        f"ancestral samples over {s.steps} steps each; {headline}."
        + (" The claim holds by the rule." if held else " The claim fails by the rule.")
    )
    return ReproResult(numbers, held, headline, summary, settings_dict(s), rule)


REPRO = Repro(
    name="seed11_nearest_modes",
    paper=11,
    title="Understanding Hallucinations in Diffusion Models through Mode Interpolation (2-D grids)",
    claim=(
        "Hallucinations interpolate only between nearest modes: on a square grid they appear "
        "between horizontal neighbours, on the 45-degree rotated grid not along x."
    ),
    run=run,
)

if __name__ == "__main__":
    main(REPRO)
