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
    p.add_argument("--scale", type=float, default=4.0, help="guidance scale s")
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
    if "timeseries" not in info:
        raise UserError(f"{run_dir} is not a time-series run (its checkpoint has no window spec)")
    return WindowSpec.from_dict(info["timeseries"])


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

    spec = read_spec(args.run_dir)
    if args.freq is not None and spec.freq is not None and args.freq != spec.freq:
        raise UserError(
            f"the run was trained on series of frequency {spec.freq!r}, not {args.freq!r}"
        )
    if args.samples < 2:
        raise UserError(f"--samples must be >= 2 for quantiles, got {args.samples}")
    history = load_series_file(args.history, id_column=args.id_column)
    horizon = spec.horizon if args.horizon is None else args.horizon
    windows = forecast_windows(history, spec, horizon)
    model = load_run(args.run_dir, device="cpu").model
    torch.set_num_threads(1)
    out = forecast(
        model, windows, args.samples, args.scale, energy=args.energy, horizon=horizon,
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
