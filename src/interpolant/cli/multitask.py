"""``interpolant multitask``: train MT-Diffusion (seed paper 14) on the 8x8 digits and generate
images and labels jointly.

Trains the joint model (a residual-MLP trunk with an eps head and a label head, a learned label
embedding E(y) in image space) with the multi-task loss through the library's trainer, the
labels passed as dict conditioning; RUN_DIR holds its checkpoints, stats.jsonl and log.txt, and
running the command again resumes. Then draws --n (image, label) pairs with the ancestral joint
sampler and writes RUN_DIR/samples/samples.npz (x, labels) and samples.png (rows by generated
label), and prints how often the shipped digit classifier names the generated label.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import UserError


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add the ``multitask`` subcommand to ``sub``."""
    p = sub.add_parser(
        "multitask",
        help="MT-Diffusion on the digits: train, then generate images and labels jointly",
        formatter_class=formatter,
        description=__doc__.replace("``", "") if __doc__ else None,
    )
    p.add_argument("--run-dir", type=Path, default=Path("runs/multitask"))
    p.add_argument("--steps", type=int, default=2500, help="training steps")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=256, help="trunk width")
    p.add_argument("--depth", type=int, default=3, help="trunk residual blocks")
    p.add_argument("--diffusion-steps", type=int, default=200, help="T of the discrete chain")
    p.add_argument(
        "--weights", default="early", help="offset weights w_s: early, spread or none (DDPM)"
    )
    p.add_argument("--label-weight", type=float, default=1.0, help="lambda of the label loss")
    p.add_argument("--n", type=int, default=1000, help="pairs to generate (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true", help="progress bars")


def cmd_multitask(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..data.digits import load_digits
    from ..metrics.classifier import class_log_probs
    from ..multitask import AggregatedProcess, MTDiffusionObjective, joint_mlp, sample_joint
    from ..plots import plot_image_grid
    from ..train import Trainer

    if args.steps < 1 or args.n < 0:
        raise UserError(f"need --steps >= 1 and --n >= 0, got {args.steps} and {args.n}")
    data = load_digits("train")
    assert data.labels is not None  # the digits always have labels
    process = AggregatedProcess(steps=args.diffusion_steps, weights=args.weights)
    torch.manual_seed(args.seed)
    model = joint_mlp(data.info.shape, 10, width=args.width, depth=args.depth)
    objective = MTDiffusionObjective(process, {"class_labels": args.label_weight})
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings = {k: v for k, v in settings.items() if k not in ("func", "command")}
    config = dict(
        run_dir=str(args.run_dir),
        seed=args.seed,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule="cosine",
        ema_halflife_kimg=20.0,
        checkpoint_every=max(1, args.steps // 4),
        log_every=max(1, args.steps // 50),
        progress=args.progress,
    )
    network = {"multitask": {k: settings[k] for k in ("width", "depth", "diffusion_steps")}}
    trainer = Trainer(
        model, objective, data.x, config, cond={"class_labels": data.labels}, network=network
    )
    try:
        trainer.run()
        state = trainer.averaged_state()
    finally:
        trainer.close()
    model.load_state_dict(state)
    (args.run_dir / "multitask.json").write_text(json.dumps(settings, indent=1) + "\n")
    print(f"trained {trainer.step} steps; run folder {args.run_dir}/ ({process!r})")
    if args.n == 0:
        return 0
    out = sample_joint(model, process, args.n, args.seed, progress=args.progress)
    labels = out.labels["class_labels"]
    agreement = float((class_log_probs(out.x).argmax(1) == labels).double().mean())
    meta = {"data": data.info.to_dict(), "nfe": out.nfe, "agreement": agreement}
    folder = args.run_dir / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    # The keys `interpolant eval` reads (api.runs.read_samples).
    np.savez(
        folder / "samples.npz", samples=out.x.numpy(), labels=labels.numpy(), meta=json.dumps(meta)
    )
    # Sorted by the generated label, ten per row (a class may be missing, so no class rows).
    order = labels.argsort(stable=True)[:100]
    plot_image_grid(out.x[order], folder / "samples.png", nrow=10, title="sorted by label")
    print(
        f"{args.n} joint samples in {args.run_dir / 'samples'}/ ({out.nfe} network evaluations); "
        f"the digit classifier names the generated label for {100 * agreement:.1f}% of them"
    )
    return 0
