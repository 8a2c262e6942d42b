"""MT-Diffusion's aggregated forward process (Chen et al. 2024, arXiv 2407.17571, Sec. 3.1).

Several modalities x = (x_1, ..., x_N) are aggregated into one diffusion space by encoders,
``E(x) = sum_i E_i(x_i)``, and enter the discrete DDPM chain (steps s = 1..T, alpha_s = 1 -
beta_s, abar_s = prod_{r <= s} alpha_r, abar_0 = 1) as a data-dependent offset:

    q(z_s | z_{s-1}, x) = N(sqrt(alpha_s) (z_{s-1} + w_s E(x)), (1 - alpha_s) I).      (Eq. 4)

Unrolling the chain gives the closed-form marginal

    q(z_s | z_0, x) = N(sqrt(abar_s) z_0 + c_s E(x), (1 - abar_s) I),
    c_s = sqrt(alpha_s) (c_{s-1} + w_s), c_0 = 0,
    i.e.  c_s = sum_{r <= s} w_r sqrt(abar_s / abar_{r-1}),

and, by Gaussian conditioning of z_{s-1} ~ q(. | z_0, x) on the transition, the posterior

    q(z_{s-1} | z_s, z_0, x) = N(mu_s, beta~_s I),
    beta~_s = (1 - abar_{s-1}) (1 - alpha_s) / (1 - abar_s),
    mu_s = [(1 - alpha_s) (sqrt(abar_{s-1}) z_0 + c_{s-1} E)
            + sqrt(alpha_s) (1 - abar_{s-1}) (z_s - sqrt(alpha_s) w_s E)] / (1 - abar_s).

With w = 0 this is DDPM's posterior (Ho et al. 2020, Eq. 7). The paper has no public code and its
w_s schedule is not given in what we could check; the offset weights here are supported on the
first steps ("early", the default) so that c_T ~ 0 and the prior stays N(0, I), since
sqrt(abar_T / abar_{r-1}) -> 0 for small r. The schedule is the library's
:class:`~interpolant.paths.DiscreteVP` (step s is its training timestep s - 1, at time t = s / T).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from ..paths import DiscreteVP

#: Offset-weight schedules: "early" (constant on the first ``fraction`` of the steps), "spread"
#: (constant on all steps), "none" (w = 0: plain DDPM, the single-task baseline).
WEIGHT_SCHEDULES = ("early", "spread", "none")


def scaled_linear_betas(steps: int) -> Tensor:
    """DDPM's linear betas (1e-4 .. 0.02 over 1000 steps) rescaled to ``steps`` steps
    (beta * 1000 / steps, as improved DDPM does), so abar_T is ~4e-5 for T >= 20; below that
    the largest betas are clipped at 0.999 (improved DDPM's cap). float64."""
    if steps < 2:
        raise UserError(f"the aggregated process needs at least 2 steps, got {steps}")
    scale = 1000.0 / steps
    betas = torch.linspace(1e-4 * scale, 0.02 * scale, steps, dtype=torch.float64)
    return betas.clamp(max=0.999)


def offset_weights(
    steps: int, schedule: str = "early", total: float = 1.0, fraction: float = 0.25
) -> Tensor:
    """w_1..w_T (float64) of a named schedule with sum ``total``."""
    if schedule not in WEIGHT_SCHEDULES:
        raise UserError(f"offset schedule must be one of {WEIGHT_SCHEDULES}, got {schedule!r}")
    if not 0 < fraction <= 1:
        raise UserError(f"offset fraction must be in (0, 1], got {fraction!r}")
    w = torch.zeros(steps, dtype=torch.float64)
    if schedule == "early":
        k = max(1, round(fraction * steps))
        w[:k] = total / k
    elif schedule == "spread":
        w[:] = total / steps
    return w


class AggregatedProcess:
    """The aggregated forward process on a discrete schedule (float64 coefficients).

    Args:
        betas: beta_1..beta_T (default: :func:`scaled_linear_betas` of ``steps``).
        weights: the offset weights w_1..w_T, or a schedule name (:data:`WEIGHT_SCHEDULES`).
        steps: T when ``betas`` is not given.
        weight_total, weight_fraction: of a named schedule (sum of w; share of steps of "early").

    Steps ``s`` are int64 tensors with values in 0..T (0 is the data); coefficient lookups
    return float64 tensors of the steps' shape.
    """

    def __init__(
        self,
        betas: Tensor | None = None,
        weights: Tensor | str = "early",
        *,
        steps: int = 200,
        weight_total: float = 1.0,
        weight_fraction: float = 0.25,
    ) -> None:
        if isinstance(weights, str) and weights not in WEIGHT_SCHEDULES:
            raise UserError(f"offset schedule must be one of {WEIGHT_SCHEDULES}, got {weights!r}")
        b = scaled_linear_betas(steps) if betas is None else torch.as_tensor(betas).double()
        self.path = DiscreteVP(betas=b)
        self.steps = T = self.path.num_train_timesteps
        w = (
            offset_weights(T, weights, weight_total, weight_fraction)
            if isinstance(weights, str)
            else torch.as_tensor(weights, dtype=torch.float64).flatten()
        )
        if w.shape != (T,):
            raise UserError(
                f"offset weights must have one value per step ({T}), got {tuple(w.shape)}"
            )
        self.schedule = weights if isinstance(weights, str) else "custom"
        one = torch.ones(1, dtype=torch.float64)
        #: Index s = 0..T: abar_s (abar_0 = 1), alpha_s (alpha_0 = 1), w_s (w_0 = 0), c_s.
        self.abar = torch.cat([one, self.path.acp])
        self.alpha = torch.cat([one, self.abar[1:] / self.abar[:-1]])
        self.w = torch.cat([torch.zeros(1, dtype=torch.float64), w])
        c = torch.zeros(T + 1, dtype=torch.float64)
        for s in range(1, T + 1):  # c_s = sqrt(alpha_s) (c_{s-1} + w_s)
            c[s] = self.alpha[s].sqrt() * (c[s - 1] + self.w[s])
        self.c = c

    # -- lookups -----------------------------------------------------------------------------------

    def _at(self, table: Tensor, s: Tensor, like: Tensor) -> Tensor:
        """``table[s]`` shaped to broadcast over ``like`` (B, ...), in ``like``'s dtype."""
        s = torch.as_tensor(s, dtype=torch.long)
        if bool((s < 0).any()) or bool((s > self.steps).any()):
            raise UserError(f"steps must lie in 0..{self.steps}, got {s.min()}..{s.max()}")
        return self._shaped(table[s.cpu()], like)

    @staticmethod
    def _shaped(value: Tensor, like: Tensor) -> Tensor:
        """Per-sample float64 ``value`` (B,) in ``like``'s dtype, broadcast over (B, ...)."""
        value = value.to(device=like.device, dtype=like.dtype)
        return value.reshape(-1, *([1] * (like.ndim - 1)))

    def time(self, s: Tensor) -> Tensor:
        """The path time t = s / T of step s (the network's time input)."""
        return self.path.t_of_timestep(torch.as_tensor(s, dtype=torch.float64) - 1.0)

    def offset_closed_form(self) -> Tensor:
        """c_s = sum_{r <= s} w_r sqrt(abar_s / abar_{r-1}) for s = 0..T (the unrolled sum; the
        recursion in ``self.c`` is what the process uses)."""
        T = self.steps
        ratio = (self.abar[:, None] / self.abar[None, :-1]).sqrt()  # [s, r-1]
        lower = torch.tril(torch.ones(T + 1, T, dtype=torch.bool), diagonal=-1)  # r <= s
        return (ratio * self.w[None, 1:] * lower).sum(dim=1)

    @property
    def prior_offset(self) -> float:
        """c_T: how far the prior is from N(0, I) per unit of E(x) (about 0 for "early")."""
        return float(self.c[-1])

    # -- the process -------------------------------------------------------------------------------

    def marginal(self, z0: Tensor, embedding: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """Mean sqrt(abar_s) z0 + c_s E and standard deviation sqrt(1 - abar_s) (broadcast)."""
        mean = self._at(self.abar.sqrt(), s, z0) * z0 + self._at(self.c, s, z0) * embedding
        return mean, self._at((1 - self.abar).sqrt(), s, z0)

    def sample(self, z0: Tensor, embedding: Tensor, s: Tensor, eps: Tensor) -> Tensor:
        """z_s = sqrt(abar_s) z0 + c_s E + sqrt(1 - abar_s) eps."""
        mean, std = self.marginal(z0, embedding, s)
        return mean + std * eps

    def step(self, z_prev: Tensor, embedding: Tensor, s: Tensor, noise: Tensor) -> Tensor:
        """One forward transition (Eq. 4): sqrt(alpha_s) (z_{s-1} + w_s E) + sqrt(1 - alpha_s) xi
        for steps s >= 1."""
        a = self._at(self.alpha, s, z_prev)
        return (
            a.sqrt() * (z_prev + self._at(self.w, s, z_prev) * embedding) + (1 - a).sqrt() * noise
        )

    def jump(self, s: Tensor, s_prev: Tensor) -> tuple[Tensor, Tensor]:
        """(a, w) of the jump s_prev -> s of the chain, float64 of the steps' shape:
        z_s = sqrt(a) (z_{s_prev} + w E) + sqrt(1 - a) xi with a = abar_s / abar_{s_prev} and
        w = sum_{s_prev < r <= s} w_r sqrt(abar_{s_prev} / abar_{r-1}) (the unrolled chain; for
        one step, a = alpha_s and w = w_s exactly)."""
        s = torch.as_tensor(s, dtype=torch.long).cpu()
        s_prev = torch.as_tensor(s_prev, dtype=torch.long).cpu()
        if bool((s_prev < 0).any()) or bool((s_prev >= s).any()) or bool((s > self.steps).any()):
            raise UserError(f"a jump s_prev -> s needs 0 <= s_prev < s <= {self.steps}")
        pairs, inverse = torch.stack([s.flatten(), s_prev.flatten()]).unique(
            dim=1, return_inverse=True
        )  # a batch shares its steps: one row per distinct jump
        hi, lo = pairs[0], pairs[1]
        a = self.abar[hi] / self.abar[lo]
        r = torch.arange(1, self.steps + 1)
        inside = (r > lo[:, None]) & (r <= hi[:, None])
        ratio = (self.abar[lo][:, None] / self.abar[r - 1]).sqrt()
        w = torch.where(inside, self.w[r] * ratio, torch.zeros((), dtype=torch.float64)).sum(1)
        return a[inverse].reshape(s.shape), w[inverse].reshape(s.shape)

    def posterior(
        self, z_s: Tensor, z0: Tensor, embedding: Tensor, s: Tensor, s_prev: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(z_{s_prev} | z_s, z_0, x) for s >= 1 (default s_prev = s - 1;
        variance 0 at s_prev = 0). An earlier s_prev is the strided (DDIM-style) step: the same
        Gaussian conditioning on the jump's (a, w) of :meth:`jump`."""
        s = torch.as_tensor(s, dtype=torch.long)
        if bool((s < 1).any()):
            raise UserError("the posterior q(z_{s-1} | z_s, ...) needs steps s >= 1")
        s_prev = s - 1 if s_prev is None else torch.as_tensor(s_prev, dtype=torch.long)
        jump_a, jump_w = self.jump(s, s_prev)
        a, w = self._shaped(jump_a, z_s), self._shaped(jump_w, z_s)
        ab, ab_prev = self._at(self.abar, s, z_s), self._at(self.abar, s_prev, z_s)
        c_prev = self._at(self.c, s_prev, z_s)
        prior_mean = ab_prev.sqrt() * z0 + c_prev * embedding
        mean = (
            (1 - a) * prior_mean + a.sqrt() * (1 - ab_prev) * (z_s - a.sqrt() * w * embedding)
        ) / (1 - ab)
        return mean, (1 - ab_prev) * (1 - a) / (1 - ab)

    def z0_from_eps(self, z_s: Tensor, embedding: Tensor, eps: Tensor, s: Tensor) -> Tensor:
        """z_0 = (z_s - c_s E - sqrt(1 - abar_s) eps) / sqrt(abar_s), the marginal solved."""
        mean_free = z_s - self._at(self.c, s, z_s) * embedding
        return (mean_free - self._at((1 - self.abar).sqrt(), s, z_s) * eps) / self._at(
            self.abar.sqrt(), s, z_s
        )

    def config(self) -> dict[str, Any]:
        """JSON description (betas and offset weights as lists)."""
        return {
            "betas": (1 - self.alpha[1:]).tolist(),
            "weights": self.w[1:].tolist(),
            "schedule": self.schedule,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AggregatedProcess:
        f64 = torch.float64
        return cls(
            torch.tensor(config["betas"], dtype=f64), torch.tensor(config["weights"], dtype=f64)
        )

    def __repr__(self) -> str:
        return (
            f"AggregatedProcess(steps={self.steps}, weights={self.schedule!r}, "
            f"c_T={self.prior_offset:.3g})"
        )


def strided_steps(steps: int, budget: int | None = None) -> list[int]:
    """The steps a sampler with ``budget`` network evaluations visits, T .. 1, then 0: the
    uniform subsequence round(linspace(T, 0, budget + 1)) (DDIM's stride over DDPM's chain;
    all T steps when ``budget`` is None or T)."""
    budget = steps if budget is None else int(budget)
    if not 1 <= budget <= steps:
        raise UserError(
            f"the multitask sampler takes 1..{steps} network evaluations (the chain's steps T), "
            f"got {budget}: set sample.nfe to at most {steps}"
        )
    grid = torch.linspace(steps, 0, budget + 1, dtype=torch.float64).round().long()
    return [int(v) for v in grid]


__all__ = [
    "WEIGHT_SCHEDULES",
    "AggregatedProcess",
    "offset_weights",
    "scaled_linear_betas",
    "strided_steps",
]
