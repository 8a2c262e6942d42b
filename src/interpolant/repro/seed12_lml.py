"""Seed paper 12 (LML, Wang, Yin et al. 2025): Levenberg-Marquardt-Langevin correctors improve
sample quality over first-order Langevin at equal NFE.

Training-free test bed: exact denoisers of two Gaussian mixtures (``ring2d``: 8 modes in 2-D;
``lowrank64``: 10 rank-4 components in 64-D) on the VP path with linear beta, so every
difference is the sampler's. Predictor-corrector sampling (ancestral DDIM predictor, one
corrector step per level, uniform grid) at 9 and 19 NFE (5 and 10 levels), float64 throughout:

* ``langevin``: the plain corrector (score_sde's step size rule, snr 0.16; "ald" on ring2d, where
  per-sample norms bias the 2-D chain, "langevin" on lowrank64).
* ``lml``: the LML corrector at the paper's default settings (damping lambda = 1e-3, kappa = 0;
  :class:`interpolant.solvers.lml.LML`, preconditioned mode), same step size and noise.
* ``released``: the released code's ``lm_correct`` on the corrector drift (kappa = 0,
  renormalised), computed in float64 and, separately, in float32 against the float32 plain
  sampler.

Metric: sliced W2 to exact draws, averaged over independent noise seeds; LML minus Langevin is
paired (same noise and corrector noise), so its standard error is small.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..data.oracles import GaussianMixture, lowrank64, ring2d
from ..metrics import sliced_wasserstein
from ..paths import VPLinear
from ..randomness import derive_seed, normal
from ..solvers import sample
from .base import Repro, ReproResult, main, settings_dict


@dataclass(frozen=True)
class Settings:
    """Sizes of the experiment (full run; ``quick`` shrinks the samples and repeats)."""

    nfes: tuple[int, ...] = (9, 19)
    n_samples: int = 2000
    n_reference: int = 8000
    repeats: int = 5
    damping: float = 1e-3
    kappa: float = 0.0
    n_projections: int = 256
    #: A cell counts as an LML gain when the paired mean difference is below -z * its s.e.
    z: float = 2.0


QUICK = Settings(nfes=(9,), n_samples=300, n_reference=1000, repeats=2, n_projections=64)

#: Oracle name -> (factory, corrector): "ald" in 2-D (see PredictorCorrector's doc).
ORACLES: dict[str, tuple[Callable[[], GaussianMixture], str]] = {
    "ring2d": (ring2d, "ald"),
    "lowrank64": (lowrank64, "langevin"),
}


F64 = torch.float64


def _draw(
    oracle: str, nfe: int, options: dict[str, Any], n: int, seed: int, dtype: torch.dtype
) -> Tensor:
    factory, corrector = ORACLES[oracle]
    mixture = factory()
    model = mixture.model(VPLinear(), dtype)
    noise = normal((mixture.dim,), seed, n, "seed12-noise", dtype=dtype)
    solver = {"name": "lml", "corrector": corrector, **options}
    return sample(model, noise, solver=solver, nfe=nfe, grid="uniform", seed=seed).x


def run(quick: bool = False, seed: int = 0) -> ReproResult:
    """SW2 of plain Langevin, LML and the released correction at equal NFE on both oracles."""
    s = QUICK if quick else Settings()
    methods: dict[str, dict[str, Any]] = {
        "langevin": {"damping": math.inf},
        "lml": {"damping": s.damping, "kappa": s.kappa},
        "released": {"damping": s.damping, "kappa": s.kappa, "mode": "released"},
    }
    numbers: dict[str, float] = {}
    gains, losses, cells = 0, 0, 0
    released_gap = 0.0
    parts = []
    for oracle, (factory, _) in ORACLES.items():
        reference_gen = torch.Generator().manual_seed(derive_seed("seed12-reference", seed))
        reference = factory().sample(s.n_reference, reference_gen)
        for nfe in s.nfes:
            sw: dict[str, list[float]] = {m: [] for m in methods}
            for r in range(s.repeats):
                draws = {
                    m: _draw(
                        oracle, nfe, o, s.n_samples, derive_seed("seed12-repeat", seed, r), F64
                    )
                    for m, o in methods.items()
                }
                released_gap = max(
                    released_gap, float((draws["released"] - draws["langevin"]).abs().max())
                )
                for m, x in draws.items():
                    sw[m].append(
                        float(
                            sliced_wasserstein(
                                x, reference, n_projections=s.n_projections, seed=seed
                            )
                        )
                    )
            diff = torch.tensor(sw["lml"], dtype=torch.float64) - torch.tensor(
                sw["langevin"], dtype=torch.float64
            )
            mean_diff = float(diff.mean())
            se = float(diff.std() / math.sqrt(len(diff))) if len(diff) > 1 else math.inf
            for m in methods:
                numbers[f"{oracle} NFE {nfe} {m} SW2"] = sum(sw[m]) / len(sw[m])
            numbers[f"{oracle} NFE {nfe} lml - langevin SW2"] = mean_diff
            numbers[f"{oracle} NFE {nfe} lml - langevin s.e."] = se
            cells += 1
            gains += mean_diff < -s.z * se
            losses += mean_diff > s.z * se
            parts.append(f"{oracle} NFE {nfe}: {mean_diff:+.4f} +- {se:.4f}")
        # The released correction in float32 (rounding noise) against float32 plain Langevin.
        nfe = s.nfes[0]
        x32 = _draw(
            oracle,
            nfe,
            {**methods["released"], "correction_dtype": None},
            s.n_samples,
            seed,
            torch.float32,
        )
        p32 = _draw(oracle, nfe, methods["langevin"], s.n_samples, seed, torch.float32)
        numbers[f"{oracle} released float32 max |x - plain|"] = float((x32 - p32).abs().max())
    numbers["released float64 max |x - plain| (all cells)"] = released_gap
    held = gains > cells / 2 and losses == 0
    rule = (
        f"held iff LML (lambda={s.damping:g}, kappa={s.kappa:g}) lowers SW2 by more than "
        f"{s.z:g} paired standard errors in a majority of the (oracle, NFE) cells and raises it "
        f"significantly in none"
    )
    headline = f"LML - Langevin SW2: {'; '.join(parts)}; released float64 gap {released_gap:.1e}"
    summary = (
        f"Exact mixture denoisers on the VP path, PC sampler (ancestral predictor, one corrector "
        f"per level), {s.repeats} noise seeds x {s.n_samples} samples, SW2 to {s.n_reference} "
        f"exact draws. LML minus plain Langevin: {'; '.join(parts)} ({gains} of {cells} cells "
        f"significantly better, {losses} significantly worse). The released correction at "
        f"kappa = 0 computed in float64 differs from plain Langevin by at most "
        f"{released_gap:.1e} (the identity up to rounding); in float32 it differs by "
        + ", ".join(
            f"{numbers[f'{o} released float32 max |x - plain|']:.2g} ({o})" for o in ORACLES
        )
        + ": rounding noise, not curvature. "
        + ("The LML corrector's gain holds in float64." if held else "No robust LML gain.")
    )
    settings = {**settings_dict(s), "path": "vp", "predictor": "ddim eta=1", "grid": "uniform"}
    return ReproResult(numbers, held, headline, summary, settings, rule)


REPRO = Repro(
    name="seed12_lml",
    paper=12,
    title=(
        "Unleashing High-Quality Image Generation in Diffusion Sampling Using Second-Order "
        "Levenberg-Marquardt-Langevin"
    ),
    claim=(
        "At equal NFE, Levenberg-Marquardt-Langevin correctors (damped low-rank Hessian "
        "preconditioning) give samples closer to the data than plain Langevin correctors."
    ),
    run=run,
)

if __name__ == "__main__":
    main(REPRO)
