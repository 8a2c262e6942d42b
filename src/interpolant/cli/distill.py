"""``interpolant distill RUN --method M --steps K --out NEW_RUN``: turn a trained run into a
few-step or one-step model, written as a new run folder that ``interpolant sample NEW_RUN``
samples in K steps (its sample section is set to the method's K-step sampler).

Methods (interpolant.fewstep):
  reflow       teacher pairs (resumable, NEW_RUN/pairs), then k-RF of a student of the
               teacher's architecture (or --width/--depth) on them; Euler K steps
  slimflow     pairs, annealing reflow into a smaller student (--width/--depth), then one-step
               flow-guided distillation guided by the reflowed student; Euler K steps
  mmd          MMD-DDM fine-tuning of the teacher's weights for DDIM with K steps (MMD^2, KID
               kernel, digit-classifier features: 8x8 digits only)
  consistency  consistency distillation from the teacher (Heun steps of its ODE) into an
               EDM-preconditioned x0 student on the teacher's path; K steps of Euler on its x0
               (1 step: f(eps, 1)); the stochastic multistep consistency sampler is
               fewstep.consistency_sample in Python
  meanflow     MeanFlow (average velocity u(x, t, t - r), JVP identity) on the run's data; the
               student is the teacher's backbone inside models.TwoTime (a second time input,
               steps K), started from the teacher's weights when the teacher is a velocity
               model on the linear path; K Euler steps x - (t - r) u(x, t, t - r)
  shortcut     shortcut models (step-size conditioned self-consistency), same student and
               sampler; K must be a power of two (the step sizes it trains are 2^-j)

A class-conditional teacher (its backbone has num_classes) gives class-conditional pairs (pair i
has class i % num_classes, stored with the pairs) and students trained with the labels
(reflow, slimflow); meanflow and shortcut train on the run's labelled data with the student's
label dropout off (a drop is drawn anew in each forward, so MeanFlow's JVP target and its
prediction would see different labels), so the student has no unconditional mode for CFG.

Presets by data: 2-D sets (dim 2) and images/vectors (everything else) get their own steps,
batch size and learning rate (--train-steps, --batch-size, --lr override them). Each stage
trains in its own folder under NEW_RUN/stages/ and the final student in NEW_RUN, so an
interrupted distillation resumes from its last checkpoint when run again.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import UserError

METHODS = ("reflow", "slimflow", "mmd", "consistency", "meanflow", "shortcut")
#: (train steps, batch size, lr) for 2-D point sets and for everything else.
PRESETS = {"2d": (2000, 256, 2e-3), "default": (2000, 128, 1e-3)}


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add the ``distill`` subcommand to ``sub``."""
    p = sub.add_parser(
        "distill",
        help="few-step / one-step student of a trained run (reflow, SlimFlow, MMD, CD, MeanFlow, "
        "shortcut)",
        formatter_class=formatter,
        description=__doc__.replace("``", "") if __doc__ else None,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the trained teacher run")
    p.add_argument("--method", choices=METHODS, required=True)
    p.add_argument("--steps", type=int, required=True, help="sampling steps K of the student")
    p.add_argument("--out", type=Path, help="new run folder (default RUN_DIR-METHOD-K)")
    p.add_argument("--pairs", type=int, default=4000, help="teacher pairs (reflow, slimflow)")
    p.add_argument("--pair-nfe", type=int, default=50, help="teacher NFE per pair (Heun)")
    p.add_argument("--width", type=int, help="student width (default: the teacher's)")
    p.add_argument("--depth", type=int, help="student depth (default: the teacher's)")
    p.add_argument("--train-steps", type=int, help="optimiser steps per stage (preset)")
    p.add_argument("--batch-size", type=int, help="batch size (preset)")
    p.add_argument("--lr", type=float, help="learning rate (preset)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def cmd_distill(args: argparse.Namespace) -> int:
    """Run the distillation the arguments describe; prints the new run folder."""
    out = distill(
        args.run_dir,
        args.method,
        args.steps,
        out=args.out,
        pairs=args.pairs,
        pair_nfe=args.pair_nfe,
        width=args.width,
        depth=args.depth,
        train_steps=args.train_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(out)
    return 0


def distill(
    run_dir: str | Path,
    method: str,
    steps: int,
    *,
    out: str | Path | None = None,
    pairs: int = 4000,
    pair_nfe: int = 50,
    width: int | None = None,
    depth: int | None = None,
    train_steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """The function behind the command (see the module docstring); returns the new run."""
    import torch

    from .. import fewstep
    from ..api.runs import load_data, load_run, write_run_config
    from ..fewstep import consistency, mmd
    from ..fewstep import meanflow as mf
    from ..fewstep.recipes import fit, train_config
    from ..solvers import Sampler

    if method not in METHODS:
        raise UserError(f"--method must be one of {METHODS}, got {method!r}")
    if not (isinstance(steps, int) and steps >= 1):
        raise UserError(f"--steps must be a positive integer, got {steps!r}")
    if method == "shortcut" and (steps & (steps - 1)) != 0:
        raise UserError(
            f"shortcut models train the step sizes 2^-j, so --steps must be a power of two, "
            f"got {steps}"
        )
    teacher_run = load_run(run_dir, device="cpu")
    teacher, cfg = teacher_run.model, teacher_run.config
    if not cfg.data.name:
        raise UserError(
            f"{run_dir} has no run_config.json data section (train it with interpolant train)"
        )
    data = load_data(cfg.data, "train")
    shape = tuple(data.info.shape)
    info = data.info.to_dict()
    new = Path(out) if out is not None else Path(f"{Path(run_dir)}-{method}-{steps}")
    preset = PRESETS["2d"] if shape == (2,) else PRESETS["default"]
    n_steps = train_steps or preset[0]
    options: dict[str, Any] = dict(
        batch_size=batch_size or preset[1], lr=lr or preset[2], seed=seed
    )
    options["progress"] = progress
    net = dict(cfg.train.model)
    student_net = {
        **net,
        **({"width": width} if width else {}),
        **({"depth": depth} if depth else {}),
    }
    path_name = cfg.train.path.get("name", "linear")
    classes = int(net.get("num_classes") or 0)
    labels = None

    if method in ("reflow", "slimflow"):
        spec = Sampler("heun", nfe=pair_nfe, grid="uniform")
        # Class-conditional teacher: pair i has class i % K (balanced, fixed by i alone).
        pair_labels = torch.arange(pairs) % classes if classes else None
        made = fewstep.make_pairs(
            teacher,
            pairs,
            spec,
            shape=shape,
            seed=seed,
            directory=new / "pairs",
            labels=pair_labels,
            progress=progress,
        )
        rows, labels = made.rows(), made.labels
        if method == "reflow":
            objective: Any = fewstep.Reflow(fewstep.PairCoupling("paired"))
            final = train_config(new, student_net, n_steps, **options)
            model = None
        else:
            anneal = fewstep.PairCoupling(
                "annealed", fewstep.BetaSchedule("linear", max(1, int(0.6 * n_steps)))
            )
            stage = train_config(
                new / "stages" / "annealed-reflow", student_net, n_steps, **options
            )
            reflowed = fit(stage, rows, fewstep.Reflow(anneal), labels=labels)
            objective = fewstep.FlowGuidedDistillation(copy.deepcopy(reflowed), guidance=1.0)
            final = train_config(new, student_net, n_steps, **options)
            model = copy.deepcopy(reflowed).train().requires_grad_(True)
        train_data = rows
        sample_spec: dict[str, Any] = {"solver": "euler", "nfe": steps, "grid": "uniform"}
    elif method == "mmd":
        if shape not in ((1, 8, 8), (64,)):
            raise UserError(
                f"mmd fine-tuning uses the digit classifier's features, so it needs 8x8 digits; "
                f"this run's data have shape {shape}"
            )
        objective = mmd.MMDFinetune(Sampler("ddim", steps=steps, grid="uniform"))
        final = train_config(
            new,
            net,
            n_steps,
            path=path_name,
            predicts=cfg.train.predicts,
            precondition=cfg.train.precondition,
            **{**options, "lr": lr or 1e-4},
            grad_clip=0.5,
            ema="none",
            lr_schedule="constant",
        )
        model = copy.deepcopy(teacher).train().requires_grad_(True)
        train_data = data.x
        sample_spec = {"solver": "ddim", "nfe": steps, "grid": "uniform"}
    elif method in ("meanflow", "shortcut"):
        if classes:
            if data.labels is None:
                raise UserError(
                    f"{run_dir}'s network is class-conditional (num_classes={classes}) but its "
                    "data has no labels to train the student with"
                )
            # No label dropout: MeanFlow's JVP target and the trained forward must see the same
            # labels, and a random drop is drawn anew in each call.
            student_net = {**student_net, "class_dropout_prob": 0.0}
            labels = data.labels
        from ..train.build import build_network

        two_time = {"name": "two-time", "backbone": student_net, "steps": steps}
        final = train_config(new, two_time, n_steps, **options)
        built: Any = build_network(final)
        if _warm_start_fits(cfg, student_net, net) and isinstance(teacher.net, torch.nn.Module):
            built.net.load_backbone(teacher.net.state_dict())  # the student starts as the teacher
        model = built
        log2 = max(7, steps.bit_length() - 1)
        objective = mf.MeanFlow() if method == "meanflow" else mf.Shortcut(log2_steps=log2)
        train_data = data.x
        sample_spec = {"solver": "euler", "nfe": steps, "grid": "uniform"}
    else:  # consistency
        objective = consistency.ConsistencyDistillation(teacher)
        final = train_config(
            new, student_net, n_steps, path=path_name, predicts="x0", precondition=0.5, **options
        )
        model, train_data = None, data.x
        sample_spec = {"solver": "euler", "nfe": steps, "grid": "uniform"}

    if progress:  # sample grids every quarter of the training, as interpolant train draws
        final = final.replace(sample_every=max(1, n_steps // 4))
    pictures = _pictures(cfg, final, sample_spec, data, progress)
    fit(
        final, train_data, objective, model=model, data_info=info, sample_fn=pictures, labels=labels
    )
    write_run_config(_final_config(cfg, final, sample_spec), new)
    return new


def _warm_start_fits(cfg: Any, student_net: dict[str, Any], net: dict[str, Any]) -> bool:
    """Whether the teacher's weights load into the two-time student: the same backbone, a
    velocity prediction on the linear path, no preconditioning wrapper."""
    same_path = cfg.train.path.get("name", "linear") == "linear"
    plain = cfg.train.predicts == "velocity" and cfg.train.precondition is None

    def architecture(spec: dict[str, Any]) -> dict[str, Any]:  # label dropout adds no weights
        return {k: v for k, v in spec.items() if k != "class_dropout_prob"}

    same_net = architecture(student_net) == architecture(net)
    return same_path and plain and same_net and cfg.train.lora is None


def _final_config(cfg: Any, final: Any, sample_spec: dict[str, Any]) -> Any:
    """The new run's config: the teacher's data section, the student's train section and the
    K-step sampler as its sample section."""
    sample = replace(cfg.sample, **sample_spec, solver_options={}, grid_options={})
    return replace(cfg, train=final, sample=sample)


def _pictures(cfg: Any, final: Any, sample_spec: dict[str, Any], data: Any, progress: bool):
    """The trainer's sample_fn drawing the student with its K-step sampler (as ``train`` does),
    when progress output is on."""
    if not progress:
        return None
    from ..api.runs import _training_sampler

    return _training_sampler(_final_config(cfg, final, sample_spec), data, tuple(data.x.shape[1:]))
