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
- refined seasonal naive and refined DeepAR: 20 "most likely" (SGD + plateau) iterations of the
  TSDiff energy at t* with the quantile prior (scale 1), and 20 Langevin ("mcmc") iterations.

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
    TrainSettings,
    WindowSpec,
    forecast,
    gaussian_conditional,
    gaussian_crps,
    gp_windows,
    load_statsmodels,
    make_windows,
    refine,
    scores,
    seasonal_naive,
    train_test_windows,
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
    test_histories: list[np.ndarray],
    freq: str,
    spec: WindowSpec,
    epochs: int,
    seed: int,
) -> tuple[torch.Tensor, float, float]:
    """DeepAR samples (N, S, H) for the test histories, training and forecasting seconds."""
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
    test = ListDataset([{"start": start, "target": h} for h in test_histories], freq=freq)
    t0 = time.perf_counter()
    out = [f.samples for f in predictor.predict(test, num_samples=SAMPLES)]
    predict_s = time.perf_counter() - t0
    return torch.tensor(np.stack(out), dtype=torch.float64), train_s, predict_s


def evaluate(
    name: str,
    train: Windows,
    val: Windows,
    test: Windows,
    deepar_data: tuple[list, list, str],
    s: argparse.Namespace,
    seed: int,
) -> dict[str, Any]:
    """One seed on one data set: every method's CRPS / coverage / wall times. TSDiff is trained
    on ``train`` (which ends before the validation horizons) and its guidance scale is the one
    of SCALES with the lowest CRPS on ``val``; the test windows are scored once."""
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
    dar, dar_train, dar_pred = deepar(*deepar_data, test.spec, s.deepar_epochs, seed)
    out["deepar"] = {**scores(dar, y), "train_s": dar_train, "forecast_s": dar_pred}
    reference = train.values[torch.randperm(len(train))[:256]]
    for base_name, base in (("seasonal-naive", naive), ("deepar", dar)):
        for opt in ("most_likely", "mcmc"):
            t0 = time.perf_counter()
            r = refine(trained.model, test, base, optimiser=opt, reference=reference, seed=seed)
            out[f"{base_name}+refine-{opt}"] = {
                **scores(r.samples.double(), y),
                "train_s": 0.0,
                "forecast_s": time.perf_counter() - t0,
                "t_star_step": r.step,
            }
    print(name, seed, {k: round(v["crps"], 4) for k, v in out.items()}, flush=True)
    return out


def real_series(name: str, s: argparse.Namespace) -> tuple:
    """Windows of a statsmodels series: the last ``test_windows`` horizons are the test, the
    ``val_windows`` horizons before them the validation (guidance scale), TSDiff trains on the
    windows that end before the validation horizons; DeepAR gets the whole series before the
    test (validation included, so the split can only favour it)."""
    data = load_statsmodels(name)
    spec = WindowSpec(36, 12, lags=(data.period,), scaling="standard", freq=data.freq,
                      period=data.period)  # fmt: skip
    series = data.series[0]
    _, test = train_test_windows(data.series, spec, s.test_windows)
    first_test = int(test.end.min()) - spec.horizon
    train, val = train_test_windows([series[:first_test]], spec, s.val_windows)
    histories = [series[: int(e) - spec.horizon] for e in test.end]
    return spec, train, val, test, ([series[:first_test]], histories, GLUON_FREQ[data.freq])


def gp_data(s: argparse.Namespace, seed: int) -> tuple:
    spec = WindowSpec(72, 24, scaling="none", freq="H", period=24)
    gen = torch.Generator().manual_seed(derive_seed("bench-gp", seed))
    train_raw, cov = gp_windows(s.gp_train, generator=gen)
    test_raw, _ = gp_windows(s.gp_test, generator=gen)
    val_raw, _ = gp_windows(s.gp_test, generator=gen)  # fresh exact windows for the scale
    ends = [[spec.length]] * 1
    train = make_windows(list(train_raw.numpy()), spec, ends=ends * s.gp_train)
    test = make_windows(list(test_raw.numpy()), spec, ends=ends * s.gp_test)
    val = make_windows(list(val_raw.numpy()), spec, ends=ends * s.gp_test)
    histories = [w[: spec.context] for w in test_raw.numpy()]
    return spec, train, val, test, (list(train_raw.numpy()), histories, "h"), cov, test_raw


def gp_oracle(cov: torch.Tensor, test_raw: torch.Tensor, spec: WindowSpec, seed: int) -> dict:
    mu, sig = gaussian_conditional(cov, test_raw[:, : spec.context], spec.context)
    y = test_raw[:, spec.context :]
    gen = torch.Generator().manual_seed(derive_seed("bench-gp-oracle", seed))
    z = torch.randn(len(y), SAMPLES, spec.horizon, dtype=torch.float64, generator=gen)
    draws = mu[:, None] + z @ torch.linalg.cholesky(sig).T
    exact = gaussian_crps(mu, sig.diagonal().sqrt()[None], y).sum() / y.abs().sum()
    return {**scores(draws, y), "closed_form_crps": float(exact)}


def summarise(runs: list[dict]) -> dict[str, dict[str, float]]:
    keys = runs[0].keys()
    return {
        k: {
            m: float(np.mean([r[k][m] for r in runs]))
            for m in ("crps", "coverage80", "train_s", "forecast_s")
        }
        | {"crps_sd": float(np.std([r[k]["crps"] for r in runs]))}
        for k in keys
    }


def markdown(record: dict) -> str:
    cols = ["tsdiff-q", "deepar", "seasonal-naive", "seasonal-naive+refine-most_likely",
            "deepar+refine-most_likely"]  # fmt: skip
    lines = [
        "| data | " + " | ".join(cols) + " | oracle |",
        "|---" * (len(cols) + 2) + "|",
    ]
    for name, res in record["results"].items():
        mean = res["mean"]
        cells = [f"{mean[c]['crps']:.4f} ({mean[c]['coverage80']:.2f})" for c in cols]
        oracle = res.get("oracle")
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {oracle['crps']:.4f} |"
            if oracle
            else f"| {name} | " + " | ".join(cells) + " | - |"
        )
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
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
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
    parser.add_argument("--only", nargs="*", help="data sets to run (default all)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--markdown", action="store_true", help="print the table from --out")
    s = parser.parse_args()
    if s.markdown:
        print(markdown(json.loads(s.out.read_text())))
        return
    if s.quick:
        s.seeds, s.steps, s.deepar_epochs, s.gp_train, s.gp_test = 1, 200, 2, 300, 20
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
