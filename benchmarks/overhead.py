"""Sampler overhead per step: ours vs k-diffusion and diffusers with a near-free model.

What is timed: a whole DPM-Solver++(2M) sampling run of ``--steps`` steps, divided by the number
of steps, for a model that costs almost nothing (x0 = 0.5 x, or eps = 0.5 x for diffusers'
epsilon-prediction scheduler), so the time is the sampler's own work: grid set-up, the loop,
the update arithmetic and the bookkeeping.

* ours: ``interpolant.sample(model, noise, solver="dpmpp_2m", steps=n, grid="karras")`` on the
  EDM path (x0 prediction), float32, no progress bar;
* k-diffusion: ``get_sigmas_karras(n, 0.002, 80)`` and ``sample_dpmpp_2m(model, 80 z, sigmas,
  disable=True)``;
* diffusers: ``DPMSolverMultistepScheduler()`` (its defaults: DPM-Solver++ 2M, linear betas),
  ``set_timesteps(n)`` and the ``step`` loop.

Each side is timed from its grid set-up to the final sample.

Per-sample noise: one draw of standard normals (batch x 64 float32) from
``interpolant.randomness.Streams`` (one counter-based stream per sample), against one unseeded
``torch.randn`` of the same shape (torch's global generator: not per sample) and against the
per-sample ``torch.Generator`` loop the library used before (one generator per row, the same
stream as ``torch.randn`` on that generator). Data: 64 dimensions, batch 1 and
4096, float32, ``torch.set_num_threads(1)``. The three samplers are timed in interleaved rounds
(so slow drifts of a shared machine hit all of them alike) and the median over rounds is
reported, with ratios to k-diffusion. Run ``python benchmarks/overhead.py`` (``--quick`` for a
smoke run); results go to ``benchmarks/results/overhead.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _peers
import interpolant as ip

DIM = 64
RESULTS = Path(__file__).resolve().parent / "results" / "overhead.json"


def ours_runner(noise: torch.Tensor, steps: int) -> Callable[[], torch.Tensor]:
    model = ip.Model(lambda x, t: x * 0.5, ip.paths.EDM(), predicts="x0")

    spec = ip.solvers.Sampler("dpmpp_2m", steps=steps, grid="karras")

    def run() -> torch.Tensor:
        return ip.sample(model, noise, spec).x

    return run


def k_diffusion_runner(noise: torch.Tensor, steps: int) -> Callable[[], torch.Tensor]:
    sampling = _peers.load_k_diffusion_sampling()

    def run() -> torch.Tensor:
        sigmas = sampling.get_sigmas_karras(steps, 0.002, 80.0)
        return sampling.sample_dpmpp_2m(lambda x, s: x * 0.5, noise * 80.0, sigmas, disable=True)

    return run


def diffusers_runner(noise: torch.Tensor, steps: int) -> Callable[[], torch.Tensor]:
    from diffusers import DPMSolverMultistepScheduler

    scheduler = DPMSolverMultistepScheduler()

    def run() -> torch.Tensor:
        scheduler.set_timesteps(steps)
        x = noise * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            x = scheduler.step(x * 0.5, t, x).prev_sample
        return x

    return run


RUNNERS = {"ours": ours_runner, "k-diffusion": k_diffusion_runner, "diffusers": diffusers_runner}


def noise_runners(batch: int) -> dict[str, Callable[[], torch.Tensor]]:
    """One per-sample normal draw of (batch, DIM) float32: ours, torch.randn, the old loop."""
    streams = ip.randomness.Streams(0, batch)
    generators = [torch.Generator().manual_seed(i) for i in range(batch)]

    def generator_loop() -> torch.Tensor:
        z = torch.empty(batch, DIM, dtype=torch.float64)
        for row, g in zip(z, generators):
            row.normal_(generator=g)
        return z.float()

    return {
        "streams": lambda: streams.normal((DIM,)),
        "randn": lambda: torch.randn(batch, DIM),
        "generator_loop": generator_loop,
    }


def time_calls(runners: dict[str, Callable[[], torch.Tensor]], rounds: int) -> dict[str, float]:
    """Median microseconds per call of each runner (interleaved rounds)."""
    times = time_per_step(runners, 1, rounds)
    return {name: statistics.median(ts) for name, ts in times.items()}


def time_per_step(
    runners: dict[str, Callable[[], torch.Tensor]], steps: int, rounds: int
) -> dict[str, list[float]]:
    """Microseconds per step of each runner, one run of each per round (interleaved)."""
    for run in runners.values():
        run()  # warm-up: first calls build caches
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) / steps * 1e6)
    return times


def machine() -> dict[str, str | int]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):  # no /proc (macOS, Windows): keep platform's name
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
    }


def versions() -> dict[str, str]:
    import diffusers

    return {
        "interpolant": ip.__version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "k-diffusion": _peers.k_diffusion_version(),
    }


def markdown(record: dict) -> str:
    """The README's overhead table from a saved record."""
    lines = [
        "| batch | ours (us/step) | k-diffusion | diffusers | ours / k-diff. | ours / diffusers |",
        "|---|---|---|---|---|---|",
    ]
    for r in record["results"]:
        us = r["us_per_step"]
        lines.append(
            f"| {r['batch']} | {us['ours']:.0f} | {us['k-diffusion']:.0f} | {us['diffusers']:.0f} "
            f"| {us['ours'] / us['k-diffusion']:.2f} | {us['ours'] / us['diffusers']:.2f} |"
        )
    if "noise" in record:
        lines += [
            "",
            f"| batch x {DIM} float32 | per-sample streams (us) | torch.randn (us) "
            "| streams / randn | per-sample generator loop (before, us) |",
            "|---|---|---|---|---|",
        ]
        for r in record["noise"]:
            us = r["us_per_draw"]
            lines.append(
                f"| {r['batch']} | {us['streams']:.0f} | {us['randn']:.0f} "
                f"| {us['streams'] / us['randn']:.2f} | {us['generator_loop']:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds (a smoke run)")
    parser.add_argument("--steps", type=int, default=50, help="steps per sampling run")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4096])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--markdown", action="store_true", help="print the README table from --out and exit"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        saved = json.loads(args.out.read_text())
        print(markdown(saved))
        return saved
    torch.set_num_threads(1)
    rounds = {1: 5, 4096: 3} if args.quick else {1: 40, 4096: 15}
    results = []
    for batch in args.batches:
        noise = torch.randn(batch, DIM, generator=torch.Generator().manual_seed(0))
        runners = {name: make(noise, args.steps) for name, make in RUNNERS.items()}
        times = time_per_step(runners, args.steps, rounds.get(batch, 10))
        median = {name: statistics.median(ts) for name, ts in times.items()}
        results.append(
            {
                "batch": batch,
                "us_per_step": median,
                "ratio_to_k_diffusion": {n: median[n] / median["k-diffusion"] for n in median},
                "rounds": len(times["ours"]),
                "all_us_per_step": times,
            }
        )
    noise = []
    for batch in args.batches:
        per_draw = time_calls(noise_runners(batch), 20 if args.quick else 200)
        noise.append({"batch": batch, "us_per_draw": per_draw})
    print(f"overhead per step, DPM-Solver++ 2M, {DIM} dims, {args.steps} steps, 1 thread (median)")
    columns = ("batch", "ours us", "k-diff us", "diffusers us", "ours/k-diff", "ours/diffusers")
    print(" | ".join(f"{c:>14}" for c in columns))
    for r in results:
        us = r["us_per_step"]
        cells = (us["ours"], us["k-diffusion"], us["diffusers"])
        ratios = (us["ours"] / us["k-diffusion"], us["ours"] / us["diffusers"])
        print(
            " | ".join([f"{r['batch']:>14}", *(f"{v:>14.0f}" for v in cells)])
            + " | "
            + " | ".join(f"{v:>14.2f}" for v in ratios)
        )
    for r in noise:
        us = r["us_per_draw"]
        print(
            f"per-sample normals {r['batch']} x {DIM}: streams {us['streams']:.0f} us, randn "
            f"{us['randn']:.0f} us (ratio {us['streams'] / us['randn']:.2f}), generator loop "
            f"{us['generator_loop']:.0f} us"
        )
    record = {
        "benchmark": "overhead",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "dim": DIM,
            "steps": args.steps,
            "dtype": "float32",
            "quick": args.quick,
            "model": "x0 = 0.5 x (diffusers: eps = 0.5 x)",
        },
        "versions": versions(),
        "machine": machine(),
        "results": results,
        "noise": noise,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out}")
    return record


if __name__ == "__main__":
    main()
