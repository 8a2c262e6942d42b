"""``interpolant forecast RUN --history FILE --horizon H --samples S``: probabilistic forecasts
of a user's series from a trained window model (TSDiff-Q: quantile self-guidance).

RUN is a run folder written by ``interpolant.timeseries.train_window_model`` (its checkpoint
stores the window spec: context, horizon, lags, scaling, frequency). FILE is a ``.csv`` (one
column per series, or long format with ``--id-column``) or ``.npy``; each series' last
``context + max(lag)`` points are the history. Writes ``forecast.csv`` (per series and step:
mean and the 5, 10, 25, 50, 75, 90, 95 % quantiles) and ``fan.png`` (history, median, 50 % and
90 % bands, and the truth when ``--truth FILE`` holds the values that followed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import MissingFileError, UserError

LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add the ``forecast`` subcommand to ``sub``."""
    p = sub.add_parser(
        "forecast",
        help="forecast series with a trained window model (TSDiff-Q)",
        formatter_class=formatter,
        description=__doc__.replace("``", "") if __doc__ else None,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("--history", type=Path, required=True, help="series file (.csv or .npy)")
    p.add_argument("--horizon", type=int, help="steps to forecast (default: the run's horizon)")
    p.add_argument("--samples", type=int, default=64, help="samples per series")
    p.add_argument(
        "--scale",
        type=float,
        help="guidance scale s (default: the one chosen on validation windows, RUN/guidance.json, "
        "chosen now when the run has validation windows and no such file, else 4)",
    )
    p.add_argument("--energy", choices=["quantile", "mse"], default="quantile")
    p.add_argument("--id-column", help="long CSV: the column naming each series")
    p.add_argument("--freq", help="the series' frequency; refused if it is not the run's")
    p.add_argument("--truth", type=Path, help="file of the values that followed (plotted)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="output folder (default RUN/forecast)")


def read_spec(run_dir: Path) -> Any:
    """The window spec stored in the newest checkpoint of ``run_dir``."""
    from ..timeseries import WindowSpec
    from ..train import checkpoint as ckpt

    found = ckpt.find_resume(run_dir / "checkpoints", log=lambda message: None)
    if found is None:
        raise MissingFileError(f"no checkpoint in {run_dir / 'checkpoints'}")
    state = json.loads((found / ckpt.STATE_FILE).read_text())
    info = (state.get("data") or {}).get("info") or {}
    # train_window_model stores the spec at the top of data_info, `interpolant train` (the
    # data registry's "series" set) in its extra metadata.
    spec = info.get("timeseries") or (info.get("extra") or {}).get("timeseries")
    if spec is None:
        raise UserError(f"{run_dir} is not a time-series run (its checkpoint has no window spec)")
    return WindowSpec.from_dict(spec)


def is_series_run(path: Path) -> bool:
    """Whether ``path`` is a run folder whose checkpoint holds a window spec."""
    if not (path / "checkpoints").is_dir():
        return False
    try:
        read_spec(path)
    except UserError:
        return False
    return True


def write_quantiles(samples: Any, path: Path, names: list[str]) -> None:
    """CSV rows: series, step, mean, then one column per level."""
    import numpy as np

    quant = np.quantile(samples, LEVELS, axis=1)  # (levels, N, H)
    mean = samples.mean(1)
    header = "series,step,mean," + ",".join(f"q{q:g}" for q in LEVELS)
    rows = [header]
    for n, name in enumerate(names):
        for h in range(samples.shape[2]):
            cells = [f"{mean[n, h]:.6g}"] + [f"{quant[k, n, h]:.6g}" for k in range(len(LEVELS))]
            rows.append(f"{name},{h + 1}," + ",".join(cells))
    path.write_text("\n".join(rows) + "\n")


def fan_chart(
    history: list, samples: Any, path: Path, names: list[str], truth: list | None, context: int
) -> None:
    """One panel per series (at most 6): history, median, 50 % and 90 % bands, truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    count = min(len(names), 6)
    fig, axes = plt.subplots(count, 1, figsize=(8, 2.6 * count), squeeze=False)
    for n in range(count):
        ax = axes[n, 0]
        past = history[n][-2 * context :]
        t0 = len(past)
        ax.plot(range(t0), past, color="black", lw=1, label="history")
        steps = np.arange(t0, t0 + samples.shape[2])
        q = np.quantile(samples[n], [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
        ax.fill_between(steps, q[0], q[4], color="C0", alpha=0.2, label="90 %")
        ax.fill_between(steps, q[1], q[3], color="C0", alpha=0.4, label="50 %")
        ax.plot(steps, q[2], color="C0", lw=1.5, label="median")
        if truth is not None:
            known = truth[n][: samples.shape[2]]
            ax.plot(steps[: len(known)], known, color="C3", lw=1, label="truth")
        ax.set_title(str(names[n]), fontsize=9)
        if n == 0:
            ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_forecast(args: argparse.Namespace) -> int:
    import torch

    from ..api.runs import load_run
    from ..timeseries import forecast, forecast_windows, load_series_file
    from ..timeseries.dataset import check_freq, file_freq

    spec = read_spec(args.run_dir)
    found = args.freq or file_freq(args.history)
    check_freq(found, spec.freq, f"the history {args.history}")
    if args.samples < 2:
        raise UserError(f"--samples must be >= 2 for quantiles, got {args.samples}")
    history = load_series_file(args.history, id_column=args.id_column)
    horizon = spec.horizon if args.horizon is None else args.horizon
    windows = forecast_windows(history, spec, horizon)
    run = load_run(args.run_dir, device="cpu")
    model = run.model
    torch.set_num_threads(1)
    scale = args.scale
    if scale is None:
        scale, why = chosen_scale(args.run_dir, model, validation_windows(run), args.seed)
        print(f"guidance scale {scale:g} ({why})")
    out = forecast(
        model, windows, args.samples, scale, energy=args.energy, horizon=horizon,
        seed=args.seed,
    )  # fmt: skip
    samples = out.double().numpy()
    folder = args.out or args.run_dir / "forecast"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"series{j}" for j in range(len(history))]
    write_quantiles(samples, folder / "forecast.csv", names)
    truth = load_series_file(args.truth, id_column=args.id_column) if args.truth else None
    fan_chart(history, samples, folder / "fan.png", names, truth, spec.context)
    print(f"wrote {folder / 'forecast.csv'} and {folder / 'fan.png'}")
    return 0


def validation_windows(run: Any) -> Any:
    """The validation windows of a run trained with ``data.name=series`` and
    ``data.options.val_windows`` >= 1 (the ``series-*`` presets), else None."""
    from ..timeseries.dataset import series_windows

    data = run.config.data
    if data.name != "series" or not data.options.get("val_windows"):
        return None
    return series_windows(**data.options).val


def chosen_scale(run_dir: Path, model: Any, val: Any, seed: int) -> tuple[float, str]:
    """The guidance scale of a run and where it comes from: ``RUN/guidance.json``; else, with
    validation windows, the scale with the lowest CRPS on them (``choose_scale``, 16 samples),
    written to ``RUN/guidance.json``; else 4. The test windows never choose it."""
    from ..timeseries.forecast import (
        CHOSEN_SCALE_FILE,
        choose_scale,
        read_chosen_scale,
        store_chosen_scale,
    )
    from ..train import checkpoint as ckpt

    path = run_dir / CHOSEN_SCALE_FILE
    newest = ckpt.find_resume(run_dir / "checkpoints", log=lambda message: None)
    # A choice older than the checkpoint belongs to an earlier training of this folder.
    stale = (
        val is not None
        and newest is not None
        and path.is_file()
        and path.stat().st_mtime < (newest / ckpt.STATE_FILE).stat().st_mtime
    )
    stored = None if stale else read_chosen_scale(run_dir)
    if stored is not None:
        return stored, f"chosen on validation windows, {path}"
    if val is None:
        return 4.0, "4: the run has no validation windows (data.options.val_windows)"
    scale, table = choose_scale(model, val, seed)
    store_chosen_scale(run_dir, scale, table)
    return scale, f"chosen on the run's {len(val)} validation windows, stored in {path}"


#: ``interpolant eval RUN`` keys of a time-series run (``eval.KEY=VALUE``) and their defaults
#: (``scale=auto``: :func:`chosen_scale`; ``refine=auto``: refined seasonal naive when the run
#: has validation windows, ``off``: none).
EVAL_KEYS: dict[str, Any] = {
    "samples": 64,
    "scale": "auto",
    "energy": "quantile",
    "seed": 0,
    "refine": "auto",
}


def eval_settings(overrides: list[str]) -> dict[str, Any]:
    """The forecast settings of ``interpolant eval RUN`` from ``eval.KEY=VALUE`` overrides."""
    settings = dict(EVAL_KEYS)
    for item in overrides:
        key, sep, value = item.partition("=")
        name = key.removeprefix("eval.")
        if not sep or name not in EVAL_KEYS:
            raise UserError(
                f"{item!r}: a time-series run's eval takes eval.KEY=VALUE with KEY one of "
                f"{sorted(EVAL_KEYS)}"
            )
        kind = type(EVAL_KEYS[name])
        try:
            settings[name] = kind(value)
        except ValueError:
            raise UserError(f"{item!r}: {name} must be a {kind.__name__}") from None
    if settings["scale"] != "auto":
        try:
            settings["scale"] = float(settings["scale"])
        except ValueError:
            given = settings["scale"]
            raise UserError(f"eval.scale must be a number or 'auto', got {given!r}") from None
    if settings["refine"] not in ("auto", "off"):
        raise UserError(f"eval.refine must be 'auto' or 'off', got {settings['refine']!r}")
    if settings["energy"] not in ("quantile", "mse"):
        raise UserError(f"eval.energy must be 'quantile' or 'mse', got {settings['energy']!r}")
    if settings["samples"] < 2:
        raise UserError(f"eval.samples must be >= 2, got {settings['samples']}")
    return settings


def cmd_eval_series(args: argparse.Namespace) -> int:
    """``interpolant eval RUN`` for a time-series run: forecasts of its test windows (the last
    ``test_windows`` horizons of each series) scored by CRPS, weighted quantile loss, MASE and
    50 / 80 / 90 % coverage, with seasonal naive on the same windows for reference and, when
    the run has validation windows, seasonal naive refined by the run's model with t* chosen
    on training windows and the strength on the validation windows (``refine_chosen``)."""
    import torch

    from ..api.runs import load_run
    from ..timeseries import forecast, refine_chosen, seasonal_naive
    from ..timeseries.dataset import series_metrics, series_windows

    settings = eval_settings(list(args.overrides))
    run = load_run(args.samples, device="cpu")
    if run.config.data.name != "series":
        raise UserError(
            f"{args.samples} was not trained with data.name=series, so its test windows are "
            "unknown; score forecasts with interpolant.timeseries.scores instead"
        )
    built = series_windows(**run.config.data.options)
    torch.set_num_threads(1)
    seed, samples = settings["seed"], settings["samples"]
    scale, why = settings["scale"], "given"
    if scale == "auto":
        scale, why = chosen_scale(args.samples, run.model, built.val, seed)
    fc = forecast(
        run.model, built.test, samples, scale, energy=settings["energy"], seed=seed
    ).double()
    result: dict[str, Any] = {
        "run": str(args.samples),
        "series": built.data.name,
        "test_windows": len(built.test),
        "validation_windows": 0 if built.val is None else len(built.val),
        "settings": settings | {"scale": scale, "scale_source": why},
        "tsdiff": series_metrics(fc, built),
        "seasonal_naive": series_metrics(seasonal_naive(built.test, 1), built),
    }
    if built.val is not None and settings["refine"] == "auto":
        refined, choice = refine_chosen(
            run.model, built.train, built.val, built.test, seasonal_naive(built.val, samples),
            seasonal_naive(built.test, samples), seed=seed,
        )  # fmt: skip
        result["seasonal_naive+refine"] = series_metrics(refined.samples.double(), built)
        result["refine_choice"] = {
            "t_star_step": refined.step,
            "prior_scale": choice.prior_scale,
            "iterations": choice.iterations,
            "validation_crps": choice.validation_crps,
        }
    out = args.out or args.samples / "eval" / "metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{len(built.test)} test windows of {built.data.name!r} (horizon {built.spec.horizon}), "
        f"{samples} samples each, guidance {settings['energy']} s={scale:g} ({why})"
    )
    rows = [k for k in ("tsdiff", "seasonal_naive", "seasonal_naive+refine") if k in result]
    print(f"{'':22s}" + "".join(f"{k:>12s}" for k in result["tsdiff"]))
    for name in rows:
        print(f"{name:22s}" + "".join(f"{v:12.4f}" for v in result[name].values()))
    if "refine_choice" in result:
        c = result["refine_choice"]
        print(
            f"refinement chosen on validation windows: prior weight {c['prior_scale']:g}, "
            f"{c['iterations']} iterations, t* step {c['t_star_step']}"
        )
    print(f"wrote {out}")
    return 0
