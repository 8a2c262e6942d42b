"""The oracle problems of ``sampler_oracle.py`` and the peers' samplers driven on them.

A :class:`Problem` is one oracle (an exact Gaussian-mixture denoiser), one set of standard normal
draws and a cache of exact ODE solutions from those draws. The peers (diffusers 0.42 schedulers,
k-diffusion samplers) get the same exact model; each run is scored against the exact ODE from
its own start state at its own initial noise level to its own final one (see the benchmark's
docstring).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor

import _peers
import interpolant as ip
from interpolant.data.oracles import ORACLES, GaussianMixture
from interpolant.paths import EDM, Linear, VPLinear
from interpolant.solvers.adaptive import angle_field, odeint_dopri5, reference_sample

#: Tolerance of the reference solutions (float64 Dormand-Prince in the angle variable; its
#: error is ~1e-8, far below the errors measured).
RTOL = 1e-9
PATHS = {"edm": EDM, "vp": VPLinear, "linear": Linear}
#: A sample whose own RMSE exceeds this ended in another mode than the exact ODE (a "flip").
FLIP = 0.5


def error_stats(x: Tensor, ref: Tensor) -> dict[str, Any]:
    """RMSE over all samples and dimensions, the per-sample RMSE's median and 99th percentile,
    and the count of mode flips (per-sample RMSE > FLIP)."""
    per_sample = (x.to(torch.float64) - ref).square().flatten(1).mean(1).sqrt()
    return {
        "rmse": float(per_sample.square().mean().sqrt()),
        "median": float(per_sample.median()),
        "p99": float(torch.quantile(per_sample, 0.99)),
        "flips": int((per_sample > FLIP).sum()),
    }


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
    """One oracle, one set of draws (``n`` standard normals from ``seed``), and a cache of exact
    ODE solutions from them.

    Every sampler reaches the model through :meth:`model_on` (ours, the references) or
    :meth:`denoise` (the peers), so a subclass with another model (``sampler_trained.py``: a
    trained network) reuses the peer runners and the references unchanged."""

    #: Reference tolerances (a trained network's field is rougher: it may use looser ones).
    rtol = RTOL

    def __init__(self, name: str, n: int, seed: int) -> None:
        self.name, self.gmm, self.seed = name, ORACLES[name](), seed
        generator = torch.Generator().manual_seed(seed)
        self.z = torch.randn(n, self.gmm.dim, generator=generator, dtype=torch.float64)
        self._refs: dict[Any, Tensor] = {}
        self.reference_seconds = 0.0

    def model_on(self, path: Any) -> ip.Model:
        """The model on ``path`` (here the oracle's exact denoiser)."""
        return oracle_model(self.gmm, path)

    def denoise(self, x: Tensor, sigma: float) -> Tensor:
        """E[x0 | x0 + sigma n = x] in float64 (the peers' denoiser at EDM noise level sigma)."""
        return edm_denoiser(self.gmm, x, sigma)

    def score(self, x: Tensor, ref: Tensor) -> dict[str, Any]:
        """The scores of samples ``x`` against the exact ones (a subclass may add its own)."""
        return error_stats(x, ref)

    def path_reference(self, path_name: str) -> Tensor:
        """Exact endpoint from x = sigma(1) z on one of our paths (k-diffusion's: EDM)."""
        key = ("path", path_name)
        if key not in self._refs:
            start = time.perf_counter()
            model = self.model_on(PATHS[path_name]())
            self._refs[key] = reference_sample(model, self.z, rtol=self.rtol, atol=self.rtol)
            self.reference_seconds += time.perf_counter() - start
        return self._refs[key]

    def vp_reference(self, sigma_start: float, sigma_end: float) -> Tensor:
        """Exact VP-scaled state x / sqrt(1 + s^2) at EDM noise level ``sigma_end`` from the
        VP-scaled state z at ``sigma_start`` (diffusers' runs); starts equal to 1e-6 share one."""
        key = ("vp", float(f"{sigma_start:.7g}"), float(f"{sigma_end:.7g}"))
        if key not in self._refs:
            start = time.perf_counter()
            field, theta_max, _ = angle_field(self.model_on(EDM(sigma_start)), 1.0)
            self._refs[key] = odeint_dopri5(
                field, self.z, theta_max, math.atan(sigma_end), rtol=self.rtol, atol=self.rtol
            )[0]
            self.reference_seconds += time.perf_counter() - start
        return self._refs[key]


# -- diffusers -----------------------------------------------------------------------------------

#: (label, scheduler, options); each also runs with use_karras_sigmas where the scheduler has it.
DIFFUSERS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("ddim", "DDIMScheduler", {"clip_sample": False, "timestep_spacing": "trailing"}),
    ("dpmpp_2m", "DPMSolverMultistepScheduler", {"solver_order": 2}),
    ("dpmpp_3m", "DPMSolverMultistepScheduler", {"solver_order": 3}),
    ("unipc2", "UniPCMultistepScheduler", {"solver_order": 2}),
    ("unipc3", "UniPCMultistepScheduler", {"solver_order": 3}),
    ("deis2", "DEISMultistepScheduler", {"solver_order": 2}),
    ("deis3", "DEISMultistepScheduler", {"solver_order": 3}),
    ("euler", "EulerDiscreteScheduler", {}),
    ("heun", "HeunDiscreteScheduler", {}),
    ("lms", "LMSDiscreteScheduler", {}),
    ("plms", "PNDMScheduler", {"skip_prk_steps": True, "timestep_spacing": "trailing"}),
)
NO_KARRAS = ("DDIMScheduler", "PNDMScheduler")
#: Schedulers whose x is the unscaled state (x_edm); the others keep x / sqrt(1 + s^2).
UNSCALED = ("EulerDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler")
#: The peers' defaults: diffusers' DPMSolverMultistepScheduler() and k-diffusion's DPM++ 2M on
#: Karras sigmas 0.002..80 (A1111's "DPM++ 2M Karras").
PEER_DEFAULTS = ("diffusers dpmpp_2m", "k-diffusion dpmpp_2m")


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
        eps = (x_edm - problem.denoise(x_edm, s)) / s
        x = scheduler.step(eps.to(dtype), t, x).prev_sample
    if not bool(torch.isfinite(x).all()):
        raise FloatingPointError("non-finite sample")
    return x, sigma_at(0, scheduler.timesteps[0])


def _steps_for(cls_name: str, nfe: int) -> int:
    if cls_name == "HeunDiscreteScheduler":
        return (nfe + 1) // 2
    if cls_name == "PNDMScheduler":
        return nfe - 1  # PLMS's first step costs two evaluations
    return nfe


def run_diffusers(
    problem: Problem, cls_name: str, options: dict[str, Any], nfe: int
) -> dict[str, Any]:
    import diffusers

    cls = getattr(diffusers, cls_name)
    failures = []
    for dtype in (torch.float64, torch.float32):
        scheduler = cls(
            num_train_timesteps=1000,
            beta_start=1e-4,
            beta_end=0.02,
            beta_schedule="linear",
            **options,
        )
        scheduler.set_timesteps(_steps_for(cls_name, nfe))
        try:
            x, sigma_start = _drive_scheduler(problem, scheduler, dtype)
            break
        except (RuntimeError, FloatingPointError, ValueError) as err:
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
    x_vp = x.to(torch.float64) / (math.sqrt(1.0 + sigma_end**2) if cls_name in UNSCALED else 1.0)
    out = {
        **problem.score(x_vp, problem.vp_reference(sigma_start, sigma_end)),
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
        to_data = problem.score(x_vp, problem.vp_reference(sigma_start, 0.0))
        out["rmse_to_data"] = to_data["rmse"]
        if to_data["rmse"] < out["rmse"]:
            out.update(to_data)
    return out


# -- k-diffusion ---------------------------------------------------------------------------------

#: (function, model evaluations per step, keyword options).
K_DIFFUSION: tuple[tuple[str, int, dict[str, Any]], ...] = (
    ("euler", 1, {}),
    ("heun", 2, {}),
    ("lms", 1, {}),
    ("dpm_2", 2, {}),
    ("dpmpp_2m", 1, {}),
    ("dpmpp_3m_sde", 1, {"eta": 0.0}),
)


def run_k_diffusion(
    problem: Problem, name: str, evals_per_step: int, options: dict[str, Any], nfe: int
) -> dict[str, Any]:
    sampling = _peers.load_k_diffusion_sampling()
    steps = (nfe + 1) // 2 if evals_per_step == 2 else nfe
    sigmas = sampling.get_sigmas_karras(steps, 0.002, 80.0, rho=7.0).to(torch.float64)
    calls = 0

    def denoiser(x: Tensor, sigma: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        return problem.denoise(x, float(sigma[0]))

    x = getattr(sampling, f"sample_{name}")(
        denoiser, problem.z * 80.0, sigmas, disable=True, **options
    )
    return {**problem.score(x, problem.path_reference("edm")), "nfe": calls}


def peer_configs() -> dict[str, tuple[Any, ...]]:
    """Every peer configuration: label -> (runner, *arguments before nfe)."""
    out: dict[str, tuple[Any, ...]] = {}
    for label, cls_name, options in DIFFUSERS:
        out[f"diffusers {label}"] = (run_diffusers, cls_name, options)
        if cls_name not in NO_KARRAS:
            karras = {**options, "use_karras_sigmas": True}
            out[f"diffusers {label} karras"] = (run_diffusers, cls_name, karras)
    for name, evals, options in K_DIFFUSION:
        label = name + "".join(f" {k}={v}" for k, v in options.items())
        out[f"k-diffusion {label}"] = (run_k_diffusion, name, evals, options)
    return out


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
