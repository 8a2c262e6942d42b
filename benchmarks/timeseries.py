"""TSDiff-Q and refined forecasts against GluonTS's DeepAR and seasonal naive, in one run.

Series (statsmodels, nothing downloaded): ``co2`` (monthly means of the weekly record, period
12), ``elnino`` (monthly, period 12), ``sunspots`` (yearly, period 11); and exact
Gaussian-process windows (seed 13's seasonal + AR(1) law, context 72, horizon 24), where the
exact conditional law gives the oracle.

Protocol (fixed before measuring): real series cut into windows of context 36 + horizon 12
with one lag channel (the seasonal period), each window standardised by its context's mean and
sd (mean scaling leaves CO2 and El Nino at ~1 +- 1 %); the last ``--test-windows`` horizons are
test windows (rolling, GluonTS style), the ``--val-windows`` horizons before them validation
windows; TSDiff's training windows end before the validation horizons (as the official code's
``use_validation_set``), DeepAR trains on everything before the test. GP: 2000 exact training
windows, 100 test and 100 validation windows, no scaling. For each training seed:

- TSDiff-Q: the Conv1D eps-model (width 64, depth 6; ``--steps`` Adam steps, batch 64), 16
  samples per window from quantile self-guidance, ancestral DDPM over 100 steps, the guidance
  scale s the one of ``SCALES`` with the lowest CRPS on the validation windows (the official
  configs pick s per data set from 2, 4, 8; the test windows never choose anything);
- DeepAR (``gluonts.torch`` estimator; 2 layers x 40, ``--deepar-epochs`` epochs of 50
  batches of 32) trained on the same training part of the series (GP: the training windows as
  series), predicting from each test window's history; 16 samples;
- seasonal naive (a point forecast);
- refined seasonal naive and refined DeepAR: the TSDiff energy at t* with the quantile prior,
  its strength (prior weight in {1, 4, 16}, iterations in {0, 5, 10, 20}; 0 = no refinement)
  chosen per base on the validation windows with "most likely" (SGD + plateau)
  (``choose_refinement``; DeepAR's validation samples come from a DeepAR trained before the
  validation horizons), then applied with "most likely" and with Langevin ("mcmc"); the row
  ``+refine-fixed`` is the earlier fixed strength (weight 1, 20 iterations), for comparison.

Metric: the normalised sample CRPS on the horizon and the coverage of the 80 % interval (the
GP oracle: 16 exact samples, same estimator, and its closed-form expected CRPS). Wall times
for training and forecasting are under load (2 shared CPU cores, one thread).

Run: ``.venv/bin/python benchmarks/timeseries.py [--quick] [--seeds 2]``; ``--markdown``
prints the README table from benchmarks/results/timeseries.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interpolant.randomness import derive_seed
from interpolant.timeseries import (
    ITERATION_GRID,
    TrainSettings,
    WindowSpec,
    best_step,
    choose_refinement,
    forecast,
    gaussian_conditional,
    gaussian_crps,
    gp_windows,
    load_statsmodels,
    make_windows,
    refine,
    scores,
    seasonal_naive,
    step_losses,
    train_val_test_windows,
    train_window_model,
)
from interpolant.timeseries.forecast import SCALES, choose_scale
from interpolant.timeseries.windows import Windows

RESULTS = Path(__file__).resolve().parent / "results" / "timeseries.json"
REAL = ("co2", "elnino", "sunspots")
GLUON_FREQ = {"M": "M", "A": "Y", "H": "h"}
SAMPLES = 16


def deepar(
    train_series: list[np.ndarray],
    history_sets: list[list[np.ndarray]],
    freq: str,
    spec: WindowSpec,
    epochs: int,
    seed: int,
) -> tuple[list[torch.Tensor], float, float]:
    """DeepAR samples (N, S, H) for each set of histories, training seconds and the seconds
    to forecast the first set."""
    import lightning
    from gluonts.dataset.common import ListDataset
    from gluonts.torch.model.deepar import DeepAREstimator

    lightning.seed_everything(derive_seed("bench-deepar", seed) % 2**32, verbose=False)
    start = "2000-01-01"
    train = ListDataset([{"start": start, "target": s} for s in train_series], freq=freq)
    with tempfile.TemporaryDirectory() as root:
        estimator = DeepAREstimator(
            freq=freq,
            prediction_length=spec.horizon,
            context_length=spec.context,
            num_layers=2,
            hidden_size=40,
            batch_size=32,
            num_batches_per_epoch=50,
            trainer_kwargs=dict(
                max_epochs=epochs,
                enable_progress_bar=False,
                enable_model_summary=False,
                logger=False,
                accelerator="cpu",
                default_root_dir=root,
            ),
        )
        t0 = time.perf_counter()
        predictor = estimator.train(train)
        train_s = time.perf_counter() - t0
    out, predict_s = [], 0.0
    for histories in history_sets:
        test = ListDataset([{"start": start, "target": h} for h in histories], freq=freq)
        t0 = time.perf_counter()
        draws = [f.samples for f in predictor.predict(test, num_samples=SAMPLES)]
        predict_s = predict_s or time.perf_counter() - t0
        out.append(torch.tensor(np.stack(draws), dtype=torch.float64))
    return out, train_s, predict_s


def refined_rows(
    model: Any, val: Windows, test: Windows, bases: dict, reference: torch.Tensor, seed: int
) -> dict[str, Any]:
    """For each base forecaster (name -> (validation samples, test samples)): the refinement
    strength (prior weight, iterations; 0 = none) chosen on the validation windows with the
    "most likely" optimiser, then applied to the test windows with it and with Langevin; and,
    for comparison only, the fixed strength of the last session (s = 1, 20 iterations)."""
    y = test.horizon()
    step = best_step(step_losses(model, reference.float(), seed))
    out: dict[str, Any] = {}
    for base_name, (base_val, base_test) in bases.items():
        t0 = time.perf_counter()
        choice = choose_refinement(model, val, base_val, step=step, seed=seed)
        select_s = time.perf_counter() - t0
        strength = {"prior_scale": choice.prior_scale, "iterations": choice.iterations}
        for opt in ("most_likely", "mcmc"):
            t0 = time.perf_counter()
            fixed = (1.0, 20) if opt == "most_likely" else None
            weights = {choice.prior_scale} | ({fixed[0]} if fixed else set())
            options: dict[str, Any] = dict(
                iterations=max(ITERATION_GRID), snapshots=ITERATION_GRID, step=step
            )
            runs = {
                w: refine(
                    model, test, base_test, optimiser=opt, prior_scale=w, seed=seed, **options
                )
                for w in weights
            }
            chosen = runs[choice.prior_scale].snapshots[choice.iterations]
            out[f"{base_name}+refine-{opt}"] = {
                **scores(chosen.double(), y),
                **strength,
                "train_s": 0.0,
                "forecast_s": (time.perf_counter() - t0) / len(runs),
                "select_s": select_s,
                "t_star_step": step,
                "val_crps": choice.validation_crps,
            }
            if fixed:
                out[f"{base_name}+refine-fixed"] = {
                    **scores(runs[fixed[0]].snapshots[fixed[1]].double(), y),
                    "prior_scale": fixed[0],
                    "iterations": fixed[1],
                    "train_s": 0.0,
                    "forecast_s": 0.0,
                }
    return out


def evaluate(
    name: str,
    train: Windows,
    val: Windows,
    test: Windows,
    deepar_data: tuple,
    s: argparse.Namespace,
    seed: int,
) -> dict[str, Any]:
    """One seed on one data set: every method's CRPS / coverage / wall times. TSDiff is trained
    on ``train`` (which ends before the validation horizons); its guidance scale and each
    refinement's strength are chosen on ``val``; the test windows are scored once.
    ``deepar_data`` = (training series for the test, test histories, training series for the
    validation forecasts (None: the same model), validation histories, GluonTS frequency)."""
    y = test.horizon()
    out: dict[str, Any] = {}
    settings = TrainSettings(steps=s.steps, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        trained = train_window_model(train, Path(tmp) / "run", settings)
    t0 = time.perf_counter()
    scale, val_crps = choose_scale(trained.model, val, seed, SAMPLES)
    select_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fc = forecast(trained.model, test, SAMPLES, scale, energy="quantile", seed=seed)
    out["tsdiff-q"] = {
        **scores(fc.double(), y),
        "train_s": trained.train_seconds,
        "forecast_s": time.perf_counter() - t0,
        "select_s": select_s,
        "scale": scale,
        "val_crps": val_crps,
    }
    naive = seasonal_naive(test, SAMPLES)
    out["seasonal-naive"] = {**scores(naive, y), "train_s": 0.0, "forecast_s": 0.0}
    train_series, histories, val_train, val_histories, freq = deepar_data
    if val_train is None:  # GP: the validation windows are fresh draws, one model serves both
        (dar, dar_val), dar_train, dar_pred = deepar(
            train_series, [histories, val_histories], freq, test.spec, s.deepar_epochs, seed
        )
    else:  # a DeepAR that has not seen the validation horizons forecasts them
        (dar,), dar_train, dar_pred = deepar(
            train_series, [histories], freq, test.spec, s.deepar_epochs, seed
        )
        (dar_val,), _, _ = deepar(
            val_train, [val_histories], freq, test.spec, s.deepar_epochs, seed
        )
    out["deepar"] = {**scores(dar, y), "train_s": dar_train, "forecast_s": dar_pred}
    reference = train.values[torch.randperm(len(train))[:256]]
    bases = {"seasonal-naive": (seasonal_naive(val, SAMPLES), naive), "deepar": (dar_val, dar)}
    out |= refined_rows(trained.model, val, test, bases, reference, seed)
    print(name, seed, {k: round(v["crps"], 4) for k, v in out.items()}, flush=True)
    return out


def real_series(name: str, s: argparse.Namespace) -> tuple:
    """Windows of a statsmodels series: the last ``test_windows`` horizons are the test, the
    ``val_windows`` horizons before them the validation (guidance scale), TSDiff trains on the
    windows that end before the validation horizons; DeepAR gets the whole series before the
    test (validation included, so the split can only favour it), and a second DeepAR trained
    on the series before the validation horizons forecasts those (for the refinement's
    strength)."""
    data = load_statsmodels(name)
    spec = WindowSpec(36, 12, lags=(data.period,), scaling="standard", freq=data.freq,
                      period=data.period)  # fmt: skip
    series = data.series[0]
    train, val, test = train_val_test_windows(data.series, spec, s.test_windows, s.val_windows)
    first_test = int(test.end.min()) - spec.horizon
    histories = [series[: int(e) - spec.horizon] for e in test.end]
    first_val = int(val.end.min()) - spec.horizon
    val_histories = [series[: int(e) - spec.horizon] for e in val.end]
    dar = ([series[:first_test]], histories, [series[:first_val]], val_histories)
    return spec, train, val, test, (*dar, GLUON_FREQ[data.freq])


def gp_data(s: argparse.Namespace, seed: int) -> tuple:
    spec = WindowSpec(72, 24, scaling="none", freq="H", period=24)
    gen = torch.Generator().manual_seed(derive_seed("bench-gp", seed))
    train_raw, cov = gp_windows(s.gp_train, generator=gen)
    test_raw, _ = gp_windows(s.gp_test, generator=gen)
    val_raw, _ = gp_windows(s.gp_val, generator=gen)  # fresh exact windows for the choices
    ends = [[spec.length]] * 1
    train = make_windows(list(train_raw.numpy()), spec, ends=ends * s.gp_train)
    test = make_windows(list(test_raw.numpy()), spec, ends=ends * s.gp_test)
    val = make_windows(list(val_raw.numpy()), spec, ends=ends * s.gp_val)
    histories = [w[: spec.context] for w in test_raw.numpy()]
    val_histories = [w[: spec.context] for w in val_raw.numpy()]
    dar = (list(train_raw.numpy()), histories, None, val_histories, "h")
    return spec, train, val, test, dar, cov, test_raw


def gp_oracle(cov: torch.Tensor, test_raw: torch.Tensor, spec: WindowSpec, seed: int) -> dict:
    mu, sig = gaussian_conditional(cov, test_raw[:, : spec.context], spec.context)
    y = test_raw[:, spec.context :]
    gen = torch.Generator().manual_seed(derive_seed("bench-gp-oracle", seed))
    z = torch.randn(len(y), SAMPLES, spec.horizon, dtype=torch.float64, generator=gen)
    draws = mu[:, None] + z @ torch.linalg.cholesky(sig).T
    exact = gaussian_crps(mu, sig.diagonal().sqrt()[None], y).sum() / y.abs().sum()
    return {**scores(draws, y), "closed_form_crps": float(exact)}


def summarise(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Per method: the mean over training seeds of CRPS, coverage and wall times, and the
    CRPS's standard deviation and standard error (sd / sqrt(seeds), ddof 1; 0 for one seed)."""
    out = {}
    for k in runs[0]:
        crps = np.array([r[k]["crps"] for r in runs])
        sd = float(crps.std(ddof=1)) if len(runs) > 1 else 0.0
        out[k] = {
            m: float(np.mean([r[k][m] for r in runs]))
            for m in ("crps", "coverage80", "train_s", "forecast_s")
        } | {"crps_sd": sd, "crps_se": sd / len(runs) ** 0.5}
    return out


COLUMNS = ("tsdiff-q", "deepar", "seasonal-naive", "seasonal-naive+refine-most_likely",
           "deepar+refine-most_likely", "deepar+refine-fixed")  # fmt: skip
TIMED = ("tsdiff-q", "deepar", "seasonal-naive+refine-most_likely", "deepar+refine-most_likely")


def markdown(record: dict) -> str:
    """The README tables: mean CRPS +- sd over training seeds (80 % coverage), the GP oracle;
    then mean training / forecasting seconds (refinement: its forecasting time on the test
    windows; the choice on validation windows is not counted)."""
    lines = [
        "| data | " + " | ".join(COLUMNS) + " | oracle |",
        "|---" * (len(COLUMNS) + 2) + "|",
    ]
    for name, res in record["results"].items():
        mean = res["mean"]
        cells = [
            f"{mean[c]['crps']:.4f} +- {mean[c]['crps_sd']:.4f} ({mean[c]['coverage80']:.2f})"
            if c in mean
            else "-"
            for c in COLUMNS
        ]
        oracle = res.get("oracle")
        tail = (
            f" {oracle['crps']:.4f} (exact {oracle['closed_form_crps']:.4f}) |"
            if oracle
            else " - |"
        )
        lines.append(f"| {name} | " + " | ".join(cells) + " |" + tail)
    lines += ["", "| data | " + " | ".join(f"{c} train / forecast s" for c in TIMED) + " |"]
    lines.append("|---" * (len(TIMED) + 1) + "|")
    for name, res in record["results"].items():
        mean = res["mean"]
        cells = [f"{mean[c]['train_s']:.0f} / {mean[c]['forecast_s']:.1f}" for c in TIMED]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_record(results: dict, s: argparse.Namespace, wall_s: float) -> dict:
    """The JSON record (targets measured on what has run so far), written to ``s.out``."""
    real_wins = sum(
        results[n]["mean"]["tsdiff-q"]["crps"] <= results[n]["mean"]["deepar"]["crps"]
        for n in REAL
        if n in results
    )
    targets: dict[str, Any] = {"tsdiff_q_beats_deepar_on_real": real_wins}
    if "gp" in results:
        ratio = results["gp"]["mean"]["tsdiff-q"]["crps"] / results["gp"]["oracle"]["crps"]
        targets["gp_tsdiff_q_over_oracle"] = ratio
    for base in ("seasonal-naive", "deepar"):
        targets[f"refine_lowers_{base}"] = {
            n: results[n]["mean"][f"{base}+refine-most_likely"]["crps"]
            < results[n]["mean"][base]["crps"]
            for n in results
        }
    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "threads": 1,
        "settings": {k: v for k, v in vars(s).items() if k not in ("out", "markdown")},
        "samples": SAMPLES,
        "guidance_scales_tried": list(SCALES),
        "results": results,
        "targets": targets,
        "wall_s": wall_s,
    }
    s.out.parent.mkdir(parents=True, exist_ok=True)
    s.out.write_text(json.dumps(record, indent=1) + "\n")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps, one seed")
    parser.add_argument("--seeds", type=int, default=2, help="training seeds")
    parser.add_argument("--steps", type=int, default=1500, help="TSDiff training steps")
    parser.add_argument("--deepar-epochs", type=int, default=20)
    parser.add_argument("--test-windows", type=int, default=8)
    parser.add_argument("--val-windows", type=int, default=4, help="horizons for the scale")
    parser.add_argument("--gp-train", type=int, default=2000)
    parser.add_argument("--gp-test", type=int, default=100)
    parser.add_argument("--gp-val", type=int, default=40, help="GP validation windows")
    parser.add_argument("--only", nargs="*", help="data sets to run (default all)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--markdown", action="store_true", help="print the table from --out")
    s = parser.parse_args()
    if s.markdown:
        print(markdown(json.loads(s.out.read_text())))
        return
    if s.quick:
        s.seeds, s.steps, s.deepar_epochs, s.gp_train, s.gp_test, s.gp_val = 1, 200, 2, 300, 20, 10
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    for logger in ("lightning", "lightning.pytorch", "lightning.fabric", "gluonts"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    results: dict[str, Any] = {}
    names = s.only or [*REAL, "gp"]
    start = time.perf_counter()
    for name in names:
        runs, oracle = [], None
        for k in range(s.seeds):
            torch.manual_seed(derive_seed("bench-ts", k))
            if name == "gp":
                spec, train, val, test, dar, cov, test_raw = gp_data(s, 0)
                oracle = gp_oracle(cov, test_raw, spec, 0)
            else:
                spec, train, val, test, dar = real_series(name, s)
            runs.append(evaluate(name, train, val, test, dar, s, k))
        results[name] = {"spec": spec.to_dict(), "seeds": runs, "mean": summarise(runs)}
        if oracle is not None:
            results[name]["oracle"] = oracle
        record = write_record(results, s, time.perf_counter() - start)
    print(json.dumps(record["targets"], indent=1))
    print(markdown(record))


if __name__ == "__main__":
    main()
