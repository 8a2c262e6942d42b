"""Sampler accuracy on exact oracles: our solvers and grids vs diffusers and k-diffusion.

The problem. Two Gaussian mixtures with exact denoisers (``interpolant.data.oracles``): ring2d
(8 modes of std 0.05 on a circle of radius 2) and lowrank64 (10 components in 64 dimensions,
rank-4 covariances plus 1e-4 I). Every sampler integrates the same probability-flow ODE with the
exact model; the error is the endpoint RMSE per dimension, sqrt(mean over samples and
dimensions of (x - x_ref)^2), against the exact ODE solution from the sampler's own start.

Start and reference (the same for every method):

* One standard normal draw z (seed 0, 256 samples) is the start noise of every method, scaled by
  the method's own initial noise level: ours x = sigma(t_max) z (EDM: sigma = 80; VP at t = 1:
  EDM noise level 152.6; Linear at t = 1: pure noise, alpha = 0), k-diffusion x = 80 z,
  diffusers x = init_noise_sigma z (VP-scaled at its first timestep 999, noise level 157.4;
  Euler/Heun keep x = z sqrt(1 + 157.4^2), the same state unscaled).
* The reference is the exact ODE solution from that start state at that noise level, computed
  in float64 with adaptive Dormand-Prince to rtol = atol = 1e-10 in the angle variable
  (``interpolant.solvers.adaptive``; its error is ~1e-9, far below what is measured); starts
  that agree to 7 significant digits (DDIM's float64 noise level of alpha_bar_999 and the other
  schedulers' float32 one) share a reference. A start
  that is not the marginal is part of the method, not a solver error; every run here starts
  at noise level >= 80, where the data's second moment per dimension is < 3e-4 of the noise
  variance (the Linear path starts at pure noise).
* The reference runs to the method's own final noise level: 0 (the data) for every method but
  diffusers' DEIS, whose last noise level is sigma(alpha_bar_0) = 0.0100 (it has no
  final_sigmas_type). It is scored by the smaller of its errors against the reference there
  and against the reference at the data (generous: it is not charged for the step to 0 that it
  does not make); the JSON has both (``rmse_at_own_end``, ``rmse_to_data``).

Peers, driven by the same exact model:

* diffusers 0.42: DDIM (clip_sample off, eta 0, set_alpha_to_one, timestep_spacing "trailing"
  so that it starts at timestep 999 like the others; its default "leading" starts 10 steps at
  timestep 900 from pure noise), DPM-Solver++ 2M and 3M, UniPC (bh2, orders 2 and 3), DEIS
  (orders 2 and 3), Euler, Heun; linear betas 1e-4..0.02 over 1000 steps, epsilon prediction;
  each with its default spacing and with use_karras_sigmas. The model returns the exact eps
  at exactly the noise level the scheduler's update assumes (its ``sigmas[i]``; DDIM: its
  alphas_cumprod[t]), i.e. the oracle denoiser at EDM sigma s applied to x sqrt(1 + s^2).
  Schedulers run on float64 samples (UniPC fails only when torch's *default* dtype is float64,
  which is left at float32 here); a scheduler that failed in float64 would be rerun in float32,
  and the JSON records the dtype of each run.
* k-diffusion: euler, heun, lms, dpm_2, dpmpp_2m on Karras sigmas 0.002..80 (rho 7).

NFE: every method gets the most steps whose model evaluations do not exceed the budget (Heun-type
methods use 2n - 1 for n steps); the JSON records the NFE used.

Ours: every registered deterministic solver with its defaults (and unipc with order 3 and with
B(h) = h, "bh1") on the paths
EDM, VP and Linear with the grids uniform, karras, logsnr and shift; plus "searched" grids
(``interpolant.solvers.search``) for adams (order 3) and unipc (order 2) on the EDM path: the
grid family (a density over logsnr) is searched at NFE 10 and at NFE 20 on separate calibration
noise (seed 1; 512 samples on ring2d, 256 on lowrank64) against its own reference, and every
budget up to 20 uses the family searched at the nearer of the two (NFE 4-10: the NFE-10
family; 15 and 20: the NFE-20 one). A family keeps its last noise level sigma_min, which should
shrink with the budget, so NFE 50 has no searched grid. The evaluation noise above is never seen
by the search, so the searched grids' errors measure what transfers to new noise.

Selection. "Best of ours" and "best peer" are chosen per budget on a third noise set (seed 2,
as many draws as the evaluation set), and their errors on the evaluation noise are reported:
picking the best of ~150 of our configurations and 22 peers on the evaluation noise itself
would reward luck (``ratio_best_on_evaluation`` in the JSON is that optimistic ratio). Each
cell also records the per-sample RMSE's median and the number of mode flips (samples whose own
RMSE exceeds 0.5: they ended in another mode than the exact ODE). On lowrank64 at NFE 10 the
RMSE is dominated by flips: about 0.1-0.3% of the draws lie so close to a boundary between
components that every 10-NFE sampler sends some of them to the wrong one, ours and the peers'
at similar rates, so 256 draws (the issue's setting) often contain none and 2048 always some.
``--samples 2048 --calibration 1024 --nfe 10 20`` is the run that measures this
(``benchmarks/results/sampler_oracle_2048.json``).

Diagnosis (``results.<oracle>.diagnosis.<nfe>``, NFE 10 and 20): for our best run on the EDM
path, the endpoint error split into the high-variance directions of the nearest component (data
variance > 1e-2) and the rest, and what each step adds to the endpoint error (the exact flow of
each node's state to the data, on the first 64 evaluation draws). On lowrank64 at NFE 10 it
shows that the last step, the denoising jump from the searched grid's last noise level (~0.4)
to 0, adds ~1e-2, nearly all of it in the 60 directions of variance 1e-4 per component (std
0.01): those directions only settle at noise levels ~0.01, so a grid that does not evaluate the
model there leaves an error of about their std, whatever the solver.

Run ``python benchmarks/sampler_oracle.py`` (``--quick`` for a smoke run); results go to
``benchmarks/results/sampler_oracle.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _peers
import interpolant as ip
from interpolant.data.oracles import ORACLES, GaussianMixture
from interpolant.paths import EDM, Linear, VPLinear
from interpolant.solvers.adaptive import angle_field, odeint_dopri5, reference_sample
from interpolant.solvers.search import search_grid
from interpolant.solvers.unipc import UniPCHistory
from overhead import machine

RESULTS = Path(__file__).resolve().parent / "results" / "sampler_oracle.json"
RTOL = 1e-10
NFES = (4, 6, 8, 10, 15, 20, 50)
HEADLINE_NFES = (10, 20)
#: Seed of the noise on which the best of our methods and the best peer are chosen (the same
#: number of draws as the evaluation noise, seed 0; the grid searches calibrate on seed 1).
SELECTION_SEED = 2
PATHS = {"edm": EDM, "vp": VPLinear, "linear": Linear}
GRIDS = ("uniform", "karras", "logsnr", "shift")
#: Option variants run besides each solver's defaults.
SOLVER_VARIANTS: dict[str, list[dict[str, Any]]] = {
    "unipc": [{"order": 3}, {"variant": "bh1"}, {"order": 3, "variant": "bh1"}]
}
#: Solvers whose grids are searched (on the EDM path).
SEARCHED = (("adams", {"order": 3}), ("unipc", {"order": 2}))
#: Budgets at which grids are searched; the others use the family searched at the nearest one.
SEARCH_AT = (10, 20)
CALIBRATION = {"ring2d": 512, "lowrank64": 256}
DIFFUSERS = (
    ("ddim", "DDIMScheduler", {"clip_sample": False, "timestep_spacing": "trailing"}),
    ("dpmpp_2m", "DPMSolverMultistepScheduler", {"solver_order": 2}),
    ("dpmpp_3m", "DPMSolverMultistepScheduler", {"solver_order": 3}),
    ("unipc2", "UniPCMultistepScheduler", {"solver_order": 2}),
    ("unipc3", "UniPCMultistepScheduler", {"solver_order": 3}),
    ("deis2", "DEISMultistepScheduler", {"solver_order": 2}),
    ("deis3", "DEISMultistepScheduler", {"solver_order": 3}),
    ("euler", "EulerDiscreteScheduler", {}),
    ("heun", "HeunDiscreteScheduler", {}),
)
K_DIFFUSION = (("euler", 1), ("heun", 2), ("lms", 1), ("dpm_2", 2), ("dpmpp_2m", 1))


#: A sample whose own RMSE exceeds this ended in another mode than the exact ODE (a "flip":
#: the closest two component means are 1.06 (lowrank64) and 1.08 (ring2d) apart in RMS per
#: dimension; measured flips cost ~1.5, non-flipped samples at NFE >= 10 stay below ~0.15).
FLIP = 0.5


def error_stats(x: Tensor, ref: Tensor) -> dict[str, Any]:
    """RMSE over all samples, plus the per-sample RMSE's median and the count of mode flips:
    RMSE is a mean of heavy-tailed per-sample errors, so a few flips can dominate it."""
    per_sample = (x.to(torch.float64) - ref).square().flatten(1).mean(1).sqrt()
    return {
        "rmse": float(per_sample.square().mean().sqrt()),
        "median": float(per_sample.median()),
        "flips": int((per_sample > FLIP).sum()),
    }


def rmse(x: Tensor, ref: Tensor) -> float:
    return float(error_stats(x, ref)["rmse"])


def oracle_model(gmm: GaussianMixture, path: Any) -> ip.Model:
    """The oracle's exact denoiser on ``path`` (one time for a batch that shares it: cheaper)."""

    def net(x: Tensor, t: Tensor) -> Tensor:
        same = t.ndim == 1 and bool((t == t[0]).all())
        return gmm.denoiser(x, (t[0] if same else t).to(torch.float64), path).to(x.dtype)

    return ip.Model(net, path, predicts="x0")


def edm_denoiser(gmm: GaussianMixture, x: Tensor, sigma: float) -> Tensor:
    """E[x0 | x0 + sigma n = x] in float64."""
    return gmm.denoiser(x.to(torch.float64), torch.tensor(1.0, dtype=torch.float64), EDM(sigma))


class Problem:
    """One oracle, its evaluation and calibration noise, and a cache of reference solutions."""

    def __init__(self, name: str, n_eval: int, n_cal: int, eval_seed: int = 0) -> None:
        self.name, self.gmm = name, ORACLES[name]()
        dim = self.gmm.dim
        self.z = torch.randn(
            n_eval, dim, generator=torch.Generator().manual_seed(eval_seed), dtype=torch.float64
        )
        self.z_cal = torch.randn(
            n_cal, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64
        )
        self._refs: dict[Any, Tensor] = {}
        self.reference_seconds = 0.0

    def path_reference(self, path_name: str) -> Tensor:
        """Exact endpoint from x = sigma(1) z on one of our paths (also k-diffusion's, on EDM)."""
        key = ("path", path_name)
        if key not in self._refs:
            start = time.perf_counter()
            self._refs[key] = reference_sample(
                oracle_model(self.gmm, PATHS[path_name]()), self.z, rtol=RTOL, atol=RTOL
            )
            self.reference_seconds += time.perf_counter() - start
        return self._refs[key]

    def vp_reference(self, sigma_start: float, sigma_end: float) -> Tensor:
        """Exact VP-scaled state x / sqrt(1 + s^2) at EDM noise level ``sigma_end`` from the
        VP-scaled state z at ``sigma_start`` (diffusers' runs); starts equal to 1e-6 share one."""
        key = ("vp", float(f"{sigma_start:.7g}"), float(f"{sigma_end:.7g}"))
        if key not in self._refs:
            start = time.perf_counter()
            field, theta_max, _ = angle_field(oracle_model(self.gmm, EDM(sigma_start)), 1.0)
            theta_end = math.atan(sigma_end)
            self._refs[key] = odeint_dopri5(
                field, self.z, theta_max, theta_end, rtol=RTOL, atol=RTOL
            )[0]
            self.reference_seconds += time.perf_counter() - start
        return self._refs[key]


# -- peers -----------------------------------------------------------------------------------


def _drive_scheduler(problem: Problem, scheduler: Any, dtype: torch.dtype) -> tuple[Tensor, float]:
    """Run a diffusers scheduler with the exact eps; returns (final x, first noise level)."""
    alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64)

    def sigma_at(i: int, t: Tensor) -> float:
        # The noise level the scheduler's update assumes at its i-th evaluation.
        if hasattr(scheduler, "sigmas"):
            return float(scheduler.sigmas[i])
        a = float(alphas_cumprod[int(t)])
        return math.sqrt((1.0 - a) / a)

    x = problem.z.to(dtype) * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        s = sigma_at(i, t)
        x_edm = scheduler.scale_model_input(x, t).to(torch.float64) * math.sqrt(1.0 + s * s)
        eps = (x_edm - edm_denoiser(problem.gmm, x_edm, s)) / s
        x = scheduler.step(eps.to(dtype), t, x).prev_sample
    if not bool(torch.isfinite(x).all()):
        raise FloatingPointError("non-finite sample")
    return x, sigma_at(0, scheduler.timesteps[0])


def run_diffusers(
    problem: Problem, cls_name: str, options: dict[str, Any], nfe: int
) -> dict[str, Any]:
    import diffusers

    cls = getattr(diffusers, cls_name)
    steps = (nfe + 1) // 2 if cls_name == "HeunDiscreteScheduler" else nfe
    failures = []
    for dtype in (torch.float64, torch.float32):
        scheduler = cls(
            num_train_timesteps=1000,
            beta_start=1e-4,
            beta_end=0.02,
            beta_schedule="linear",
            **options,
        )
        scheduler.set_timesteps(steps)
        try:
            x, sigma_start = _drive_scheduler(problem, scheduler, dtype)
            break
        except (RuntimeError, FloatingPointError) as err:
            failures.append(f"{dtype}: {err!r}"[:200])
    else:
        return {"error": "; ".join(failures)}
    if hasattr(scheduler, "sigmas"):
        sigma_end = float(scheduler.sigmas[-1])
    elif scheduler.config.set_alpha_to_one:
        sigma_end = 0.0
    else:
        a0 = float(scheduler.alphas_cumprod[0])
        sigma_end = math.sqrt((1 - a0) / a0)
    # Euler/Heun keep x unscaled (x_edm); the multistep schedulers keep x / sqrt(1 + s^2).
    unscaled = cls_name in ("EulerDiscreteScheduler", "HeunDiscreteScheduler")
    x_vp = x.to(torch.float64) / (math.sqrt(1.0 + sigma_end**2) if unscaled else 1.0)
    out = {
        **error_stats(x_vp, problem.vp_reference(sigma_start, sigma_end)),
        "nfe": len(scheduler.timesteps),
        "dtype": str(dtype).replace("torch.", ""),
        "sigma_start": sigma_start,
        "sigma_end": sigma_end,
    }
    if failures:
        out["float64_failure"] = failures[0]
    if sigma_end > 0:
        # Scored by the smaller of its errors at its own end and at the data (generous).
        out["rmse_at_own_end"] = out["rmse"]
        to_data = error_stats(x_vp, problem.vp_reference(sigma_start, 0.0))
        out["rmse_to_data"] = to_data["rmse"]
        if to_data["rmse"] < out["rmse"]:
            out.update(to_data)
    return out


def run_k_diffusion(problem: Problem, name: str, evals_per_step: int, nfe: int) -> dict[str, Any]:
    sampling = _peers.load_k_diffusion_sampling()
    steps = (nfe + 1) // 2 if evals_per_step == 2 else nfe
    sigmas = sampling.get_sigmas_karras(steps, 0.002, 80.0, rho=7.0).to(torch.float64)
    calls = 0

    def denoiser(x: Tensor, sigma: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        return edm_denoiser(problem.gmm, x, float(sigma[0]))

    x = getattr(sampling, f"sample_{name}")(denoiser, problem.z * 80.0, sigmas, disable=True)
    return {**error_stats(x, problem.path_reference("edm")), "nfe": calls}


# -- ours ------------------------------------------------------------------------------------


def our_solvers() -> list[tuple[str, dict[str, Any]]]:
    """Every registered deterministic solver with its defaults, plus the variants above."""
    configs = []
    for name, cls in sorted(ip.solvers.SOLVERS.items()):
        if cls().stochastic:
            continue
        configs.append((name, {}))
        configs += [(name, dict(v)) for v in SOLVER_VARIANTS.get(name, [])]
    return configs


def label(solver: str, options: dict[str, Any]) -> str:
    return solver + "".join(f" {k}={v}" for k, v in options.items())


def run_ours(
    problem: Problem,
    path_name: str,
    solver: str,
    options: dict[str, Any],
    grid: Any,
    nfe: int | None,
) -> dict[str, Any]:
    model = oracle_model(problem.gmm, PATHS[path_name]())
    try:
        spec = ip.Sampler(
            {"name": solver, **options},
            nfe=nfe if isinstance(grid, str) else None,
            grid=grid,
            solver_dtype="float64",
        )
        result = ip.sample(model, problem.z, spec)
    except ip.UserError as err:  # e.g. a budget below a multistep solver's order
        return {"error": str(err)[:200]}
    return {**error_stats(result.x, problem.path_reference(path_name)), "nfe": result.nfe}


def searched_grids(
    problem: Problem, nfes: tuple[int, ...], budget: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Search a grid family per solver at the budgets SEARCH_AT on the calibration noise; every
    other budget up to max(SEARCH_AT) takes the family searched at the nearest one (in ratio)."""
    model = oracle_model(problem.gmm, EDM())
    start = time.perf_counter()
    reference = reference_sample(model, problem.z_cal, rtol=RTOL, atol=RTOL)
    out: dict[str, Any] = {
        "calibration_reference_seconds": time.perf_counter() - start,
        "grids": {},
    }
    for solver, options in SEARCHED:
        searched: dict[int, Any] = {}
        for nfe in SEARCH_AT:
            begin = time.perf_counter()
            spec = ip.Sampler({"name": solver, **options}, nfe=nfe, solver_dtype="float64")
            searched[nfe] = search_grid(
                model, problem.z_cal, spec, reference=reference, budget=budget
            )
            seconds = time.perf_counter() - begin
            log(
                f"  searched {problem.name} {label(solver, options)} nfe {nfe}: calibration rmse "
                f"{searched[nfe].start_rmse:.2e} -> {searched[nfe].rmse:.2e} ({seconds:.0f}s)"
            )
            out["grids"][f"{label(solver, options)}|search@{nfe}"] = {
                "calibration_rmse": searched[nfe].rmse,
                "calibration_start_rmse": searched[nfe].start_rmse,
                "runs": searched[nfe].runs,
                "seconds": time.perf_counter() - begin,
                "log_density": list(searched[nfe].density.log_density),
                "sigma_min": searched[nfe].density.sigma_min,
            }
        for nfe in (n for n in nfes if n <= max(SEARCH_AT)):
            source = min(SEARCH_AT, key=lambda s: abs(math.log(nfe / s)))
            steps = ip.solvers.get_solver(solver, **options).steps_for_nfe(nfe)
            grid = searched[source].density.times(model.path, steps)
            out["grids"][f"{label(solver, options)}|{nfe}"] = {
                "searched_at": source,
                "grid_t": grid.tolist(),
            }
    return out


# -- diagnosis -------------------------------------------------------------------------------

#: Data directions with a variance above this are "resolved" in the error split (lowrank64: the
#: rank-4 directions of variance ~4 against the 1e-4 floor; ring2d has none).
RESOLVED_VARIANCE = 1e-2
#: Samples (the first of the evaluation noise) and tolerance of the per-step diagnosis.
DIAGNOSIS_SAMPLES, DIAGNOSIS_RTOL = 64, 1e-9


def error_split(gmm: GaussianMixture, x: Tensor, ref: Tensor) -> dict[str, float]:
    """RMSE per dimension of x - ref split into the directions of the nearest component (at the
    reference) whose data variance exceeds RESOLVED_VARIANCE, and the rest (the "floor")."""
    err = (x.to(torch.float64) - ref).reshape(ref.shape[0], -1)
    comp = gmm.posterior_weights(ref, torch.zeros(ref.shape[0], dtype=torch.float64), EDM())
    k = comp.argmax(1)
    keep = (gmm.eigvals[k] > RESOLVED_VARIANCE).to(torch.float64)  # (B, d) eigen-directions
    coords = torch.einsum("bdj,bd->bj", gmm.eigvecs[k], err)
    resolved = float((coords.square() * keep).sum() / err.numel())
    total = float(err.square().mean())
    return {"resolved": math.sqrt(resolved), "floor": math.sqrt(max(total - resolved, 0.0))}


def step_contributions(
    problem: Problem, solver: str, options: dict[str, Any], grid: Tensor
) -> dict[str, Any]:
    """Where the endpoint error of one run on the EDM path comes from (Lady Windermere's fan).

    With x_i the run's state at node i and F_i the exact flow from node i to the data, the
    endpoint error is the sum over steps of F_{i+1}(x_{i+1}) - F_i(x_i): what step i adds, as
    seen at the end. For UniPC x_i is the corrected state (the corrector of step i runs at the
    start of step i + 1 and is kept in its history), so each step is charged with its own
    predictor and corrector. Other solvers with a corrector (adams) keep only the predicted
    state, so a step's predictor error and the next step's correction appear as two large
    terms of opposite sign. Flows are float64 Dormand-Prince in the angle variable.
    """
    z = problem.z[:DIAGNOSIS_SAMPLES]
    model = oracle_model(problem.gmm, EDM())
    field, _, _ = angle_field(model, 1.0)
    path = model.path
    states: list[Tensor] = []

    def record(state: ip.solvers.State, step: Any, run: Any) -> ip.solvers.State:
        if isinstance(state.history, UniPCHistory) and len(states) > 1:
            states[-1] = state.history.x  # the corrected state at the step's start
        states.append(state.x)
        return state

    x_start = z * float(path.sigma(torch.tensor(1.0, dtype=torch.float64)))
    states.append(x_start)
    spec = ip.Sampler({"name": solver, **options}, grid=grid, solver_dtype="float64")
    ip.sample(model, z, spec, hooks=[ip.FunctionHook(on_step=record)])
    sigmas = [
        float(path.edm_sigma(torch.tensor(t, dtype=torch.float64))) if t > 0 else 0.0
        for t in grid.tolist()
    ]
    thetas = [math.atan(s) for s in sigmas]
    ends = []
    for x, sigma, theta in zip(states, sigmas, thetas):
        r = math.hypot(1.0, sigma)  # EDM: alpha = 1
        ends.append(odeint_dopri5(field, x / r, theta, 0.0, DIAGNOSIS_RTOL, DIAGNOSIS_RTOL)[0])
    exact = ends[0]
    return {
        "samples": z.shape[0],
        "rmse": rmse(ends[-1], exact),
        "split": error_split(problem.gmm, ends[-1], exact),
        "steps": [
            {
                "sigma_from": sigmas[i],
                "sigma_to": sigmas[i + 1],
                "endpoint_rmse": rmse(ends[i + 1], ends[i]),
                "split": error_split(problem.gmm, ends[i + 1] + exact - ends[i], exact),
            }
            for i in range(len(sigmas) - 1)
        ],
    }


def diagnose(
    problem: Problem, result: dict[str, Any], nfe: int, log: Callable[[str], None]
) -> dict[str, Any] | None:
    """Per-step error contributions of our best EDM-path run at ``nfe`` (None if it is not on
    the EDM path)."""
    method = best(result["ours"], nfe)[0]
    solver_label, grid_name, path_name = (s.strip() for s in method.split("|"))
    if path_name != "edm":
        return None
    name, *opts = solver_label.split()
    options: dict[str, Any] = {}
    for opt in opts:
        key, value = opt.split("=")
        options[key] = int(value) if value.isdigit() else value
    if grid_name == "searched":
        grid = torch.tensor(
            result["search"]["grids"][f"{solver_label}|{nfe}"]["grid_t"], dtype=torch.float64
        )
    else:
        steps = ip.solvers.get_solver(name, **options).steps_for_nfe(nfe)
        grid = ip.solvers.get_grid(grid_name, EDM(), steps)
    begin = time.perf_counter()
    out = {"method": method, "nfe": nfe, **step_contributions(problem, name, options, grid)}
    worst = max(out["steps"], key=lambda s: s["endpoint_rmse"])
    log(
        f"  {problem.name} NFE {nfe} {method}: rmse {out['rmse']:.2e} (resolved directions "
        f"{out['split']['resolved']:.2e}, floor {out['split']['floor']:.2e}); largest step "
        f"sigma {worst['sigma_from']:.3g} -> {worst['sigma_to']:.3g}: "
        f"{worst['endpoint_rmse']:.2e} ({time.perf_counter() - begin:.0f}s)"
    )
    return out


# -- driver ----------------------------------------------------------------------------------


def best(
    rows: dict[str, dict[int, dict[str, Any]]], nfe: int, by: str = "selection_rmse"
) -> tuple[str, float]:
    """(method, evaluation rmse) of the method with the lowest ``by`` at ``nfe``: by default
    the error on the selection noise, so that picking the best of many methods is not itself
    fitted to the evaluation noise (``by="rmse"`` picks on the evaluation noise: optimistic)."""
    scored = [(r[nfe][by], r[nfe]["rmse"], m) for m, r in rows.items() if by in r.get(nfe, {})]
    _, value, method = min(scored)
    return method, value


def on_both(
    problem: Problem, selection: Problem, run: Callable[..., dict[str, Any]], *args: Any
) -> dict[str, Any]:
    """``run(problem, *args)``'s cell, with its RMSE on the selection noise added."""
    cell = run(problem, *args)
    if "rmse" in cell:
        cell["selection_rmse"] = run(selection, *args).get("rmse", math.inf)
    return cell


def evaluate(
    problem: Problem,
    selection: Problem,
    nfes: tuple[int, ...],
    budget: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    ours: dict[str, dict[int, dict[str, Any]]] = {}
    peers: dict[str, dict[int, dict[str, Any]]] = {}
    begin = time.perf_counter()
    for name, cls_name, options in DIFFUSERS:
        for karras in (False, True):
            if karras and cls_name == "DDIMScheduler":
                continue
            opts = {**options, "use_karras_sigmas": True} if karras else options
            key = f"diffusers {name}" + (" karras" if karras else "")
            peers[key] = {
                nfe: on_both(problem, selection, run_diffusers, cls_name, opts, nfe) for nfe in nfes
            }
    for name, evals_per_step in K_DIFFUSION:
        peers[f"k-diffusion {name}"] = {
            nfe: on_both(problem, selection, run_k_diffusion, name, evals_per_step, nfe)
            for nfe in nfes
        }
    log(f"  {problem.name}: peers done ({time.perf_counter() - begin:.0f}s)")
    begin = time.perf_counter()
    for path_name in PATHS:
        for solver, options in our_solvers():
            for grid in GRIDS:
                key = f"{label(solver, options)} | {grid} | {path_name}"
                ours[key] = {
                    nfe: on_both(
                        problem, selection, run_ours, path_name, solver, options, grid, nfe
                    )
                    for nfe in nfes
                }
    log(f"  {problem.name}: our fixed grids done ({time.perf_counter() - begin:.0f}s)")
    search = searched_grids(problem, nfes, budget, log)
    for solver, options in SEARCHED:
        key = f"{label(solver, options)} | searched | edm"
        ours[key] = {}
        for nfe in (n for n in nfes if n <= max(SEARCH_AT)):
            grid = torch.tensor(
                search["grids"][f"{label(solver, options)}|{nfe}"]["grid_t"], dtype=torch.float64
            )
            ours[key][nfe] = on_both(
                problem, selection, run_ours, "edm", solver, options, grid, None
            )
    headline = []
    fixed = {k: v for k, v in ours.items() if "| searched |" not in k}
    for nfe in nfes:
        (our_method, our_rmse), (peer_method, peer_rmse) = best(ours, nfe), best(peers, nfe)
        fixed_method, fixed_rmse = best(fixed, nfe)
        our_cell, peer_cell = ours[our_method][nfe], peers[peer_method][nfe]
        headline.append(
            {
                "nfe": nfe,
                "ours": our_method,
                "ours_rmse": our_rmse,
                "ours_median": our_cell["median"],
                "ours_flips": our_cell["flips"],
                "peer": peer_method,
                "peer_rmse": peer_rmse,
                "peer_median": peer_cell["median"],
                "peer_flips": peer_cell["flips"],
                "samples": problem.z.shape[0],
                "ratio": our_rmse / peer_rmse,
                "ratio_best_on_evaluation": best(ours, nfe, "rmse")[1]
                / best(peers, nfe, "rmse")[1],
                "ours_fixed_grid": fixed_method,
                "ours_fixed_grid_rmse": fixed_rmse,
                "ratio_fixed_grid": fixed_rmse / peer_rmse,
            }
        )
    out = {
        "ours": ours,
        "peers": peers,
        "search": search,
        "headline": headline,
        "reference_seconds": problem.reference_seconds,
    }
    out["diagnosis"] = {
        str(nfe): diagnose(problem, out, nfe, log) for nfe in HEADLINE_NFES if nfe in nfes
    }
    return out


def print_tables(name: str, result: dict[str, Any], nfes: tuple[int, ...]) -> None:
    print(f"\n{name}: endpoint RMSE per dimension vs the exact ODE from the same start")
    header = f"{'method':<44}" + "".join(f"{n:>9}" for n in nfes)
    print(header)
    print("-" * len(header))

    def row(title: str, cells: dict[int, dict[str, Any]]) -> None:
        values = [
            f"{cells[n]['rmse']:9.2e}" if "rmse" in cells.get(n, {}) else f"{'-':>9}" for n in nfes
        ]
        print(f"{title:<44}" + "".join(values))

    ours = result["ours"]
    by_solver: dict[str, dict[int, dict[str, Any]]] = {}
    for key, cells in ours.items():
        solver, grid, _ = (s.strip() for s in key.split("|"))
        group = f"ours {solver}" + (
            " (searched grid)" if grid == "searched" else " (best fixed grid)"
        )
        for n, cell in cells.items():
            if (
                "rmse" in cell
                and cell["rmse"]
                < by_solver.setdefault(group, {}).get(n, {"rmse": math.inf})["rmse"]
            ):
                by_solver[group][n] = cell
    for group in sorted(by_solver):
        row(group, by_solver[group])
    for key, cells in result["peers"].items():
        row(key, cells)
    print(f"\n{name}: best of ours vs best peer")
    for h in result["headline"]:
        print(
            f"  NFE {h['nfe']:>2}: ours {h['ours_rmse']:.2e} ({h['ours']}) | "
            f"peer {h['peer_rmse']:.2e} ({h['peer']}) | ratio {h['ratio']:.2f}"
        )
        print(
            f"          per-sample median: ours {h['ours_median']:.2e}, peer "
            f"{h['peer_median']:.2e}; flips (of {h['samples']}): ours {h['ours_flips']}, "
            f"peer {h['peer_flips']}"
        )
        print(
            f"          ours with a fixed grid {h['ours_fixed_grid_rmse']:.2e} "
            f"({h['ours_fixed_grid']}) | ratio {h['ratio_fixed_grid']:.2f}"
        )


def markdown(record: dict[str, Any]) -> str:
    """The README's headline table (NFE 10 and 20) from a saved record."""
    lines = [
        "| oracle | NFE | ours | our method | best peer | peer method | ratio "
        "| ours, fixed grid | ratio | mode flips, ours / peer |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for oracle, result in record["results"].items():
        for h in result["headline"]:
            if h["nfe"] not in HEADLINE_NFES:
                continue
            method = h["ours"].replace(" | ", ", ")  # "solver | grid | path"
            lines.append(
                f"| {oracle} | {h['nfe']} | {h['ours_rmse']:.2e} | {method} "
                f"| {h['peer_rmse']:.2e} | {h['peer']} | {h['ratio']:.2f} "
                f"| {h['ours_fixed_grid_rmse']:.2e} | {h['ratio_fixed_grid']:.2f} "
                f"| {h['ours_flips']} / {h['peer_flips']} of {h['samples']} |"
            )
    return "\n".join(lines)


def versions() -> dict[str, str]:
    import diffusers
    import scipy

    return {
        "interpolant": ip.__version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "k-diffusion": _peers.k_diffusion_version(),
        "scipy": scipy.__version__,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="64 samples, NFE 10 and 20, short searches"
    )
    parser.add_argument(
        "--samples", type=int, default=None, help="evaluation samples (default 256)"
    )
    parser.add_argument("--nfe", type=int, nargs="+", default=None)
    parser.add_argument("--oracles", nargs="+", default=list(ORACLES), choices=list(ORACLES))
    parser.add_argument("--budget", type=int, default=None, help="sampler runs per grid search")
    parser.add_argument(
        "--calibration",
        type=int,
        default=None,
        help="calibration samples of the grid searches (default: 512 ring2d, 256 lowrank64)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--markdown", action="store_true", help="print the README table from --out and exit"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        saved = json.loads(args.out.read_text())
        print(markdown(saved))
        return saved
    torch.set_num_threads(1)
    n_eval = args.samples or (64 if args.quick else 256)
    nfes = tuple(args.nfe or (HEADLINE_NFES if args.quick else NFES))
    budget = args.budget or (40 if args.quick else 400)
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f}s] {message}", flush=True)

    results = {}
    for name in args.oracles:
        n_cal = args.calibration or (64 if args.quick else CALIBRATION[name])
        problem = Problem(name, n_eval, n_cal)
        selection = Problem(name, n_eval, 0, eval_seed=SELECTION_SEED)
        results[name] = evaluate(problem, selection, nfes, budget, log)
        print_tables(name, results[name], nfes)
    record = {
        "benchmark": "sampler_oracle",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "samples": n_eval,
            "nfe": list(nfes),
            "rtol": RTOL,
            "quick": args.quick,
            "search_budget": budget,
            "calibration_samples": {
                n: args.calibration or (64 if args.quick else CALIBRATION[n]) for n in args.oracles
            },
            "eval_seed": 0,
            "calibration_seed": 1,
            "selection_seed": SELECTION_SEED,
        },
        "versions": versions(),
        "machine": machine(),
        "seconds": time.perf_counter() - start,
        "results": {
            name: {
                **r,
                "ours": {k: {str(n): c for n, c in v.items()} for k, v in r["ours"].items()},
                "peers": {k: {str(n): c for n, c in v.items()} for k, v in r["peers"].items()},
            }
            for name, r in results.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    log(f"saved {args.out}")
    return record


if __name__ == "__main__":
    main()
