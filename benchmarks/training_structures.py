"""Training structures from the command line's api (issue 16): the ``forward-digits`` and
``multitask`` presets, trained as ``interpolant train --preset ...`` would, then sampled.

* forward-digits (observation-space diffusion, seed 20): training time; on the first N training
  digits' top halves, the completions' context error (mean squared per observed pixel, model
  space [-1, 1]) against their own and against another digit's context (shuffled), the bottom
  half's error to the truth, and the per-pixel spread of the bottom half between two sampling
  seeds (diversity).
* multitask (MT-Diffusion, seed 14): the strided ancestral sampler at sample.nfe in
  {200 (the full chain), 50, 20, 10}: network evaluations spent per sample, the shipped digit
  classifier's agreement with the generated labels, and the Frechet distance to the training
  digits in that classifier's features (seed 14's metrics). One training seed: figures, no claim.

    python benchmarks/training_structures.py --quick   # seconds, plumbing only
    python benchmarks/training_structures.py           # the recorded run (a few minutes)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from interpolant import api
from interpolant.forward_models import digit_views
from interpolant.metrics.classifier import class_log_probs
from interpolant.metrics.fid import frechet_distance

OUT = Path(__file__).resolve().parent / "results" / "training_structures.json"


def forward_digits(root: Path, quick: bool, n: int) -> dict[str, Any]:
    extra = ["train.steps=40", "train.model.width=32"] if quick else []
    start = time.perf_counter()
    common = ["train.progress=false", "train.device=cpu", f"train.run_dir={root / 'fwd'}"]
    api.train("forward-digits", [*common, *extra], plots=False)
    seconds = time.perf_counter() - start
    out = api.sample(root / "fwd", n=n, batch_size=n)
    other = api.sample(root / "fwd", n=n, batch_size=n, seed=1)
    run = api.load_run(root / "fwd")
    truth = api.load_data(run.config.data, "train").x[:n].flatten(1)
    top = digit_views()[0].bool()
    s, s2 = out.x.flatten(1), other.x.flatten(1)
    return {
        "train_seconds": round(seconds, 1),
        "steps": run.step,
        "n": n,
        "nfe_per_sample": out.meta["nfe_spent"],
        "context_mse": float((s - truth)[:, top].square().mean()),
        "context_mse_shuffled": float((s - truth.roll(1, 0))[:, top].square().mean()),
        "bottom_mse": float((s - truth)[:, ~top].square().mean()),
        "bottom_spread_two_seeds": float((s - s2)[:, ~top].square().mean().sqrt() / 2**0.5),
    }


def multitask(root: Path, quick: bool, n: int) -> dict[str, Any]:
    extra = ["train.steps=20", "train.model.width=32"] if quick else []
    start = time.perf_counter()
    common = ["train.progress=false", "train.device=cpu", f"train.run_dir={root / 'mt'}"]
    api.train("multitask", [*common, *extra], plots=False)
    seconds = time.perf_counter() - start
    real = api.load_data(api.load_run(root / "mt").config.data, "train").x
    rows = {}
    for nfe in (200, 50, 20, 10):
        begin = time.perf_counter()
        out = api.sample(root / "mt", n=n, batch_size=n, nfe=nfe)
        named = class_log_probs(out.x).argmax(1)
        rows[str(nfe)] = {
            "nfe_spent": out.meta["nfe_spent"],
            "agreement": float((named == out.labels).double().mean()),
            "FD": frechet_distance(out.x, real, "digits"),
            "sample_seconds": round(time.perf_counter() - begin, 2),
        }
    return {"train_seconds": round(seconds, 1), "n": n, "by_nfe": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny runs: plumbing only")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n = 64 if args.quick else 500
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        result = {
            "quick": args.quick,
            "threads": 1,
            "forward-digits": forward_digits(root, args.quick, n),
            "multitask": multitask(root, args.quick, n),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
