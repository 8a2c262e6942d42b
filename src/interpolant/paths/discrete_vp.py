"""A discrete DDPM schedule (diffusers / CompVis ``alphas_cumprod``) as a continuous VP path.

Training timestep ``n`` in 0..N-1 has ``x_n = sqrt(abar_n) x0 + sqrt(1 - abar_n) eps``. We place it
at ``t_n = (n + 1) / N``: the last training timestep N-1 is t = 1 and the "timestep -1" of the
clean data is t = 0 (DDIM's ``set_alpha_to_one``). Between the knots, logsnr is linear in the
timestep, which is the log-sigma interpolation of diffusers' ``_sigma_to_t`` and k-diffusion's
``DiscreteSchedule``, so a fractional timestep means the same noise level as in both peers. On the
first interval [0, 1/N], log alpha^2 is linear in t from 0 to log abar_0, so alpha(0) = 1 and
sigma(0) = 0 exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..configurable import option
from ..errors import UserError
from .base import LOGSNR_LIMIT, GaussianPath

Schedule = Sequence[float] | Tensor


def ddpm_linear_alphas_cumprod(
    beta_start: float = 1e-4, beta_end: float = 0.02, num_train_timesteps: int = 1000
) -> Tensor:
    """diffusers' ``beta_schedule="linear"``: abar_n = prod_{m <= n} (1 - beta_m), computed in
    float32 exactly as diffusers does, so the values match its schedulers bit for bit."""
    betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    return torch.cumprod(1.0 - betas, dim=0)


def _alphas_cumprod(alphas_cumprod: Schedule | None, betas: Schedule | None) -> Tensor:
    """The float64 CPU ``alphas_cumprod`` given directly, as cumprod(1 - betas), or diffusers'
    default linear schedule."""
    if alphas_cumprod is not None and betas is not None:
        raise UserError("DiscreteVP: give alphas_cumprod or betas, not both")
    if betas is not None:
        b = torch.as_tensor(betas, dtype=torch.float64).flatten()
        if b.numel() < 2 or bool((b <= 0).any()) or bool((b > 1).any()):
            raise UserError("DiscreteVP: betas must hold at least two numbers in (0, 1]")
        return torch.cumprod(1.0 - b, dim=0)
    if isinstance(alphas_cumprod, Tensor):
        return alphas_cumprod.detach().to("cpu", torch.float64).flatten()
    if alphas_cumprod is not None:  # Python floats (a config) are float64 already
        return torch.as_tensor(alphas_cumprod, dtype=torch.float64).flatten()
    return ddpm_linear_alphas_cumprod().to(torch.float64)


def _help(text: str) -> Any:
    """The metadata :func:`~interpolant.configurable.option` gives a field with help ``text``."""
    return option(None, help=text).metadata


@dataclass(frozen=True)
class DiscreteVP(GaussianPath):
    """A variance-preserving path through the N points of a discrete ``alphas_cumprod``.

    Give ``alphas_cumprod`` (abar_0 > ... > abar_{N-1}, in [0, 1)) or ``betas`` (abar =
    cumprod(1 - beta)); with neither, diffusers' default linear schedule (1e-4 .. 0.02, N = 1000).
    ``alpha(t)^2 = sigmoid(logsnr(t))`` with logsnr piecewise linear in the timestep
    ``n(t) = N t - 1`` through ``logsnr_n = log(abar_n / (1 - abar_n))`` (clamped to +-120).

    ``alphas_cumprod`` is kept as a float64 tensor (``betas`` are turned into it, and read None
    afterwards), so ``config()`` always describes the schedule by ``alphas_cumprod``; two paths
    are equal when their schedules are.
    """

    name: ClassVar[str] = "discrete-vp"
    variance_preserving: ClassVar[bool] = True
    # The schedule options are not compared (a tensor has no single truth value): ``schedule``,
    # the tuple derived from them, is what == and hash compare.
    alphas_cumprod: Schedule | None = field(
        default=None,
        compare=False,
        metadata=_help("abar_0 > ... > abar_{N-1} in [0, 1) (default: diffusers' linear)"),
    )
    betas: Schedule | None = field(
        default=None,
        compare=False,
        metadata=_help("betas instead of alphas_cumprod (abar = cumprod(1 - beta))"),
    )
    schedule: tuple[float, ...] = field(init=False, repr=False)
    num_train_timesteps: int = field(init=False, repr=False, compare=False)
    #: logsnr at the knots t_n = (n + 1) / N, clamped to +-LOGSNR_LIMIT.
    knots: Tensor = field(init=False, repr=False, compare=False)
    log_abar0: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        acp = _alphas_cumprod(self.alphas_cumprod, self.betas)
        logsnr = torch.log(acp) - torch.log1p(-acp)
        derived = {
            "alphas_cumprod": acp,
            "betas": None,
            "schedule": tuple(acp.tolist()),
            "num_train_timesteps": acp.numel(),
            "knots": logsnr.clamp(-LOGSNR_LIMIT, LOGSNR_LIMIT),
            "log_abar0": float(torch.log(acp[0])) if acp.numel() else 0.0,
        }
        for key, value in derived.items():
            object.__setattr__(self, key, value)
        super().__post_init__()

    def validate(self) -> None:
        acp = self.acp
        if acp.numel() < 2:
            raise UserError(
                f"DiscreteVP: alphas_cumprod needs at least two timesteps, got {acp.numel()}"
            )
        if bool((acp < 0).any()) or bool((acp >= 1).any()) or not bool((acp[1:] < acp[:-1]).all()):
            raise UserError("DiscreteVP: alphas_cumprod must strictly decrease and lie in [0, 1)")

    @property
    def acp(self) -> Tensor:
        """``alphas_cumprod`` as the float64 tensor it is after construction."""
        acp = self.alphas_cumprod
        return acp if isinstance(acp, Tensor) else torch.as_tensor(acp, dtype=torch.float64)

    # -- timestep <-> t --------------------------------------------------------------------------

    def timestep_of_t(self, t: Tensor) -> Tensor:
        """The (fractional) training timestep n = N t - 1 of time t (-1 is the data)."""
        return t * self.num_train_timesteps - 1.0

    def t_of_timestep(self, timestep: Tensor | float) -> Tensor:
        """t = (n + 1) / N for training timestep n (n = -1 gives t = 0, the data)."""
        n = torch.as_tensor(timestep, dtype=torch.float64)
        return (n + 1.0) / self.num_train_timesteps

    # -- coefficients ----------------------------------------------------------------------------

    def _segment(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(logsnr, d logsnr / dt, first-interval mask) with the knot interpolation; the mask marks
        t < 1/N, where the caller uses the log-alpha^2 interpolation instead."""
        n = self.timestep_of_t(t.to(torch.float64))
        low = n.floor().clamp(0, self.num_train_timesteps - 2).long()
        w = n - low
        lo, hi = self.knots[low], self.knots[low + 1]
        return lo + w * (hi - lo), (hi - lo) * self.num_train_timesteps, n < 0

    def _log_alpha2(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(log alpha^2, its derivative in t)."""
        t64 = t.to(torch.float64)
        logsnr, d_logsnr, first = self._segment(t64)
        la = torch.nn.functional.logsigmoid(logsnr)
        d_la = torch.sigmoid(-logsnr) * d_logsnr  # d log sigmoid(l) / dl = sigmoid(-l)
        slope0 = self.log_abar0 * self.num_train_timesteps
        la = torch.where(first, slope0 * t64, la)
        d_la = torch.where(first, torch.full_like(t64, slope0), d_la)
        return la.to(t.dtype), d_la.to(t.dtype)

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(0.5 * self._log_alpha2(t)[0])

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(self._log_alpha2(t)[0]))

    def d_alpha(self, t: Tensor) -> Tensor:
        la, d_la = self._log_alpha2(t)
        return 0.5 * torch.exp(0.5 * la) * d_la

    def d_sigma(self, t: Tensor) -> Tensor:
        # alpha^2 + sigma^2 = 1: sigma' = -alpha alpha' / sigma.
        s = self.sigma(t)
        return -self.alpha(t) * self.d_alpha(t) / s.clamp_min(torch.finfo(s.dtype).tiny)

    def logsnr(self, t: Tensor) -> Tensor:
        logsnr, _, first = self._segment(t)
        la, _ = self._log_alpha2(t.to(torch.float64))
        tiny = torch.finfo(torch.float64).tiny
        first_logsnr = la - torch.log((-torch.expm1(la)).clamp_min(tiny))
        out = torch.where(first, first_logsnr, logsnr)
        return out.clamp(-LOGSNR_LIMIT, LOGSNR_LIMIT).to(t.dtype)

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        lam = logsnr.to(torch.float64)
        knots = self.knots
        # Knots decrease with n: j is the first knot at or below lam.
        j = torch.searchsorted(-knots, -lam.contiguous())
        low = (j - 1).clamp(0, self.num_train_timesteps - 2)
        lo, hi = knots[low], knots[low + 1]
        n = low + (lam - lo) / (hi - lo)
        t = (n + 1.0) / self.num_train_timesteps
        # First interval: log alpha^2 = log sigmoid(lam) is linear in t there.
        t_first = torch.nn.functional.logsigmoid(lam) / (self.log_abar0 * self.num_train_timesteps)
        t = torch.where(lam >= knots[0], t_first, t)
        return t.clamp(0.0, 1.0).to(logsnr.dtype)

    def __repr__(self) -> str:
        acp = self.acp
        return (
            f"DiscreteVP(N={self.num_train_timesteps}, alphas_cumprod=[{float(acp[0]):.6g}, ..., "
            f"{float(acp[-1]):.6g}])"
        )
