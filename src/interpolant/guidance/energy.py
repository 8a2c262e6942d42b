"""Guidance by an energy of the model's own data estimate: reconstruction guidance / DPS for
inverse problems, and TSDiff's observation self-guidance for forecasting and imputation.

With x0_hat(x_t) = E[x0 | x_t] from the model (Tweedie) and an energy E(x0_hat) that stands for
-log p(y | x_t) (Chung et al. 2023, DPS, eq. 10; Song et al. 2023; Kollovieh et al. 2023, eq. 8),

    s_w(x_t) = s(x_t) - w grad_x E(x0_hat(x_t))

The gradient runs through the network, so the hook re-evaluates the model at x_t with autograd
on (``Model.at`` with the run's conditioning, counted in the run's NFE): per guided evaluation,
one extra forward and one backward, with the network's activations held in memory for the
backward (about twice an inference step's time and the memory of one training step at that
batch size).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import UserError, WrongTypeError
from ..inverse.base import Operator, x0_variance
from ..paths.nodes import Node
from ..predictions import Prediction
from ..solvers.base import Run
from ..solvers.hooks import Hook
from .base import GuidanceScale, add_to_score, as_scale, check_score_path

#: energy(x0_hat, x_t, node) -> (B,) energies, one per sample (node: time and coefficients).
Energy = Callable[[Tensor, Tensor, Node], Tensor]


class EnergyGuidance(Hook[None]):
    """Prediction hook: ``score -= w(t) grad_x energy(x0_hat(x_t), x_t, t)`` with x0_hat from a
    grad-enabled re-evaluation of the sampled model (one extra NFE per guided evaluation).

    Where alpha = 0 or sigma = 0 the term vanishes or is undefined and the hook returns the
    prediction unchanged without evaluating anything.
    """

    def __init__(
        self,
        energy: Energy,
        scale: float | GuidanceScale,
        *,
        schedule: str | Callable[[float], float] = "constant",
        interval: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        if not callable(energy):
            raise WrongTypeError(
                f"energy must be callable(x0_hat, x_t, node) -> (B,), got {energy!r}"
            )
        self.energy = energy
        self.weight = as_scale(scale, schedule, interval, off=0.0)

    def grad_energy(self, x: Tensor, node: Node, run: Run) -> Tensor:
        """grad_x energy(x0_hat(x), x, t) through the model (one NFE)."""
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            # The run's own conditioning, given explicitly: one plain evaluation, also when a
            # batched CFG hook pairs the loop's evaluations with the null label.
            x0_hat = run.model.at(x_in, node, run, cond=run.cond).x0
            e = self.energy(x0_hat, x_in, node)
            if e.shape != (x.shape[0],):
                raise UserError(f"energy must return shape ({x.shape[0]},), got {tuple(e.shape)}")
            (grad,) = torch.autograd.grad(e.sum(), x_in)
        return grad

    def on_prediction(self, pred: Prediction, node: Node, run: Run, state: None) -> Prediction:
        w = self.weight(node.t)
        if w == 0.0 or node.alpha == 0 or node.sigma == 0:
            return pred
        check_score_path(run.path)
        return add_to_score(pred, -self.grad_energy(pred.x, node, run), w)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.weight!r})"


class ReconstructionGuidance(EnergyGuidance):
    """Reconstruction guidance / DPS as a score term, for ``y = A(x0) + noise``.

    ``mode="dps"``: energy ``||y - A(x0_hat)||`` per sample (Chung et al. 2023, Alg. 1: the
    step zeta / ||y - A(x0_hat)|| times the gradient of the squared residual over 2);
    ``mode="gaussian"``: energy ``||y - A(x0_hat)||^2 / (2 r_t^2)``, the Gaussian likelihood
    p(y | x_t) ~ N(A x0_hat, r_t^2 I) with ``r_t^2 = noise_std^2 + d^2 s^2 / (d^2 + s^2)``,
    s = sigma / alpha, d = ``data_std`` (Song et al. 2023, PiGDM, sec. 3: the second term is
    Var[x0 | x_t] for data of variance d^2, which keeps the term bounded at high noise; for
    N(0, d^2 I) data and linear A it is the exact likelihood). ``data_std=None`` drops it
    (plain plug-in likelihood; needs ``noise_std > 0``).
    Unlike DPS, which moves x after the solver step, the term enters the score, so every
    solver uses it. The default scale 1 is the likelihood's own weight: with ``mode="gaussian"``
    the term is then grad log p(y | x_t) of the stated Gaussian model (the noise level enters
    through r_t^2), with ``mode="dps"`` it is DPS's zeta' = 1.
    """

    def __init__(
        self,
        operator: Operator,
        y: Tensor,
        scale: float | GuidanceScale = 1.0,
        *,
        mode: str = "dps",
        data_std: float | None = 1.0,
        schedule: str | Callable[[float], float] = "constant",
        interval: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        if not isinstance(operator, Operator):
            raise WrongTypeError(
                f"operator must be an inverse.Operator, got {type(operator).__name__}"
            )
        if mode not in ("dps", "gaussian"):
            raise UserError(f"mode must be 'dps' or 'gaussian', got {mode!r}")
        if mode == "gaussian" and operator.noise_std <= 0 and data_std is None:
            raise UserError("mode='gaussian' with data_std=None needs operator.noise_std > 0")
        if data_std is not None and data_std <= 0:
            raise UserError(f"data_std must be > 0 or None, got {data_std}")
        self.operator, self.y, self.mode, self.data_std = operator, y, mode, data_std
        super().__init__(self.residual_energy, scale, schedule=schedule, interval=interval)

    def likelihood_var(self, node: Node) -> float:
        """r_t^2 of the Gaussian mode: noise_std^2 plus Var[x0 | x_t] of N(0, d^2) data."""
        var = self.operator.noise_std**2
        if self.data_std is not None:
            var += x0_variance(node, self.data_std)
        return var

    def residual_energy(self, x0_hat: Tensor, x_t: Tensor, node: Node) -> Tensor:
        """-log p(y | x_t) up to a constant, per sample."""
        if self.y.shape[0] != x0_hat.shape[0]:
            raise UserError(f"y has {self.y.shape[0]} rows for a batch of {x0_hat.shape[0]}")
        resid = (self.y.to(x0_hat.dtype) - self.operator(x0_hat)).flatten(1)
        sq = resid.square().sum(1)
        if self.mode == "dps":
            return sq.sqrt()
        return sq / (2.0 * self.likelihood_var(node))


def pinball(error: Tensor, q: Tensor) -> Tensor:
    """Quantile (pinball) loss max(q e, (q - 1) e) of e = y - x0_hat at level q."""
    return torch.maximum(q * error, (q - 1.0) * error)


def quantile_levels(n_series: int, samples_per_series: int) -> Tensor:
    """TSDiff-Q's levels q_k = k / (S + 1), k = 1..S, for a batch of ``n_series`` series each
    repeated S times contiguously (``repeat_interleave``), shape (n_series * S,)."""
    if n_series < 1 or samples_per_series < 1:
        raise UserError("n_series and samples_per_series must be >= 1")
    k = torch.arange(1, samples_per_series + 1, dtype=torch.float64)
    return (k / (samples_per_series + 1)).repeat(n_series)


class ObservationGuidance(EnergyGuidance):
    """TSDiff observation self-guidance (Kollovieh et al. 2023, sec. 3.1): steer an
    unconditional model toward the observed entries of a series through its own x0 estimate.

    Energies on the observed entries (``mask == 1``): ``"mse"``, ``sum (x0_hat - y)^2``, or
    ``"quantile"``, ``sum pinball(y - x0_hat, q_i)`` with level q_i per sample (TSDiff-Q; see
    :func:`quantile_levels`). The scale is the paper's s: the DDIM form
    ``eps' = eps + s sqrt(1 - abar) grad E`` is exactly ``score' = score - s grad E``.
    """

    def __init__(
        self,
        observed: Tensor,
        mask: Tensor,
        scale: float | GuidanceScale,
        *,
        energy: str = "mse",
        quantiles: Tensor | None = None,
        schedule: str | Callable[[float], float] = "constant",
        interval: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        if energy not in ("mse", "quantile"):
            raise UserError(f"energy must be 'mse' or 'quantile', got {energy!r}")
        if energy == "quantile" and quantiles is None:
            raise UserError("energy='quantile' needs quantiles= (one level per sample)")
        if quantiles is not None and bool(((quantiles <= 0) | (quantiles >= 1)).any()):
            raise UserError("quantiles must lie strictly between 0 and 1")
        if mask.shape != observed.shape[-mask.ndim :] and mask.shape != observed.shape:
            raise UserError(
                f"mask of shape {tuple(mask.shape)} does not match observed {tuple(observed.shape)}"
            )
        self.observed, self.mask, self.kind = observed, mask, energy
        self.quantiles = quantiles if energy == "quantile" else None
        super().__init__(self.observation_energy, scale, schedule=schedule, interval=interval)

    def observation_energy(self, x0_hat: Tensor, x_t: Tensor, node: Node) -> Tensor:
        """The MSE or quantile energy of the observed entries, per sample."""
        if self.observed.shape != x0_hat.shape:
            raise UserError(
                f"observed has shape {tuple(self.observed.shape)}, samples {tuple(x0_hat.shape)}"
            )
        mask = self.mask.to(x0_hat.dtype)
        error = (self.observed.to(x0_hat.dtype) - x0_hat) * mask
        if self.quantiles is None:  # the MSE energy
            return error.square().flatten(1).sum(1)
        q = self.quantiles.to(x0_hat.dtype)
        if q.shape != (x0_hat.shape[0],):
            raise UserError(f"quantiles must have shape ({x0_hat.shape[0]},), got {tuple(q.shape)}")
        q = q.reshape(-1, *([1] * (x0_hat.ndim - 1)))
        return (pinball(error, q) * mask).flatten(1).sum(1)
