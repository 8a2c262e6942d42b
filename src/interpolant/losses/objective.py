"""The training objective: a path, a regression target, a time sampler and a weighting.

    L = E_{t ~ time, x0 ~ data, eps ~ noise} [w(t) mean((k_hat(x_t, t) - k(x0, eps, t))^2)]

with eps from ``path.noise_like``, ``x_t = path.sample_xt(x0, t, eps)``, ``k`` the target kind
(x0, eps, velocity, score, v) written through (x0, eps) by ``predictions.from_x0_eps`` and
``k_hat`` the model's prediction converted to that kind. The minimiser of each term is the
conditional expectation ``E[k | x_t]``, so every target kind has the same optimum (the exact
denoiser); the choices of target, time density and weighting change only how errors at
different t are traded off.

An optional minibatch ``coupling`` (``losses.coupling``; "ot" as in OT-CFM) re-pairs the eps
draws with the x0 of the batch before x_t is built; it changes the joint law of (x0, eps), so the
optimum is then the velocity of the coupled interpolant (a flow, not a score).

Optional extra ``terms`` (``losses.terms``: regularisers such as Smooth Diffusion's step-wise
variation) add a weighted per-sample penalty computed from the same batch (x0, eps, t, x_t and
the prediction). A loop other than the trainer that uses terms with running statistics calls
:meth:`Objective.end_step` once per optimiser step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError, WrongTypeError
from ..paths import GaussianPath
from ..paths import from_config as path_from_config
from ..predictions import Coefficients, Model, Prediction, check_kind, from_x0_eps
from .coupling import Coupling, get_coupling
from .terms import LossInputs, LossTerm, get_terms
from .time import TimeSampler, get_time_sampler, time_from_config
from .weights import Weighting, get_weighting, weight_from_config


class Objective:
    """A denoising / flow-matching loss made of four separate choices.

    Args:
        path: the Gaussian path x_t = alpha(t) x0 + sigma(t) eps (its ``noise_like`` draws eps,
            so PFGM++'s heavy-tailed kernel is used on the PFGM path).
        target: the regression target kind: x0, eps, velocity, score or v.
        time: the time sampler (a :class:`TimeSampler`, its name or its config dict; default
            U[0, 1]).
        weight: the weighting of the target-space squared error (see ``losses.weights``): a
            :class:`Weighting`, a name ("uniform", "snr", "min-snr-5", "edm"), a config dict or a
            callable.
        predicts: what a plain callable ``net(x_t, t, **cond)`` predicts (default: ``target``);
            an :class:`~interpolant.Model` declares its own kind.
        coupling: how source draws are paired with the data within a batch (see
            ``losses.coupling``): "independent" (default), "ot" (exact minibatch OT, as OT-CFM),
            "sinkhorn", a config dict or a :class:`Coupling`. A non-independent coupling trains
            a flow (velocity) but not a score: sample it with ODE solvers.
        terms: extra loss terms (``losses.terms``): :class:`LossTerm` objects, names,
            ``"name:weight"`` strings or config dicts, e.g. ``["step-variation:0.1"]``.
    """

    def __init__(
        self,
        path: GaussianPath,
        target: str = "velocity",
        time: TimeSampler | str | dict[str, Any] | None = None,
        weight: Weighting | str | dict[str, Any] | Callable[..., Tensor] | None = "uniform",
        predicts: str | None = None,
        coupling: Coupling | str | dict[str, Any] | None = None,
        terms: Any = None,
    ) -> None:
        if not isinstance(path, GaussianPath):
            raise WrongTypeError(f"path must be a GaussianPath, got {type(path).__name__}")
        self.path = path
        self.target = check_kind(target, "target")
        self.time = get_time_sampler(time).with_path(path)
        self.weight = get_weighting(weight)
        self.predicts = check_kind(predicts if predicts is not None else target, "predicts")
        self.coupling = get_coupling(coupling)
        self.terms: tuple[LossTerm, ...] = get_terms(terms)

    # -- the four pieces -------------------------------------------------------------------------

    def sample_time(
        self, n: int, generator: torch.Generator | None = None, device: Any = None
    ) -> Tensor:
        """n training times (float64) from the time sampler."""
        return self.time.sample(n, generator, device)

    def regression_target(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """The target kind at (x0, eps, t), e.g. eps - x0 for the velocity on the linear path."""
        return from_x0_eps(self.target, x0, eps, Coefficients.at(self.path, t, x0))

    def weights(self, t: Tensor) -> Tensor:
        """Per-sample weights w(t) on the target-space squared error (float64)."""
        return self.weight(self.path, t, self.target)

    def prediction(self, model: Model | Callable[..., Tensor], x_t: Tensor, t: Tensor, **cond):
        """The model's prediction at (x_t, t) as a :class:`Prediction` (any kind readable)."""
        if isinstance(model, Model):
            if model.path != self.path:
                raise UserError(f"model's path is {model.path!r}, the objective's {self.path!r}")
            return model(x_t, t, **cond)
        if not callable(model):
            raise WrongTypeError(
                f"model must be a Model or a callable net(x_t, t), got {type(model)}"
            )
        value = model(x_t, t, **cond)
        if not isinstance(value, Tensor) or value.shape != x_t.shape:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise UserError(f"net returned {shape} for x_t of shape {tuple(x_t.shape)}")
        return Prediction(x_t, t, self.predicts, value, Coefficients.at(self.path, t, x_t))

    # -- the loss --------------------------------------------------------------------------------

    def per_sample_loss(
        self,
        model: Model | Callable[..., Tensor],
        x0: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
        *,
        t: Tensor | None = None,
        eps: Tensor | None = None,
    ) -> Tensor:
        """w(t) * mean over features of (k_hat - k)^2, shape (B,).

        t and eps are drawn with ``generator`` (t first) unless given; t is rounded to the data's
        dtype (float32 at least) first, so that x_t, the target and the model see the same time.
        eps (drawn or given) is then re-paired with x0 by the coupling (identity by default).
        """
        if not isinstance(x0, Tensor) or x0.ndim < 1 or x0.shape[0] == 0:
            raise UserError("x0 must be a tensor of shape (batch, ...) with batch >= 1")
        batch = x0.shape[0]
        if t is None:
            t = self.sample_time(batch, generator)
        if t.shape != (batch,):
            raise UserError(f"t must have shape ({batch},), got {tuple(t.shape)}")
        # Half-precision data keeps t in float32 (bf16 would round t to steps of 1/128).
        t_dtype = x0.dtype if x0.dtype in (torch.float32, torch.float64) else torch.float32
        t = t.to(device=x0.device, dtype=t_dtype)
        if eps is None:
            eps = self.path.noise_like(x0, generator)
        elif eps.shape != x0.shape:
            raise UserError(
                f"eps must have the shape of x0 {tuple(x0.shape)}, got {tuple(eps.shape)}"
            )
        eps = self.coupling.pair(x0, eps, generator)
        if any(term.needs_noise_grad for term in self.terms):
            eps = eps.detach().requires_grad_(True)
        x_t = self.path.sample_xt(x0, t, eps)
        target = self.regression_target(x0, eps, t)
        prediction = self.prediction(model, x_t, t, **(cond or {}))
        w = self.weights(t).to(x0.dtype)
        loss = w * (prediction.get(self.target) - target).square().flatten(1).mean(dim=1)
        offset = self.weight.offset(self.path, t)  # a learned weighting's own term (ANT-UW)
        if offset is not None:
            loss = loss + offset.to(loss.dtype)
        if self.terms:
            sigma = torch.as_tensor(Coefficients.at(self.path, t, x0).sigma)
            inputs = LossInputs(x0, eps, t, x_t, prediction, sigma, generator, cond, model)
            for term in self.terms:
                loss = loss + term.weight * term.penalty(inputs).to(loss.dtype)
        return loss

    def loss(
        self,
        model: Model | Callable[..., Tensor],
        x0: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """The batch mean of :meth:`per_sample_loss`."""
        return self.per_sample_loss(model, x0, generator, cond, **kwargs).mean()

    __call__ = loss

    def named_parameters(self) -> dict[str, torch.nn.Parameter]:
        """Learned parameters of the loss itself (ANT-UW's log-variances), ``{"weight.name": p}``;
        the trainer optimises and checkpoints them with the model."""
        return {f"weight.{k}": p for k, p in self.weight.named_parameters().items()}

    # -- extra terms' running statistics (the trainer checkpoints them) --------------------------

    def end_step(self) -> None:
        """Once per optimiser step: the terms update their running statistics."""
        for term in self.terms:
            term.end_step()

    def state(self) -> dict[str, Tensor]:
        """The terms' running statistics as ``{"term-name.key": tensor}``."""
        return {f"{t.name}.{k}": v for t in self.terms for k, v in t.state().items()}

    def load_state(self, state: dict[str, Tensor]) -> None:
        """Restore :meth:`state`; refuses statistics of terms this objective does not have."""
        mine = self.state()
        if set(state) != set(mine):
            raise UserError(
                f"checkpointed objective state has {sorted(state)}, this objective keeps "
                f"{sorted(mine)} (were the loss terms changed?)"
            )
        for term in self.terms:
            prefix = f"{term.name}."
            term.load_state({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})

    # -- serialisation ---------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """JSON-serialisable description; :meth:`from_config` rebuilds the objective."""
        config: dict[str, Any] = {
            "path": self.path.config(),
            "target": self.target,
            "predicts": self.predicts,
            "time": self.time.config(),
            "weight": self.weight.config(),
        }
        if self.coupling.name != "independent":  # configs of plain objectives stay as they were
            config["coupling"] = self.coupling.config()
        if self.terms:
            config["terms"] = [term.config() for term in self.terms]
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Objective:
        """Rebuild an objective from :meth:`config`."""
        missing = {"path", "target", "time", "weight"} - set(config)
        if missing:
            raise UserError(f"objective config lacks keys {sorted(missing)}")
        return cls(
            path_from_config(config["path"]),
            target=config["target"],
            time=time_from_config(config["time"]),
            weight=weight_from_config(config["weight"]),
            predicts=config.get("predicts"),
            coupling=config.get("coupling"),
            terms=config.get("terms"),
        )

    def __repr__(self) -> str:
        return (
            f"Objective(path={self.path!r}, target={self.target!r}, time={self.time!r}, "
            f"weight={self.weight!r}, predicts={self.predicts!r}, coupling={self.coupling!r}"
            + (f", terms={list(self.terms)!r})" if self.terms else ")")
        )
