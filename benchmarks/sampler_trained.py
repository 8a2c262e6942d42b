"""The default sampler on trained models: ours default, the peers' defaults and our best fixed
configuration against the same network's probability-flow ODE solved to high accuracy.

``sampler_oracle.py`` checks the default rule (``solvers.defaults``) on exact denoisers; this
checks it on networks, whose fields are rougher than an oracle's and whose errors at high noise
or near the data are not those of a Gaussian mixture (issue 12, item 1).

Models. EDM recipes of the presets ``digits-edm`` and ``toy2d-edm`` (preconditioned x0 MLP,
log-normal noise levels, EDM weighting; sigma_data measured on the training split, so the
model declares it and the rule uses it) at a CPU-sized budget (``TRAINING``): sklearn's 8x8
digits (64-D, in [-1, 1]), moons and checkerboard (2-D, raw units). Each is trained once with
``interpolant.train.train`` and its EMA weights cached under ``--cache`` (a temp dir); the
network is then run in float64.

Samplers, at NFE 6, 10 and 20, from the same noise:

* ours default: ``ip.sample(model, noise, nfe=N)`` (solver and grid "auto") on the EDM path;
* peer defaults: diffusers' ``DPMSolverMultistepScheduler()`` (VP-scaled start at its timestep
  999, noise level 157.4) and k-diffusion's ``sample_dpmpp_2m`` on Karras sigmas 0.002..80,
  driven with the network's denoiser through the runners of ``_sampler_peers.py``;
* ours best fixed: the best, on selection draws, of every solver setting of
  ``sampler_oracle.OUR_SOLVERS`` x its named grids x the EDM and VP paths (the Linear path is
  left out: at its t = 1 the noise level is infinite and the preconditioned network's
  c_noise = log(sigma) / 4 is undefined);
* best peer: the best of every peer configuration of ``_sampler_peers.peer_configs`` on the
  selection draws.

Reference: the same network's ODE from each run's own start (ours, k-diffusion: x = sigma_max z;
diffusers: its VP-scaled start) to its own end, by float64 Dormand-Prince in the angle
variable to rtol = atol = ``REFERENCE_RTOL`` (adaptive; its NFE is recorded, and its accuracy
is checked against a 100x tighter solve on the first draws). Scores: the endpoint RMSE per
dimension, the per-sample RMSE's median and 99th percentile, and a distribution-level distance
to held-out data: the shipped digits classifier's Frechet distance (FD) against the 297 test
digits; sliced Wasserstein-2 (128 projections) and the energy distance against 20000 held-out
points of the 2-D sets. The reference's own distance (what an exact solver scores) and the data
floor (a true sample of the same size) are reported with them.

Protocol: selection draws (seed 2, 512) on which every configuration runs; evaluation draws
(seed 0, 4096; 2048 for the digits) on which only the chosen ones run.

    .venv/bin/python benchmarks/sampler_trained.py            # ~25 min on 2 loaded cores
    .venv/bin/python benchmarks/sampler_trained.py --quick    # smoke run, a few minutes
    .venv/bin/python benchmarks/sampler_trained.py --markdown # the README table from the JSON
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

import interpolant as ip
from _sampler_peers import PEER_DEFAULTS, Problem, error_stats, peer_configs, versions
from interpolant.api.presets import get_preset
from interpolant.data import estimate_sigma_data, load_dataset
from interpolant.metrics import (
    energy_distance,
    extract_features,
    frechet_distance_from_stats,
    gaussian_stats,
    sliced_wasserstein,
)
from interpolant.paths import EDM
from interpolant.predictions import Preconditioned
from interpolant.randomness import Streams
from interpolant.solvers import reference_sample
from interpolant.train import TrainConfig, build_network, train
from overhead import machine
from sampler_oracle import GRIDS, OUR_SOLVERS, QUICK_SOLVERS, label, ranked, run_ours, run_peer

RESULTS = Path(__file__).resolve().parent / "results" / "sampler_trained.json"
SETS = ("digits", "moons", "checkerboard")
NFES = (6, 10, 20)
EVAL_SEED, SELECTION_SEED = 0, 2
OUR_PATHS = ("edm", "vp")
#: A trained network's field is smooth but not an oracle's: 1e-8 keeps the reference error
#: (checked below) two orders under the smallest sampler error measured.
REFERENCE_RTOL = 1e-8
REFERENCE_CHECK_DRAWS = 256
HELD_OUT_2D = 20_000
SW_PROJECTIONS = 128
#: CPU-sized budgets (the presets train 3x longer with wider MLPs).
TRAINING: dict[str, dict[str, Any]] = {
    "digits": {"preset": "digits-edm", "width": 256, "steps": 2500, "batch_size": 128},
    "moons": {"preset": "toy2d-edm", "width": 128, "steps": 2000, "batch_size": 512},
    "checkerboard": {"preset": "toy2d-edm", "width": 128, "steps": 2000, "batch_size": 512},
}
QUICK_TRAINING = {"steps": 300}
DEFAULT_KEY = "default | - | edm"


# -- models ----------------------------------------------------------------------------------


def training_data(name: str) -> Tensor:
    """The training split (digits: all 1500 train images; 2-D sets: 50000 points)."""
    return load_dataset(name, n=None if name == "digits" else 50_000, split="train").x


def train_config(name: str, run_dir: str, quick: bool, sigma_data: float) -> TrainConfig:
    """The preset's EDM recipe and schedule at the CPU budget of ``TRAINING``."""
    budget = {**TRAINING[name], **(QUICK_TRAINING if quick else {})}
    fields = dict(get_preset(budget["preset"])["train"])
    fields["precondition"] = sigma_data
    fields["objective"] = {
        **fields["objective"],
        "weight": {"name": "edm", "sigma_data": sigma_data},
    }
    dim = 64 if name == "digits" else 2
    fields["model"] = {**fields["model"], "width": budget["width"], "dim": dim}
    fields.update(
        steps=budget["steps"],
        batch_size=budget["batch_size"],
        run_dir=run_dir,
        resume=False,
        progress=False,
        device="cpu",
        seed=0,
        log_every=budget["steps"],
        checkpoint_every=budget["steps"],
        keep_checkpoints=1,
    )
    return TrainConfig(**fields)


def trained_network(name: str, cache: Path, quick: bool) -> tuple[nn.Module, float, dict]:
    """(the EMA backbone in float64, sigma_data, training info), trained once per cache."""
    data = training_data(name)
    sigma_data = estimate_sigma_data(data)
    tag = "quick" if quick else "full"
    weights = cache / f"{name}_{tag}.pt"
    cfg = train_config(name, str(cache / f"run_{name}_{tag}"), quick, sigma_data)
    info: dict[str, Any] = {"sigma_data": sigma_data, "config": cfg.to_dict(), "cached": True}
    model = build_network(cfg)
    if weights.exists():
        model.load_state_dict(torch.load(weights, weights_only=True))
    else:
        start = time.perf_counter()
        trainer = train(cfg, data)
        model.load_state_dict(trainer.averaged_state())
        info.update(cached=False, train_seconds=time.perf_counter() - start)
        weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), weights)
    preconditioned = model.net  # Model -> Preconditioned -> MLP
    assert isinstance(preconditioned, Preconditioned)
    backbone = preconditioned.net.to(torch.float64).eval().requires_grad_(False)
    return backbone, sigma_data, info


# -- the problem: one network, one set of draws ------------------------------------------------


class Metric:
    """The distribution-level distance of a set to held-out data (FD for the digits; SW2 and
    energy distance for 2-D sets) and the floor of a true sample of the same size."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "digits":
            held_out = load_dataset("digits", split="test").x
            self.stats = gaussian_stats(extract_features(held_out, "digits"))
        else:
            self.held_out = load_dataset(name, n=HELD_OUT_2D, split="test").x.to(torch.float64)

    def __call__(self, x: Tensor) -> dict[str, float]:
        if not bool(torch.isfinite(x).all()):
            return {"distance_error": "non-finite sample"}  # type: ignore[dict-item]
        if self.name == "digits":
            feats = extract_features(x.to(torch.float32).clamp(-1.0, 1.0), "digits")
            return {"fd": frechet_distance_from_stats(*gaussian_stats(feats), *self.stats)}
        x = x.to(torch.float64)
        sw = sliced_wasserstein(x, self.held_out, p=2, n_projections=SW_PROJECTIONS, seed=0)
        return {"sw2": float(sw), "energy": float(energy_distance(x, self.held_out[:5000]))}

    def floor(self, n: int) -> dict[str, float]:
        """The distance of n true training points (what a perfect model would score)."""
        data = training_data(self.name)
        g = torch.Generator().manual_seed(11)
        return self(data[torch.randperm(data.shape[0], generator=g)[:n]])


class TrainedProblem(Problem):
    """A trained network in place of an oracle: ours reach it through :meth:`model_on`, the
    peers through :meth:`denoise`, the references through both (base class)."""

    rtol = REFERENCE_RTOL

    def __init__(
        self,
        name: str,
        backbone: nn.Module,
        sigma_data: float,
        n: int,
        seed: int,
        metric: Metric | None = None,
    ) -> None:
        # No oracle here (``gmm`` is only read by the oracle benchmark's diagnosis).
        self.name, self.seed = name, seed
        self.backbone, self.sigma_data, self.metric = backbone, sigma_data, metric
        dim = 64 if name == "digits" else 2
        self.z = Streams(seed, n, "sampler_trained").normal((dim,), dtype=torch.float64)
        self._refs: dict[Any, Tensor] = {}
        self.reference_seconds = 0.0

    def model_on(self, path: Any) -> ip.Model:
        # EDM preconditioning depends on the noise level sigma / alpha only: any path works.
        net = Preconditioned(self.backbone, path, sigma_data=self.sigma_data)
        return ip.Model(net, path, predicts="x0")

    def denoise(self, x: Tensor, sigma: float) -> Tensor:
        net = Preconditioned(self.backbone, EDM(sigma), sigma_data=self.sigma_data)
        with torch.no_grad():
            return net(x.to(torch.float64), torch.ones(x.shape[0], dtype=torch.float64))

    def score(self, x: Tensor, ref: Tensor) -> dict[str, Any]:
        """Endpoint errors against the reference, plus the distance to held-out data when this
        problem has a metric (the evaluation draws)."""
        out = error_stats(x, ref)
        return {**out, **self.metric(x)} if self.metric is not None else out


# -- driver ----------------------------------------------------------------------------------


def reference_check(problem: TrainedProblem) -> dict[str, Any]:
    """The reference's NFE and its error against a 100x tighter solve on the first draws."""
    z = problem.z[:REFERENCE_CHECK_DRAWS]
    model = problem.model_on(EDM())
    tol = problem.rtol
    with torch.no_grad():
        ref, nfe = reference_sample(model, z, rtol=tol, atol=tol, return_nfe=True)
        tight, tight_nfe = reference_sample(
            model, z, rtol=tol / 100, atol=tol / 100, return_nfe=True
        )
    return {
        "rtol": tol,
        "nfe": nfe,
        "tight_nfe": tight_nfe,
        "draws": z.shape[0],
        "rmse_vs_100x_tighter": float((ref - tight).square().mean().sqrt()),
    }


def distance_keys(name: str) -> tuple[str, ...]:
    return ("fd",) if name == "digits" else ("sw2", "energy")


def evaluate_set(
    name: str, n_eval: int, n_sel: int, nfes: tuple[int, ...], quick: bool, cache: Path, log: Any
) -> dict[str, Any]:
    backbone, sigma_data, info = trained_network(name, cache, quick)
    log(f"  {name}: model ready (sigma_data {sigma_data:.3f}, cached {info['cached']})")
    metric = Metric(name)
    selection = TrainedProblem(name, backbone, sigma_data, n_sel, SELECTION_SEED)
    evaluation = TrainedProblem(name, backbone, sigma_data, n_eval, EVAL_SEED, metric)
    solvers = QUICK_SOLVERS if quick else OUR_SOLVERS
    grids = ("karras", "logsnr", "auto") if quick else GRIDS
    ours = [f"{label(s, o)} | {g} | {p}" for p in OUR_PATHS for s, o in solvers for g in grids]
    peers = list(peer_configs())
    begin = time.perf_counter()
    sel: dict[str, dict[str, dict[int, dict[str, Any]]]] = {"ours": {}, "peers": {}}
    jobs = [("ours", k, run_ours) for k in [*ours, DEFAULT_KEY]]
    jobs += [("peers", k, run_peer) for k in peers]
    with torch.no_grad():
        for side, key, run in tqdm(jobs, desc=f"{name} selection", disable=quick):
            sel[side][key] = {nfe: run(selection, key, nfe) for nfe in nfes}
    log(f"  {name}: selection done ({time.perf_counter() - begin:.0f}s)")
    fixed = {k: v for k, v in sel["ours"].items() if k != DEFAULT_KEY}
    begin = time.perf_counter()
    cells: dict[str, Any] = {}
    with torch.no_grad():
        for nfe in nfes:
            order_ours, order_peers = ranked(fixed, nfe), ranked(sel["peers"], nfe)
            default_sel = sel["ours"][DEFAULT_KEY][nfe].get("rmse", math.inf)
            rank = 1 + sum(fixed[k][nfe].get("rmse", math.inf) < default_sel for k in fixed)
            peer_default = min(
                PEER_DEFAULTS, key=lambda k: sel["peers"][k][nfe].get("rmse", math.inf)
            )
            best_key, best_peer_key = order_ours[0], order_peers[0]
            ev_ours = {k: run_ours(evaluation, k, nfe) for k in (DEFAULT_KEY, best_key)}
            ev_peers = {k: run_peer(evaluation, k, nfe) for k in {*PEER_DEFAULTS, best_peer_key}}
            default, best = ev_ours[DEFAULT_KEY], ev_ours[best_key]
            pdef, bpeer = ev_peers[peer_default], ev_peers[best_peer_key]
            cell: dict[str, Any] = {
                "nfe": nfe,
                "samples": n_eval,
                "ours_default": {"method": "ip.sample(model, noise, nfe=N), EDM path", **default},
                "ours_best_fixed": {"method": best_key, **best},
                "peer_default": {"method": peer_default, **pdef},
                "peer_defaults": {k: ev_peers[k] for k in PEER_DEFAULTS},
                "best_peer": {"method": best_peer_key, **bpeer},
                "default_selection_rank": rank,
                "fixed_configurations": len(fixed),
                "default_le_peer_default": default["rmse"] <= pdef["rmse"]
                and default["median"] <= pdef["median"],
                "ratio_default_rmse": default["rmse"] / pdef["rmse"],
                "ratio_default_median": default["median"] / pdef["median"],
                "ratio_default_to_best_fixed_rmse": default["rmse"] / best["rmse"],
                "ratio_best_rmse": best["rmse"] / bpeer["rmse"],
                "ratio_best_median": best["median"] / bpeer["median"],
            }
            for d in distance_keys(name):
                if d in default and d in pdef:
                    cell[f"default_{d}_le_peer_default"] = default[d] <= pdef[d]
            cells[str(nfe)] = cell
    log(f"  {name}: evaluation done ({time.perf_counter() - begin:.0f}s)")
    with torch.no_grad():
        reference_distance = metric(evaluation.path_reference("edm"))
        check = reference_check(evaluation)
    return {
        "model": info,
        "reference": {**check, "distance": reference_distance},
        "data_floor": metric.floor(n_eval),
        "selection": {
            side: {k: {str(n): c for n, c in v.items()} for k, v in rows.items()}
            for side, rows in sel.items()
        },
        "cells": cells,
        "reference_seconds": evaluation.reference_seconds + selection.reference_seconds,
    }


def _fmt(row: dict[str, Any], name: str) -> str:
    if "rmse" not in row:
        return "error"
    dist = " / ".join(f"{row[d]:.3g}" for d in distance_keys(name) if d in row)
    return f"{row['rmse']:.2e} / {row['median']:.2e} ({dist})"


def markdown(record: dict[str, Any]) -> str:
    """The table of the report: per set and NFE, RMSE / median (distance) of each sampler."""
    lines = [
        "| set | NFE | exact ODE (distance); data floor | ours default | diffusers DPM++2M "
        "| k-diffusion DPM++2M Karras | ours best fixed | best peer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in record["results"].items():
        keys = distance_keys(name)
        ref = " / ".join(f"{result['reference']['distance'][d]:.3g}" for d in keys)
        floor = " / ".join(f"{result['data_floor'][d]:.3g}" for d in keys)
        for n, c in result["cells"].items():
            pd = c["peer_defaults"]
            lines.append(
                f"| {name} | {n} | {ref}; {floor} | {_fmt(c['ours_default'], name)} "
                f"| {_fmt(pd['diffusers dpmpp_2m'], name)} "
                f"| {_fmt(pd['k-diffusion dpmpp_2m'], name)} "
                f"| {_fmt(c['ours_best_fixed'], name)} "
                f"({c['ours_best_fixed']['method'].replace(' | ', ', ')}) "
                f"| {_fmt(c['best_peer'], name)} ({c['best_peer']['method']}) |"
            )
    return "\n".join(lines)


def print_cells(name: str, result: dict[str, Any]) -> None:
    keys = distance_keys(name)
    print(f"\n{name}: reference {result['reference']}; floor {result['data_floor']}")
    for n, c in result["cells"].items():
        print(f"  NFE {n} (default ranks {c['default_selection_rank']} of "
              f"{c['fixed_configurations']} on the selection draws):")  # fmt: skip
        rows = {
            "ours default": c["ours_default"],
            **c["peer_defaults"],
            "ours best fixed": c["ours_best_fixed"],
            "best peer": c["best_peer"],
        }
        for role, r in rows.items():
            dist = " ".join(f"{d} {r[d]:.4g}" for d in keys if d in r)
            text = f"{r['rmse']:.2e} / {r['median']:.2e}" if "rmse" in r else r.get("error")
            print(f"    {role:<22} {text}  {dist}  {r.get('method', '')}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short training, few draws")
    parser.add_argument("--samples", type=int, default=None, help="evaluation draws (4096)")
    parser.add_argument("--digits-samples", type=int, default=None, help="digits' (2048)")
    parser.add_argument("--selection", type=int, default=None, help="selection draws (512)")
    parser.add_argument("--nfe", type=int, nargs="+", default=None)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "interpolant_sampler_trained",
        help="where the trained weights are cached",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--markdown", action="store_true", help="print the table from --out")
    args = parser.parse_args(argv)
    if args.markdown:
        saved = json.loads(args.out.read_text())
        print(markdown(saved))
        return saved
    torch.set_num_threads(1)
    n_eval = args.samples or (256 if args.quick else 4096)
    n_digits = args.digits_samples or (256 if args.quick else 2048)
    n_sel = args.selection or (128 if args.quick else 512)
    nfes = tuple(args.nfe or ((6, 10) if args.quick else NFES))
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f}s] {message}", flush=True)

    results = {}
    for name in args.sets:
        n = n_digits if name == "digits" else n_eval
        results[name] = evaluate_set(name, n, n_sel, nfes, args.quick, args.cache, log)
        print_cells(name, results[name])
    record = {
        "benchmark": "sampler_trained",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "evaluation_samples": n_eval,
            "digits_evaluation_samples": n_digits,
            "selection_samples": n_sel,
            "nfe": list(nfes),
            "reference_rtol": REFERENCE_RTOL,
            "quick": args.quick,
            "eval_seed": EVAL_SEED,
            "selection_seed": SELECTION_SEED,
            "paths": list(OUR_PATHS),
            "training": TRAINING,
        },
        "versions": versions(),
        "machine": machine(),
        "seconds": time.perf_counter() - start,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    log(f"saved {args.out}")
    print(markdown(record))
    return record


if __name__ == "__main__":
    main()
