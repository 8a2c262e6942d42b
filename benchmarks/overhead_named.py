"""Sampler overhead of the named samplers (issue 12): ours vs the peer's own implementation.

What is timed, as in ``benchmarks/overhead.py`` (whose timing helpers this reuses): a whole
sampling run of ``--steps`` steps with a near-free model (x0 = 0.5 x on the EDM path, sigma from
80), divided by its number of model evaluations, so the time is the sampler's own work per
evaluation. Each pair runs the same method on the same Karras grid (k-diffusion) or the peer's
own schedule (diffusers), float32, ``torch.set_num_threads(1)``, interleaved rounds, median:

* k-diffusion: ``sample_dpm_2``, ``sample_dpm_2_ancestral``, ``sample_euler`` with churn,
  ``sample_dpmpp_sde`` and ``sample_dpmpp_3m_sde`` (their default noise: a torchsde
  ``BrownianTreeNoiseSampler``, against our per-sample Brownian tree), ``sample_dpm_fast``;
* diffusers: ``DPMSolverSinglestepScheduler`` (2S), ``SASolverScheduler``, ``LCMScheduler``,
  ``KDPM2DiscreteScheduler``;
* the linear multistep solvers of ``solvers/multistep_peers.py``: DEIS orders 2 and 3 against
  diffusers' ``DEISMultistepScheduler(solver_order=k)``, LMS (order 4) against k-diffusion's
  ``sample_lms`` and diffusers' ``LMSDiscreteScheduler`` (both compute their weights with
  ``scipy.integrate.quad`` each step), PLMS against ``PNDMScheduler(skip_prk_steps=True)``
  (``steps + 1`` evaluations on both sides: the Heun first step) and iPNDM against
  ``IPNDMScheduler``.

Run ``python benchmarks/overhead_named.py`` (``--quick`` for a smoke run); results go to
``benchmarks/results/overhead_named.json``. With ``--samplers NAME ...`` only those rows run and
are merged into an existing ``--out`` (rows of the same sampler, peer and batch are replaced, the
others kept); each row records its own date, steps and rounds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _peers
import interpolant as ip
import overhead

DIM = 64
RESULTS = Path(__file__).resolve().parent / "results" / "overhead_named.json"
Runner = Callable[[], torch.Tensor]


def ours(solver: dict, steps: int, noise: torch.Tensor) -> Runner:
    model = ip.Model(lambda x, t: x * 0.5, ip.paths.EDM(), predicts="x0")
    spec = ip.solvers.Sampler(solver, steps=steps, grid="karras", seed=0)
    return lambda: ip.sample(model, noise, spec).x


def k_diffusion(name: str, steps: int, noise: torch.Tensor, **options) -> Runner:
    sampling = _peers.load_k_diffusion_sampling()
    fn = getattr(sampling, name)

    def run() -> torch.Tensor:
        if name == "sample_dpm_fast":
            return fn(lambda x, s: x * 0.5, noise * 80.0, 0.002, 80.0, steps, disable=True)
        sigmas = sampling.get_sigmas_karras(steps, 0.002, 80.0)
        return fn(lambda x, s: x * 0.5, noise * 80.0, sigmas, disable=True, **options)

    return run


def diffusers_loop(scheduler_name: str, steps: int, noise: torch.Tensor, **options) -> Runner:
    import diffusers

    # KDPM2 and PNDM have no x0 ("sample") prediction: they get eps = 0.5 x, as free; IPNDM
    # takes no prediction type (its output is read as a v-prediction), also 0.5 x.
    if scheduler_name.startswith(("KDPM2", "PNDM")):
        options = {"prediction_type": "epsilon", **options}
    elif scheduler_name != "IPNDMScheduler":
        options = {"prediction_type": "sample", **options}
    scheduler = getattr(diffusers, scheduler_name)(**options)

    def run() -> torch.Tensor:
        scheduler.set_timesteps(steps)
        x = noise * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(x, t)
            x = scheduler.step(model_input * 0.5, t, x).prev_sample
        return x

    return run


# (ours, its NFE per run for `steps` steps, peer label, the peer runner, the peer's NFE per run)
def pairs(steps: int, noise: torch.Tensor) -> dict[str, tuple[Runner, int, str, Runner, int]]:
    two = 2 * steps - 1
    return {
        "dpm_2": (ours({"name": "dpm_2"}, steps, noise), two, "k-diffusion",
                  k_diffusion("sample_dpm_2", steps, noise), two),
        "dpm_2_ancestral": (ours({"name": "dpm_2_ancestral"}, steps, noise), two, "k-diffusion",
                            k_diffusion("sample_dpm_2_ancestral", steps, noise), two),
        "euler churn": (ours({"name": "euler", "s_churn": 10.0}, steps, noise), steps,
                        "k-diffusion", k_diffusion("sample_euler", steps, noise, s_churn=10.0),
                        steps),
        "dpmpp_sde": (ours({"name": "dpmpp_sde"}, steps, noise), two, "k-diffusion",
                      k_diffusion("sample_dpmpp_sde", steps, noise), two),
        "dpmpp_3m_sde": (ours({"name": "dpmpp_3m_sde"}, steps, noise), steps, "k-diffusion",
                         k_diffusion("sample_dpmpp_3m_sde", steps, noise), steps),
        "dpm_fast": (ours({"name": "dpm_fast"}, steps // 3 + 1, noise), 3 * (steps // 3),
                     "k-diffusion", k_diffusion("sample_dpm_fast", 3 * (steps // 3), noise),
                     3 * (steps // 3)),
        "dpmpp_singlestep": (ours({"name": "dpmpp_singlestep"}, steps, noise), steps, "diffusers",
                             diffusers_loop("DPMSolverSinglestepScheduler", steps, noise), steps),
        "sa_solver": (ours({"name": "sa_solver"}, steps, noise), steps, "diffusers",
                      diffusers_loop("SASolverScheduler", steps, noise), steps),
        "lcm": (ours({"name": "lcm"}, steps, noise), steps, "diffusers",
                diffusers_loop("LCMScheduler", steps, noise, original_inference_steps=steps),
                steps),
        "dpm_2 (diffusers)": (ours({"name": "dpm_2"}, steps, noise), two, "diffusers",
                              diffusers_loop("KDPM2DiscreteScheduler", steps, noise), 2 * steps),
        "deis-2": (ours({"name": "deis", "order": 2}, steps, noise), steps, "diffusers",
                   diffusers_loop("DEISMultistepScheduler", steps, noise, solver_order=2), steps),
        "deis-3": (ours({"name": "deis", "order": 3}, steps, noise), steps, "diffusers",
                   diffusers_loop("DEISMultistepScheduler", steps, noise, solver_order=3), steps),
        "lms": (ours({"name": "lms"}, steps, noise), steps, "k-diffusion",
                k_diffusion("sample_lms", steps, noise), steps),
        "lms (diffusers)": (ours({"name": "lms"}, steps, noise), steps, "diffusers",
                            diffusers_loop("LMSDiscreteScheduler", steps, noise), steps),
        "plms": (ours({"name": "plms"}, steps, noise), steps + 1, "diffusers",
                 diffusers_loop("PNDMScheduler", steps, noise, skip_prk_steps=True), steps + 1),
        "ipndm": (ours({"name": "ipndm"}, steps, noise), steps, "diffusers",
                  diffusers_loop("IPNDMScheduler", steps, noise), steps),
    }  # fmt: skip


def merged(old: dict, new: dict) -> dict:
    """``new`` with the rows of ``old`` that it does not redo (same sampler, peer and batch)
    kept after them; old rows without their own date, steps and rounds get the old record's."""
    done = {(r["sampler"], r["peer"], r["batch"]) for r in new["results"]}
    kept = [
        {"date": old["date"], "steps": old["steps"], "rounds": old["rounds"], **r}
        for r in old["results"]
        if (r["sampler"], r["peer"], r["batch"]) not in done
    ]
    if old.get("versions") != new["versions"]:
        kept = [{"versions": old.get("versions"), **r} for r in kept]
    return {**new, "results": kept + new["results"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds (a smoke run)")
    parser.add_argument("--steps", type=int, default=20, help="steps per sampling run")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4096])
    parser.add_argument(
        "--samplers", nargs="+", help="only these rows, merged into --out (default: all, replace)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    known = pairs(args.steps, torch.zeros(1, DIM))
    unknown = sorted(set(args.samplers or ()) - set(known))
    if unknown:
        parser.error(f"unknown --samplers {unknown}; the rows are {sorted(known)}")
    torch.set_num_threads(1)
    rounds = 3 if args.quick else 9
    results = []
    for batch in args.batches:
        noise = torch.randn(batch, DIM, generator=torch.Generator().manual_seed(0))
        for name, (mine, nfe, peer, theirs, peer_nfe) in pairs(args.steps, noise).items():
            if args.samplers and name not in args.samplers:
                continue
            times = overhead.time_per_step({"ours": mine, "peer": theirs}, 1, rounds)
            us_ours = statistics.median(times["ours"]) / nfe
            us_peer = statistics.median(times["peer"]) / peer_nfe
            results.append({"sampler": name, "peer": peer, "batch": batch, "date": date,
                            "steps": args.steps, "rounds": rounds,
                            "us_per_eval": {"ours": us_ours, "peer": us_peer},
                            "ratio": us_ours / us_peer})  # fmt: skip
            print(f"batch {batch:5d}  {name:18s} ours {us_ours:9.0f} us/eval  {peer:11s} "
                  f"{us_peer:9.0f} us/eval  ratio {us_ours / us_peer:.2f}")  # fmt: skip
    record = {
        "date": date,
        "machine": overhead.machine(),
        "versions": overhead.versions(),
        "steps": args.steps,
        "rounds": rounds,
        "results": results,
    }
    if args.samplers and args.out.exists():
        record = merged(json.loads(args.out.read_text()), record)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
