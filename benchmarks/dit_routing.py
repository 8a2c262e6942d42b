"""DiT with and without denoising task routing against diffusers' DiT at equal steps (issue 16,
benchmark item for seed 33).

On the 8x8 digits (1 x 8 x 8, patch 2: 16 tokens), three class-conditional transformers of one
size (hidden 128, depth 4, 4 heads, label dropout 0.1) are trained by the library's Trainer with
one recipe, diffusers' DDPM one: eps-prediction on the discrete linear-beta schedule (1e-4 ..
0.02, 1000 steps: ``paths.DiscreteVP()``), uniform times, AdamW, cosine learning rate, the same
data order and loss noise for every arm (one training seed per run):

* ``DiT``: ``models.DiT`` (adaLN-Zero blocks, as in Peebles & Xie 2023);
* ``DiT + DTR``: the same network with ``router="dtr"`` (sliding-window channel masks per task,
  sharing 0.8, alpha 4, 1000 tasks; no extra parameters);
* ``diffusers DiT``: diffusers' ``DiTTransformer2DModel`` at the same size, called with the
  DDPM timestep ``timestep_of_t(t)`` and the class labels.

Each arm draws 1000 samples (DDIM eta = 0, 50 uniform steps, EMA weights, class i % 10) from the
same start noise, scored by the Frechet distance in the shipped digit classifier's features
against the held-out digits (digit-FD). The FD of the train split itself against the held-out
split is the floor. With several seeds the JSON holds each seed's figures and their mean and
standard error.

    python benchmarks/dit_routing.py --quick                    # seconds, plumbing only
    python benchmarks/dit_routing.py --seeds 0 1 2   # the recorded run (about 15 min a seed)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from interpolant.data import load_digits
from interpolant.metrics import frechet_distance
from interpolant.models import DiT, count_parameters
from interpolant.paths import DiscreteVP
from interpolant.predictions import Model
from interpolant.randomness import normal
from interpolant.repro.base import mean_se, train_config
from interpolant.solvers import Sampler, sample
from interpolant.train import train

OUT = Path(__file__).resolve().parent / "results" / "dit_routing.json"
ARMS = ("DiT", "DiT + DTR", "diffusers DiT")
SIZE = {"hidden": 128, "depth": 4, "heads": 4, "patch": 2}


class DiffusersDiT(nn.Module):
    """diffusers' ``DiTTransformer2DModel`` as a library backbone ``net(x, t, class_labels)``:
    the continuous time of the discrete path becomes diffusers' (fractional) DDPM timestep."""

    def __init__(self, path: DiscreteVP, num_classes: int = 10):
        super().__init__()
        from diffusers import DiTTransformer2DModel

        self.path = path
        self.net = DiTTransformer2DModel(
            num_attention_heads=SIZE["heads"],
            attention_head_dim=SIZE["hidden"] // SIZE["heads"],
            in_channels=1,
            out_channels=1,
            num_layers=SIZE["depth"],
            sample_size=8,
            patch_size=SIZE["patch"],
            num_embeds_ada_norm=num_classes,
            norm_num_groups=1,
        )

    def forward(self, x: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        timestep = self.path.timestep_of_t(t.double().expand(x.shape[0])).to(x.dtype)
        if class_labels is None:  # the null class of diffusers' label embedding
            class_labels = torch.full((x.shape[0],), 10, dtype=torch.long, device=x.device)
        return self.net(x, timestep=timestep, class_labels=class_labels.long()).sample


def network(arm: str, path: DiscreteVP) -> nn.Module:
    """The backbone of one arm (weights drawn from the current torch seed)."""
    if arm == "diffusers DiT":
        return DiffusersDiT(path)
    return DiT(
        image_size=8,
        in_channels=1,
        patch_size=SIZE["patch"],
        depth=SIZE["depth"],
        hidden_size=SIZE["hidden"],
        num_heads=SIZE["heads"],
        num_classes=10,
        class_dropout_prob=0.1,
        router="dtr" if arm == "DiT + DTR" else None,
    )


def run_arm(arm: str, seed: int, args: argparse.Namespace, data: Any, reference: Tensor) -> dict:
    """Train one arm for ``args.steps`` steps, then sample and score it."""
    path = DiscreteVP()
    torch.manual_seed(1000 + seed)
    model = Model(network(arm, path), path, predicts="eps")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        config = train_config(
            tmp,
            seed,
            args.steps,
            args.batch_size,
            args.lr,
            path=path.config(),
            predicts="eps",
            objective={"target": "eps", "time": "uniform", "weight": "uniform"},
        )
        trainer = train(config, data.x, data.labels, model=model)
        model.load_state_dict(trainer.averaged_state())
    train_s = time.perf_counter() - t0
    n = args.n_samples
    noise = normal((1, 8, 8), seed, range(n), "dit-routing-noise")
    labels = torch.arange(n) % 10
    sampler = Sampler("ddim", steps=args.ddim_steps, grid="uniform")
    with torch.no_grad():
        x = sample(model.eval(), noise, sampler, cond={"class_labels": labels}).x
    fd = frechet_distance(x.clamp(-1, 1), reference)
    return {
        "fd": fd,
        "parameters": count_parameters(model),
        "train_s": train_s,
        "sample_s": time.perf_counter() - t0 - train_s,
    }


def summarise(values: list[float]) -> dict[str, float]:
    """Mean and standard error over seeds (``repro.base.mean_se``; se = 0 for one seed)."""
    if len(values) < 2:
        return {"mean": float(values[0]), "se": 0.0, "n": 1}
    mean, se = mean_se(values)
    return {"mean": mean, "se": se, "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (plumbing check)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument("--steps", type=int, default=1500, help="training steps of every arm")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.n_samples, args.ddim_steps = 20, 100, 5
        if args.out == OUT:
            args.out = OUT.with_name("dit_routing_quick.json")
    torch.set_num_threads(1)
    data = load_digits("train")
    reference = load_digits("test").x
    start = time.perf_counter()
    runs: dict[str, dict[str, Any]] = {}
    for seed in args.seeds:
        runs[str(seed)] = {}
        for arm in ARMS:
            result = run_arm(arm, seed, args, data, reference)
            runs[str(seed)][arm] = result
            print(
                f"seed {seed} {arm}: FD {result['fd']:.2f} ({result['parameters']} parameters, "
                f"{result['train_s']:.0f} s training)",
                flush=True,
            )
    fd = {arm: summarise([runs[str(s)][arm]["fd"] for s in args.seeds]) for arm in ARMS}
    # Paired by seed (same data order, loss noise and start noise): the seed noise cancels.
    paired = {
        f"{arm} - DiT": summarise(
            [runs[str(s)][arm]["fd"] - runs[str(s)]["DiT"]["fd"] for s in args.seeds]
        )
        for arm in ARMS[1:]
    }
    out = {
        "benchmark": "dit_routing",
        "quick": args.quick,
        "seeds": args.seeds,
        "settings": {
            **SIZE,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "n_samples": args.n_samples,
            "ddim_steps": args.ddim_steps,
            "path": "discrete-vp (DDPM linear betas 1e-4..0.02, 1000 steps)",
            "target": "eps",
            "label_dropout": 0.1,
        },
        "metric": "digit-FD (shipped classifier features) against the held-out digits",
        "fd_floor_train_vs_test": frechet_distance(data.x, reference),
        "fd": fd,
        "fd_difference_paired": paired,
        "runs": runs,
        "wall_s": time.perf_counter() - start,
        "device": "cpu",
        "note": "CPU, 2 cores shared by ~8 processes: timings are relative only",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for arm, v in fd.items():
        print(f"{arm}: FD {v['mean']:.2f} +- {v['se']:.2f} over {v['n']} seed(s)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
