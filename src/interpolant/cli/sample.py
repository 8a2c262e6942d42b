"""``interpolant sample`` and ``interpolant eval``: draw samples from a run, score them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import UserError


def cmd_sample(args: argparse.Namespace) -> int:
    from ..api.config import DataConfig
    from ..api.runs import load_data, picture_of, sample, save_samples
    from .schedule import read_grid

    settings: dict[str, Any] = {
        key: value
        for key, value in (
            ("solver", args.solver),
            ("nfe", args.nfe),
            ("n", args.n),
            ("seed", args.seed),
            ("batch_size", args.batch_size),
            ("class_label", args.class_label),
            ("teleport", args.teleport),
        )
        if value is not None
    }
    if args.grid is not None:
        settings.update(read_grid(args.grid))
    if args.raw_weights:
        settings["ema"] = False
    if args.float64:
        settings["float64"] = True
    if args.search or args.steer or args.reward:
        return _scaled_sample(args, settings)
    out = sample(
        args.run_dir,
        args.overrides,
        checkpoint=args.checkpoint,
        device=args.device,
        progress=not args.no_progress,
        keep_trajectory=args.trajectories,
        guidance=args.guidance,
        guidance_options=_guidance_options(args),
        **settings,
    )
    reference = None
    data = DataConfig(**out.meta["data_config"])
    shape = tuple(out.x.shape[1:])
    if len(shape) == 1 and data.name:  # scatter and pair plots draw the held-out data too
        reference = load_data(data, "test").x
    paths = save_samples(out, args.out or args.run_dir / "samples", reference)
    s = out.meta["sample"]
    print(
        f"{out.x.shape[0]} samples from {out.meta['checkpoint']} "
        f"({'EMA' if out.meta['ema'] else 'raw'} weights), {s['solver']} "
        + (
            f"on the {s['grid']} grid"
            if isinstance(s["grid"], str)
            else f"on a grid of {len(s['grid']) - 1} listed steps"
        )
        + f", {_nfe_spent(out.meta.get('nfe_spent'), s)}"
        + f", seed {s['seed']}"
        + (f", first {s['teleport']:g} of the steps teleported" if s.get("teleport") else "")
    )
    calibration = out.meta.get("calibration")
    if calibration:
        print(
            f"calibrated grid: RMSE {calibration['rmse']:.3g} against the exact ODE on "
            f"{calibration['draws']} calibration draws ({calibration['start_rmse']:.3g} on the "
            f"best uniform log-SNR grid); calibrating cost {calibration['nfe_spent']} model "
            f"evaluations, once (cached in {out.meta['run_dir']}/calibration)"
        )
    for path in paths.values():
        print(f"wrote {path}")
    picture = picture_of(shape)
    print(
        f"samples.png: {picture}"
        if picture
        else f"no samples.png: samples of shape {shape} are neither images (1 or 3 channels) "
        "nor rows of values"
    )
    return 0


def _nfe_spent(spent: int | None, settings: dict[str, Any]) -> str:
    """The model evaluations each sample cost (guidance and plug-ins included), and the
    solver's nominal budget where that differs."""
    nominal = settings["nfe"] if isinstance(settings["grid"], str) else None
    if spent is None:
        return f"{nominal} NFE"
    extra = f" (the solver's nominal budget: {nominal})" if nominal not in (None, spent) else ""
    return f"{spent} NFE spent per sample{extra}"


def _scaled_sample(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from ..api.runs import save_samples
    from ..api.steering import scaled_sample

    if not args.reward:
        raise UserError("--search and --steer need --reward SPEC")
    if (
        args.guidance
        or args.overrides
        or args.trajectories
        or args.float64
        or args.raw_weights
        or args.teleport
    ):
        raise UserError(
            "--search/--steer do not combine with guidance, overrides, --trajectories, --float64, "
            "--raw-weights or --teleport"
        )
    options = {
        key: value
        for key, value in (("temperature", args.temperature), ("potential", args.potential))
        if value is not None
    }
    if options and not args.steer:
        raise UserError("--temperature and --potential are FK options: add --steer fk")
    settings.pop("batch_size", None)
    out = scaled_sample(
        args.run_dir,
        reward=args.reward,
        search=args.search,
        steer=args.steer,
        particles=args.particles,
        budget=args.budget,
        device=args.device,
        **settings,
        **options,
    )
    paths = save_samples(out, args.out or args.run_dir / "samples")
    s = out.meta["scaling"]
    print(
        f"{out.x.shape[0]} samples by {s['method']} toward {s['reward']}: mean reward "
        f"{s['mean_reward']:.4g}, {s['model_evals_per_sample']:.0f} model evaluations per sample"
    )
    for path in paths.values():
        print(f"wrote {path}")
    return 0


def _guidance_options(args: argparse.Namespace) -> dict[str, Any]:
    from ..api.runs import load_run

    options: dict[str, Any] = {}
    if args.guidance_schedule:
        options["schedule"] = args.guidance_schedule
    if args.guidance_interval:
        lo, _, hi = args.guidance_interval.partition("-")
        try:
            options["interval"] = (float(lo), float(hi))
        except ValueError:
            raise UserError(
                f"--guidance-interval must be LO-HI (e.g. 0.2-0.8), got {args.guidance_interval!r}"
            ) from None
    if args.guidance_reference:
        options["reference"] = load_run(args.guidance_reference, device=args.device).model
    if (args.guidance_schedule or args.guidance_interval or args.guidance_reference) and not (
        args.guidance
    ):
        raise UserError("--guidance-schedule/-interval/-reference need --guidance SPEC")
    return options


def cmd_eval(args: argparse.Namespace) -> int:
    from ..api.config import DataConfig
    from ..api.evaluate import evaluate, format_metrics
    from ..api.runs import read_samples

    found = read_samples(args.samples)
    settings: dict[str, Any] = {}
    if args.metrics:
        settings["metrics"] = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.n_reference is not None:
        settings["n_reference"] = args.n_reference
    if args.inception is not None:
        settings["inception"] = args.inception
    data = None
    if args.data:
        known = found.meta.get("data_config") or {}
        data = DataConfig(**{**known, "name": args.data})
    result = evaluate(found, args.overrides, data=data, **settings)
    out = args.out or Path(found.meta["file"]).parent / "metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{result['n_samples']} samples vs {result['n_reference']} held-out examples of "
        f"{result['data']!r} (features: {result['features']})"
    )
    print("\n".join(format_metrics(result["metrics"])))
    print(f"wrote {out}")
    return 0
