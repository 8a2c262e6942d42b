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

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..data.oracles import GaussianMixture, lowrank64, ring2d
from ..metrics import sliced_wasserstein
from ..paths import VPLinear
from ..predictions import Prediction
from ..randomness import derive_seed, normal
from ..solvers import State, fixed_run, node_at, sample
from ..solvers.lml import LML, lm_direction, lm_sqrt_apply
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
    #: kappa of the extra released-placement run (the scripts use 0, where it is the identity).
    placement_kappa: float = 0.3
    #: A cell counts as an LML gain when the paired mean difference is below -z * its s.e.
    z: float = 2.0


QUICK = Settings(nfes=(9,), n_samples=300, n_reference=1000, repeats=2, n_projections=64)

#: Oracle name -> (factory, corrector): "ald" in 2-D (see PredictorCorrector's doc).
ORACLES: dict[str, tuple[Callable[[], GaussianMixture], str]] = {
    "ring2d": (ring2d, "ald"),
    "lowrank64": (lowrank64, "langevin"),
}


F64 = torch.float64
_INCREMENT: dict[str, Any] = {
    "mode": "increment",
    "n_corrector": 0,
    "predictor_options": {"eta": 0.0},
}


def _draw(
    oracle: str, nfe: int, options: dict[str, Any], n: int, seed: int, dtype: torch.dtype
) -> Tensor:
    factory, corrector = ORACLES[oracle]
    mixture = factory()
    model = mixture.model(VPLinear(), dtype)
    noise = normal((mixture.dim,), seed, n, "seed12-noise", dtype=dtype)
    solver = {"name": "lml", "corrector": corrector, **options}
    return sample(model, noise, solver=solver, nfe=nfe, grid="uniform", seed=seed).x


def _fixed_noise(z: Tensor, like: Tensor) -> Tensor:
    return z


def _preconditioner_diagnostics(oracle: str, nfe: int, n: int, seed: int) -> dict[str, float]:
    """Why the LML corrector changes so little: at each corrector level of the NFE-``nfe`` grid,
    from exact draws x_t at the level, one predictor step, then the medians over samples of
    cos(g, eps_hat at the corrector's node), |M s| / |s| (drift kept) and |M^(1/2) z| / |z|
    (noise kept), with g the frozen prediction of the preconditioned mode and lambda = 1e-3."""
    factory, _ = ORACLES[oracle]
    mixture, path, solver = factory(), VPLinear(), LML()
    gen = torch.Generator().manual_seed(derive_seed("seed12-diagnostics", seed))
    grid = sample(
        mixture.model(path),
        torch.zeros(1, mixture.dim, dtype=F64),
        nfe=nfe,
        solver={"name": "pc"},
        grid="uniform",
        seed=seed,
    ).grid
    times = [float(t) for t in grid]
    cos, drift, noise = [], [], []
    for i in range(len(times) - 2):  # the last level has no corrector
        now, nxt = node_at(path, times[i]), node_at(path, times[i + 1])

        def denoise(y: Tensor, node: Any) -> Prediction:
            t = torch.tensor(node.t, dtype=F64)
            return Prediction(y, t, "x0", mixture.denoiser(y, node.t, path), node.coeffs)

        x0 = mixture.sample(n, gen)
        x = now.alpha * x0 + now.sigma * torch.randn(x0.shape, generator=gen, dtype=F64)
        z = torch.randn(x.shape, generator=gen, dtype=F64)
        ctx = fixed_run(path, len(times) - 1, i, denoise, functools.partial(_fixed_noise, z))
        pred = denoise(x, now)
        moved = solver.predictor.step(State(x), pred, now, nxt, ctx).x
        g = -now.sigma * pred.score
        score = mixture.score(moved, nxt.t, path)
        eps = -nxt.sigma * score
        cos.append(float(((g * eps).sum(1) / (g.norm(dim=1) * eps.norm(dim=1))).median()))
        kept = lm_direction(score, g, solver.damping).norm(dim=1) / score.norm(dim=1)
        drift.append(float(kept.median()))
        z2 = torch.randn(x.shape, generator=gen, dtype=F64)
        noise.append(
            float((lm_sqrt_apply(z2, g, solver.damping).norm(dim=1) / z2.norm(dim=1)).median())
        )
    return {
        f"{oracle} NFE {nfe} median cos(g, eps at corrector), mean over levels": sum(cos)
        / len(cos),
        f"{oracle} NFE {nfe} median |M s|/|s|, mean over levels": sum(drift) / len(drift),
        f"{oracle} NFE {nfe} median |M^1/2 z|/|z|, mean over levels": sum(noise) / len(noise),
    }


def _increment_diagnostics(
    oracle: str, nfe: int, n: int, seed: int, damping: float, kappa: float
) -> dict[str, float]:
    """Why kappa > 0 breaks the released placement: along a DDIM (eta 0) trajectory, the medians
    over samples of cos(v, v_prev) of consecutive increments and of cos(v', v) with v' the
    released correction (g = kappa v_prev + (1 - kappa) v, renormalised), means over steps 2..N."""
    factory, _ = ORACLES[oracle]
    mixture, path = factory(), VPLinear()
    solver = LML(damping=damping, kappa=kappa, **_INCREMENT)
    x = normal((mixture.dim,), seed, n, "seed12-noise", dtype=F64)
    grid = sample(mixture.model(path), x[:1], nfe=nfe, solver="ddim", grid="uniform").grid
    times = [float(t) for t in grid]

    def denoise(y: Tensor, node: Any) -> Prediction:
        t = torch.tensor(node.t, dtype=F64)
        return Prediction(y, t, "x0", mixture.denoiser(y, node.t, path), node.coeffs)

    ctx = fixed_run(path, len(times) - 1, 0, denoise, torch.zeros_like)
    previous: Tensor | None = None
    parallel, turned = [], []
    for a, b in itertools.pairwise(times):
        now, nxt = node_at(path, a), node_at(path, b)
        moved = solver.predictor.step(State(x), denoise(x, now), now, nxt, ctx).x
        v = moved - (nxt.alpha / now.alpha) * x
        if previous is not None:
            g = kappa * previous + (1.0 - kappa) * v
            corrected = lm_direction(v, g, damping, renormalize=True)
            parallel.append(float(torch.cosine_similarity(v, previous, dim=1).median()))
            turned.append(float(torch.cosine_similarity(corrected, v, dim=1).median()))
        previous, x = v, moved
    return {
        f"{oracle} NFE {nfe} DDIM median cos(v, v_prev), mean over steps": sum(parallel)
        / len(parallel),
        f"{oracle} NFE {nfe} kappa {kappa:g} median cos(v', v), mean over steps": sum(turned)
        / len(turned),
    }


def run(quick: bool = False, seed: int = 0) -> ReproResult:
    """SW2 of plain Langevin, LML and the released correction at equal NFE on both oracles."""
    s = QUICK if quick else Settings()
    methods: dict[str, dict[str, Any]] = {
        "langevin": {"damping": math.inf},
        "lml": {"damping": s.damping, "kappa": s.kappa},
        "released": {"damping": s.damping, "kappa": s.kappa, "mode": "released"},
        # The released placement (outside the rule): lm_correct on the DDIM (= DPM-Solver-1)
        # increment, no corrector, so all NFE go to predictor steps; kappa = 0 and a kappa > 0.
        "ddim": {"damping": math.inf, "n_corrector": 0, "predictor_options": {"eta": 0.0}},
        "increment": {**_INCREMENT, "damping": s.damping, "kappa": s.kappa},
        f"increment kappa {s.placement_kappa:g}": {
            **_INCREMENT,
            "damping": s.damping,
            "kappa": s.placement_kappa,
        },
    }
    numbers: dict[str, float] = {}
    gains, losses, cells = 0, 0, 0
    released_gap = increment_gap = 0.0
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
                increment_gap = max(
                    increment_gap, float((draws["increment"] - draws["ddim"]).abs().max())
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
            kappa_name = f"increment kappa {s.placement_kappa:g}"
            placed = torch.tensor(sw[kappa_name], dtype=F64) - torch.tensor(sw["ddim"], dtype=F64)
            numbers[f"{oracle} NFE {nfe} {kappa_name} - ddim SW2"] = float(placed.mean())
            numbers[f"{oracle} NFE {nfe} {kappa_name} - ddim s.e."] = (
                float(placed.std() / math.sqrt(len(placed))) if len(placed) > 1 else math.inf
            )
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
        numbers.update(_preconditioner_diagnostics(oracle, nfe, s.n_samples, seed))
        numbers.update(
            _increment_diagnostics(oracle, nfe, s.n_samples, seed, s.damping, s.placement_kappa)
        )
    numbers["released float64 max |x - plain| (all cells)"] = released_gap
    numbers["increment (kappa 0) float64 max |x - ddim| (all cells)"] = increment_gap
    held = gains > cells / 2 and losses == 0
    rule = (
        f"held iff LML (lambda={s.damping:g}, kappa={s.kappa:g}) lowers SW2 by more than "
        f"{s.z:g} paired standard errors in a majority of the (oracle, NFE) cells and raises it "
        f"significantly in none"
    )
    kappa_name = f"increment kappa {s.placement_kappa:g}"
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
        + f"In the released placement (lm_correct on the DDIM increment, no corrector, NFE "
        f"DDIM steps, outside the rule) kappa = 0 equals DDIM to {increment_gap:.1e}; kappa = "
        f"{s.placement_kappa:g} minus DDIM: "
        + "; ".join(
            f"{o} NFE {n}: {numbers[f'{o} NFE {n} {kappa_name} - ddim SW2']:+.4f}"
            f" +- {numbers[f'{o} NFE {n} {kappa_name} - ddim s.e.']:.4f}"
            for o in ORACLES
            for n in s.nfes
        )
        + ". "
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
