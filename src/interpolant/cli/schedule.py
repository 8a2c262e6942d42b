"""``interpolant schedule``: search the time steps of a few-step sampler for a trained run
(AutoDiffusion, seed paper 4) and save them as a grid file for ``interpolant sample --grid``.

The fitness is a distance between samples from fixed noise seeds and the run's training split
(in model space): the Frechet distance in the shipped digit classifier's features for digits,
on the raw values otherwise, or the sliced Wasserstein distance or MMD. The search starts from
the uniform grid (and ``--start`` grids), so its fitness is never worse than uniform's on the
search's seeds; judge it on other seeds (``interpolant sample --seed``, then ``eval``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import UserError

FITNESSES = ("fd", "sw", "mmd")


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add the ``schedule`` subcommand to ``sub``."""
    p = sub.add_parser(
        "schedule",
        help="search a few-step time grid for a run (AutoDiffusion)",
        formatter_class=formatter,
        description=__doc__.replace("``", "") if __doc__ else None,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--steps", type=int, required=True, help="solver steps of the grid")
    p.add_argument("--solver", default="ddim", help="the sampler the grid is for (paper: ddim)")
    p.add_argument("--fitness", choices=FITNESSES, default="fd", help="distance to the data")
    p.add_argument("--samples", type=int, default=256, help="samples per fitness evaluation")
    p.add_argument("--reference", type=int, default=2000, help="training examples compared")
    p.add_argument("--population", type=int, default=50, help="evolution: population size")
    p.add_argument("--epochs", type=int, default=20, help="evolution: generations")
    p.add_argument("--start", nargs="*", default=["karras"], help="grids added to the start")
    p.add_argument(
        "--skip",
        type=int,
        default=0,
        help="then search which N (step, block) pairs of the network to skip (paper's stage 2)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the noise and the evolution")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument("--out", type=Path, help="grid file (default RUN_DIR/grids/SOLVER-STEPS.json)")


def evolution_config(population: int, epochs: int) -> Any:
    """The paper's evolution settings, with the selection, mutation and crossover counts scaled
    to ``population`` (paper: 10, 35, 25 of 50)."""
    from ..scaling import EvolutionConfig

    if population < 4:
        raise UserError(f"--population must be >= 4, got {population}")
    return EvolutionConfig(
        population=population,
        select=max(2, round(population * 0.2)),
        mutation=round(population * 0.7),
        crossover=round(population * 0.5),
        epochs=epochs,
    )


def cmd_schedule(args: argparse.Namespace) -> int:
    from ..api.runs import _classes_of, load_data, load_run
    from ..scaling import autodiffusion_search

    if args.steps < 1 or args.samples < 2 or args.reference < 2:
        raise UserError("--steps must be >= 1, --samples and --reference >= 2")
    run = load_run(args.run_dir, device=args.device)
    if _classes_of(run.config.train):
        raise UserError(f"{args.run_dir} is class-conditional; the search needs one without")
    data = load_data(run.config.data, "train")
    reference = data.x[: args.reference]
    features = "digits" if args.fitness == "fd" and run.config.data.name == "digits" else "raw"
    result = autodiffusion_search(
        run.model,
        reference,
        n_samples=args.samples,
        fitness=args.fitness,
        features=features,
        config=evolution_config(args.population, args.epochs),
        start=tuple(args.start),
        skip=args.skip,
        solver=args.solver,
        steps=args.steps,
        seed=args.seed,
    )
    grid = [float(t) for t in result.grid]
    record = {
        "grid": grid,
        "solver": args.solver,
        "steps": args.steps,
        "fitness": args.fitness,
        "features": features,
        "fitness_searched": result.fitness,
        "fitness_uniform": result.uniform_fitness,
        "evaluations": result.evaluations,
        "skip_plan": [sorted(blocks) for blocks in result.skip_plan or ()],
        "fitness_skipped": result.skip_fitness,
        "seed": args.seed,
        "samples": args.samples,
        "run_dir": str(run.run_dir),
        "checkpoint": str(run.checkpoint),
    }
    out = args.out or run.run_dir / "grids" / f"{args.solver}-{args.steps}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"grid {', '.join(f'{t:.4f}' for t in grid)}")
    print(
        f"{args.fitness} on the search's seeds: {result.fitness:.4g} (uniform grid "
        f"{result.uniform_fitness:.4g}) after {result.evaluations} sampler runs"
    )
    if result.skip_plan is not None:
        print(
            f"skipping {args.skip} (step, block) pairs {record['skip_plan']}: "
            f"{args.fitness} {result.skip_fitness:.4g}"
        )
    print(
        f"wrote {out}; sample with: interpolant sample {args.run_dir} --solver {args.solver} "
        f"--grid {out}"
    )
    return 0


def read_grid(spec: str) -> dict[str, Any]:
    """The sample settings of ``--grid``: a grid name, or a grid file (``interpolant schedule``'s
    JSON, with its skip plan if it has one, or a JSON list of times)."""
    path = Path(spec)
    if not spec.endswith(".json"):
        return {"grid": spec}
    if not path.is_file():
        raise UserError(f"--grid {spec}: no such grid file")
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"--grid {spec}: not JSON ({err})") from None
    grid = value.get("grid") if isinstance(value, dict) else value
    if not isinstance(grid, list):
        raise UserError(f"--grid {spec}: expected a list of times or {{'grid': [...]}}")
    plan = value.get("skip_plan") if isinstance(value, dict) else None
    return {"grid": grid, "skip_plan": plan} if plan else {"grid": grid}
