"""DiffusionMBIR: 3-D reconstruction with a 2-D diffusion prior and z-axis total variation
(Chung et al., CVPR 2023, seed paper 27).

The volume X of shape (D, H, W) is a stack of slices; a 2-D model is the prior of each slice and
the measurement y = A X acts slice by slice (CT projections, MRI k-space). The slices are coupled
by total variation along z, solved by ADMM on

    min_X 1/2 ||A X - y||^2 + lambda ||D_z X||_1,    split Z = D_z X, scaled dual U,

with ONE ADMM iteration (one conjugate-gradient step for the X-update) after each diffusion step
(Alg. 1 of the paper, "fast" variant of ``controllable_generation_TV.py``):

    X <- CG(A^T A + rho D_z^T D_z, A^T y + rho D_z^T (Z - U), init = X, 1 iteration)
    Z <- soft(D_z X + U, lambda / rho)
    U <- U + D_z X - Z

Z and U persist across diffusion steps (warm start): they are the per-run state
(:class:`Splitting`) of the hook. D_z is the forward difference along z with a circular
boundary. Defaults: lambda = 0.04, rho = 10 (8-view CT of the official scripts). The diffusion
steps themselves run slice-wise in the one sampling loop (the slices are its batch); the ADMM
iteration is a step hook acting on the whole volume. On paths with alpha != 1 the iteration acts
on x / alpha (the paper's VE path has alpha = 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from typing_extensions import Unpack

from ..errors import UserError
from ..predictions import Model
from ..solvers import Hook, Run, Sampler, State, Step, as_sampler, sample
from ..solvers.grids import Uniform
from ..solvers.sde import PredictorCorrector
from ..solvers.spec import SamplerOptions
from .base import Operator, Reconstruction, seeded, start_noise
from .operators import MatrixOperator

#: The paper's sampler: predictor-corrector (ancestral predictor, one Langevin corrector step,
#: snr 0.16) with 200 model evaluations on a uniform grid, float64 arithmetic.
MBIR_SAMPLER = Sampler(
    PredictorCorrector(), nfe=200, grid=Uniform(), solver_dtype="float64", seed=0
)


class SliceOperator(Operator):
    """A 2-D operator (on (C, H, W) slices) applied to every slice of volumes (D, C, H, W);
    y has shape (D, *y_shape of the slice operator)."""

    def __init__(self, slice_operator: Operator, depth: int) -> None:
        if depth < 1:
            raise UserError(f"depth must be >= 1, got {depth}")
        super().__init__((depth, *slice_operator.x_shape), slice_operator.noise_std)
        self.slice_operator, self.depth = slice_operator, int(depth)
        self.linear = slice_operator.linear

    def forward(self, x: Tensor) -> Tensor:
        out = self.slice_operator(x.reshape(-1, *self.slice_operator.x_shape))
        return out.reshape(x.shape[0], self.depth, *out.shape[1:])

    def adjoint(self, y: Tensor) -> Tensor:
        out = self.slice_operator.adjoint(y.reshape(-1, *y.shape[2:]))
        return out.reshape(y.shape[0], *self.x_shape)


def diff_z(x: Tensor) -> Tensor:
    """D_z X: forward difference along z (dim 1), circular: (D_z X)_k = X_{k+1} - X_k."""
    return torch.roll(x, -1, dims=1) - x


def diff_z_adjoint(g: Tensor) -> Tensor:
    """D_z^T G: (D_z^T G)_k = G_{k-1} - G_k (circular)."""
    return torch.roll(g, 1, dims=1) - g


def soft_threshold(v: Tensor, threshold: float) -> Tensor:
    """prox of threshold * ||.||_1: sign(v) max(|v| - threshold, 0)."""
    return torch.sign(v) * (v.abs() - threshold).clamp_min(0)


def _dot(a: Tensor, b: Tensor, batch_dims: int) -> Tensor:
    """Inner products over all but the first ``batch_dims`` dimensions, kept broadcastable."""
    out = (a * b).flatten(batch_dims).sum(-1)
    return out.reshape(*out.shape, *[1] * (a.ndim - batch_dims))


def cg(
    apply: Callable[[Tensor], Tensor],
    rhs: Tensor,
    x: Tensor,
    iterations: int = 1,
    batch_dims: int = 1,
) -> Tensor:
    """Conjugate gradients on apply(x) = rhs (symmetric positive semi-definite for each index
    of the first ``batch_dims`` dimensions) from ``x``; the paper runs one iteration per
    diffusion step. ``batch_dims = 2`` on volumes (B, D, ...) solves every slice on its own
    (valid when ``apply`` does not couple slices)."""
    r = rhs - apply(x)
    p, rr = r, _dot(r, r, batch_dims)
    for _ in range(iterations):
        q = apply(p)
        pq = _dot(p, q, batch_dims)
        step = torch.where(pq > 0, rr / torch.where(pq > 0, pq, 1.0), 0.0)
        x, r = x + step * p, r - step * q
        rr_new = _dot(r, r, batch_dims)
        if float(rr_new.max()) == 0.0:
            break
        p = r + torch.where(rr > 0, rr_new / torch.where(rr > 0, rr, 1.0), 0.0) * p
        rr = rr_new
    return x


@dataclass
class Splitting:
    """The ADMM variables that persist across iterations (and diffusion steps): the split
    Z (= D_z X at convergence) and the scaled dual U; None before the first iteration."""

    z: Tensor | None = None
    u: Tensor | None = None


class ADMMTV:
    """The ADMM-TV iteration of DiffusionMBIR on volumes (B, D, ...); its variables (Z, U) are a
    :class:`Splitting` passed to every call.

    ``rho = 0`` turns the coupling off: the X-update is then a CG step on A^T A X = A^T y alone
    (independent slices with data consistency).
    """

    def __init__(
        self,
        operator: Operator,
        y: Tensor,
        tv_weight: float = 0.04,
        rho: float = 10.0,
        cg_iterations: int = 1,
    ) -> None:
        if tv_weight < 0 or rho < 0:
            raise UserError(f"tv_weight and rho must be >= 0, got {tv_weight}, {rho}")
        if not operator.linear:
            raise UserError(f"ADMM-TV needs a linear operator, got {type(operator).__name__}")
        self.operator, self.y = operator, y
        self.tv_weight, self.rho, self.cg_iterations = float(tv_weight), float(rho), cg_iterations
        self.aty = operator.adjoint(y)

    def normal(self, x: Tensor) -> Tensor:
        """(A^T A + rho D_z^T D_z) X."""
        out = self.operator.adjoint(self.operator(x))
        return out + self.rho * diff_z_adjoint(diff_z(x)) if self.rho > 0 else out

    def x_update(self, x: Tensor, split: Splitting, iterations: int | None = None) -> Tensor:
        """CG on (A^T A + rho D_z^T D_z) X = A^T y + rho D_z^T (Z - U) from X."""
        rhs = self.aty.to(x)
        if self.rho > 0:
            z, u = _zu(x, split)
            rhs = rhs + self.rho * diff_z_adjoint(z - u)
        # Without coupling (rho = 0) every slice takes its own CG step.
        batch_dims = 1 if self.rho > 0 else 2
        n_iter = self.cg_iterations if iterations is None else iterations
        return cg(self.normal, rhs, x, n_iter, batch_dims)

    def zu_update(self, x: Tensor, split: Splitting) -> None:
        """Z <- soft(D_z X + U, lambda / rho); U <- U + D_z X - Z."""
        if self.rho == 0:
            return
        _, u = _zu(x, split)
        dx = diff_z(x)
        split.z = soft_threshold(dx + u, self.tv_weight / self.rho)
        split.u = u + dx - split.z

    def __call__(self, x: Tensor, split: Splitting) -> Tensor:
        """One ADMM iteration from X (updates Z, U in ``split``); returns the new X."""
        x = self.x_update(x, split)
        self.zu_update(x, split)
        return x


def _zu(x: Tensor, split: Splitting) -> tuple[Tensor, Tensor]:
    if split.z is None or split.u is None:
        split.z, split.u = torch.zeros_like(x), torch.zeros_like(x)
    return split.z.to(x), split.u.to(x)


class VolumeADMM(Hook[Splitting]):
    """Step hook: the slices of the loop's batch (B * D, C, H, W) form B volumes; after each
    diffusion step one ADMM-TV iteration acts on each volume (on x / alpha, rescaled back)."""

    def __init__(self, admm: ADMMTV, depth: int) -> None:
        self.admm, self.depth = admm, depth

    def start(self, run: Run) -> Splitting:
        return Splitting()

    def on_step(self, x_state: State, step: Step, run: Run, state: Splitting) -> State:
        node = step.nxt
        if node.alpha == 0:
            return x_state
        x = x_state.x
        vol = (x / node.alpha).reshape(-1, self.depth, *x.shape[1:])
        vol = self.admm(vol, state)
        return x_state.replace(x=node.alpha * vol.reshape(x.shape))


def _check_slices(operator: SliceOperator, couple: bool, final_consistency: bool) -> None:
    """Refuse what DiffusionMBIR cannot use: one slice with z-coupling (z-TV of a single slice
    is empty, so the method is not what it says), and a slice operator with negative entries
    with the final consistency step (X += A^T r / (A^T A 1) is SIRT's normalisation, a descent
    step only for nonnegative A such as CT, masks or blur; for a dense Gaussian matrix A^T A 1
    has either sign and near-zero entries and the step blows the residual up)."""
    if not operator.slice_operator.linear:
        raise UserError(
            "DiffusionMBIR needs a linear slice operator, got "
            f"{type(operator.slice_operator).__name__}"
        )
    if couple and operator.depth < 2:
        raise UserError(
            "DiffusionMBIR couples slices by TV along z: a volume of depth 1 has nothing to "
            "couple; use couple=False (the 2-D baseline) or a 2-D solver (inverse.solve)"
        )
    if final_consistency and isinstance(operator.slice_operator, MatrixOperator):
        if bool((operator.slice_operator.matrix < 0).any()):
            raise UserError(
                "the final consistency step X += A^T (y - A X) / (A^T A 1) needs a nonnegative "
                f"operator (CT, masks, blur); the dense {type(operator.slice_operator).__name__} "
                "has negative entries: pass final_consistency=False"
            )


def diffusion_mbir(
    model: Model,
    operator: Operator,
    y: Tensor,
    sampler: Sampler | None = None,
    *,
    tv_weight: float = 0.04,
    rho: float = 10.0,
    cg_iterations: int = 1,
    couple: bool = True,
    final_consistency: bool = True,
    **shortcuts: Unpack[SamplerOptions],
) -> Reconstruction:
    """Reconstruct volumes X (B, D, C, H, W) from y = A X with a 2-D slice prior ``model`` and
    z-TV coupled by ADMM (one ADMM/CG iteration per diffusion step).

    ``operator`` acts on volumes (a :class:`SliceOperator` of a 2-D operator on (C, H, W)).
    ``couple=False`` is the 2-D baseline: the same sampler and data-consistency CG step on each
    slice alone (rho = 0, no TV). ``final_consistency`` ends with the paper's step
    X <- X + A^T (y - A X) / (A^T A 1) (where A^T A 1 > 0). The sampler is
    :data:`MBIR_SAMPLER` (the paper's predictor-corrector) unless given; ``shortcuts`` change it.
    The start noise of slice j comes from row j of the ``inverse-start`` stream of its seed.
    """
    if not isinstance(operator, SliceOperator):
        raise UserError(
            "operator must be a SliceOperator (a 2-D operator applied to every slice), got "
            f"{type(operator).__name__}"
        )
    _check_slices(operator, couple, final_consistency)
    spec, seed = seeded(as_sampler(MBIR_SAMPLER if sampler is None else sampler, **shortcuts))
    depth, slice_shape = operator.depth, operator.slice_operator.x_shape
    admm = ADMMTV(operator, y, tv_weight if couple else 0.0, rho if couple else 0.0, cg_iterations)
    batch = y.shape[0]
    noise = start_noise(seed, (batch * depth, *slice_shape), y)
    out = sample(model, noise, spec, hooks=[VolumeADMM(admm, depth)])
    vol = out.x.reshape(batch, depth, *slice_shape)
    if final_consistency:
        weight = operator.adjoint(operator(torch.ones_like(vol)))
        step = operator.adjoint(y.to(vol) - operator(vol))
        vol = vol + torch.where(weight > 0, step / torch.where(weight > 0, weight, 1.0), 0.0)
    return Reconstruction(vol, out.nfe)


__all__ = [
    "ADMMTV",
    "MBIR_SAMPLER",
    "SliceOperator",
    "Splitting",
    "VolumeADMM",
    "cg",
    "diff_z",
    "diff_z_adjoint",
    "diffusion_mbir",
    "soft_threshold",
]
