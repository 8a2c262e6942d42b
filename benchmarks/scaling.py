"""Inference-time scaling on an exact oracle: expected reward and distance to the exact tilted
target against NFE, for every method of ``interpolant.scaling``.

The problem. ``ring2d`` (8 Gaussians of std 0.05 on a circle of radius 2) with its exact denoiser
on the Linear path; reward r(x) = x_1 + 0.5 x_2; temperature T = 0.5. The tilted target
p*(x) ∝ p(x) exp(r(x) / T) is again a Gaussian mixture (``scaling.tilt``), so its expected reward
is exact and its samples are exact. Distance: sliced W2 (256 directions) between the ``n`` final
samples of a method and 4,000 exact draws of p*.

Methods at NFE = 20 K per final sample (K = 1, 2, 4, ..., 32), all on the uniform 20-step grid:

* ``steps``: no search, the deterministic sampler (dpmpp_2m) with 20 K steps (scaling denoising
  steps only; Ma et al.'s baseline).
* ``best_of_n``: random search, K noises through dpmpp_2m (20 steps), keep the best reward.
* ``zero_order``: 4 neighbours at cosine 0.95 per iteration (K >= 5).
* ``paths``: search over paths, width max(2, K / 4), 2 branches, start at step 4, re-noise 1 step
  back, integrate 2 ahead; it spends at most the budget (the JSON records its NFE).
* ``fk_diff`` / ``fk_max`` / ``fk_sum``: FK steering with K particles on dpmpp_2m_sde (20 steps),
  resampling every step (systematic), one sample drawn by the final weights (the target-consistent
  choice); ``fk_diff_argmax`` returns the highest-reward particle instead.
* ``rbf``: rollover budget forcing (``scaling.rbf``, seed paper 18; 10 steps on the VP path,
  n_init = budget / 5).

Each cell is the median over ``repeats`` seeds. Run ``python benchmarks/scaling.py`` (about five
minutes on 2 cores; ``--quick`` for a smoke run); writes ``benchmarks/results/scaling.json`` and
``benchmarks/results/scaling.png`` and prints a markdown table (``--replot`` redraws both from
the JSON).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from interpolant.data.oracles import ring2d
from interpolant.metrics import sliced_wasserstein
from interpolant.paths import get_path
from interpolant.randomness import derive_seed, normal
from interpolant.scaling import (
    FKResult,
    FKSteering,
    LinearReward,
    ParticleResult,
    SearchResult,
    best_of_n,
    expected_reward,
    fk_steer,
    rbf_sample,
    search_over_paths,
    tilt,
    zero_order_search,
)
from interpolant.scaling.search import NOISE_STREAM
from interpolant.solvers import as_sampler, sample

RESULTS = Path(__file__).parent / "results"
STEPS = 20
TEMPERATURE = 0.5


def setup() -> dict[str, Any]:
    mix = ring2d()
    model = mix.model(get_path("linear"))
    reward = LinearReward([1.0, 0.5])
    target = tilt(mix, reward, TEMPERATURE)
    reference = target.mixture.sample(4000, torch.Generator().manual_seed(12345))
    return {"mix": mix, "model": model, "reward": reward, "target": target, "ref": reference}


def run_method(
    name: str, k: int, n: int, seed: int, s: dict[str, Any]
) -> tuple[torch.Tensor, float] | None:
    """(samples, NFE per final sample) of method ``name`` at K = ``k``, or None if it cannot run."""
    model, reward = s["model"], s["reward"]
    budget = STEPS * k
    sampler = as_sampler(solver="dpmpp_2m", steps=STEPS, grid="uniform", seed=seed)
    if name == "steps":
        # The noises of best-of-N's first candidates, at K times the steps.
        noise = normal((2,), seed, n, NOISE_STREAM, dtype=torch.float64)
        return sample(model, noise, sampler.replace(steps=budget)).x, budget
    out: SearchResult | FKResult | ParticleResult
    if name == "best_of_n":
        out = best_of_n(model, reward, k, sampler, n=n, shape=(2,))
    elif name == "zero_order":
        if k < 5:
            return None
        out = zero_order_search(model, reward, budget, sampler, n=n, shape=(2,))
    elif name == "paths":
        if k < 2:
            return None
        out = search_over_paths(
            model,
            reward,
            budget,
            sampler,
            n=n,
            shape=(2,),
            width=max(2, k // 4),
            branches=2,
            start=4,
            forward=1,
            backward=2,
        )
    elif name.startswith("fk_"):
        potential = name.split("_")[1]
        choose = "argmax" if name.endswith("argmax") else "sample"
        steering = FKSteering(reward, k, temperature=TEMPERATURE, potential=potential)
        fk_sampler = sampler.replace(solver="dpmpp_2m_sde")
        out = fk_steer(model, steering, fk_sampler, n=n, shape=(2,), choose=choose)
    elif name == "rbf":
        n_init = max(1, budget // 5)
        if budget < n_init + 9:
            return None
        out = rbf_sample(model, reward, budget, (2,), n=n, n_init=n_init, steps=10, seed=seed)
    else:
        raise ValueError(f"unknown method {name!r}")
    return out.x, out.nfe


def measure(x: torch.Tensor, s: dict[str, Any]) -> tuple[float, float]:
    reward = float(s["reward"](x).mean())
    distance = float(sliced_wasserstein(x, s["ref"], n_projections=256, seed=0))
    return reward, distance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--replot", action="store_true", help="redraw and reprint from the JSON")
    args = parser.parse_args()
    if args.replot:
        out = RESULTS / ("scaling_quick.json" if args.quick else "scaling.json")
        report = json.loads(out.read_text())
        plot(report, out.with_suffix(".png"))
        print(table(report))
        return
    torch.set_num_threads(args.threads)
    ks = [1, 2, 4, 8] if args.quick else [1, 2, 4, 8, 16, 32]
    n, repeats = (128, 2) if args.quick else (256, 3)
    methods = [
        "steps",
        "best_of_n",
        "zero_order",
        "paths",
        "fk_diff",
        "fk_max",
        "fk_sum",
        "fk_diff_argmax",
        "rbf",
    ]
    s = setup()
    floor = [
        float(
            sliced_wasserstein(
                s["target"].mixture.sample(n, torch.Generator().manual_seed(r)),
                s["ref"],
                n_projections=256,
                seed=0,
            )
        )
        for r in range(repeats)
    ]
    results: dict[str, list[dict[str, Any]]] = {}
    start = time.perf_counter()
    for name in methods:
        rows = []
        for k in ks:
            tried = [
                run_method(name, k, n, derive_seed("scaling-repeat", 0, r), s)
                for r in range(repeats)
            ]
            runs = [r for r in tried if r is not None]
            if len(runs) < repeats:
                continue
            values = [measure(x, s) for x, _ in runs]
            rewards, distances = [v[0] for v in values], [v[1] for v in values]
            nfe = statistics.median(float(r[1]) for r in runs)
            rows.append(
                {
                    "k": k,
                    "nfe": nfe,
                    "reward": statistics.median(rewards),
                    "distance": statistics.median(distances),
                    "rewards": rewards,
                    "distances": distances,
                }
            )
            print(
                f"{name:>15} K={k:>2} NFE={nfe:>6.0f} reward {rows[-1]['reward']:.3f} "
                f"SW2 {rows[-1]['distance']:.3f}  ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
        results[name] = rows
    report = {
        "problem": "ring2d (std 0.05), Linear path, exact denoiser; r(x) = x1 + 0.5 x2",
        "temperature": TEMPERATURE,
        "steps": STEPS,
        "n_final_samples": n,
        "repeats": repeats,
        "exact": {
            "tilted_expected_reward": s["target"].expected_reward,
            "base_expected_reward": expected_reward(s["mix"], s["reward"]),
            "distance_floor_median": statistics.median(floor),
        },
        "results": results,
        "seconds": round(time.perf_counter() - start, 1),
        "torch": torch.__version__,
        "quick": args.quick,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("scaling_quick.json" if args.quick else "scaling.json")
    out.write_text(json.dumps(report, indent=1) + "\n")
    plot(report, out.with_suffix(".png"))
    print(table(report))
    print(f"wrote {out}")


def table(report: dict[str, Any]) -> str:
    """Markdown: one row per method, one column per K (reward / SW2 to the tilted target)."""
    ks = sorted({row["k"] for rows in report["results"].values() for row in rows})
    exact = report["exact"]
    lines = [
        f"Exact E_p*[r] = {exact['tilted_expected_reward']:.3f} "
        f"(base {exact['base_expected_reward']:.3f}); "
        f"SW2 floor of {report['n_final_samples']} exact samples = "
        f"{exact['distance_floor_median']:.3f}. Cells: mean reward / SW2 to p* (median of "
        f"{report['repeats']}); NFE per sample = {report['steps']} K (zero_order and paths "
        "spend at most that: their NFE is in the JSON).",
        "",
        "| method | " + " | ".join(f"K={k}" for k in ks) + " |",
        "|---|" + "---|" * len(ks),
    ]
    for name, rows in report["results"].items():
        by_k = {row["k"]: row for row in rows}
        cells = [
            f"{by_k[k]['reward']:.2f} / {by_k[k]['distance']:.2f}" if k in by_k else "-" for k in ks
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_r, ax_d) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, rows in report["results"].items():
        if not rows:
            continue
        nfe = [row["nfe"] for row in rows]
        ax_r.plot(nfe, [row["reward"] for row in rows], marker="o", label=name)
        ax_d.plot(nfe, [row["distance"] for row in rows], marker="o", label=name)
    exact = report["exact"]
    ax_r.axhline(exact["tilted_expected_reward"], color="k", ls="--", lw=1, label="exact E_p*[r]")
    ax_d.axhline(exact["distance_floor_median"], color="k", ls=":", lw=1, label="sample floor")
    ticks = sorted({20 * row["k"] for rows in report["results"].values() for row in rows})
    for ax, title in ((ax_r, "mean reward"), (ax_d, "sliced W2 to the exact tilted target")):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("NFE per final sample")
        ax.set_title(title)
    ax_d.set_yscale("log")
    ax_d.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax_d.set_yticks([0.2, 0.3, 0.5, 1.0, 1.5], ["0.2", "0.3", "0.5", "1.0", "1.5"])
    ax_r.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
