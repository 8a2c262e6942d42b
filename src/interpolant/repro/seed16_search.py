"""Seed paper 16 (Ma et al. 2025, "Inference-Time Scaling for Diffusion Models beyond Scaling
Denoising Steps"): spending NFE on search keeps improving samples after adding denoising steps
has stopped helping.

Experiment (training-free; the paper's toy analogue, research notes sec. 16). The model is the
exact denoiser of ``ring2d`` (8 Gaussians of std 0.05 on a circle of radius 2, equal weights) on
the Linear path, sampled by the deterministic dpmpp_2m solver on a uniform grid. Task: generate
mode 0. Verifier: the exact posterior log P(mode 0 | x) (``scaling.ComponentReward``, the
oracle classifier). Metric: accuracy, the fraction of final samples whose most likely mode is 0.

* Scaling denoising steps: plain sampling with 5, 10, 20, 40, 80 and 160 steps (NFE = steps).
  More steps solve the ODE more precisely (the endpoint error against a 1000-step solution from
  the same noise falls toward 0), but the accuracy stays near 1/8: which mode a noise reaches
  is fixed by the noise, not by the step count.
* Scaling search: random search over the initial noise with a 10-step sampler and N candidates,
  NFE = 10 N; with an exact sampler the accuracy is 1 - (7/8)^N (each candidate lands in mode 0
  with probability 1/8), reported next to the measurement. Zero-order search and search over
  paths are measured at the largest budget too.

Rule (fixed before measuring): the claim holds iff (a) steps have saturated: accuracy at the most
steps differs from accuracy at a quarter of them by less than ``saturation`` (0.03), and (b)
random search keeps improving over the same NFE range: accuracy at the largest budget exceeds
accuracy at a sixteenth of it by more than ``search_gain`` (0.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.oracles import ring2d
from ..paths import get_path
from ..randomness import normal
from ..scaling import ComponentReward, best_of_n, search_over_paths, zero_order_search
from ..scaling.search import NOISE_STREAM
from ..solvers import as_sampler, sample
from .base import Repro, ReproResult, main, settings_dict


@dataclass(frozen=True)
class Settings:
    """Sizes of the experiment (full run; ``quick`` shrinks them)."""

    n: int = 512
    steps_list: tuple[int, ...] = (5, 10, 20, 40, 80, 160)
    search_steps: int = 10
    candidates: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    mode: int = 0
    saturation: float = 0.03
    search_gain: float = 0.2


QUICK = Settings(n=160, steps_list=(5, 10, 20, 40), candidates=(1, 4, 16))


def run(quick: bool = False, seed: int = 0) -> ReproResult:
    """Accuracy against NFE for denoising steps and for random / zero-order / path search."""
    s = QUICK if quick else Settings()
    mix = ring2d()
    path = get_path("linear")
    model = mix.model(path)
    reward = ComponentReward(mix, s.mode)

    def accuracy(x: Tensor) -> float:
        hit = mix.posterior_weights(x, 0.0, path).argmax(1) == s.mode
        return float(hit.double().mean())

    numbers: dict[str, float] = {}
    # The noises of search's first candidates, so "N = 1" is plain sampling on the same noise.
    noise = normal((2,), seed, s.n, NOISE_STREAM, dtype=torch.float64)
    plain = as_sampler(solver="dpmpp_2m", steps=s.search_steps, grid="uniform", seed=seed)
    converged = sample(model, noise, plain.replace(steps=1000)).x
    steps_acc = {}
    for steps in s.steps_list:
        x = sample(model, noise, plain.replace(steps=steps)).x
        steps_acc[steps] = accuracy(x)
        numbers[f"steps={steps} (NFE {steps}) accuracy"] = steps_acc[steps]
        # What steps do improve: the ODE solution (endpoint error against a 1000-step solve).
        rmse = float((x - converged).square().mean().sqrt())
        numbers[f"steps={steps} endpoint RMSE to the 1000-step ODE solution"] = rmse
    search_acc = {}
    for count in s.candidates:
        out = best_of_n(model, reward, count, plain, n=s.n, shape=(2,))
        nfe = out.nfe
        search_acc[nfe] = accuracy(out.x)
        numbers[f"random search N={count} (NFE {nfe}) accuracy"] = search_acc[nfe]
        numbers[f"random search N={count} exact-sampler accuracy 1-(7/8)^N"] = 1 - (7 / 8) ** count
    budget = s.candidates[-1] * plain.nfe_used()
    zo = zero_order_search(model, reward, budget, plain, n=s.n, shape=(2,))
    numbers[f"zero-order search (NFE {zo.nfe}) accuracy"] = accuracy(zo.x)
    paths = search_over_paths(
        model,
        reward,
        budget,
        plain,
        n=s.n,
        shape=(2,),
        width=4,
        branches=4,
        start=2,
        forward=1,
        backward=2,
    )
    numbers[f"path search (NFE {paths.nfe}) accuracy"] = accuracy(paths.x)

    most = s.steps_list[-1]
    quarter = min(s.steps_list, key=lambda v: abs(v - most / 4))
    steps_change = abs(steps_acc[most] - steps_acc[quarter])
    top = max(search_acc)
    low = min(search_acc, key=lambda v: abs(v - top / 16))
    gain = search_acc[top] - search_acc[low]
    numbers["steps: accuracy change over the last 4x NFE"] = steps_change
    numbers["random search: accuracy gain over 16x NFE"] = gain
    held = steps_change < s.saturation and gain > s.search_gain
    rule = (
        f"|acc(steps={most}) - acc(steps={quarter})| < {s.saturation} (steps saturated) and "
        f"acc(random search, NFE {top}) - acc(random search, NFE {low}) > {s.search_gain}"
    )
    headline = (
        f"accuracy of mode {s.mode}: steps {quarter}->{most}: {steps_acc[quarter]:.3f}->"
        f"{steps_acc[most]:.3f}; random search NFE {low}->{top}: {search_acc[low]:.3f}->"
        f"{search_acc[top]:.3f}"
    )
    summary = (
        f"ring2d oracle, task 'mode {s.mode}', verifier log P(mode | x). Plain sampling stays at "
        f"accuracy {steps_acc[most]:.3f} with {most} steps (chance 0.125); random search with a "
        f"{s.search_steps}-step sampler reaches {search_acc[top]:.3f} at NFE {top} (exact-sampler "
        f"prediction {1 - (7 / 8) ** s.candidates[-1]:.3f}). "
        + (
            "Search keeps improving where steps have saturated."
            if held
            else "The stated rule is not met."
        )
    )
    settings = {
        **settings_dict(s),
        "oracle": "ring2d (std 0.05)",
        "path": "linear",
        "solver": "dpmpp_2m",
        "grid": "uniform",
        "zero_order": "4 neighbours, cosine 0.95",
        "paths": "width 4, branches 4, start 2, forward 1, backward 2",
    }
    return ReproResult(numbers, held, headline, summary, settings, rule)


REPRO = Repro(
    name="seed16_search",
    paper=16,
    title="Inference-Time Scaling for Diffusion Models beyond Scaling Denoising Steps",
    claim=(
        "Spending inference compute on search over noises (with a verifier) keeps improving "
        "samples beyond the point where adding denoising steps has saturated."
    ),
    run=run,
)

if __name__ == "__main__":
    main(REPRO)
