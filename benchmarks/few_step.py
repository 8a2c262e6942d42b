"""Few-step and one-step students against their teacher (issue 15's benchmark).

For each data set (two moons, checkerboard, 8x8 digits) a rectified-flow teacher MLP is
trained, then each method of ``interpolant.fewstep`` trains a student from it:

* ``reflow``       2-RF, same architecture, on teacher pairs (Heun, ``--pair-nfe``);
* ``distill``      one-step distillation of the reflowed model on the same pairs (SlimFlow's
                   distillation with guidance 0, i.e. Luhman & Luhman's pairs regression at t = 1);
* ``flow-guided``  the same with SlimFlow's flow-guidance term (guide: the reflowed model);
* ``slimflow``     annealing reflow into a student of ~1/4 of the teacher's parameters, then
                   flow-guided one-step distillation (guide: the reflowed student);
* ``consistency``  consistency distillation (Heun steps of the teacher) into a preconditioned
                   x0 student; multistep consistency sampling at K > 1;
* ``meanflow``     MeanFlow from scratch (two-time MLP of the teacher's size);
* ``shortcut``     shortcut model from scratch (same network);
* ``meanflow (teacher init)``, ``shortcut (teacher init)``: the same objectives on the
                   two-time network initialised to the teacher (what ``interpolant distill
                   --method meanflow|shortcut`` does: at every gap it starts as the teacher);
* ``mmd``          (digits) MMD fine-tuning of the teacher for DDIM with K = 2 steps.

Every student is evaluated at NFE 1, 2 and 4 against (a) the teacher with the best of a few
(solver, grid) pairs at the same NFE (Euler/Heun/DPM-Solver++(2M) x uniform/Karras/logSNR: a
small searched family, not AutoDiffusion's evolutionary search) and (b) the teacher at 10 and
100 NFE (Heun, uniform). Distances: sliced W2 (256 projections) against held-out points for
the 2-D sets, Frechet distance in the shipped digit classifier's features for the digits.
Training wall-clock is measured per method (on a shared machine: relative figures only).

    python benchmarks/few_step.py --quick          # minutes
    python benchmarks/few_step.py                  # the recorded settings
    python benchmarks/few_step.py --sets digits --methods shortcut --student-steps 3000
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from interpolant import fewstep
from interpolant.data import load_dataset, load_digits
from interpolant.fewstep import consistency, meanflow
from interpolant.fewstep.mmd import MMDFinetune
from interpolant.fewstep.recipes import euler_sample, fit, parameter_count, train_config
from interpolant.metrics import frechet_distance, sliced_wasserstein
from interpolant.models import TwoTime
from interpolant.randomness import normal
from interpolant.solvers import Sampler, sample

NFES = (1, 2, 4)
TEACHER_SOLVERS = [
    (s, g) for s in ("euler", "heun", "dpmpp_2m") for g in ("uniform", "karras", "logsnr")
]


def load(name: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    if name == "digits":
        return load_digits("train").x, load_digits("test").x
    return load_dataset(name, n=n, split="train").x, load_dataset(name, n=4000, split="test").x


def distance(name: str, x: torch.Tensor, ref: torch.Tensor) -> float:
    if name == "digits":
        return frechet_distance(x.clamp(-1, 1), ref)
    return float(sliced_wasserstein(x, ref, seed=0))


def teacher_at(model, noise, solver: str, grid: str, nfe: int) -> torch.Tensor | None:
    spec = Sampler(solver, nfe=nfe, grid=grid)
    try:
        spec.steps_used()
    except Exception:  # e.g. Heun cannot spend 1 NFE
        return None
    with torch.no_grad():
        return sample(model, noise, spec).x


def run_set(name: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    train_x, test_x = load(name, args.n_data)
    shape = tuple(train_x.shape[1:])
    dim = int(torch.tensor(shape).prod())
    width = args.width_digits if name == "digits" else args.width
    big = {"name": "mlp", "dim": dim, "width": width, "depth": 3}
    small = {"name": "mlp", "dim": dim, "width": width // 2, "depth": 2}
    noise = normal(shape, 0, range(args.n_eval), "few-step-bench")
    out: dict[str, Any] = {"data": name, "teacher": {}, "methods": {}}
    cfg = lambda tag, net, steps, **kw: train_config(root / name / tag, net, steps, **kw)  # noqa: E731

    start = time.perf_counter()
    teacher = fit(cfg("teacher", big, args.steps), train_x)
    out["teacher"]["train_s"] = time.perf_counter() - start
    out["teacher"]["params"] = parameter_count(teacher)
    for nfe in (*NFES, 10, 100):
        scores = {}
        for solver, grid in TEACHER_SOLVERS if nfe in NFES else [("heun", "uniform")]:
            x = teacher_at(teacher, noise, solver, grid, nfe)
            if x is not None:
                scores[f"{solver}/{grid}"] = distance(name, x, test_x)
        best = min(scores, key=scores.__getitem__)
        out["teacher"][f"nfe{nfe}"] = {"best": best, "distance": scores[best], "all": scores}

    def wanted(method: str) -> bool:
        return args.methods is None or method.split(" ")[0] in args.methods

    def record(method: str, seconds: float, model, sampler) -> None:
        row = {"train_s": seconds, "params": parameter_count(model)}
        for k in NFES:
            row[f"nfe{k}"] = distance(name, sampler(model, k), test_x)
        out["methods"][method] = row
        print(f"{name:12s} {method:12s} " + " ".join(f"{row[f'nfe{k}']:.3f}" for k in NFES))

    flow_sampler = lambda m, k: euler_sample(m, noise, k)  # noqa: E731
    if any(wanted(m) for m in ("reflow", "slimflow", "distill", "flow-guided")):
        start = time.perf_counter()
        pairs = fewstep.make_pairs(
            teacher, args.pairs, Sampler("heun", nfe=args.pair_nfe, grid="uniform"), shape=shape
        )
        pair_s = time.perf_counter() - start
        rows = pairs.rows()
        out["pairs_s"] = pair_s

    if any(wanted(m) for m in ("reflow", "distill", "flow-guided")):
        start = time.perf_counter()
        rf = fit(cfg("reflow", big, args.distill_steps), rows, fewstep.Reflow())
        reflow_s = pair_s + time.perf_counter() - start
        record("reflow", reflow_s, rf, flow_sampler)
        # One-step students start from the reflowed model (Liu et al. 2023: reflow, then distil).
        for method, guide in (("distill", None), ("flow-guided", rf)):
            if not wanted(method):
                continue
            start = time.perf_counter()
            weight = 0.0 if guide is None else 1.0
            objective = fewstep.FlowGuidedDistillation(guide, guidance=weight)
            student = copy.deepcopy(rf).train().requires_grad_(True)
            one = fit(cfg(method, big, args.distill_steps), rows, objective, model=student)
            record(method, reflow_s + time.perf_counter() - start, one, flow_sampler)

    if wanted("slimflow"):
        start = time.perf_counter()
        beta = fewstep.BetaSchedule("linear", int(0.6 * args.distill_steps))
        reflowed = fit(
            cfg("slim-reflow", small, args.distill_steps),
            rows,
            fewstep.Reflow(fewstep.PairCoupling("annealed", beta)),
        )
        guided = fewstep.FlowGuidedDistillation(copy.deepcopy(reflowed), guidance=1.0)
        student = copy.deepcopy(reflowed).train().requires_grad_(True)
        slim = fit(cfg("slim-distill", small, args.distill_steps), rows, guided, model=student)
        record("slimflow", pair_s + time.perf_counter() - start, slim, flow_sampler)

    if wanted("consistency"):
        start = time.perf_counter()
        cd = fit(
            cfg("consistency", big, args.steps, predicts="x0", precondition=0.5),
            train_x,
            consistency.ConsistencyDistillation(teacher),
        )
        grids = {1: [1.0, 0.0], 2: [1.0, 0.5, 0.0], 4: [1.0, 0.75, 0.5, 0.25, 0.0]}
        with torch.no_grad():
            record(
                "consistency",
                time.perf_counter() - start,
                cd,
                lambda m, k: consistency.consistency_sample(m, noise, grids[k], seed=0),
            )

    student_steps = args.student_steps or args.steps
    for method, objective in (("meanflow", meanflow.MeanFlow()), ("shortcut", meanflow.Shortcut())):
        if not wanted(method):
            continue
        for init in ("scratch", "teacher"):
            start = time.perf_counter()
            model = meanflow.interval_model(dim, width, 3)
            if init == "teacher":  # the two-time network starts as the teacher at every gap
                assert isinstance(model.net, TwoTime) and isinstance(teacher.net, torch.nn.Module)
                model.net.load_backbone(teacher.net.state_dict())
            tag = method if init == "scratch" else f"{method} (teacher init)"
            trained = fit(
                cfg(tag.replace(" ", "_"), {}, student_steps), train_x, objective, model=model
            )
            with torch.no_grad():
                record(
                    tag,
                    time.perf_counter() - start,
                    trained,
                    lambda m, k: meanflow.interval_sample(m, noise, k)[0],
                )

    if name == "digits" and wanted("mmd"):
        start = time.perf_counter()
        tuned = fit(
            cfg(
                "mmd",
                big,
                args.mmd_steps,
                batch_size=64,
                lr=1e-4,
                lr_schedule="constant",
                grad_clip=0.5,
                ema="none",
            ),
            train_x,
            MMDFinetune(Sampler("ddim", steps=2, grid="uniform")),
            model=copy.deepcopy(teacher).train().requires_grad_(True),
        )
        record(
            "mmd (K=2)",
            time.perf_counter() - start,
            tuned,
            lambda m, k: sample(m, noise, Sampler("ddim", steps=k, grid="uniform")).x.detach(),
        )
    return out


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets on the digits."""
    t = result["teacher"]
    fd10, fd100 = t["nfe10"]["distance"], t["nfe100"]["distance"]
    methods = result["methods"]
    one_step = {m: r["nfe1"] for m, r in methods.items()}
    best = min(one_step, key=one_step.__getitem__)
    slim = methods.get("slimflow")
    return {
        "teacher FD 10 NFE": fd10,
        "teacher FD 100 NFE": fd100,
        "best one-step student": best,
        "best one-step FD": one_step[best],
        "one-step <= teacher at 10 NFE": one_step[best] <= fd10,
        "one-step <= 1.2 x teacher at 100 NFE": one_step[best] <= 1.2 * fd100,
        "slimflow params / teacher": slim["params"] / t["params"] if slim else None,
        "slimflow <= 1.5 x teacher at 100 NFE": slim["nfe1"] <= 1.5 * fd100 if slim else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    p.add_argument("--sets", nargs="*", default=["moons", "checkerboard", "digits"])
    p.add_argument("--methods", nargs="*", default=None, help="subset of the methods (all)")
    p.add_argument("--student-steps", type=int, default=None, help="MeanFlow/shortcut steps")
    p.add_argument("--pairs", type=int, default=None, help="teacher pairs (default 40000)")
    p.add_argument(
        "--distill-steps", type=int, default=None, help="reflow/distillation steps (4000)"
    )
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "few_step.json")
    args = p.parse_args()
    sizes = dict(
        steps=1000,
        n_data=8000,
        n_eval=2000,
        pairs=40000,
        distill_steps=4000,
        pair_nfe=40,
        width=128,
        width_digits=256,
        mmd_steps=200,
    )
    if args.quick:
        sizes = dict(
            steps=150,
            n_data=2000,
            n_eval=500,
            pairs=500,
            distill_steps=150,
            pair_nfe=10,
            width=64,
            width_digits=64,
            mmd_steps=10,
        )
    for k in ("pairs", "distill_steps"):  # options given on the command line win
        if getattr(args, k) is not None:
            sizes[k] = getattr(args, k)
    for k, v in sizes.items():
        setattr(args, k, v)
    torch.set_num_threads(1)
    results = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            result = run_set(name, args, Path(tmp))
            if name == "digits":
                result["targets"] = targets(result)
            results.append(result)
            # Written after every set, so a long run keeps what it finished.
            settings = {**sizes, "quick": args.quick, "threads": 1, "methods": args.methods}
            settings["student_steps"] = args.student_steps or args.steps
            payload = {"settings": settings, "results": results}
            args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(json.dumps([r.get("targets") for r in results if "targets" in r], indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
