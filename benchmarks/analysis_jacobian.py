"""Speed of the analysis derivatives: torch.func (vmap over JVPs) against a Python loop of
reverse passes over the output dimensions, for a 64-D field and a batch of 256, in the same run.

    python benchmarks/analysis_jacobian.py [--repeats 5] [--threads 1]

Prints the median time of each and the ratio, and writes benchmarks/results/analysis_jacobian.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from interpolant.analysis import divergence, jacobian
from interpolant.analysis.derivatives import divergence_loop, jacobian_loop

OUT = Path(__file__).resolve().parent / "results" / "analysis_jacobian.json"


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(args.dim, args.width),
        nn.SiLU(),
        nn.Linear(args.width, args.width),
        nn.SiLU(),
        nn.Linear(args.width, args.dim),
    ).requires_grad_(False)
    x = torch.randn(args.batch, args.dim)
    # Both give the same answer (checked before timing).
    assert torch.allclose(jacobian(net, x), jacobian_loop(net, x), atol=1e-5)
    rows = {
        "jacobian torch.func": median_time(lambda: jacobian(net, x), args.repeats),
        "jacobian loop": median_time(lambda: jacobian_loop(net, x), args.repeats),
        "divergence torch.func": median_time(lambda: divergence(net, x), args.repeats),
        "divergence loop": median_time(lambda: divergence_loop(net, x), args.repeats),
    }
    result = {
        "settings": vars(args) | {"out": str(args.out)},
        "median_s": rows,
        "speedup_jacobian": rows["jacobian loop"] / rows["jacobian torch.func"],
        "speedup_divergence": rows["divergence loop"] / rows["divergence torch.func"],
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "note": "CPU shared with other jobs; ratios are from the same run",
    }
    for name, value in rows.items():
        print(f"{name:<24} {value * 1e3:8.1f} ms")
    print(
        f"speed-up: Jacobian {result['speedup_jacobian']:.1f}x, divergence "
        f"{result['speedup_divergence']:.1f}x"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
