"""Training-step time against intra-op threads and model size (the cut of interpolant.threads).

For residual MLPs of the toy2d-flow recipe (rectified flow, batch 512, AdamW) from ~10k to ~10M
parameters, the median time of a training step with 1, 2, ... threads (interleaved rounds, so
a change of the machine's load hits every setting alike), and the 1-minute load average while
it ran. Writes benchmarks/results/threads.json (the runs behind interpolant.threads's cut are
threads_quiet.json, load average ~3, and threads_loaded.json, load average ~6, on 2 cores).

    python benchmarks/threads.py                 # widths 32..2048, threads 1 and 2
    python benchmarks/threads.py --threads 1 2 4 --widths 64 1024
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from interpolant.api import resolve_config
from interpolant.api.runs import fit_model_to_data
from interpolant.train import build_network, build_objective

RESULTS = Path(__file__).resolve().parent / "results" / "threads.json"


def step_times(width: int, dim: int, threads: list[int], steps: int, rounds: int) -> dict:
    cfg = resolve_config("toy2d-flow", overrides=[f"train.model.width={width}"]).train
    cfg = cfg.replace(model=fit_model_to_data(cfg.model, (dim,)))
    model = build_network(cfg)
    objective = build_objective(cfg, model.path)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(cfg.batch_size, dim)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        objective.loss(model, x, generator=gen).backward()
        opt.step()

    times: dict[int, list[float]] = {t: [] for t in threads}
    for _ in range(rounds):
        for t in threads:
            torch.set_num_threads(t)
            step()  # warm-up at this thread count
            start = time.perf_counter()
            for _ in range(steps):
                step()
            times[t].append((time.perf_counter() - start) / steps)
    params = sum(p.numel() for p in model.parameters())
    return {
        "width": width,
        "dim": dim,
        "parameters": params,
        "ms_per_step": {str(t): 1e3 * statistics.median(v) for t, v in times.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 128, 256, 512, 1024, 2048])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dim", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    load_before = os.getloadavg()[0]
    for width in args.widths:
        row = step_times(width, args.dim, args.threads, args.steps, args.rounds)
        ms = row["ms_per_step"]
        best = min(ms, key=lambda t: ms[t])
        print(
            f"width {width:5d}  {row['parameters']:>10,d} parameters  "
            + "  ".join(f"{t} thr {v:8.2f} ms" for t, v in ms.items())
            + f"  fastest: {best}"
        )
        rows.append({**row, "fastest_threads": int(best)})
    result = {
        "rows": rows,
        "cores": len(os.sched_getaffinity(0)),
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "torch": torch.__version__,
        "command": "python benchmarks/threads.py "
        + " ".join(
            f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if k != "out"
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}; wrote {args.out}")


if __name__ == "__main__":
    main()
