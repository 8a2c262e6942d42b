"""Posterior samplers against exact posteriors: Gaussian-mixture priors (their exact denoiser is
the model, so p(x | y) is known in closed form, ``inverse.posterior``) under linear-Gaussian
measurements, every solver at the same NFE per posterior draw.

Priors: ``ring2d`` (2-D, 8 tight modes), ``mix16`` (16-D, 4 full-rank components, read as a
1x4x4 image), ``lowrank64`` (64-D, 10 rank-4 components, 1x8x8). Operators: ``inpaint`` (the
first half of the coordinates observed), ``project`` (D/4 Gaussian rows, 1 for ring2d), ``sr``
(2x average pooling) and ``blur`` (circular Gaussian, std 1, 3 taps) for the image-shaped
priors. Noise std: ``--noise`` (default 0.05 and 0.01).

Solvers, all through ``inverse.solve`` at NFE = particles x steps per draw (default 32 x 50 =
1600): the SMC samplers ``tds``, ``tds_prior``, ``mcgdiff`` (K particles, ancestral DDIM on
``steps`` uniform steps); ``dps``, ``dc``, ``repaint`` (their samplers at nfe = the budget),
``red_diff`` (steps = the budget), ``flowchef`` (the Linear path, nfe = the budget),
``dpnp`` (split Gibbs, Xu and Chi 2024: budget / 10 sweeps of a 10-evaluation prior chain, eta
annealed from 1 to 0.02; one chain per draw) and ``pinv`` (no NFE). Every measurement gets
``--draws`` draws from every solver.

Metrics per cell (averaged over ``--measurements`` measurements): MMD^2 (Gaussian kernel, the
exact samples' median bandwidth) to ``--draws`` exact draws, as z = (MMD^2 - floor mean) /
floor sd, the floor being MMD^2 between independent exact draw sets (``--floor-reps``; a
sampler of the exact posterior has z ~ N(0, 1) per measurement); the RMSE of the sample mean
against E[x | y] (its floor sqrt(tr Cov / D / draws) beside it); the mean residual ||y - A x||^2
/ (m s^2); and the coverage of per-coordinate 90 % intervals (the exact posterior mass inside
the solver's 5-95 % quantiles, 0.90 ideal). Target of issue 13: the SMC samplers within z < 3
at <= 64 particles x 50 steps on every 16-D cell.

``--curve`` adds the 64-D convergence curve: z against particles (4, 16, 64) for the SMC
samplers on ``lowrank64`` x ``project``. Results go to ``benchmarks/results/posterior.json``
(and ``posterior_curve.png``); ``--quick`` is a smoke run.
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
from tqdm import tqdm

import interpolant as ip
from interpolant.data.oracles import GaussianMixture, lowrank64, ring2d
from interpolant.inverse import Inpaint, make_operator, mixture_posterior, solve
from interpolant.inverse.base import Operator
from interpolant.inverse.operators import GaussianBlur, RandomProjection
from interpolant.inverse.smc import FPS_SAMPLER, SMC_SAMPLER
from interpolant.metrics import mmd
from interpolant.metrics.distances import median_bandwidth
from interpolant.solvers import as_sampler
from interpolant.solvers.analytic_dpm import ESTIMATORS, analytic_sampler, analytic_x0_variance

RESULTS = Path(__file__).resolve().parent / "results"
SMC = ("tds", "tds_prior", "mcgdiff", "fps")
#: Split Gibbs (DPnP, Xu and Chi 2024): one chain per draw, iterations x DPNP_STEPS = budget.
GIBBS = ("dpnp",)
DPNP_STEPS = 10
POINT = ("dps", "dc", "repaint", "red_diff", "flowchef", "pinv")


def mix16(seed: int = 0) -> GaussianMixture:
    """4 full-rank Gaussians in 16-D: means N(0, 1.5^2 I), covariances F F^T / 16 * 0.3 +
    0.03 I, from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    d = 16
    means = 1.5 * torch.randn(4, d, generator=g, dtype=torch.float64)
    f = torch.randn(4, d, d, generator=g, dtype=torch.float64)
    covs = 0.3 * f @ f.mT / d + 0.03 * torch.eye(d, dtype=torch.float64)
    return GaussianMixture(means, covs, torch.tensor([0.4, 0.3, 0.2, 0.1]))


PRIORS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "ring2d": (ring2d, (2,)),
    "mix16": (mix16, (1, 4, 4)),
    "lowrank64": (lowrank64, (1, 8, 8)),
}


def operator_for(name: str, shape: tuple[int, ...], noise: float) -> Operator:
    d = math.prod(shape)
    if name == "inpaint":
        mask = torch.zeros(d, dtype=torch.float64)
        mask[: d // 2] = 1
        return Inpaint(mask.reshape(shape), noise_std=noise)
    if name == "project":
        return RandomProjection(shape, max(1, d // 4), noise_std=noise, seed=1)
    if name == "sr":
        return make_operator("sr:2", shape, noise)
    return GaussianBlur(shape, 1.0, noise, kernel_size=3)


def operators_for(prior: str) -> list[str]:
    return ["inpaint", "project"] if prior == "ring2d" else ["inpaint", "project", "sr", "blur"]


def draw(
    method: str,
    prior: GaussianMixture,
    op: Operator,
    y: torch.Tensor,
    draws: int,
    args: Any,
    analytic: str = "none",
) -> tuple[torch.Tensor, int, dict]:
    """``draws`` samples per measurement (B, draws, D), the NFE per draw and, with ``analytic``
    (an SMC sampler with Analytic-DPM variances by that estimator), the table's cost."""
    info: dict[str, Any] = {}
    budget = args.particles * args.steps
    rows = y.repeat_interleave(draws, 0)
    path = ip.paths.Linear() if method == "flowchef" else ip.paths.VPLinear()
    model = prior.model(path)
    options: dict[str, Any] = {"seed": args.seed}
    if method in SMC:
        # The samplers' default grid (Karras; uniform for fps) unless --smc-grid names one.
        grid = getattr(args, "smc_grid", None)
        extra = {**options, **({"grid": grid} if grid else {})}
        base = FPS_SAMPLER if method == "fps" else SMC_SAMPLER
        spec = as_sampler(base, steps=args.steps, **extra)
        if analytic != "none":
            # Analytic-DPM variances from prior samples, once per prior and grid (its NFE is
            # amortised over every measurement; reported as analytic_evaluations).
            x0 = prior.sample(args.analytic_mc, torch.Generator().manual_seed(args.seed + 5))
            table = analytic_x0_variance(model, spec, x0, estimator=analytic, seed=args.seed)
            spec = analytic_sampler(spec, table)
            info = {"analytic": analytic, "analytic_evaluations": table.evaluations}
        out = solve(model, op, y, method, spec, particles=args.particles, n=draws)
    elif method == "dpnp":
        # The prior step's reverse chain has DPNP_STEPS evaluations; the sweeps fill the budget.
        iterations = max(1, budget // DPNP_STEPS)
        out = solve(
            model, op, rows, method, iterations=iterations, denoise_steps=DPNP_STEPS, **options
        )
    elif method == "red_diff":
        out = solve(model, op, rows, method, steps=budget, seed=args.seed)
    elif method == "pinv":
        out = solve(model, op, rows, method)
    else:
        out = solve(model, op, rows, method, nfe=budget, **options)
    return out.x.reshape(y.shape[0], draws, -1).to(torch.float64), out.nfe, info


def scores(x: torch.Tensor, post: Any, op: Operator, y: torch.Tensor, args: Any) -> dict:
    """The cell's metrics for samples x (B, n, D) against the exact posterior."""
    b, n, d = x.shape
    g = torch.Generator().manual_seed(args.seed + 17)
    exact = post.sample(n * (args.floor_reps + 1) + 4096, g)  # (B, ., D)
    zs, coverage, resid = [], [], []
    y_flat = y.reshape(b, -1).to(torch.float64)
    for i in range(b):
        ref = exact[i, :n]
        width = median_bandwidth(ref, exact[i, n : 2 * n])
        floor = torch.stack(
            [mmd(exact[i, n * (r + 1) : n * (r + 2)], ref, width) for r in range(args.floor_reps)]
        )
        zs.append(float((mmd(x[i], ref, width) - floor.mean()) / floor.std()))
        lo, hi = torch.quantile(x[i], torch.tensor([0.05, 0.95], dtype=x.dtype), dim=0)
        big = exact[i, -4096:]
        coverage.append(float(((big >= lo) & (big <= hi)).to(torch.float64).mean()))
        pred = op(x[i].reshape(n, *op.x_shape)).reshape(n, -1)
        m = int(op.mask.sum()) if isinstance(op, Inpaint) else pred.shape[1]
        resid.append(float((y_flat[i] - pred).square().sum(1).mean() / (m * op.noise_std**2)))
    cov = post.covariance()
    floor_rmse = float((torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1).mean() / d / n).sqrt())
    rmse = float(((x.mean(1) - post.mean()) ** 2).mean().sqrt())
    # Total sample variance over the exact posterior's (1 for a sampler of the posterior).
    exact_var = torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1)
    var_ratio = float((x.var(1).sum(-1) / exact_var).mean())
    return {
        "mmd_z": sum(zs) / b,
        "mean_rmse": rmse,
        "floor_rmse": floor_rmse,
        "residual": sum(resid) / b,
        "coverage90": sum(coverage) / b,
        "var_ratio": var_ratio,
    }


def run_cell(prior_name: str, op_name: str, noise: float, methods: list[str], args: Any) -> list:
    make, shape = PRIORS[prior_name]
    prior = make()
    op = operator_for(op_name, shape, noise)
    g = torch.Generator().manual_seed(args.seed)
    truth = prior.sample(args.measurements, g).reshape(args.measurements, *shape)
    y = op.measure(truth, seed=args.seed)
    post = mixture_posterior(prior, op, y)
    rows = []
    for method, variant in [
        (m, v) for m in methods for v in (args.analytic if m in SMC else ["none"])
    ]:
        t0 = time.perf_counter()
        x, nfe, info = draw(method, prior, op, y, args.draws, args, variant)
        row = {
            "prior": prior_name,
            "operator": op_name,
            "noise": noise,
            "method": method if variant == "none" else f"{method}+{variant}",
            "nfe": nfe,
            **scores(x, post, op, y, args),
            "seconds": round(time.perf_counter() - t0, 2),
            **info,
        }
        rows.append(row)
    # The exact sampler's own row: what z, coverage and residual read at the posterior.
    exact = post.sample(args.draws, torch.Generator().manual_seed(args.seed + 99))
    rows.append(
        {
            "prior": prior_name,
            "operator": op_name,
            "noise": noise,
            "method": "exact",
            "nfe": 0,
            **scores(exact, post, op, y, args),
            "seconds": 0.0,
        }
    )
    return rows


def curve(args: Any) -> list[dict]:
    """z against particles for the SMC samplers on lowrank64 x project (64-D)."""
    out = []
    for k in args.curve_particles:
        for method in SMC:
            sub = argparse.Namespace(**{**vars(args), "particles": k})
            prior = lowrank64()
            op = operator_for("project", (1, 8, 8), args.noise[0])
            g = torch.Generator().manual_seed(args.seed)
            y = op.measure(prior.sample(args.measurements, g).reshape(-1, 1, 8, 8), seed=args.seed)
            post = mixture_posterior(prior, op, y)
            x, nfe, _ = draw(method, prior, op, y, args.draws, sub)
            out.append(
                {"particles": k, "method": method, "nfe": nfe, **scores(x, post, op, y, args)}
            )
    return out


def plot_curve(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method in SMC:
        pts = [p for p in points if p["method"] == method]
        ax.plot(
            [p["particles"] for p in pts], [max(p["mmd_z"], 0.1) for p in pts], "o-", label=method
        )
    ax.axhline(3, color="gray", ls="--", lw=1, label="3 floor sd")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="particles K (50 steps)",
        ylabel="MMD$^2$ z (floor sd)",
        title="lowrank64, projection to 16",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(rows: list[dict]) -> str:
    head = (
        "| prior | operator | noise | method | NFE/draw | MMD² z | mean RMSE (floor) | "
        "residual/s² | cover 90% | var ratio |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['prior']} | {r['operator']} | {r['noise']} | {r['method']} | {r['nfe']} | "
            f"{r['mmd_z']:.1f} | {r['mean_rmse']:.4f} ({r['floor_rmse']:.4f}) | "
            f"{r['residual']:.2f} | {r['coverage90']:.2f} | {r['var_ratio']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--priors", nargs="+", default=list(PRIORS))
    parser.add_argument("--operators", nargs="+", default=None, help="default: all that fit")
    parser.add_argument("--methods", nargs="+", default=[*SMC, *GIBBS, *POINT])
    parser.add_argument("--noise", nargs="+", type=float, default=[0.05, 0.01])
    parser.add_argument("--particles", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--draws", type=int, default=512)
    parser.add_argument("--measurements", type=int, default=4)
    parser.add_argument("--floor-reps", type=int, default=8)
    parser.add_argument("--smc-grid", default=None, help="grid of the SMC samplers' spec")
    parser.add_argument(
        "--analytic",
        nargs="+",
        default=["none"],
        choices=["none", *ESTIMATORS],
        help="SMC kernels: plain (none) and/or with Analytic-DPM variances by these estimators",
    )
    parser.add_argument("--analytic-mc", type=int, default=4096, help="its x_t draws per node")
    parser.add_argument("--curve", action="store_true")
    parser.add_argument("--curve-particles", nargs="+", type=int, default=[4, 16, 64])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(RESULTS / "posterior.json"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.priors, args.noise, args.draws, args.measurements = ["mix16"], [0.05], 64, 1
        args.particles, args.steps, args.floor_reps = 4, 10, 4
        args.curve_particles = [2, 4]
    if args.device != "cpu":
        torch.set_default_device(args.device)
    cells = [
        (p, o, s)
        for p in args.priors
        for o in operators_for(p)
        if args.operators is None or o in args.operators
        for s in args.noise
    ]
    rows: list[dict] = []
    start = time.perf_counter()
    for prior, op, noise in tqdm(cells, desc="posterior cells"):
        rows.extend(run_cell(prior, op, noise, args.methods, args))
    result: dict[str, Any] = {
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": platform.platform(),
        "rows": rows,
    }
    if args.curve:
        result["curve"] = curve(args)
        plot_curve(result["curve"], Path(args.out).with_name("posterior_curve.png"))
    result["seconds"] = round(time.perf_counter() - start, 1)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(table(rows))
    if args.curve:
        for p in result["curve"]:
            print(f"curve K={p['particles']} {p['method']}: z={p['mmd_z']:.1f}")


if __name__ == "__main__":
    main()
