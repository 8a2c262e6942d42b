"""The sampler names users bring from diffusers, k-diffusion, A1111 and ComfyUI, mapped to ours.

Each entry is the :class:`Sampler` settings (solver with options, grid) that runs the same
method here, or ``None`` where the method is not implemented (yet) (the name is still known, so
the error says so instead of "unknown"). Where ours differs from the peer's (a corrected
coefficient), the note says how. ``peer_sampler(name, nfe=...)`` builds the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UserError


@dataclass(frozen=True)
class PeerName:
    """One peer's name for a sampler and what runs it here."""

    peer: str
    name: str
    solver: dict[str, Any] | None
    grid: str | dict[str, Any] | None = None
    note: str = ""


_THIRD_ORDER_NOTE = (
    "third-order coefficient corrected (theirs converges with order 2); "
    "third_order='k-diffusion' runs theirs"
)
_DPM_FAST_NOTE = "orders 3, ..., 3, 2, 1: a budget not a multiple of 3 spends 3 (steps - 1)"
_LCM_NOTE = "the boundary condition c_skip x + c_out F belongs to the model (wrap it)"
_SA_NOTE = "tau(t) on path time: 1 for t in [0.2, 0.8] (diffusers: timesteps 200-800)"
_ADAPTIVE_NOTE = "one adaptive step; its budget max_nfe is the nfe given (default 500)"
_PLMS_NOTE = "the first step is Heun's (diffusers' skip_prk_steps): steps + 1 evaluations"
_GPU_NOTE = "the Brownian path is ours on every device (ComfyUI's _gpu draws it on the GPU)"
_2M_SDE_HEUN = {"name": "dpmpp_2m_sde", "solver_type": "heun"}
_DEIS_COMFY_NOTE = "ComfyUI's deis runs order 3 in the log-rho basis, as ours"
_ER_SDE_NOTE = (
    "stage 3 integrates the quadratic through three points and S_1, S_2 by Gauss-Legendre "
    "(ComfyUI's converge with order 2, asymptotically 1); third_order='comfyui', "
    "quadrature='comfyui' run theirs"
)
_FRESH_NOISE_NOTE = "fresh normals per stage from the per-sample streams, as ComfyUI"
_CFG_PP_NOTE = (
    "needs hooks=[guidance.CFG(w, ...)] (2 NFE per step); at weight 1 the unconditional model "
    "is not evaluated (ComfyUI evaluates it)"
)
_IPNDM_V_NOTE = (
    "exact variable-step Adams-Bashforth weights (ComfyUI's converge with order 2); "
    "weights='comfyui' runs theirs"
)


def _entries() -> list[PeerName]:
    e = []

    def add(peer: str, name: str, solver: Any, grid: Any = None, note: str = "") -> None:
        solver = {"name": solver} if isinstance(solver, str) else solver
        e.append(PeerName(peer, name, solver, grid, note))

    # A1111 / Forge (sampler and scheduler in one name).
    for suffix, grid in (("", None), (" Karras", "karras"), (" Exponential", "polyexponential")):
        add("a1111", f"DPM++ 2M{suffix}", "dpmpp_2m", grid)
        add("a1111", f"DPM++ 2M SDE{suffix}", "dpmpp_2m_sde", grid)
        add("a1111", f"DPM++ 2M SDE Heun{suffix}", _2M_SDE_HEUN, grid)
        add("a1111", f"DPM++ 2S a{suffix}", "dpmpp_2s_ancestral", grid)
        add("a1111", f"DPM++ 3M SDE{suffix}", "dpmpp_3m_sde", grid, _THIRD_ORDER_NOTE)
        add("a1111", f"DPM++ SDE{suffix}", "dpmpp_sde", grid)
        add("a1111", f"DPM2{suffix}", "dpm_2", grid)
        add("a1111", f"DPM2 a{suffix}", "dpm_2_ancestral", grid)
    add("a1111", "Euler", "euler", "karras")
    add("a1111", "Euler a", "euler_ancestral", "karras")
    add("a1111", "Heun", "heun", "karras")
    add("a1111", "DDIM", "ddim", "uniform")
    add("a1111", "UniPC", "unipc", "logsnr")
    add("a1111", "DPM fast", "dpm_fast", "logsnr", _DPM_FAST_NOTE)
    add("a1111", "DPM adaptive", "dpm_adaptive", None, _ADAPTIVE_NOTE)
    add("a1111", "LMS", "lms", None)
    add("a1111", "LMS Karras", "lms", "karras")
    add("a1111", "PLMS", "plms", "uniform", _PLMS_NOTE)
    # ComfyUI sampler names (the scheduler is separate: see GRID_NAMES).
    for name, ours in (
        ("euler", "euler"),
        ("euler_ancestral", "euler_ancestral"),
        ("heun", "heun"),
        ("dpmpp_2m", "dpmpp_2m"),
        ("dpmpp_2m_sde", "dpmpp_2m_sde"),
        ("dpmpp_2s_ancestral", "dpmpp_2s_ancestral"),
        ("ddim", "ddim"),
        ("ddpm", {"name": "ddim", "eta": 1.0}),
        ("uni_pc", "unipc"),
        ("uni_pc_bh2", {"name": "unipc", "variant": "bh2"}),
        ("dpm_2", "dpm_2"),
        ("dpm_2_ancestral", "dpm_2_ancestral"),
        ("dpmpp_sde", "dpmpp_sde"),
    ):
        add("comfyui", name, ours)
    add("comfyui", "dpmpp_3m_sde", "dpmpp_3m_sde", None, _THIRD_ORDER_NOTE)
    add("comfyui", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde", None, _GPU_NOTE)
    add("comfyui", "dpmpp_3m_sde_gpu", "dpmpp_3m_sde", None, _GPU_NOTE)
    add("comfyui", "dpmpp_2m_sde_heun", _2M_SDE_HEUN)
    add("comfyui", "res_multistep", "res_multistep")
    add("comfyui", "res_multistep_ancestral", {"name": "res_multistep", "eta": 1.0})
    add("comfyui", "gradient_estimation", "gradient_estimation")
    add("comfyui", "ipndm_v", "ipndm_v", None, _IPNDM_V_NOTE)
    add("comfyui", "heunpp2", "heunpp2")
    add("comfyui", "er_sde", "er_sde", None, _ER_SDE_NOTE)
    add("comfyui", "seeds_2", "seeds_2", None, _FRESH_NOISE_NOTE)
    add("comfyui", "seeds_3", "seeds_3", None, _FRESH_NOISE_NOTE)
    add("comfyui", "exp_heun_2_x0", {"name": "seeds_2", "eta": 0.0, "r": 1.0,
        "solver_type": "phi_2"})  # fmt: skip
    add("comfyui", "exp_heun_2_x0_sde", {"name": "seeds_2", "r": 1.0, "solver_type": "phi_2"})
    add("comfyui", "euler_cfg_pp", "euler_cfg_pp", None, _CFG_PP_NOTE)
    add("comfyui", "euler_ancestral_cfg_pp", {"name": "euler_cfg_pp", "eta": 1.0}, None,
        _CFG_PP_NOTE)  # fmt: skip
    add("comfyui", "dpmpp_2m_cfg_pp", "dpmpp_2m_cfg_pp", None, _CFG_PP_NOTE)
    add("comfyui", "dpm_fast", "dpm_fast", "logsnr", _DPM_FAST_NOTE)
    add("comfyui", "dpm_adaptive", "dpm_adaptive", None, _ADAPTIVE_NOTE)
    add("comfyui", "lcm", "lcm", None, _LCM_NOTE)
    add("comfyui", "lms", "lms")
    add("comfyui", "ipndm", "ipndm")
    add("comfyui", "deis", {"name": "deis", "order": 3}, None, _DEIS_COMFY_NOTE)
    # k-diffusion functions.
    for name, ours in (
        ("sample_euler", "euler"),
        ("sample_euler_ancestral", "euler_ancestral"),
        ("sample_heun", "heun"),
        ("sample_dpmpp_2m", "dpmpp_2m"),
        ("sample_dpmpp_2m_sde", "dpmpp_2m_sde"),
        ("sample_dpmpp_2s_ancestral", "dpmpp_2s_ancestral"),
        ("sample_dpm_2", "dpm_2"),
        ("sample_dpm_2_ancestral", "dpm_2_ancestral"),
        ("sample_dpmpp_sde", "dpmpp_sde"),
    ):
        add("k-diffusion", name, ours, "karras")
    add("k-diffusion", "sample_dpmpp_3m_sde", "dpmpp_3m_sde", "karras", _THIRD_ORDER_NOTE)
    add("k-diffusion", "sample_dpm_fast", "dpm_fast", "logsnr", _DPM_FAST_NOTE)
    add("k-diffusion", "sample_dpm_adaptive", "dpm_adaptive", None, _ADAPTIVE_NOTE)
    add("k-diffusion", "sample_lms", "lms", "karras")
    # diffusers schedulers.
    for name, ours in (
        ("EulerDiscreteScheduler", "euler"),
        ("EulerAncestralDiscreteScheduler", "euler_ancestral"),
        ("HeunDiscreteScheduler", "heun"),
        ("DDIMScheduler", "ddim"),
        ("DDPMScheduler", {"name": "ddim", "eta": 1.0}),
        ("DPMSolverMultistepScheduler", "dpmpp_2m"),
        ("UniPCMultistepScheduler", "unipc"),
        ("DPMSolverSinglestepScheduler", "dpmpp_singlestep"),
        ("DPMSolverSinglestepScheduler(solver_order=3)", {"name": "dpmpp_singlestep",
                                                          "solver_order": 3}),
        ("KDPM2DiscreteScheduler", "dpm_2"),
        ("KDPM2AncestralDiscreteScheduler", "dpm_2_ancestral"),
        ("DPMSolverSDEScheduler", "dpmpp_sde"),
    ):  # fmt: skip
        add("diffusers", name, ours)
    add("diffusers", "LCMScheduler", "lcm", None, _LCM_NOTE)
    add("diffusers", "SASolverScheduler", "sa_solver", None, _SA_NOTE)
    add("diffusers", "DPMSolverMultistepScheduler(algorithm_type='sde-dpmsolver++')",
        {"name": "dpmpp_2m_sde", "noise": "independent"}, None,
        "diffusers draws fresh normals per step, not a Brownian path")  # fmt: skip
    add("diffusers", "DPMSolverMultistepScheduler(solver_order=3)", "dpmpp_3m", None,
        "third-order coefficient corrected (diffusers' converges with order 2)")  # fmt: skip
    add("diffusers", "LMSDiscreteScheduler", "lms")
    add("diffusers", "PNDMScheduler(skip_prk_steps=True)", "plms", None, _PLMS_NOTE)
    add("diffusers", "PNDMScheduler", "pndm", "uniform",
        "three pseudo Runge-Kutta steps first: steps + 9 evaluations")  # fmt: skip
    add("diffusers", "DEISMultistepScheduler", "deis")
    add("diffusers", "DEISMultistepScheduler(solver_order=3)", {"name": "deis", "order": 3})
    add("diffusers", "IPNDMScheduler", "ipndm")
    return e


PEER_NAMES: tuple[PeerName, ...] = tuple(_entries())

#: Schedulers (grids) by peer name: ComfyUI / A1111 scheduler names and diffusers' flags.
GRID_NAMES: dict[str, str | None] = {
    "karras": "karras",
    "exponential": "polyexponential",
    "beta": "beta",
    "normal": "uniform",
    "simple": "uniform",
    "sgm_uniform": "uniform",
    "use_karras_sigmas": "karras",
    "use_exponential_sigmas": "polyexponential",
    "use_beta_sigmas": "beta",
    "ddim_uniform": None,
    "align_your_steps": "ays",  # the sd1 table; {"name": "ays", "model": "sdxl"} for SD-XL
}


def find_peer_name(name: str, peer: str | None = None) -> PeerName:
    """The entry for a peer's sampler name: exact spelling first, then case-insensitive;
    ``peer`` ("a1111", "comfyui", "k-diffusion", "diffusers") decides between peers."""
    pool = [p for p in PEER_NAMES if peer is None or p.peer == peer]
    matches = [p for p in pool if p.name == name] or [
        p for p in pool if p.name.lower() == name.lower()
    ]
    if len(matches) > 1:
        peers = ", ".join(p.peer for p in matches)
        raise UserError(f"{name!r} is a sampler name of {peers}: say which with peer=")
    if not matches:
        known = sorted({p.name for p in PEER_NAMES})
        raise UserError(f"unknown peer sampler name {name!r}; known names: {', '.join(known)}")
    return matches[0]


def peer_sampler(name: str, peer: str | None = None, **options: Any) -> Any:
    """Our :class:`Sampler` for a peer's sampler name, e.g. ``peer_sampler("DPM++ 2M Karras",
    nfe=20)``; ``options`` are the spec's (nfe, steps, seed, ...)."""
    from .base import SOLVERS
    from .spec import Sampler

    entry = find_peer_name(name, peer)
    if entry.solver is None:
        hint = f" ({entry.note})" if entry.note else ""
        raise UserError(f"{entry.peer}'s {entry.name!r} is not implemented here yet{hint}")
    if entry.grid is not None:
        options.setdefault("grid", entry.grid)
    solver = dict(entry.solver)
    budget = getattr(SOLVERS[solver["name"]], "budget_option", None)
    if budget is not None and options.get("nfe") is not None:
        # A solver that picks its own steps (dpm_adaptive): the NFE is its budget, in one step.
        solver.setdefault(budget, options.pop("nfe"))
        options.setdefault("steps", 1)
    return Sampler(solver, **options)


def format_peer_names() -> str:
    """The table ``interpolant info --samplers`` prints."""
    lines = [f"{'peer':<12} {'name':<62} ours"]
    for p in PEER_NAMES:
        if p.solver is None:
            ours = "not implemented yet"
        else:
            options = {k: v for k, v in p.solver.items() if k != "name"}
            ours = p.solver["name"] + (f" {options}" if options else "")
            ours += f", grid {p.grid}" if p.grid else ""
        lines.append(f"{p.peer:<12} {p.name:<62} {ours}" + (f"  [{p.note}]" if p.note else ""))
    lines.append("")
    lines.append(
        "schedulers: " + ", ".join(f"{k} -> {v or 'not yet'}" for k, v in GRID_NAMES.items())
    )
    return "\n".join(lines)


__all__ = [
    "GRID_NAMES",
    "PEER_NAMES",
    "PeerName",
    "find_peer_name",
    "format_peer_names",
    "peer_sampler",
]
