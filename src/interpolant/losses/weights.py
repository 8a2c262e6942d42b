"""Loss weightings w(t): the factor on the squared error **in the target kind's space**.

The per-sample loss of an objective with target kind ``k`` is ``w(t) * mean((k_hat - k)^2)``.
Since every kind is affine in x0_hat at fixed x_t, ``(k_hat - k)^2 = K_k(t) (x0_hat - x0)^2`` with
the x0-space factor ``K_k = (d k / d x0 at fixed x_t)^2``:

=========  =============================================  =========================
target k   K_k(t)                                         VP paths (alpha^2+sigma^2=1)
=========  =============================================  =========================
x0         1                                              1
eps        SNR = alpha^2 / sigma^2                        SNR
v          (alpha^2 + sigma^2)^2 / sigma^2                SNR + 1
velocity   (alpha' - sigma' alpha / sigma)^2               (path dependent)
score      alpha^2 / sigma^4                              SNR / sigma^2
=========  =============================================  =========================

``K_k`` is computed from the conversion algebra of ``predictions`` (never written out again).
``uniform`` is the plain MSE on the target (w = 1). The other weightings are defined by an
*x0-space* weight lambda(t) and applied as ``w_k = lambda / K_k``, so they mean the same effective
weighting whatever the target:

* ``snr``: lambda = SNR (the eps-MSE of DDPM's L_simple, whatever the target);
* ``min-snr-gamma`` (Hang et al. 2023): lambda = min(SNR, gamma), i.e. w_x0 = min(SNR, gamma),
  w_eps = min(SNR, gamma) / SNR, w_v = min(SNR, gamma) / (SNR + 1) on VP paths (as in their paper),
  w_velocity = min(SNR, gamma) / K_velocity;
* ``edm`` (Karras et al. 2022, Table 1): lambda(sigma) = (sigma^2 + sigma_data^2) /
  (sigma sigma_data)^2 with sigma = sigma / alpha (``predictions.edm_loss_weight``).

Where logsnr < 0 the same weight is computed in eps space (``lambda / SNR`` over the eps-space
factor), so the end points alpha = 0 and sigma = 0 give finite limits instead of 0 / 0.

* ``ant-uw`` (ANT-UW: Go et al. 2023's uncertainty weighting of denoising tasks, after Kendall
  et al. 2018): t is binned into ``groups`` equal intervals (tasks); task g has a learned
  log-variance s_g = log sigma_g^2 and the loss is ``sum_g L_g / (2 sigma_g^2) + log sigma_g``
  with L_g the ``base``-weighted loss of the task, i.e. per sample
  ``w = base(t) exp(-s_g) / 2`` plus the additive ``offset = s_g / 2``. For fixed task losses the
  optimum is sigma_g^2 = L_g (weight 1 / (2 L_g)). The log-variances are parameters of the loss
  (:meth:`Weighting.named_parameters`), which the trainer optimises and checkpoints.

Weightings are frozen dataclasses whose fields are their options (``config()``, ``repr``, ``==``
and ``from_config`` derived; ``WEIGHTINGS`` builds one from a name or config).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..configurable import Configurable, Registry, number, one_of, option
from ..errors import UserError, WrongTypeError
from ..paths import GaussianPath
from ..predictions import check_kind, convert, edm_loss_weight
from .time import TimeSampler, time_from_config


def kind_factor(path: GaussianPath, t: Tensor, target: str, per: str = "x0") -> Tensor:
    """(d target / d ``per`` at fixed x_t)^2 per sample, ``per`` in {x0, eps} (float64)."""
    t = t.to(torch.float64)
    unit = torch.ones(t.shape[0], 1, dtype=torch.float64, device=t.device)
    slope = convert(unit, per, check_kind(target, "target"), torch.zeros_like(unit), t, path)
    return slope[:, 0] ** 2


class Weighting(Configurable, ABC):
    """w(t) multiplying the squared error in the target kind's space."""

    name: ClassVar[str] = "weighting"

    @abstractmethod
    def __call__(self, path: GaussianPath, t: Tensor, target: str) -> Tensor:
        """Per-sample weights (float64, shape of t) for a loss on ``target``."""

    def offset(self, path: GaussianPath, t: Tensor) -> Tensor | None:
        """A per-sample term the objective adds to the weighted loss (a learned weighting's
        regulariser, e.g. ANT-UW's log sigma); None for fixed weightings."""
        return None

    def named_parameters(self) -> dict[str, nn.Parameter]:
        """Learned parameters of the weighting (none for fixed weightings)."""
        return {}


@dataclass(frozen=True)
class UniformWeight(Weighting):
    """w = 1: the plain mean squared error on the target."""

    name: ClassVar[str] = "uniform"

    def __call__(self, path: GaussianPath, t: Tensor, target: str) -> Tensor:
        check_kind(target, "target")
        return torch.ones_like(t, dtype=torch.float64)


class X0SpaceWeighting(Weighting):
    """A weighting defined by its x0-space weight lambda(t), applied as lambda / K_target."""

    @abstractmethod
    def x0_weight(self, path: GaussianPath, t: Tensor) -> Tensor:
        """lambda(t): the factor on (x0_hat - x0)^2."""

    @abstractmethod
    def eps_weight(self, path: GaussianPath, t: Tensor) -> Tensor:
        """lambda(t) / SNR(t): the same weighting as a factor on (eps_hat - eps)^2."""

    def __call__(self, path: GaussianPath, t: Tensor, target: str) -> Tensor:
        t = t.to(torch.float64)
        from_x0 = self.x0_weight(path, t) / kind_factor(path, t, target, "x0")
        from_eps = self.eps_weight(path, t) / kind_factor(path, t, target, "eps")
        # Each form is finite on its side of logsnr = 0 (the other may be 0/0 at an end point).
        return torch.where(path.logsnr(t) >= 0, from_x0, from_eps)


@dataclass(frozen=True)
class SNRWeight(X0SpaceWeighting):
    """lambda = SNR(t) = exp(logsnr): equal to the unweighted eps-MSE for any target."""

    name: ClassVar[str] = "snr"

    def x0_weight(self, path: GaussianPath, t: Tensor) -> Tensor:
        return torch.exp(path.logsnr(t))

    def eps_weight(self, path: GaussianPath, t: Tensor) -> Tensor:
        return torch.ones_like(t)


@dataclass(frozen=True)
class MinSNR(X0SpaceWeighting):
    """Min-SNR-gamma (Hang et al. 2023): lambda = min(SNR, gamma) in x0 space."""

    name: ClassVar[str] = "min-snr"
    gamma: float = option(5.0, help="the SNR cap gamma", check=number(0, open_lo=True))

    def x0_weight(self, path: GaussianPath, t: Tensor) -> Tensor:
        return torch.exp(path.logsnr(t)).clamp(max=self.gamma)

    def eps_weight(self, path: GaussianPath, t: Tensor) -> Tensor:
        return (self.gamma * torch.exp(-path.logsnr(t))).clamp(max=1.0)


@dataclass(frozen=True)
class EDMWeight(X0SpaceWeighting):
    """EDM's lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 in x0 space, with the
    EDM noise level sigma / alpha, so that with EDM preconditioning the effective network target
    has unit variance (Karras et al. 2022, sec. 5)."""

    name: ClassVar[str] = "edm"
    sigma_data: float = option(
        0.5, help="standard deviation of the data", check=number(0, open_lo=True)
    )

    def x0_weight(self, path: GaussianPath, t: Tensor) -> Tensor:
        return edm_loss_weight(path, t, self.sigma_data)

    def eps_weight(self, path: GaussianPath, t: Tensor) -> Tensor:
        return edm_loss_weight(path, t, self.sigma_data) * torch.exp(-path.logsnr(t))


@dataclass(frozen=True)
class DensityWeight(Weighting):
    """w(t) = pi(t), the density of a time sampler, on the target-space error.

    With t ~ U[0, 1] this has the expected loss of sampling t ~ pi unweighted (Esser et al. 2024,
    sec. 3.1: w^pi = pi(t)); the two estimators differ only in variance. ``time`` may be given
    as its config dict.
    """

    name: ClassVar[str] = "density"
    time: TimeSampler = option(help="the time sampler whose density is the weight")

    def __post_init__(self) -> None:
        if isinstance(self.time, Mapping):
            object.__setattr__(self, "time", time_from_config(self.time))
        super().__post_init__()

    def validate(self) -> None:
        if not isinstance(self.time, TimeSampler):
            raise WrongTypeError(
                f"DensityWeight: time must be a TimeSampler, got {type(self.time).__name__}"
            )

    def __call__(self, path: GaussianPath, t: Tensor, target: str) -> Tensor:
        check_kind(target, "target")
        return self.time.with_path(path).pdf(t.to(torch.float64))


@dataclass(frozen=True)
class CallableWeight(Weighting):
    """A user function ``fn(path, t, target) -> (B,)`` on the target-space error (not
    serialisable: subclass :class:`Weighting` to store it in a config)."""

    name: ClassVar[str] = "callable"
    fn: Callable[[GaussianPath, Tensor, str], Tensor] = option(
        help="fn(path, t, target) -> per-sample weights"
    )

    def __call__(self, path: GaussianPath, t: Tensor, target: str) -> Tensor:
        return torch.as_tensor(self.fn(path, t, target), dtype=torch.float64)

    def config(self) -> dict[str, Any]:
        raise UserError("a CallableWeight cannot be serialised; subclass Weighting instead")


@dataclass(frozen=True)
class UncertaintyWeight(Weighting):
    """ANT-UW: learned per-task uncertainties on ``groups`` t intervals (see the module): equal
    intervals (``grouping="uniform"``) or ANT's SNR clustering (``"snr"``: exact 1-D k-means of
    the path's log-SNR, :func:`~interpolant.losses.task_groups.snr_task_edges`).

    ``log_variance`` (a float32 parameter of shape (groups,), zero at the start, i.e. sigma = 1)
    is not an option: it is learned, returned by :meth:`named_parameters` and checkpointed by
    the trainer with its optimiser state.
    """

    name: ClassVar[str] = "ant-uw"
    groups: int = option(
        5, help="number of equal t intervals (tasks)", check=number(1, integer=True)
    )
    base: Weighting = option(
        default_factory=UniformWeight, help="the weighting of each task's loss under its sigma"
    )
    grouping: str = option(
        "uniform",
        help="uniform (equal t intervals) or snr (k-means of the path's log-SNR, ANT's)",
        check=one_of("uniform", "snr"),
    )

    def __post_init__(self) -> None:
        if isinstance(self.base, str | Mapping):  # a name or config of the base weighting
            object.__setattr__(self, "base", get_weighting(self.base))
        super().__post_init__()
        # Learned state, not an option: outside the dataclass fields (config, ==, repr).
        self.__dict__["_learned_log_variance"] = nn.Parameter(torch.zeros(int(self.groups)))

    def validate(self) -> None:
        if not isinstance(self.base, Weighting) or isinstance(self.base, UncertaintyWeight):
            raise WrongTypeError(
                f"ant-uw: base must be a fixed Weighting, got {type(self.base).__name__}"
            )

    @property
    def log_variance(self) -> nn.Parameter:
        """s_g = log sigma_g^2 per task, shape (groups,)."""
        param: nn.Parameter = self.__dict__["_learned_log_variance"]
        return param

    def task_of(self, t: Tensor, path: GaussianPath | None = None) -> Tensor:
        """The task of each t in [0, 1]: min(floor(t groups), groups - 1) for uniform groups;
        for snr groups the interval of the path's SNR clusters holding t."""
        if self.grouping == "uniform":
            return (t.double().clamp(0, 1) * self.groups).long().clamp(max=self.groups - 1)
        from .task_groups import task_of_edges

        return task_of_edges(t, self.edges(path))

    def edges(self, path: GaussianPath | None) -> Tensor:
        """The t boundaries (groups - 1,) of the tasks on ``path`` (computed once per path)."""
        if self.grouping == "uniform":
            return torch.arange(1, self.groups, dtype=torch.float64) / self.groups
        if path is None:
            raise UserError("ant-uw with grouping=snr needs the path (its log-SNR) to group t")
        cached = self.__dict__.get("_edges")
        if cached is None or cached[0] is not path:
            from .task_groups import snr_task_edges

            cached = (path, snr_task_edges(path, int(self.groups)))
            self.__dict__["_edges"] = cached
        return cached[1]

    def _log_variance(self, t: Tensor, path: GaussianPath) -> Tensor:
        return self.log_variance.to(t.device)[self.task_of(t, path).to(t.device)]

    def __call__(self, path: GaussianPath, t: Tensor, target: str) -> Tensor:
        base = self.base(path, t, target)
        return base * torch.exp(-self._log_variance(t, path).to(torch.float64)) / 2

    def offset(self, path: GaussianPath, t: Tensor) -> Tensor:
        return self._log_variance(t, path).to(torch.float64) / 2  # log sigma_g

    def task_weights(self) -> Tensor:
        """The current per-task factors 1 / (2 sigma_g^2) (float64, detached)."""
        return torch.exp(-self.log_variance.detach().double()) / 2

    def named_parameters(self) -> dict[str, nn.Parameter]:
        return {"log_variance": self.log_variance}


#: Registry of weightings by name.
WEIGHTINGS: Registry[Weighting] = Registry("weighting", Weighting)
for _cls in (UniformWeight, SNRWeight, MinSNR, EDMWeight, DensityWeight, UncertaintyWeight):
    WEIGHTINGS.register(_cls)


def get_weighting(
    weight: str | Mapping[str, Any] | Weighting | Callable[..., Tensor] | None,
) -> Weighting:
    """A weighting from a name ("uniform", "snr", "min-snr" or "min-snr-<gamma>", "edm"), a
    config dict, an object, or a callable ``fn(path, t, target)``."""
    if weight is None:
        return UniformWeight()
    if isinstance(weight, Weighting):
        return weight
    if isinstance(weight, str):
        name = weight.lower()
        if name in ("uniform", "snr", "edm", "min-snr", "ant-uw"):
            return WEIGHTINGS.build(name)
        if name.startswith("ant-uw-"):
            try:
                return UncertaintyWeight(int(name[len("ant-uw-") :]))
            except ValueError as err:
                raise UserError(f"bad ANT-UW weighting {weight!r}: {err}") from None
        if name.startswith("min-snr-"):
            try:
                return MinSNR(float(name[len("min-snr-") :]))
            except ValueError as err:
                raise UserError(f"bad min-SNR weighting {weight!r}: {err}") from None
    elif isinstance(weight, Mapping):
        return weight_from_config(weight)
    elif callable(weight):
        return CallableWeight(weight)
    raise UserError(
        "weight must be a Weighting, a callable fn(path, t, target), or one of 'uniform', 'snr', "
        f"'min-snr', 'min-snr-<gamma>', 'edm', 'ant-uw', 'ant-uw-<groups>'; got {weight!r}"
    )


def weight_from_config(config: Mapping[str, Any]) -> Weighting:
    """Rebuild a weighting from its ``config()`` (a nested time-sampler config included)."""
    if not isinstance(config, Mapping) or config.get("name") not in WEIGHTINGS:
        name = config.get("name") if isinstance(config, Mapping) else config
        raise UserError(f"unknown weighting {name!r}; choose one of {sorted(WEIGHTINGS)}")
    return WEIGHTINGS.build(config)


__all__ = [
    "WEIGHTINGS",
    "CallableWeight",
    "DensityWeight",
    "EDMWeight",
    "MinSNR",
    "SNRWeight",
    "UncertaintyWeight",
    "UniformWeight",
    "Weighting",
    "X0SpaceWeighting",
    "get_weighting",
    "kind_factor",
    "weight_from_config",
]
