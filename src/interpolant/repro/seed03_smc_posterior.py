"""Seed paper 3 (the posterior-sampling paper of the inverse group), SMC row: the sequential Monte
Carlo posterior samplers (TDS, Wu et al. 2023; MCGdiff, Cardoso et al. 2023) converge to the
exact posterior as the particles grow. No seed paper proposes them; they are filed under seed 3
because it is the inverse-problem survey whose recipe (data consistency) they make exact.

Exact target: an 8-D mixture of 4 full-rank Gaussians (the prior's exact denoiser is the model),
a random Gaussian projection to 4 dimensions with noise 0.05; the posterior of a mixture under a
linear-Gaussian measurement is again a mixture (``inverse.mixture_posterior``). For K particles
in {1, 8, 64} on the default SMC sampler (ancestral DDIM, 50 Karras steps), ``draws`` posterior
draws per measurement are scored by MMD^2 to as many exact draws in units of the exact samples'
floor (z = (MMD^2 - floor mean) / floor sd, the floor being MMD^2 between independent exact draw
sets; an exact sampler reads z ~ N(0, 1)) and by the RMSE of the draws' mean against E[x | y].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.oracles import GaussianMixture
from ..inverse import mixture_posterior
from ..inverse.operators import RandomProjection
from ..inverse.smc import smc_posterior
from ..metrics import mmd
from ..metrics.distances import median_bandwidth
from ..paths import VPLinear
from ..randomness import derive_seed
from .base import Repro, ReproResult, main, settings_dict


@dataclass(frozen=True)
class Settings:
    """Sizes of the experiment (full run; ``quick`` uses fewer draws and particle counts)."""

    dim: int = 8
    measured: int = 4
    noise: float = 0.05
    measurements: int = 2
    draws: int = 128
    particles: tuple[int, ...] = (1, 8, 64)
    steps: int = 50
    floor_reps: int = 8
    methods: tuple[str, ...] = ("tds", "mcgdiff")
    # Claim rule (fixed before measuring): for every method, z at the largest K is below
    # z_target and below z at K = 1.
    z_target: float = 3.0


QUICK = Settings(measurements=1, draws=48, particles=(1, 16), floor_reps=4)


def generator(name: str, seed: int) -> torch.Generator:
    """A torch generator for one purpose of the run, seeded ``derive_seed("seed03-smc-" + name,
    seed)``."""
    return torch.Generator().manual_seed(derive_seed(f"seed03-smc-{name}", seed))


def prior(s: Settings) -> GaussianMixture:
    """4 full-rank Gaussians in ``dim`` D: means N(0, 1.5^2 I), covariances 0.3 F F^T / D +
    0.03 I, weights 0.4 / 0.3 / 0.2 / 0.1 (fixed draws)."""
    g = torch.Generator().manual_seed(3)
    means = 1.5 * torch.randn(4, s.dim, generator=g, dtype=torch.float64)
    f = torch.randn(4, s.dim, s.dim, generator=g, dtype=torch.float64)
    covs = 0.3 * f @ f.mT / s.dim + 0.03 * torch.eye(s.dim, dtype=torch.float64)
    return GaussianMixture(means, covs, torch.tensor([0.4, 0.3, 0.2, 0.1]))


def mmd_z(samples: Tensor, exact: Tensor, reps: int) -> float:
    """z of MMD^2 between ``samples`` (n, D) and the first n rows of ``exact`` (>= (reps + 1) n
    rows of exact draws), against the floor of ``reps`` further exact sets (median bandwidth of
    the exact draws)."""
    n = samples.shape[0]
    ref = exact[:n]
    width = median_bandwidth(ref, exact[n : 2 * n])
    floor = torch.stack([mmd(exact[n * (r + 1) : n * (r + 2)], ref, width) for r in range(reps)])
    return float((mmd(samples, ref, width) - floor.mean()) / floor.std())


def run(quick: bool = False, seed: int = 0) -> ReproResult:
    """MMD z and posterior-mean RMSE of TDS and MCGdiff against particles."""
    s = QUICK if quick else Settings()
    mix = prior(s)
    op = RandomProjection((s.dim,), s.measured, noise_std=s.noise, seed=1)
    truth = mix.sample(s.measurements, generator("truth", seed))
    y = op.measure(truth, seed=derive_seed("seed03-smc-noise", seed))
    post = mixture_posterior(mix, op, y)
    exact = post.sample(s.draws * (s.floor_reps + 1), generator("exact", seed))
    model = mix.model(VPLinear())
    numbers: dict[str, float] = {}
    for method in s.methods:
        for k in s.particles:
            out = smc_posterior(
                model, op, y, method=method, particles=k, n=s.draws, steps=s.steps, seed=seed
            )
            x = out.x.reshape(s.measurements, s.draws, s.dim).to(torch.float64)
            zs = [mmd_z(x[i], exact[i], s.floor_reps) for i in range(s.measurements)]
            rmse = float(((x.mean(1) - post.mean()) ** 2).mean().sqrt())
            numbers[f"{method} K={k} z"] = sum(zs) / len(zs)
            numbers[f"{method} K={k} mean RMSE"] = rmse
    trace = torch.diagonal(post.covariance(), dim1=-2, dim2=-1).sum(-1).mean()
    numbers["mean RMSE floor"] = float((trace / s.dim / s.draws).sqrt())
    k_max, k_min = max(s.particles), min(s.particles)
    held = all(
        numbers[f"{m} K={k_max} z"] < s.z_target
        and numbers[f"{m} K={k_max} z"] < numbers[f"{m} K={k_min} z"]
        for m in s.methods
    )
    rule = (
        f"held iff for every method z(K={k_max}) < {s.z_target:g} floor sd and z(K={k_max}) < "
        f"z(K={k_min})"
    )
    headline = (
        "; ".join(
            f"{m} z " + " / ".join(f"{numbers[f'{m} K={k} z']:.1f}" for k in s.particles)
            for m in s.methods
        )
        + f" at K = {' / '.join(str(k) for k in s.particles)}"
    )
    summary = (
        f"{s.dim}-D mixture prior, projection to {s.measured} with noise {s.noise:g}, "
        f"{s.measurements} measurements x {s.draws} draws, {s.steps} steps: MMD^2 z to the exact "
        "posterior (floor sd) "
        + "; ".join(
            f"{m} "
            + ", ".join(
                f"K={k}: z {numbers[f'{m} K={k} z']:.1f}, mean RMSE "
                f"{numbers[f'{m} K={k} mean RMSE']:.3f}"
                for k in s.particles
            )
            for m in s.methods
        )
        + f" (mean RMSE floor {numbers['mean RMSE floor']:.3f}). "
        + ("The claim holds by the rule." if held else "The claim fails by the rule.")
    )
    settings = {**settings_dict(s), "sampler": "smc default: ddim eta=1, Karras grid"}
    return ReproResult(numbers, held, headline, summary, settings, rule)


REPRO = Repro(
    name="seed03_smc_posterior",
    paper=3,
    title="Sequential Monte Carlo posterior sampling (TDS, MCGdiff) against exact posteriors",
    claim=(
        "The SMC posterior samplers are asymptotically exact: with an exact prior their draws "
        "approach the exact posterior as the particles grow."
    ),
    run=run,
)

if __name__ == "__main__":
    main(REPRO)
