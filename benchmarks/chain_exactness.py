"""How exact is the chain the SMC posterior samplers run on (issue 13)? Two measurements.

A. Prior variance. Ancestral DDIM (eta = 1, = DDPM) with the exact model of N(mu, v I) data on
   VPLinear: the sample variance / v against steps, grid (uniform, Karras, uniform logSNR) and v,
   beside the chain's exact law (``inverse.chain_law``, no Monte Carlo), the same kernel with
   Var[x0 | x_t] added (the true reverse transition: exact at any step count) and the start's
   variance over the forward marginal's at t_max. What separates the hypotheses: Monte Carlo ==
   chain law (not statistics, not the oracle), start ratio 1 (not sigma_max), the kernel with
   Var[x0 | x_t] exact (the whole deficit is the DDPM kernel's omitted term, first order).

B. Log evidence. TDS and tds_prior on the test's problem (3-D mixture of 3 Gaussians, 1-row
   projection, s = 0.2; ``tests/inverse/test_smc.py``) at K = 16 ... 1024 particles, several
   seeds: E[log Z_hat] and log mean Z_hat against the exact prior's log p(y) and the chain's
   log p_chain(y) (Monte Carlo over ``--chain-draws`` unconditional chain draws), per steps.
   The same on a diagonal Gaussian prior, where log p_chain(y) is exact
   (``inverse.chain_log_evidence``).

``python benchmarks/chain_exactness.py`` writes ``benchmarks/results/chain_exactness.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import torch

import interpolant as ip
from interpolant.data.oracles import GaussianMixture
from interpolant.inverse import chain_law, chain_log_evidence, mixture_posterior, smc_posterior
from interpolant.inverse.operators import RandomProjection
from interpolant.inverse.smc import SMC_SAMPLER
from interpolant.solvers import Sampler, sample
from interpolant.solvers.dpm import DDIM
from interpolant.solvers.grids import Karras, LogSNR, Uniform

RESULTS = Path(__file__).resolve().parent / "results"
GRIDS = {"uniform": Uniform(), "karras": Karras(), "logsnr": LogSNR()}


def prior_variance(args: Any) -> list[dict]:
    d, n, path = 16, args.draws, ip.paths.VPLinear()
    noise = torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows = []
    for v in (1.0, 0.09, 4.0):
        prior = GaussianMixture(
            torch.zeros(1, d, dtype=torch.float64), v * torch.eye(d, dtype=torch.float64)[None]
        )
        model = prior.model(path)
        for gname, grid in GRIDS.items():
            for steps in args.prior_steps:
                spec = Sampler(DDIM(eta=1.0), steps=steps, grid=grid, seed=1)
                x = sample(model, noise, spec).x
                _, law = chain_law(prior, model, spec)
                _, exact_kernel = chain_law(prior, model, spec, with_x0_variance=True)
                t0 = spec.times(path)[:1]
                a, s = float(path.alpha(t0)), float(path.sigma(t0))
                rows.append(
                    {
                        "v": v,
                        "grid": gname,
                        "steps": steps,
                        "mc_var_ratio": float(x.var(0).mean()) / v,
                        "mc_se": math.sqrt(2 / (n * d)),
                        "chain_law_var_ratio": float(law.mean()) / v,
                        "with_x0_variance_ratio": float(exact_kernel.mean()) / v,
                        "start_over_marginal": s**2 / (v * a**2 + s**2),
                    }
                )
                r = rows[-1]
                print(
                    f"v={v:<5} {gname:8s} {steps:4d} steps: MC {r['mc_var_ratio']:.4f} "
                    f"law {r['chain_law_var_ratio']:.4f} +Var[x0|xt] "
                    f"{r['with_x0_variance_ratio']:.4f} start {r['start_over_marginal']:.6f}",
                    flush=True,
                )
    return rows


def mixture_problem():
    """The problem of tests/inverse/test_smc.py."""
    g = torch.Generator().manual_seed(0)
    means = torch.randn(3, 3, generator=g, dtype=torch.float64) * 1.5
    covs = torch.stack([0.3 * torch.eye(3, dtype=torch.float64)] * 3)
    prior = GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2]))
    op = RandomProjection((3,), 1, noise_std=0.2, seed=1)
    y = op.measure(prior.sample(1, torch.Generator().manual_seed(2)), seed=3)
    return prior, op, y


def gaussian_problem():
    """The problem of tests/inverse/test_chain.py."""
    prior = GaussianMixture(
        torch.tensor([[0.5, -1.0, 1.5]], dtype=torch.float64),
        torch.diag(torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64))[None],
    )
    op = RandomProjection((3,), 1, noise_std=0.2, seed=1)
    y = op.measure(prior.sample(1, torch.Generator().manual_seed(2)), seed=3)
    return prior, op, y


def chain_evidence_mc(model, spec: Sampler, op, y: torch.Tensor, draws: int) -> tuple[float, float]:
    """log mean over unconditional chain draws of N(y; A x0, s^2 I), and its standard error."""
    logs = []
    for rep in range(max(1, draws // 100_000)):
        size = min(draws, 100_000)
        g = torch.Generator().manual_seed(rep)
        noise = torch.randn(size, op.x_shape[0], generator=g, dtype=torch.float64)
        x0 = sample(model, noise, spec.replace(seed=123 + rep)).x
        r2 = (y - op(x0)).flatten(1).square().sum(1)
        logs.append(-0.5 * (r2 / op.noise_std**2 + math.log(2 * math.pi * op.noise_std**2)))
    lik = torch.cat(logs)
    w = torch.exp(lik - lik.max())
    se = float(w.std() / w.mean()) / math.sqrt(lik.numel())
    return float(torch.logsumexp(lik, 0)) - math.log(lik.numel()), se


def evidence(args: Any) -> list[dict]:
    rows = []
    for name, make in (("mixture", mixture_problem), ("gaussian", gaussian_problem)):
        prior, op, y = make()
        model = prior.model(ip.paths.VPLinear())
        exact = float(mixture_posterior(prior, op, y).log_evidence[0])  # type: ignore[index]
        for steps in args.evidence_steps:
            spec = SMC_SAMPLER.replace(steps=steps)
            if name == "gaussian":
                chain, chain_se = float(chain_log_evidence(prior, model, spec, op, y)[0]), 0.0
            else:
                chain, chain_se = chain_evidence_mc(model, spec, op, y, args.chain_draws)
            print(
                f"{name} {steps} steps: log p(y) {exact:.4f}, chain {chain:.4f} "
                f"(se {chain_se:.4f}), chain - exact {chain - exact:+.4f}",
                flush=True,
            )
            for method in ("tds", "tds_prior"):
                for k in args.particles:
                    groups = max(8, args.rows // k)
                    seeds = args.seeds if k <= 256 else max(1, args.seeds // 2)
                    lz = torch.cat(
                        [
                            smc_posterior(
                                model,
                                op,
                                y,
                                spec,
                                method=method,
                                particles=k,
                                n=groups,
                                seed=1000 + s,
                            ).log_evidence
                            for s in range(seeds)
                        ]
                    )
                    z = torch.exp(lz - lz.max())
                    log_mean = float(torch.logsumexp(lz, 0)) - math.log(lz.numel())
                    row = {
                        "problem": name,
                        "steps": steps,
                        "method": method,
                        "particles": k,
                        "groups": lz.numel(),
                        "exact_log_evidence": exact,
                        "chain_log_evidence": chain,
                        "chain_se": chain_se,
                        "mean_log_z": float(lz.mean()),
                        "se_mean_log_z": float(lz.std()) / math.sqrt(lz.numel()),
                        "half_var_log_z": float(lz.var()) / 2,
                        "log_mean_z": log_mean,
                        "se_log_mean_z": float(z.std() / z.mean()) / math.sqrt(lz.numel()),
                    }
                    rows.append(row)
                    print(
                        f"  {method:9s} K={k:5d}: E[log Z]-chain "
                        f"{row['mean_log_z'] - chain:+.4f} (se {row['se_mean_log_z']:.4f}), "
                        f"Var/2 {row['half_var_log_z']:.4f}, log E[Z]-chain "
                        f"{log_mean - chain:+.4f} (se {row['se_log_mean_z']:.4f}), "
                        f"log E[Z]-exact {log_mean - exact:+.4f}",
                        flush=True,
                    )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior-steps", nargs="+", type=int, default=[10, 25, 50, 100, 200])
    parser.add_argument("--draws", type=int, default=4096, help="prior draws (x 16 coords)")
    parser.add_argument("--evidence-steps", nargs="+", type=int, default=[50, 200])
    parser.add_argument("--particles", nargs="+", type=int, default=[16, 64, 256, 1024])
    parser.add_argument("--rows", type=int, default=16384, help="K x groups per seed")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--chain-draws", type=int, default=200_000)
    parser.add_argument("--skip-prior", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "chain_exactness.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    result: dict[str, Any] = {
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": platform.platform(),
        "prior_variance": [] if args.skip_prior else prior_variance(args),
        "evidence": evidence(args),
    }
    result["seconds"] = round(time.perf_counter() - start, 1)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
