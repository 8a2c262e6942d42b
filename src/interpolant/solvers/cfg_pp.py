"""CFG++ samplers (Chung et al. 2024, "CFG++: manifold-constrained classifier free guidance for
diffusion models"; ComfyUI's ``euler_cfg_pp``, ``euler_ancestral_cfg_pp`` and
``dpmpp_2m_cfg_pp``).

CFG++ keeps the guided data prediction D_c = D_u + w (D - D_u) but renoises with the
*unconditional* noise prediction eps_u (CFG renoises with the guided one): the DDIM / Euler step
of CFG++ (the paper's Alg. 1) is, in the EDM coordinates x_edm = x / alpha, s = sigma / alpha,

    x_edm' = D_c + s' eps_u                       (euler_cfg_pp)
    x_edm' = D_c + s_down eps_u + s_up z          (eta > 0: euler_ancestral_cfg_pp)

and ComfyUI's DPM-Solver++(2M) variant adds the multistep correction from the previous
*unconditional* data prediction D_u,1 (h = lambda' - lambda, r = h_1 / h, lambda = -log s):

    x_edm' = D_c + s' eps_u + (1 - e^{-h}) / (2 r) (D_c - D_u,1).

Without guidance (D_c = D_u = D) they are Euler and DPM-Solver++(2M). The paper's scale is
lambda in [0, 1] (the CFG weight w here; ComfyUI users take cfg ~ 1-2 with these samplers).

They need the library's CFG (``guidance.CFG``, or any reference guidance: autoguidance, CFG
rescale, APG, CFG-Zero*): the hook returns a :class:`~interpolant.predictions.GuidedPrediction`
that carries the unconditional prediction it evaluated (two model evaluations per step, both
counted in the NFE). Where the guidance weight is 1 (outside its interval) the hook does not
evaluate the reference and the step is the unguided one; ComfyUI evaluates the unconditional
model at every step instead, so at cfg = 1 its CFG++ step still renoises with eps_u.
ComfyUI's ``dpmpp_2m_cfg_pp`` works in sigma only (not flow models); this one is written in path
coordinates and runs on every Gaussian path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..configurable import number, option
from ..errors import UserError
from ..predictions import GuidedPrediction, Prediction
from .ancestral import ancestral_step
from .base import Node, Output, Run, Solver, State, exp_integrator_coeffs, register


def unconditional(pred: Prediction, solver: Solver, run: Run) -> Prediction:
    """The reference (unconditional) prediction a CFG hook attached to ``pred``; ``pred``
    itself where the hook did not guide (weight 1). A run with no reference-guidance hook at
    all is a mistake: it says so at the first step."""
    if isinstance(pred, GuidedPrediction):
        return pred.reference
    if run.index == 0:
        # A hook declares that its predictions carry their reference (guidance.CFG and the
        # other reference guidances do); solvers do not import guidance (layering).
        if not any(getattr(h, "provides_reference", False) for h in run.prediction_hooks):
            raise UserError(
                f"solver {solver.name!r} renoises with the unconditional prediction of "
                "classifier-free guidance: pass hooks=[guidance.CFG(w, null_cond=...)] "
                "(w in [0, 1] is the paper's range), or use the solver without '_cfg_pp'"
            )
    return pred


@register
@dataclass(frozen=True)
class EulerCFGPP(Solver):
    """Euler CFG++ (ComfyUI ``euler_cfg_pp``; ``eta`` > 0: ``euler_ancestral_cfg_pp``):
    x_edm' = D_c + s_down eps_u + s_up z (module docstring)."""

    name: ClassVar[str] = "euler_cfg_pp"
    needs_reference_guidance: ClassVar[bool] = True
    eta: float = option(0.0, help="ancestral noise (1: ComfyUI's euler_ancestral_cfg_pp)",
                        check=number(0))  # fmt: skip
    s_noise: float = option(1.0, help="scale of the fresh noise", check=number(0))

    @property
    def stochastic(self) -> bool:
        return self.eta > 0 and self.s_noise > 0

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        eps_u = unconditional(pred, self, run).eps
        s_down, s_up = ancestral_step(now.edm_sigma, nxt.edm_sigma, self.eta)
        x_edm = pred.x0 + s_down * eps_u
        if s_up > 0 and self.s_noise > 0:
            x_edm = x_edm + (self.s_noise * s_up) * run.noise(x_edm)
        return state.replace(x=nxt.alpha * x_edm)


@register
@dataclass(frozen=True)
class DPMSolverPP2MCFGPP(Solver):
    """DPM-Solver++(2M) CFG++ (ComfyUI ``dpmpp_2m_cfg_pp``): the module docstring's multistep
    step; the first step and the final step to sigma = 0 are Euler CFG++'s."""

    name: ClassVar[str] = "dpmpp_2m_cfg_pp"
    needs_reference_guidance: ClassVar[bool] = True

    @property
    def order(self) -> int:
        return 2

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        ref = unconditional(pred, self, run)
        _, one_minus_exp, h = exp_integrator_coeffs(now, nxt)
        d_c = pred.x0
        # alpha' (D_c + s' eps_u), written so that alpha = 0 at the start works.
        x = nxt.alpha * d_c + nxt.sigma * ref.eps
        prev = state.history
        if isinstance(prev, Output) and nxt.sigma > 0:
            c = 0.5 * h / (0.5 * (now.logsnr - prev.logsnr))  # 1 / (2 r)
            x = x + (nxt.alpha * one_minus_exp * c) * (d_c - prev.x0)
        return state.replace(x=x, history=Output(now.logsnr, ref.x0))


__all__ = ["DPMSolverPP2MCFGPP", "EulerCFGPP", "unconditional"]
