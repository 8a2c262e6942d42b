"""``interpolant demo``: rectified flow on 8x8 digits, end to end, in a few CPU minutes.

Trains the ``digits-flow`` preset (Linear path, velocity target, logit-normal times, residual MLP
on the 64 pixels) on the 1500 training digits, then draws samples with the preset's 10-NFE
solver and with a 100-NFE sampler, and measures the Frechet distance in the feature space of the
shipped digit classifier against the 297 held-out digits. Two references frame the numbers: the
held-out digits against the training digits (what a perfect model could reach with these sample
sizes) and the sampler's starting noise (what no training gives).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..data import load_digits
from ..metrics import frechet_distance
from ..plots import plot_image_grid, plot_loss_curve
from .config import resolve_config
from .runs import draw_samples, load_run, train

DEMO_PRESET = "digits-flow"
#: The many-step reference sampler of the demo (Heun's 2nd-order method, 50 steps).
REFERENCE_SOLVER, REFERENCE_NFE = "heun", 100


def demo(
    out: str | Path = "demo_out",
    overrides: Any = (),
    fresh: bool = False,
    progress: bool = True,
    n_samples: int = 1000,
    threads: int | None = 1,
) -> dict[str, Any]:
    """Run the demo into ``out`` and return the metrics it writes to ``out/metrics.json``.

    The run folder is ``out/run``; a second call resumes (finishing at once if the run is
    complete) unless ``fresh``, which deletes that run folder first. ``threads`` sets torch's
    CPU threads (None: leave them): the MLP's matrices are small, and one thread is as fast as
    two on a quiet machine and many times faster on a busy one (threads that wait for each
    other's cores).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    out = Path(out)
    run_dir = out / "run"
    if fresh and run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    settings = [f"train.run_dir={run_dir}", f"train.progress={str(progress).lower()}"]
    cfg = resolve_config(DEMO_PRESET, overrides=[*settings, *overrides])
    result = train(cfg, plots=False)
    train_s = time.perf_counter() - start

    run = load_run(run_dir)  # the EMA weights of the newest checkpoint
    test, train_digits = load_digits("test").x, load_digits("train").x
    fast = replace(cfg.sample, n=n_samples, batch_size=n_samples)
    slow = replace(fast, solver=REFERENCE_SOLVER, nfe=REFERENCE_NFE)
    sample_start = time.perf_counter()
    x_fast = draw_samples(run.model, (1, 8, 8), fast, progress=progress, data=train_digits).x
    x_slow = draw_samples(run.model, (1, 8, 8), slow, progress=progress, data=train_digits).x
    sample_s = time.perf_counter() - sample_start
    # Images are saved clipped to the pixel range; the metrics see the same.
    x_fast, x_slow = x_fast.clamp(-1, 1), x_slow.clamp(-1, 1)
    noise = torch.randn(n_samples, 1, 8, 8, generator=torch.Generator().manual_seed(fast.seed))
    fd = {
        f"fd_nfe{fast.nfe}": frechet_distance(x_fast, test),
        f"fd_nfe{slow.nfe}": frechet_distance(x_slow, test),
        "fd_train_vs_heldout": frechet_distance(train_digits, test),
        "fd_noise": frechet_distance(noise.clamp(-1, 1), test),
    }
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for key, c, x in (("samples_fast", fast, x_fast), ("samples_slow", slow, x_slow)):
        title = f"{c.solver}, {_nfe_used(c.solver, c.nfe)} NFE: FD {fd[f'fd_nfe{c.nfe}']:.1f}"
        path = out / f"samples_nfe{c.nfe}.png"
        files[key] = plot_image_grid(x[:100], path, nrow=10, cell_inches=0.6, title=title)
    files["loss_curve"] = plot_loss_curve(run_dir, out / "loss_curve.png", title="training loss")
    metrics = {
        "frechet_distance": fd,
        "features": "penultimate layer of the shipped digit classifier (interpolant.metrics)",
        "reference": f"{test.shape[0]} held-out digits (the fixed test split)",
        "n_samples": n_samples,
        "solvers": {
            f"nfe{c.nfe}": {
                "solver": c.solver,
                "grid": c.grid,
                "nfe_used": _nfe_used(c.solver, c.nfe),
            }
            for c in (fast, slow)
        },
        "train": {
            "steps": result.config.train.steps,
            "batch_size": result.config.train.batch_size,
            "model": result.config.train.model,
            "objective": result.config.train.objective,
            "checkpoint": str(run.checkpoint),
        },
        "seconds": {
            "train": round(train_s, 1),
            "sample": round(sample_s, 1),
            "total": round(time.perf_counter() - start, 1),
        },
        "files": {k: str(v) for k, v in files.items()},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _nfe_used(solver: str, budget: int) -> int:
    """Model evaluations a solver spends within ``budget`` (Heun's last step is Euler)."""
    from ..solvers import get_solver

    method = get_solver(solver)
    return int(method.nfe_for_steps(method.steps_for_nfe(budget)))


def format_demo(metrics: dict[str, Any], out: str | Path) -> str:
    """What the command prints: the numbers and where the files are."""
    fd = metrics["frechet_distance"]
    solvers = metrics["solvers"]
    lines = ["", "Frechet distance to the held-out digits (digit-classifier features):"]
    for key, value in fd.items():
        label = {
            "fd_train_vs_heldout": "training digits (floor)",
            "fd_noise": "pure noise (ceiling)",
        }.get(key)
        if label is None:
            nfe = key.removeprefix("fd_")
            label = f"samples, {solvers[nfe]['solver']} {solvers[nfe]['nfe_used']} NFE"
        lines.append(f"  {label:<32} {value:8.2f}")
    lines += ["", f"time: {metrics['seconds']['total']:.0f} s; files in {out}/:"]
    lines += [f"  {Path(p).name}" for p in metrics["files"].values()]
    lines.append("  metrics.json, run/ (checkpoints, stats.jsonl)")
    return "\n".join(lines)


__all__ = ["demo", "format_demo"]
