"""Inverse-problem solvers on priors with exact posteriors: PSNR, SSIM, posterior error, time.

Priors (training-free, exact): a class-wise Gaussian mixture fitted to the scikit-learn digits
(8x8 in [-1, 1]; ``repro.seed35_red_diff``) and a k-means Gaussian mixture fitted to random
Shepp-Logan-like phantoms (16x16 in [0, 1]; ``repro.seed03_data_consistency``). The diffusion
model is the mixture's exact denoiser on the VP path, so the exact posterior p(x | y) is known
(``inverse.posterior``) and every solver is scored against it as well as against the truth.

Operators (noise std 0.01 on digits, 0.005 on phantoms): random inpainting (keep 50 %), box
inpainting, 2x super-resolution, Gaussian blur (std 1) on digits; MRI 4x and CT 16 angles on
phantoms. Solvers with their official defaults:

* ``pinv``: A^+ y (zero-filled for MRI; 30 CGLS iterations for CT);
* ``dps``: DPS, ancestral DDPM, 100 steps, zeta' = 1 (Chung et al. 2023 code default);
* ``red_diff``: RED-diff, 100 Adam steps, lr 0.1, lambda 0.25, w = sigma/alpha (NVlabs code);
* ``dc``: ancestral DDPM, 100 steps, hard state projection onto alpha y + sigma A z (the survey's
  medical recipe, Song et al. 2022);
* ``dc_x0``: the same projection on every data prediction instead (DDNM-style);
* ``repaint``: RePaint, 250 steps, jump length 10, 10 resamples (official defaults; masks only).

Metrics: PSNR and SSIM (scikit-image's definition, 7x7 window) of the reconstruction against
the truth (images clipped to the data range for SSIM), the RMS distance to the exact posterior
mean, the network evaluations each solver reports (counted by ``Model.at``; DPS's gradient
reuses the sampler's forward pass), and wall time per sample on one CPU thread.

Run ``python benchmarks/inverse.py`` (``--quick`` for a smoke run); results go to
``benchmarks/results/inverse.json`` and a markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from interpolant.data import load_digits
from interpolant.inverse import make_operator, mixture_posterior, posterior_error, psnr, solve, ssim
from interpolant.randomness import derive_seed
from interpolant.repro import seed03_data_consistency as seed03
from interpolant.repro import seed35_red_diff as seed35

RESULTS = Path(__file__).resolve().parent / "results" / "inverse.json"

#: (method, options) for each solver label, at the official defaults.
SOLVERS: dict[str, tuple[str, dict[str, Any]]] = {
    "pinv": ("pinv", {}),
    "dps": ("dps", {"nfe": 100}),
    "red_diff": ("red_diff", {"steps": 100}),
    "dc": ("dc", {"nfe": 100}),
    "dc_x0": ("dc", {"nfe": 100, "where": "x0"}),
    "repaint": ("repaint", {"steps": 250, "jump_length": 10, "resamples": 10}),
}


def problems(quick: bool, seed: int) -> list[dict[str, Any]]:
    """The (prior, test images, operator spec, noise, data range) of each benchmark task."""
    n_digits, n_phantoms = (8, 4) if quick else (64, 16)
    model, prior = seed35.digits_prior_model(1e-2)
    test = load_digits("test").x
    pick = torch.randperm(test.shape[0], generator=torch.Generator().manual_seed(seed))
    digits = test[pick[:n_digits]].to(torch.float64)
    out = [
        {"prior": "digits", "model": model, "mixture": prior, "x": digits, "spec": spec,
         "noise": 0.01, "low": -1.0, "high": 1.0}
        for spec in ("inpaint-random:0.5", "inpaint-box", "sr:2", "blur:1.0")
    ]  # fmt: skip
    s = seed03.Settings(size=16, n_train=1000, n_clusters=4, n_test=n_phantoms)
    p_model, p_prior = seed03.phantom_prior(s, seed)
    phantoms = seed03.phantoms(n_phantoms, s.size, derive_seed("seed03-test", seed))
    out += [
        {"prior": "phantoms", "model": p_model, "mixture": p_prior, "x": phantoms, "spec": spec,
         "noise": 0.005, "low": 0.0, "high": 1.0}
        for spec in ("mri:4", "ct:16")
    ]  # fmt: skip
    return out


def evaluate(problem: dict[str, Any], quick: bool, seed: int) -> dict[str, dict[str, float]]:
    """Every applicable solver on one task."""
    x, spec = problem["x"], problem["spec"]
    op = make_operator(spec, tuple(x.shape[1:]), noise_std=problem["noise"], seed=seed)
    y = op.measure(x, seed=derive_seed("benchmark-inverse-measurement", seed))
    post = mixture_posterior(problem["mixture"], op, y)
    low, high = problem["low"], problem["high"]
    span = high - low
    rows: dict[str, dict[str, float]] = {}
    exact = post.mean().reshape(x.shape)
    rows["exact posterior mean"] = {
        "psnr": float(psnr(exact.clamp(low, high), x, span).mean()),
        "ssim": float(ssim(exact.clamp(low, high), x, span).mean()),
        "posterior_mean_rmse": 0.0,
        "nfe": 0,
        "ms_per_sample": float("nan"),
    }
    for label, (method, options) in SOLVERS.items():
        if label == "repaint" and not spec.startswith("inpaint"):
            continue
        opts = dict(options)
        if quick and label == "repaint":
            opts.update(steps=50, resamples=2, jump_length=5)
        start = time.perf_counter()
        result = solve(problem["model"], op, y, method, seed=seed, **opts)
        seconds = time.perf_counter() - start
        out = result.x
        rec = out.clamp(low, high)
        rows[label] = {
            "psnr": float(psnr(rec, x, span).mean()),
            "ssim": float(ssim(rec, x, span).mean()),
            "posterior_mean_rmse": posterior_error(out.reshape(len(x), -1), post)["mean_rmse"],
            "nfe": result.nfe,
            "ms_per_sample": 1000 * seconds / len(x),
        }
    return rows


def markdown(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """One table: rows = task x solver."""
    lines = [
        "| task | solver | PSNR (dB) | SSIM | RMSE to exact posterior mean | NFE | ms/sample |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for task, rows in results.items():
        for label, r in rows.items():
            ms = "-" if r["ms_per_sample"] != r["ms_per_sample"] else f"{r['ms_per_sample']:.1f}"
            lines.append(
                f"| {task} | {label} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                f"{r['posterior_mean_rmse']:.3f} | {int(r['nfe'])} | {ms} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few images, short RePaint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    for problem in problems(args.quick, args.seed):
        task = f"{problem['prior']} {problem['spec']}"
        results[task] = evaluate(problem, args.quick, args.seed)
        print(f"done: {task}", flush=True)
    table = markdown(results)
    print(table)
    record = {
        "benchmark": "inverse",
        "quick": args.quick,
        "seed": args.seed,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": 1,
        "solvers": {k: {"method": m, **o} for k, (m, o) in SOLVERS.items()},
        "results": results,
        "markdown": table,
    }
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1))
        print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
