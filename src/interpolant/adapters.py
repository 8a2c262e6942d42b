"""Foreign models in our convention, ours in theirs, and models moved between paths.

Our convention: t in [0, 1], t = 0 data, x_t = alpha(t) x0 + sigma(t) eps. The peers map to it so:

==================  ================================  ==========================================
peer                its model                         ours
==================  ================================  ==========================================
diffusers           net(x_n, n), n = 0..N-1 integer   ``DiscreteVP(alphas_cumprod)``, t = (n+1)/N;
                    timesteps, ``alphas_cumprod``     epsilon -> eps, v_prediction -> v,
                                                      sample -> x0
k-diffusion / EDM   D(x, sigma), x = x0 + sigma n     x0 on ``EDM`` (t = sigma / sigma_max), or
                                                      on any path with x = x_t / alpha and
                                                      sigma = sigma(t) / alpha(t)
flow_matching,      v(x, t'), t' = 0 noise, t' = 1    velocity on ``Linear`` with t = 1 - t' and
torchcfm            data, x = t' x1 + (1 - t') x0     u = -v (the time runs the other way)
==================  ================================  ==========================================

:class:`PathConverted` evaluates a model trained on one Gaussian path on another: both paths
pass through the same marginals up to a scale wherever their logsnr ranges overlap (the
training-free interpolant conversion of Kim et al. 2025, "RBF"; the time and scale
reparametrisation of stochastic interpolants, Albergo et al. 2023).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .errors import UserError, WrongTypeError
from .paths import EDM, GaussianPath, Linear, as_time, expand_like
from .paths.discrete_vp import DiscreteVP
from .predictions import Model

#: diffusers' ``prediction_type`` -> our prediction kind.
DIFFUSERS_PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}

#: The path-independent kind (x0 or eps) a converted model reports for each source kind: x0 and
#: eps do not change between paths; velocity and v go through x0, the score through eps (finite
#: where alpha = 0).
_INVARIANT_KIND = {"x0": "x0", "eps": "eps", "score": "eps", "velocity": "x0", "v": "x0"}


def _output_tensor(out: Any) -> Tensor:
    """A network output as a tensor (diffusers models return an object with ``.sample``)."""
    if isinstance(out, Tensor):
        return out
    if hasattr(out, "sample") and isinstance(out.sample, Tensor):
        return out.sample
    if isinstance(out, tuple | list) and out and isinstance(out[0], Tensor):
        return out[0]
    raise WrongTypeError(f"the wrapped network returned {type(out).__name__}, expected a tensor")


def _batch_time(t: Tensor | float, x: Tensor) -> Tensor:
    """t as a float64 tensor of shape (B,) (a scalar is broadcast over the batch)."""
    t = as_time(t if isinstance(t, Tensor) else torch.tensor(float(t), dtype=torch.float64), x)
    t = t.to(torch.float64)
    return t.expand(x.shape[0]) if t.ndim == 0 else t


# -- models between paths -----------------------------------------------------------------------


class _ConvertedNet(nn.Module):
    """``net(x_B, t_B)`` of a model trained on path A, evaluated at the matching point of A."""

    def __init__(self, source: Model, target_path: GaussianPath) -> None:
        super().__init__()
        self.source, self.target_path = source, target_path
        self.kind = _INVARIANT_KIND[source.predicts]

    def matching_point(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(t_A, scale) with logsnr_A(t_A) = logsnr_B(t) and x_A = scale * x_B (float64)."""
        source, target = self.source.path, self.target_path
        logsnr = target.logsnr(t)
        t_a = source.t_of_logsnr(logsnr).clamp(0.0, 1.0)
        mismatch = (source.logsnr(t_a) - logsnr).abs()
        bad = mismatch > 1e-6 * (1.0 + logsnr.abs())
        if bool(bad.any()):
            t_bad, l_bad = float(t[bad][0]), float(logsnr[bad][0])
            raise UserError(
                f"t = {t_bad:.6g} on {target!r} has logsnr {l_bad:.6g}, outside the range of the "
                f"source path {source!r}; sample the converted model with t_max <= its .t_max"
            )
        # Same logsnr: alpha_A / alpha_B = sigma_A / sigma_B, so the sum ratio is stable everywhere.
        a_a, s_a = source.alpha(t_a), source.sigma(t_a)
        a_b, s_b = target.alpha(t), target.sigma(t)
        return t_a, (a_a + s_a) / (a_b + s_b)

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        t_a, scale = self.matching_point(_batch_time(t, x))
        x_a = expand_like(scale.to(x.dtype), x) * x
        return self.source(x_a, t_a.to(x.dtype), **cond).get(self.kind)


class PathConverted(Model):
    """A model trained on path A, used as a model on path B (interpolant conversion).

    At (x_B, t_B): t_A = A.t_of_logsnr(B.logsnr(t_B)) and x_A = (alpha_A / alpha_B) x_B (equal to
    sigma_A / sigma_B at matched logsnr), since x_B / alpha_B = x0 + e^{-logsnr/2} eps on both
    paths. The denoised data and the noise are the same on both paths, so the converted model
    predicts x0 (or eps for eps and score models) on B; solvers convert to other kinds with B's
    coefficients. Times on B beyond A's logsnr range raise an error; ``t_max`` is the largest
    time on B that A covers.
    """

    def __init__(self, model: Model, target_path: GaussianPath) -> None:
        if not isinstance(model, Model):
            raise WrongTypeError(f"model must be an interpolant.Model, got {type(model).__name__}")
        net = _ConvertedNet(model, target_path)
        super().__init__(net, target_path, predicts=net.kind)
        self.source = model

    @property
    def t_max(self) -> float:
        """The largest time on the target path whose logsnr the source path reaches."""
        one = torch.ones((), dtype=torch.float64)
        t = self.path.t_of_logsnr(self.source.path.logsnr(one))
        return float(t.clamp(0.0, 1.0))


def convert_path(model: Model, target_path: GaussianPath) -> Model:
    """``model`` as a model on ``target_path`` (itself when the paths are the same)."""
    if model.path.config() == target_path.config():
        return model
    return PathConverted(model, target_path)


# -- diffusers ----------------------------------------------------------------------------------


class DiffusersNet(nn.Module):
    """``net(x_n, n, **cond)`` on training timesteps, called at n = N t - 1 (clamped into
    [0, N-1] as diffusers and k-diffusion clamp fractional timesteps)."""

    def __init__(self, net: Callable[..., Any], path: DiscreteVP, integer_timesteps: bool) -> None:
        super().__init__()
        self.net, self.path, self.integer_timesteps = net, path, integer_timesteps

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        n = self.path.timestep_of_t(_batch_time(t, x)).clamp(0, self.path.num_train_timesteps - 1)
        if self.integer_timesteps:
            rounded = n.round()
            if bool(((n - rounded).abs() > 1e-4).any()):
                bad = float(n[(n - rounded).abs() > 1e-4][0])
                raise UserError(
                    f"t maps to the fractional timestep {bad:.6g}; this net takes integer "
                    "timesteps: sample on the scheduler's grid (adapters.diffusers_grid)"
                )
            timestep = rounded.long()
        else:
            timestep = n.to(x.dtype)
        return _output_tensor(self.net(x, timestep, **cond))


def _diffusers_schedule(alphas_cumprod: Any) -> tuple[DiscreteVP, str | None]:
    """(path, prediction_type or None) from a DiscreteVP, a tensor or a diffusers scheduler."""
    if isinstance(alphas_cumprod, DiscreteVP):
        return alphas_cumprod, None
    if hasattr(alphas_cumprod, "alphas_cumprod"):  # a diffusers scheduler
        config = getattr(alphas_cumprod, "config", None)
        kind = getattr(config, "prediction_type", None) if config is not None else None
        return DiscreteVP(alphas_cumprod.alphas_cumprod), kind
    if isinstance(alphas_cumprod, Tensor | Sequence):
        return DiscreteVP(alphas_cumprod), None
    raise WrongTypeError(
        "alphas_cumprod must be a tensor, a sequence, a DiscreteVP or a diffusers scheduler, "
        f"got {type(alphas_cumprod).__name__}"
    )


def _our_kind(prediction_type: str) -> str:
    if prediction_type not in DIFFUSERS_PREDICTION_TYPES:
        raise UserError(
            f"prediction_type must be one of {sorted(DIFFUSERS_PREDICTION_TYPES)}, "
            f"got {prediction_type!r}"
        )
    return DIFFUSERS_PREDICTION_TYPES[prediction_type]


def from_diffusers(
    net: Callable[..., Any],
    alphas_cumprod: Any,
    prediction_type: str | None = None,
    integer_timesteps: bool = False,
) -> Model:
    """A diffusers-style model ``net(x, timestep, **cond)`` as a :class:`Model` on ``DiscreteVP``.

    Args:
        net: e.g. a ``UNet2DModel``; outputs with ``.sample`` are unwrapped.
        alphas_cumprod: the training schedule (``scheduler.alphas_cumprod``), a ``DiscreteVP``
            or the scheduler itself (then ``prediction_type`` defaults to its config's).
        prediction_type: "epsilon", "v_prediction" or "sample" (default "epsilon").
        integer_timesteps: round timesteps to integers (for nets that index a table); a time
            between training timesteps then raises an error. By default the net receives the
            fractional timestep N t - 1, like diffusers' Karras-sigma schedulers.
    """
    path, scheduler_kind = _diffusers_schedule(alphas_cumprod)
    kind = _our_kind(prediction_type or scheduler_kind or "epsilon")
    if not callable(net):
        raise WrongTypeError(f"net must be callable net(x, timestep), got {type(net).__name__}")
    return Model(DiffusersNet(net, path, integer_timesteps), path, kind)


def diffusers_grid(timesteps: Any, path: DiscreteVP, set_alpha_to_one: bool = True) -> Tensor:
    """Our time grid for a diffusers scheduler's ``timesteps``: t = (n + 1) / N, then the end.

    The last step of DDIM goes to ``final_alpha_cumprod``: 1 (``set_alpha_to_one=True``, and
    DPM-Solver's ``final_sigmas_type="zero"``) is t = 0; ``alphas_cumprod[0]`` (False, or
    "sigma_min") is t = 1/N, and if the last timestep is already 0 that step is the identity and
    is dropped. Sampling on this grid reproduces DDIMScheduler when its steps are the grid's
    (``leading`` spacing, or ``trailing`` with N divisible by the steps: diffusers' DDIM always
    steps by N // steps) and DPMSolverMultistepScheduler with its default timesteps.
    """
    if not isinstance(path, DiscreteVP):
        raise WrongTypeError(f"path must be a DiscreteVP, got {type(path).__name__}")
    n = torch.as_tensor(timesteps, dtype=torch.float64).flatten()
    grid = path.t_of_timestep(n)
    end = 0.0 if set_alpha_to_one else float(path.t_of_timestep(0))
    if float(grid[-1]) > end:
        grid = torch.cat([grid, grid.new_tensor([end])])
    return grid


class _DiffusersView(nn.Module):
    """One of our models as ``net(x, timestep)`` predicting ``prediction_type`` on a DiscreteVP."""

    def __init__(self, model: Model, path: DiscreteVP, kind: str) -> None:
        super().__init__()
        self.model, self.path, self.kind = convert_path(model, path), path, kind

    def forward(self, x: Tensor, timestep: Tensor | float, **cond: Any) -> Tensor:
        t = self.path.t_of_timestep(torch.as_tensor(timestep, dtype=torch.float64).to(x.device))
        return self.model(x, _batch_time(t, x).to(x.dtype), **cond).get(self.kind)


def to_diffusers(model: Model, alphas_cumprod: Any, prediction_type: str = "epsilon") -> nn.Module:
    """One of our models (any path) as a diffusers-style ``net(x, timestep)``."""
    path, _ = _diffusers_schedule(alphas_cumprod)
    return _DiffusersView(model, path, _our_kind(prediction_type))


# -- k-diffusion / EDM --------------------------------------------------------------------------


class KDiffusionNet(nn.Module):
    """A denoiser ``D(x, sigma, **cond)`` as an x0 net on a Gaussian path: x_t / alpha = x0 +
    (sigma / alpha) eps is exactly D's input at EDM noise level sigma / alpha."""

    def __init__(self, denoiser: Callable[..., Tensor], path: GaussianPath) -> None:
        super().__init__()
        self.denoiser, self.path = denoiser, path

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        t64 = _batch_time(t, x)
        edm_sigma = self.path.edm_sigma(t64)
        # 1 / alpha; where alpha = 0 (t = 1 of some paths) the largest finite level, as sigma.
        a, s = self.path.alpha(t64), self.path.sigma(t64)
        inv_alpha = torch.where(a > 0, 1.0 / a.clamp_min(1e-300), edm_sigma / s.clamp_min(1e-300))
        x_in = expand_like(inv_alpha.to(x.dtype), x) * x
        return _output_tensor(self.denoiser(x_in, edm_sigma.to(x.dtype), **cond))


def from_kdiffusion(denoiser: Callable[..., Tensor], path: GaussianPath | None = None) -> Model:
    """A k-diffusion / EDM denoiser D(x, sigma) as a Model predicting x0 on ``path``
    (default ``EDM(sigma_max=80)``, where t = sigma / 80 and x is passed unchanged)."""
    if not callable(denoiser):
        raise WrongTypeError(
            f"denoiser must be callable D(x, sigma), got {type(denoiser).__name__}"
        )
    path = EDM() if path is None else path
    return Model(KDiffusionNet(denoiser, path), path, "x0")


class _KDiffusionView(nn.Module):
    """One of our models as a k-diffusion denoiser D(x, sigma) (sigma of shape (B,) or scalar)."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model
        one = torch.ones((), dtype=torch.float64)
        self.sigma_max = float(model.path.edm_sigma(one))

    def forward(self, x: Tensor, sigma: Tensor | float, **cond: Any) -> Tensor:
        sigma64 = torch.as_tensor(sigma, dtype=torch.float64).to(x.device)
        if bool((sigma64 > self.sigma_max * (1 + 1e-9)).any()):
            raise UserError(
                f"sigma {float(sigma64.max()):.6g} is beyond the model path's largest noise level "
                f"{self.sigma_max:.6g} ({self.model.path!r})"
            )
        t = self.model.path.t_of_edm_sigma(sigma64).clamp(0.0, 1.0)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        alpha = self.model.path.alpha(t)
        x_t = expand_like(alpha.to(x.dtype), x) * x
        return self.model(x_t, t.to(x.dtype), **cond).x0


def to_kdiffusion(model: Model) -> nn.Module:
    """One of our models (any path) as a k-diffusion denoiser ``D(x, sigma)``."""
    return _KDiffusionView(model)


# -- flow_matching / torchcfm -------------------------------------------------------------------


class FlowMatchingNet(nn.Module):
    """A velocity ``v(x, t')`` with t' = 0 noise, t' = 1 data, as our velocity: u(x, t) =
    -v(x, 1 - t) (x_t = (1 - t) x0 + t eps is their x at t' = 1 - t)."""

    def __init__(self, velocity_net: Callable[..., Tensor]) -> None:
        super().__init__()
        self.velocity_net = velocity_net

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return -_output_tensor(self.velocity_net(x, 1.0 - t, **cond))


def from_flow_matching(velocity_net: Callable[..., Tensor]) -> Model:
    """A flow_matching / torchcfm velocity model ``v(x, t')`` (t' = 0 noise) as our Model on the
    Linear path predicting the velocity."""
    if not callable(velocity_net):
        raise WrongTypeError(
            f"velocity_net must be callable v(x, t), got {type(velocity_net).__name__}"
        )
    return Model(FlowMatchingNet(velocity_net), Linear(), "velocity")


class _FlowMatchingView(nn.Module):
    """One of our models as a velocity v(x, t') in flow_matching's time (t' scalar or (B,))."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = convert_path(model, Linear())

    def forward(self, x: Tensor, t: Tensor | float, **cond: Any) -> Tensor:
        t_fm = torch.as_tensor(t, dtype=torch.float64).to(x.device)
        t_ours = _batch_time(1.0 - t_fm, x)
        return -self.model(x, t_ours.to(x.dtype), **cond).velocity


def to_flow_matching(model: Model) -> nn.Module:
    """One of our models (any path, converted to Linear) as a flow_matching velocity v(x, t')."""
    return _FlowMatchingView(model)


__all__ = [
    "DIFFUSERS_PREDICTION_TYPES",
    "DiffusersNet",
    "FlowMatchingNet",
    "KDiffusionNet",
    "PathConverted",
    "convert_path",
    "diffusers_grid",
    "from_diffusers",
    "from_flow_matching",
    "from_kdiffusion",
    "to_diffusers",
    "to_flow_matching",
    "to_kdiffusion",
]
