"""Calibrated grids against the default rule on the four exact oracle families.

For each family and NFE: ``ip.calibrate`` (the default rule's solver, 128 calibration draws, a
60-run search; its cost in model evaluations is reported) and the default rule, both judged on
2048 evaluation draws from another stream against the exact probability-flow ODE (RMSE and
per-sample median). Reported apart from the fixed-grid table of ``sampler_oracle.py``: a
calibrated grid is searched per model at a stated cost, a fixed one is not.

    python benchmarks/calibration.py            # a few minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import interpolant as ip
from interpolant.data.oracles import ORACLES
from interpolant.paths import EDM
from interpolant.randomness import Streams
from interpolant.solvers import calibrate, reference_sample

FAMILIES = ("ring2d", "lowrank64", "aniso16", "digits_mixture")


def errors(x: torch.Tensor, exact: torch.Tensor) -> dict[str, float]:
    per_sample = (x - exact).square().mean(1).sqrt()
    return {
        "rmse": float((x - exact).square().mean().sqrt()),
        "median": float(per_sample.median()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nfe", type=int, nargs="+", default=[6, 10, 20])
    parser.add_argument("--eval-draws", type=int, default=2048)
    parser.add_argument("--out", default="benchmarks/results/calibration.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for family in FAMILIES:
        mixture = ORACLES[family]()
        model = mixture.model(EDM())
        dim = int(mixture.means.shape[1])
        noise = Streams(0, args.eval_draws, "evaluation").normal((dim,), dtype=torch.float64)
        exact = reference_sample(model, noise)
        for nfe in args.nfe:
            t0 = time.time()
            cal = calibrate(model, (dim,), ip.Sampler("auto", nfe=nfe), draws=128, budget=60)
            seconds = time.time() - t0
            row = {
                "family": family,
                "nfe": nfe,
                "default": errors(ip.sample(model, noise, nfe=nfe).x, exact),
                "calibrated": errors(ip.sample(model, noise, cal.sampler).x, exact),
                "calibration_nfe": cal.nfe_spent,
                "calibration_s": seconds,
                "grid": cal.sampler.config()["grid"],
            }
            row["ratio_rmse"] = row["calibrated"]["rmse"] / row["default"]["rmse"]
            row["ratio_median"] = row["calibrated"]["median"] / row["default"]["median"]
            print(json.dumps({k: v for k, v in row.items() if k != "grid"}), flush=True)
            rows.append(row)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "torch": torch.__version__,
        "note": "CPU, 1 thread, shared machine; calibration draws: stream 'calibration' seed 0, "
        "evaluation draws: stream 'evaluation' seed 0",
        "results": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
