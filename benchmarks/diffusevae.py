"""DiffuseVAE against an unconditional diffusion model of equal size at few steps (issue 16's
benchmark item for seed 26).

On the 8x8 digits, for each training seed: the VAE, then three eps-prediction UNets of one size
(form 1: coarse image as channels; form 2: the same on the shifted-mean path; unconditional),
trained for the same steps by the library's Trainer; DDIM (eta = 0, uniform grid) at 5, 10, 25
and 50 steps; Frechet distance in the shipped digit classifier's features against the train
split ("digit-FD"). The experiment is ``interpolant.repro.seed26_diffusevae.experiment`` (one
definition for the reproduction and this benchmark). No peer library implements DiffuseVAE (the
official code is a Lightning/Hydra application without a sampling API), so the comparison is
against the unconditional model, as in the paper's tables. With several seeds the JSON holds
each seed's figures and their mean and standard error.

    python benchmarks/diffusevae.py --quick            # seconds, plumbing only
    python benchmarks/diffusevae.py --seeds 1          # the recorded run (minutes per seed)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from interpolant.repro.base import mean_se, settings_dict
from interpolant.repro.seed26_diffusevae import QUICK, Settings, experiment

OUT = Path(__file__).resolve().parent / "results" / "diffusevae.json"


def summarise(values: list[float]) -> dict[str, float]:
    """Mean and standard error over seeds (``repro.base.mean_se``; se = 0 for one seed)."""
    if len(values) < 2:  # no spread to estimate from one seed
        return {"mean": float(values[0]), "se": 0.0, "n": 1}
    mean, se = mean_se(values)
    return {"mean": mean, "se": se, "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (plumbing check)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    s = QUICK if args.quick else Settings()
    runs: dict[str, Any] = {}
    start = time.perf_counter()
    for seed in args.seeds:
        t0 = time.perf_counter()
        runs[str(seed)] = experiment(s, seed)
        runs[str(seed)]["wall_s"] = time.perf_counter() - t0
        fd = runs[str(seed)]["fd"]
        print(
            f"seed {seed}: "
            + ", ".join(f"{k} {v:.1f}" for k, v in fd.items())
            + f" ({runs[str(seed)]['wall_s']:.0f} s)",
            flush=True,
        )
    keys = list(runs[str(args.seeds[0])]["fd"])
    summary = {k: summarise([runs[str(seed)]["fd"][k] for seed in args.seeds]) for k in keys}
    ratios = {
        f"{form} / unconditional at {steps} steps": summarise(
            [
                runs[str(seed)]["fd"][f"{form} {steps} steps"]
                / runs[str(seed)]["fd"][f"unconditional {steps} steps"]
                for seed in args.seeds
            ]
        )
        for form in ("form1", "form2")
        for steps in s.sample_steps
    }
    result = {
        "benchmark": "diffusevae",
        "quick": args.quick,
        "seeds": args.seeds,
        "settings": settings_dict(s),
        "metric": "digit-FD (shipped classifier features) against the digits train split",
        "sampler": "ddim eta=0, uniform time grid",
        "fd": summary,
        "fd_ratio": ratios,
        "runs": runs,
        "wall_s": time.perf_counter() - start,
        "note": "CPU, 2 cores shared by ~8 processes: timings are relative only",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for k, v in ratios.items():
        print(f"{k}: {v['mean']:.3f} +- {v['se']:.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
