"""Training quality: our rectified flow, EDM and VP recipes against torchcfm (I-CFM, OT-CFM) and
diffusers' DDPM recipe, at equal backbone, optimiser, training steps and NFE.

    .venv/bin/python benchmarks/train_quality.py                     # full run, ~20 min, 2 cores
    .venv/bin/python benchmarks/train_quality.py --quick             # smoke run, 1-2 min
    .venv/bin/python benchmarks/train_quality.py --readme README.md  # and rewrite the README table
    .venv/bin/python benchmarks/train_quality.py --sets moons swiss_roll 8gaussians checkerboard \
        --methods rf_uniform_ot                                        # 2-D only, one diagnostic

What is equal for every method: the backbone (``models.MLP``, same width/depth, same initial
weights for a seed; digits are flattened to 64-d), the trainer (``interpolant.train``: AdamW,
lr, batch, steps, gradient clipping, EMA), the data, the NFE at sampling, the sampling noise, the
number of samples and the evaluation sets. What differs is only the training recipe, taken from
each library's own code:

* ours: ``rf`` = linear path, velocity target, logit-normal(0, 1) time (SD3); ``edm`` = EDM path,
  Preconditioned x0 net, log-normal(-1.2, 1.2) sigma, lambda(sigma) weighting, sigma_data
  measured on the training data; ``vp`` = cosine VP path, v target, uniform t, min-SNR-5;
  ``rf_ot`` = ``rf`` with exact minibatch OT coupling of noise and data (``coupling="ot"``,
  scipy's ``linear_sum_assignment`` on squared Euclidean cost within each batch, as OT-CFM).
* torchcfm: ``ConditionalFlowMatcher`` (I-CFM) and ``ExactOptimalTransportConditionalFlowMatcher``
  (OT-CFM, POT's exact plan), both sigma = 0 (the default); the target comes from their
  ``sample_location_and_conditional_flow``; loss MSE(v(x_t, t), u_t).
* diffusers: ``DDPMScheduler`` (linear betas 1e-4..0.02, 1000 steps, eps prediction), integer
  timesteps uniform, ``add_noise``, MSE on eps (their ``train_unconditional.py`` recipe); the MLP
  sees the integer timestep (its time embedding scale is 1 instead of 1000, as in diffusers'
  sinusoidal embedding; no parameter changes).

Sampling, each at the same NFE, from the EMA weights: ours with our solvers (Euler, Heun,
midpoint, DPM-Solver++ 2M, UniPC on uniform-t, Karras or logSNR grids); torchcfm with
fixed-step ``torchdiffeq`` (euler, midpoint, heun2); diffusers with its own schedulers (DDPM
ancestral with leading/trailing spacing, DDIM trailing, DPM-Solver++ 2M, UniPC). From each
method's candidate solvers one is chosen per (set, method, NFE) by the median over seeds of the
metric against a *validation* reference (an independent draw for 2-D sets, the training split for
digits) on samples drawn with other noise than the reported ones; the test metric of that solver
is reported. Peer networks are also sampled with our solvers (through ``interpolant.adapters``) as
a diagnostic that separates training from sampling, and our RF objective is also trained with
uniform t (the I-CFM objective written with our library, and with OT coupling OT-CFM's) to
separate implementation from recipe.

Metrics: sliced Wasserstein-2 (128 projections) in the data's own units against a large
held-out sample (2-D sets); Frechet distance in the shipped digits classifier's feature space
against the 297 held-out digits (samples clamped to [-1, 1] like any image output). The "floor"
is the metric of a true sample of the same size (what a perfect model would score).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _train_quality_report import (
    ALL_SETS,
    DIAGNOSTIC,
    METHODS,
    OUR_SIDE,
    OURS,
    PEERS,
    aggregate,
    markdown,
    update_readme,
)
from interpolant import adapters
from interpolant.data import Normalizer, estimate_sigma_data, load_dataset
from interpolant.losses import EDMLogNormal, EDMWeight, LogitNormal, MinSNR, Objective, Uniform
from interpolant.metrics import (
    extract_features,
    frechet_distance_from_stats,
    gaussian_stats,
    sliced_wasserstein,
)
from interpolant.models import build_model, count_parameters
from interpolant.paths import EDM, Linear, VPCosine
from interpolant.predictions import Model
from interpolant.randomness import derive_seed
from interpolant.solvers import sample
from interpolant.train import TrainConfig, build_network, train

RESULTS = Path(__file__).parent / "results" / "train_quality.json"
TOY_SETS = ("moons", "swiss_roll", "8gaussians", "checkerboard")
SETS = ALL_SETS
#: Our candidate (solver, grid) pairs; each is applied to every model on our side.
OUR_SOLVERS = (
    ("euler", "uniform"),
    ("heun", "uniform"),
    ("midpoint", "uniform"),
    ("dpmpp_2m", "uniform"),
    ("unipc", "uniform"),
    ("heun", "karras"),
    ("dpmpp_2m", "karras"),
    ("unipc", "logsnr"),
)
#: torchdiffeq fixed-grid methods and their model evaluations per step.
CFM_SOLVERS = {"euler": 1, "midpoint": 2, "heun2": 2}
#: diffusers schedulers: (class name, config overrides).
DIFFUSERS_SOLVERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddpm": ("DDPMScheduler", {}),
    "ddpm_trailing": ("DDPMScheduler", {"timestep_spacing": "trailing"}),
    "ddim_trailing": ("DDIMScheduler", {"timestep_spacing": "trailing"}),
    "dpmsolver++_2m": ("DPMSolverMultistepScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
DDPM_TRAIN = {
    "num_train_timesteps": 1000,
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
}


@dataclass(frozen=True)
class Settings:
    """Everything that fixes a run (stored in the JSON)."""

    sets: tuple[str, ...] = SETS
    seeds: tuple[int, ...] = (0, 1, 2)
    nfe: tuple[int, ...] = (10,)
    toy_steps: int = 2000
    digits_steps: int = 2500
    toy_batch: int = 256
    digits_batch: int = 128
    toy_width: int = 64
    digits_width: int = 256
    depth: int = 3
    lr: float = 1e-3
    grad_clip: float = 1.0
    ema_halflife_kimg: float = 500.0
    ema_rampup_ratio: float = 0.05
    n_train_toy: int = 50_000
    n_ref_toy: int = 20_000
    n_gen_toy: int = 5_000
    n_gen_digits: int = 2_000
    sw_projections: int = 128
    workers: int = 2
    extra: dict[str, Any] = field(default_factory=dict)


QUICK = Settings(
    sets=("moons", "digits"),
    seeds=(0,),
    toy_steps=300,
    digits_steps=300,
    n_train_toy=10_000,
    n_ref_toy=5_000,
    n_gen_toy=2_000,
    n_gen_digits=1_000,
)


# ------------------------------------------------------------------------------------- data


@dataclass
class Problem:
    """One data set: training data in model space, evaluation references and the metric."""

    name: str
    train_x: Tensor
    normalizer: Normalizer
    metric: Callable[[Tensor, str], float]  # (raw samples, "val" | "test") -> distance
    floor: dict[str, float]
    n_gen: int


_PROBLEMS: dict[str, Problem] = {}


def problem(name: str, s: Settings) -> Problem:
    """Load (once per process) the data, references and metric of set ``name``."""
    if name in _PROBLEMS:
        return _PROBLEMS[name]
    if name == "digits":
        train_x = load_dataset("digits", split="train").x
        refs = {"val": train_x, "test": load_dataset("digits", split="test").x}
        stats = {k: gaussian_stats(extract_features(v, "digits")) for k, v in refs.items()}

        def metric(x: Tensor, ref: str) -> float:
            feats = extract_features(x.clamp(-1.0, 1.0), "digits")
            return frechet_distance_from_stats(*gaussian_stats(feats), *stats[ref])

        # A perfect model's score: the training images against the held-out ones.
        floor = {"test": metric(train_x, "test")}
        prob = Problem(name, train_x, Normalizer.identity(), metric, floor, s.n_gen_digits)
    else:
        raw = load_dataset(name, n=s.n_train_toy, split="train").x
        normalizer = Normalizer.fit(raw, "standardize")  # one global affine map, for every method
        refs = {
            "val": _draw(name, s.n_ref_toy, 7_000_001),
            "test": load_dataset(name, n=s.n_ref_toy, split="test").x,
        }

        def metric(x: Tensor, ref: str) -> float:
            sw = sliced_wasserstein(x, refs[ref], p=2, n_projections=s.sw_projections, seed=0)
            return float(sw)

        floor = {"test": metric(_draw(name, s.n_gen_toy, 9_000_001), "test")}
        prob = Problem(name, normalizer(raw), normalizer, metric, floor, s.n_gen_toy)
    _PROBLEMS[name] = prob
    return prob


def _draw(name: str, n: int, seed: int) -> Tensor:
    """n fresh points of a toy set from their own stream (neither train nor test)."""
    return load_dataset(name, n=n, generator=torch.Generator().manual_seed(seed)).x


# ----------------------------------------------------------------------------------- recipes


class TorchCFMLoss:
    """torchcfm's training step: (t, x_t, u_t) = ``matcher.sample_location_and_conditional_flow(
    x0=noise, x1=data)``, loss mean((v(x_t, t) - u_t)^2), t' = 0 noise as in torchcfm."""

    def __init__(self, matcher: Any) -> None:
        self.matcher = matcher

    def loss(self, model: nn.Module, x0: Tensor, generator=None, cond=None) -> Tensor:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        if generator is not None:  # POT's plan is sampled with numpy's global RNG
            np.random.seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))  # noqa: NPY002
        # torchcfm draws t and its (here zero-scaled) noise with torch's global RNG, which the
        # trainer reseeds for every block of every step.
        t, xt, ut = self.matcher.sample_location_and_conditional_flow(noise, x0)
        return torch.mean((model(xt, t) - ut) ** 2)


class DiffusersDDPMLoss:
    """diffusers' ``train_unconditional.py`` step for eps prediction: n ~ U{0..N-1},
    x_n = ``scheduler.add_noise(x0, eps, n)``, loss MSE(net(x_n, n), eps)."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.n_steps = int(scheduler.config.num_train_timesteps)

    def loss(self, model: nn.Module, x0: Tensor, generator=None, cond=None) -> Tensor:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        timesteps = torch.randint(0, self.n_steps, (x0.shape[0],), generator=generator)
        noisy = self.scheduler.add_noise(x0, noise, timesteps)
        return F.mse_loss(model(noisy, timesteps.to(x0.dtype)), noise)


def ddpm_scheduler(set_name: str) -> Any:
    """The DDPM training scheduler; x0 clipping (its image default) only where data lie in
    [-1, 1], i.e. on the digits (the standardised 2-D sets exceed it)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**DDPM_TRAIN, clip_sample=set_name == "digits")


def backbone_kwargs(set_name: str, s: Settings) -> dict[str, Any]:
    digits = set_name == "digits"
    return {
        "name": "mlp",
        "dim": 64 if digits else 2,
        "width": s.digits_width if digits else s.toy_width,
        "depth": s.depth,
    }


def train_config(set_name: str, seed: int, s: Settings, run_dir: str, **net: Any) -> TrainConfig:
    """The one optimisation setting every method trains with."""
    digits = set_name == "digits"
    steps = s.digits_steps if digits else s.toy_steps
    return TrainConfig(
        model=backbone_kwargs(set_name, s),
        seed=seed,
        steps=steps,
        batch_size=s.digits_batch if digits else s.toy_batch,
        lr=s.lr,
        lr_schedule="constant",
        weight_decay=0.0,
        grad_clip=s.grad_clip,
        ema="halflife",
        ema_halflife_kimg=s.ema_halflife_kimg,
        ema_rampup_ratio=s.ema_rampup_ratio,
        device="cpu",
        run_dir=run_dir,
        resume=False,
        progress=False,
        log_every=steps,
        checkpoint_every=steps,
        keep_checkpoints=1,
        **net,
    )


def our_recipe(method: str, sigma_data: float) -> tuple[dict[str, Any], Objective]:
    """(network fields of TrainConfig, objective) of our rf / edm / vp recipe."""
    if method == "rf":  # SD3: rectified flow, logit-normal(0, 1) time
        path = Linear()
        objective = Objective(path, "velocity", LogitNormal(0.0, 1.0), "uniform")
        return {"path": path.config(), "predicts": "velocity"}, objective
    if method == "rf_ot":  # the same with exact minibatch OT pairing (Tong et al. 2023)
        path = Linear()
        objective = Objective(path, "velocity", LogitNormal(0.0, 1.0), "uniform", coupling="ot")
        return {"path": path.config(), "predicts": "velocity"}, objective
    if method == "rf_uniform_ot":  # OT-CFM's objective (Tong et al. 2023): uniform t, OT pairs
        path = Linear()
        objective = Objective(path, "velocity", Uniform(), "uniform", coupling="ot")
        return {"path": path.config(), "predicts": "velocity"}, objective
    if method == "edm":  # Karras et al. 2022, Table 1
        path = EDM()
        weight = EDMWeight(sigma_data)
        objective = Objective(path, "x0", EDMLogNormal(-1.2, 1.2), weight)
        fields = {"path": path.config(), "predicts": "x0", "precondition": sigma_data}
        return fields, objective
    if method == "rf_uniform":  # rectified flow / I-CFM: uniform time
        path = Linear()
        objective = Objective(path, "velocity", Uniform(), "uniform")
        return {"path": path.config(), "predicts": "velocity"}, objective
    if method == "vp":  # iDDPM cosine schedule, v target (Salimans & Ho), min-SNR-5 (Hang et al.)
        path = VPCosine()
        objective = Objective(path, "v", Uniform(), MinSNR(5.0))
        return {"path": path.config(), "predicts": "v"}, objective
    raise ValueError(f"unknown recipe {method!r}")


def peer_network(set_name: str, method: str, seed: int, s: Settings) -> nn.Module:
    """The same MLP with the same initial weights as ours (``build_network`` seeds alike)."""
    spec = backbone_kwargs(set_name, s)
    spec.pop("name")
    torch.manual_seed(derive_seed("init", seed))
    # diffusers feeds integer timesteps 0..999 to its sinusoidal embedding: scale 1, not 1000.
    return build_model("mlp", **spec, time_scale=1.0 if method == "ddpm" else 1000.0)


def peer_objective(set_name: str, method: str) -> Any:
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
    )

    if method == "icfm":
        return TorchCFMLoss(ConditionalFlowMatcher(sigma=0.0))
    if method == "otcfm":
        return TorchCFMLoss(ExactOptimalTransportConditionalFlowMatcher(sigma=0.0))
    if method == "ddpm":
        return DiffusersDDPMLoss(ddpm_scheduler(set_name))
    raise ValueError(f"unknown peer {method!r}")


# ---------------------------------------------------------------------------------- samplers


def sample_ours(model: Model, noise: Tensor, solver: str, grid: str, nfe: int) -> Tensor:
    out = sample(model, noise, solver=solver, nfe=nfe, grid=grid)
    if out.nfe > nfe:
        raise RuntimeError(f"{solver} spent {out.nfe} evaluations for a budget of {nfe}")
    return out.x


def sample_torchcfm(net: nn.Module, noise: Tensor, method: str, nfe: int) -> Tensor:
    """torchcfm's sampling: integrate v from t' = 0 (noise) to 1 with torchdiffeq's fixed grid."""
    from torchdiffeq import odeint

    steps = nfe // CFM_SOLVERS[method]
    calls = [0]

    def velocity(t: Tensor, x: Tensor) -> Tensor:
        calls[0] += 1
        return net(x, t.expand(x.shape[0]))

    grid = torch.linspace(0.0, 1.0, steps + 1)
    x = odeint(velocity, noise, grid, method=method)[-1]
    if calls[0] > nfe:
        raise RuntimeError(f"torchdiffeq {method} spent {calls[0]} evaluations, budget {nfe}")
    return x


def sample_diffusers(net: nn.Module, noise: Tensor, kind: str, nfe: int, config: Any, seed: int):
    """The standard diffusers loop: set_timesteps(nfe), then scheduler.step per timestep."""
    import diffusers

    cls_name, overrides = DIFFUSERS_SOLVERS[kind]
    scheduler = getattr(diffusers, cls_name).from_config(config, **overrides)
    scheduler.set_timesteps(nfe)
    generator = torch.Generator().manual_seed(seed)
    x = noise * scheduler.init_noise_sigma
    for n in scheduler.timesteps:
        eps = net(scheduler.scale_model_input(x, n), n.to(x.dtype).expand(x.shape[0]))
        extra = {"generator": generator} if kind.startswith("ddpm") else {}
        x = scheduler.step(eps, n, x, **extra).prev_sample
    if len(scheduler.timesteps) > nfe:
        raise RuntimeError(f"{kind} used {len(scheduler.timesteps)} steps for a budget of {nfe}")
    return x


def candidates(method: str, model: nn.Module, set_name: str) -> dict[str, Callable[..., Tensor]]:
    """name -> fn(noise, nfe, seed) for every candidate solver of ``method`` (peer networks also
    through our solvers, named ``ours:<solver>/<grid>``)."""
    out: dict[str, Callable[..., Tensor]] = {}
    if method in OUR_SIDE:
        ours = model
    elif method == "ddpm":
        config = ddpm_scheduler(set_name).config
        for kind in DIFFUSERS_SOLVERS:
            out[kind] = lambda z, nfe, seed, kind=kind: sample_diffusers(
                model, z, kind, nfe, config, seed
            )
        ours = adapters.from_diffusers(model, ddpm_scheduler(set_name))
    else:
        for kind in CFM_SOLVERS:
            out[kind] = lambda z, nfe, seed, kind=kind: sample_torchcfm(model, z, kind, nfe)
        ours = adapters.from_flow_matching(model)
    prefix = "" if method in OUR_SIDE else "ours:"
    for solver, grid in OUR_SOLVERS:
        out[f"{prefix}{solver}/{grid}"] = lambda z, nfe, seed, a=solver, b=grid: sample_ours(
            ours, z, a, b, nfe
        )
    return out


# --------------------------------------------------------------------------------------- job


def run_job(args: tuple[str, str, int, Settings]) -> dict[str, Any]:
    """Train ``method`` on ``set_name`` with ``seed``; score every candidate solver."""
    set_name, method, seed, s = args
    torch.set_num_threads(1)
    prob = problem(set_name, s)
    run_dir = tempfile.mkdtemp(prefix=f"interpolant_train_quality_{set_name}_{method}_{seed}_")
    try:
        t0 = time.perf_counter()
        if method in OUR_SIDE:
            fields, objective = our_recipe(method, estimate_sigma_data(prob.train_x))
            cfg = train_config(set_name, seed, s, run_dir, **fields)
            model = build_network(cfg)
        else:
            cfg = train_config(set_name, seed, s, run_dir)
            model, objective = (
                peer_network(set_name, method, seed, s),
                peer_objective(set_name, method),
            )
        trainer = train(cfg, prob.train_x, model=model, objective=objective)
        train_s = time.perf_counter() - t0
        ema_model = copy.deepcopy(trainer.module).eval()
        ema_model.load_state_dict(trainer.averaged_state())
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    shape = tuple(prob.train_x.shape[1:])
    rows: dict[str, dict[str, Any]] = {}
    t1 = time.perf_counter()
    with torch.no_grad():
        for nfe in s.nfe:
            for name, fn in candidates(method, ema_model, set_name).items():
                scores: dict[str, float] = {}
                # Selection samples and reported samples use different noise.
                for ref, noise_seed in (("val", 20_000 + seed), ("test", 10_000 + seed)):
                    g = torch.Generator().manual_seed(noise_seed)
                    noise = torch.randn((prob.n_gen, *shape), generator=g)
                    x = fn(noise, nfe, noise_seed)
                    raw = prob.normalizer.inverse(x.float())
                    finite = bool(torch.isfinite(raw).all())
                    scores[ref] = prob.metric(raw, ref) if finite else math.inf
                rows[f"{nfe}|{name}"] = scores
    return {
        "set": set_name,
        "method": method,
        "seed": seed,
        "params": count_parameters(ema_model),
        "train_s": train_s,
        "sample_s": time.perf_counter() - t1,
        "scores": rows,
    }


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("interpolant", "torchcfm", "diffusers", "POT", "torchdiffeq", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1-2 minute smoke run")
    parser.add_argument("--sets", nargs="+", choices=SETS, help="subset of the sets")
    parser.add_argument("--seeds", nargs="+", type=int, help="training seeds (default 0 1 2)")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        help="subset of the recipes (default all; ours and the peers are always kept)",
    )
    parser.add_argument("--nfe", nargs="+", type=int, help="NFE budgets (default 10)")
    parser.add_argument("--workers", type=int, help="processes (default 2, one thread each)")
    parser.add_argument(
        "--n-gen", type=int, help="generated samples per 2-D evaluation (default 5000)"
    )
    parser.add_argument(
        "--n-ref", type=int, help="2-D reference samples, validation and test (default 20000)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output")
    parser.add_argument("--readme", type=Path, help="rewrite this README's generated table")
    parser.add_argument("--render", type=Path, help="only print/rewrite from a saved JSON")
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        help="pool saved runs that differ only in their seeds into --out (no training)",
    )
    args = parser.parse_args(argv)
    if args.render:
        result = json.loads(args.render.read_text())
        settings = result["settings"]  # the tables again from the saved jobs (no training)
        result["table"] = aggregate(result["jobs"], tuple(settings["sets"]), tuple(settings["nfe"]))
        _report(result, args.readme)
        return result
    if args.merge:
        if args.out == RESULTS:
            raise SystemExit("--merge needs --out (it would overwrite the main results file)")
        result = merge([json.loads(path.read_text()) for path in args.merge])
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
        _report(result, args.readme)
        return result
    s = QUICK if args.quick else Settings()
    changes = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in (("sets", args.sets), ("seeds", args.seeds), ("nfe", args.nfe))
        if v
    }
    for key, value in (
        ("workers", args.workers),
        ("n_gen_toy", args.n_gen),
        ("n_ref_toy", args.n_ref),
    ):
        if value:
            changes[key] = value
    s = replace(s, **changes)
    torch.set_num_threads(1)
    import diffusers  # noqa: F401  (import once before the workers fork)
    import torchcfm  # noqa: F401

    methods = (*OURS, *PEERS, *(m for m in DIAGNOSTIC if not args.methods or m in args.methods))
    jobs = [(n, m, seed, s) for n in s.sets for m in methods for seed in s.seeds]
    jobs.sort(key=lambda j: j[0] != "digits")  # the longest jobs first
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    done: list[dict[str, Any]] = []
    if s.workers > 1:
        with multiprocessing.get_context("fork").Pool(s.workers) as pool:
            for r in pool.imap_unordered(run_job, jobs):
                done.append(r)
                _progress(r, len(done), len(jobs), t0)
    else:
        for job in jobs:
            done.append(run_job(job))
            _progress(done[-1], len(done), len(jobs), t0)
    wall = time.perf_counter() - t0
    floors = {n: problem(n, s).floor["test"] for n in s.sets}
    params = {
        ("digits" if n == "digits" else "2-D"): next(
            j["params"] for j in done if j["set"] == n and j["method"] == "rf"
        )
        for n in s.sets
    }
    result = {
        "benchmark": "train_quality",
        "quick": bool(args.quick),
        "settings": {**asdict(s), "our_solvers": OUR_SOLVERS, "cfm_solvers": CFM_SOLVERS},
        "diffusers_solvers": DIFFUSERS_SOLVERS,
        "ddpm_train_config": DDPM_TRAIN,
        "versions": versions(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_1_5_15_at_start": load_start,
            "loadavg_1_5_15_at_end": os.getloadavg(),
        },
        "wall_s": wall,
        "floors": floors,
        "params": params,
        "jobs": sorted(done, key=lambda j: (j["set"], j["method"], j["seed"])),
        "table": aggregate(done, s.sets, s.nfe),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    _report(result, args.readme)
    return result


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from runs whose settings agree except for the seeds (and workers): their jobs
    pooled, the tables aggregated again over all seeds."""
    ignored = ("seeds", "workers")
    first = {k: v for k, v in results[0]["settings"].items() if k not in ignored}
    for other in results[1:]:
        rest = {k: v for k, v in other["settings"].items() if k not in ignored}
        differ = sorted(k for k in first.keys() | rest.keys() if first.get(k) != rest.get(k))
        if differ:
            raise ValueError(f"runs differ in settings {differ}: only the seeds may differ")
    jobs = [job for r in results for job in r["jobs"]]
    keys = [(j["set"], j["method"], j["seed"]) for j in jobs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"(set, method, seed) run twice: {repeated[:3]}")
    seeds = sorted({j["seed"] for j in jobs})
    settings = {**results[0]["settings"], "seeds": seeds}
    sets, nfes = tuple(settings["sets"]), tuple(settings["nfe"])
    return {
        **results[0],
        "settings": settings,
        "merged_from": [r["settings"]["seeds"] for r in results],
        "merged_machines": [r["machine"] for r in results],
        "wall_s": sum(r["wall_s"] for r in results),
        "jobs": sorted(jobs, key=lambda j: (j["set"], j["method"], j["seed"])),
        "table": aggregate(jobs, sets, nfes),
    }


def _report(result: dict[str, Any], readme: Path | None) -> None:
    """Print the tables; rewrite the README section when asked."""
    table = markdown(result)
    print(table)
    print(f"\nwall time {result['wall_s']:.0f} s")
    if readme is not None:
        command = "python benchmarks/train_quality.py" + (" --quick" if result["quick"] else "")
        update_readme(readme, table, command + f" --readme {readme.name}")
        print(f"updated {readme}")


def _progress(r: dict[str, Any], i: int, n: int, t0: float) -> None:
    print(
        f"[{i}/{n}] {r['set']:<12} {r['method']:<6} seed {r['seed']}: train {r['train_s']:.0f} s, "
        f"sample {r['sample_s']:.0f} s, elapsed {time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    main()
