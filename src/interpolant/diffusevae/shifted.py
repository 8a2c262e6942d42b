"""The shifted-mean path: diffusion towards N(m, sigma_max^2 I) around a per-sample prior mean m.

DiffuseVAE's form 2 (Pandey et al. 2022, eq. 9) diffuses an image x0 towards the coarse output
``m = x_hat`` of a cheap generator instead of towards 0:

    q(x_t | x0, m) = N(alpha(t) x0 + (1 - alpha(t)) m, sigma(t)^2 I),
    i.e.  x_t = alpha(t) (x0 - m) + sigma(t) eps + m.

In the shifted coordinate ``y = x - m`` this is the plain Gaussian path ``y_t = alpha y0 + sigma
eps`` with ``y0 = x0 - m``, so everything the library knows about Gaussian paths (prediction
algebra, solvers, grids, losses) applies unchanged to y. :class:`ShiftedMean` wraps *any*
:class:`~interpolant.paths.GaussianPath` this way; the prior mean is read from the
conditioning (``cond[key]``, ``"prior_mean"`` by default), so any coarse generator can supply it.

* The network always sees the state in data space, ``x_t = y_t + m`` (and, by default, ``m``
  itself as conditioning, as DiffuseVAE's code concatenates it). Its x0 output is data; eps,
  velocity and score are the same in x and y (m does not depend on t or x); ``v`` is read in y:
  ``v = alpha eps - sigma (x0 - m)``.
* Sampling starts at ``x = m + sigma(t_max) noise`` (N(m, sigma_max^2 I)), runs any solver on y
  and returns ``y + m`` (the code's "subtract x_hat after the last step", in our sign).
* With m = 0 every operation is the plain path's, bit for bit.

The official code trains the equivalent ``x_t = sqrt(abar) x0 + x_hat + sqrt(1 - abar) eps``
(its data variable is ``x0 + x_hat``); we keep the paper's form, in which x0 stays the data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError, WrongTypeError
from ..losses import Objective
from ..paths import GaussianPath, as_time, expand_like
from ..predictions import Model, convert
from ..solvers.hooks import Hook
from ..solvers.loop import SampleResult
from ..solvers.loop import sample as loop_sample
from ..solvers.spec import Sampler

DEFAULT_KEY = "prior_mean"


class ShiftedMean:
    """``x_t = alpha(t) (x0 - m) + sigma(t) eps + m`` on any Gaussian ``path``, m = ``cond[key]``.

    Args:
        path: the Gaussian path of the shifted coordinate y = x - m.
        key: the conditioning key that holds the prior mean m, shape (B, ...) like x.
        pass_mean: also hand m to the network as ``cond[key]`` (DiffuseVAE concatenates it to
            the input, see :class:`~interpolant.diffusevae.nets.ChannelConcat`); False removes
            it from the network's conditioning.
    """

    def __init__(self, path: GaussianPath, key: str = DEFAULT_KEY, pass_mean: bool = True):
        if not isinstance(path, GaussianPath):
            raise WrongTypeError(f"path must be a GaussianPath, got {type(path).__name__}")
        if not isinstance(key, str) or not key:
            raise UserError(f"key must be a non-empty string, got {key!r}")
        self.path, self.key, self.pass_mean = path, key, bool(pass_mean)

    def __repr__(self) -> str:
        return f"ShiftedMean({self.path!r}, key={self.key!r}, pass_mean={self.pass_mean})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShiftedMean) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash((self.path, self.key, self.pass_mean))

    def config(self) -> dict[str, Any]:
        """JSON-serialisable description (:meth:`from_config` rebuilds it)."""
        return {"path": self.path.config(), "key": self.key, "pass_mean": self.pass_mean}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ShiftedMean:
        from ..paths import from_config as path_from_config

        return cls(path_from_config(config["path"]), config["key"], config["pass_mean"])

    # -- the prior mean ------------------------------------------------------------------------

    def mean_of(self, cond: dict[str, Any] | None, like: Tensor) -> Tensor:
        """The prior mean ``cond[key]``, checked to have ``like``'s shape, in its dtype/device."""
        if not cond or self.key not in cond:
            raise UserError(
                f"the shifted-mean path needs the prior mean as cond[{self.key!r}] (shape "
                f"{tuple(like.shape)}, e.g. a VAE's decoded images); got cond keys "
                f"{sorted(cond or {})}"
            )
        m = cond[self.key]
        if not isinstance(m, Tensor):
            raise WrongTypeError(f"cond[{self.key!r}] must be a tensor, got {type(m).__name__}")
        if m.shape != like.shape:
            raise UserError(
                f"cond[{self.key!r}] has shape {tuple(m.shape)}; the prior mean must have the "
                f"shape of x, {tuple(like.shape)} (one mean per row)"
            )
        if m.dtype == like.dtype and m.device == like.device:
            return m
        return m.to(dtype=like.dtype, device=like.device)

    # -- the forward process -------------------------------------------------------------------

    def sample_xt(self, x0: Tensor, t: float | Tensor, eps: Tensor, mean: Tensor) -> Tensor:
        """x_t = alpha(t) (x0 - m) + sigma(t) eps + m (DiffuseVAE eq. 9)."""
        m = self.mean_of({self.key: mean}, x0)
        return self.path.sample_xt(x0 - m, as_time(t, x0), eps) + m

    def marginal(self, x0: Tensor, t: float | Tensor, mean: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and standard deviation of q(x_t | x0, m): (alpha (x0 - m) + m, sigma)."""
        m = self.mean_of({self.key: mean}, x0)
        t = as_time(t, x0)
        a = expand_like(self.path.alpha(t).to(x0.dtype), x0)
        s = expand_like(self.path.sigma(t).to(x0.dtype), x0)
        return a * (x0 - m) + m, s * torch.ones_like(x0)

    def convert(
        self,
        value: Tensor,
        from_kind: str,
        to_kind: str,
        x: Tensor,
        t: float | Tensor,
        mean: Tensor,
    ) -> Tensor:
        """Convert a prediction at (x_t, t) with prior mean m between kinds: the plain path's
        algebra on y = x - m, with x0 read in data space (x0 = y0 + m)."""
        m = self.mean_of({self.key: mean}, x)
        y_value = value - m if from_kind == "x0" else value
        out = convert(y_value, from_kind, to_kind, x - m, t, self.path)
        return out + m if to_kind == "x0" else out

    # -- models, losses, sampling --------------------------------------------------------------

    def model(self, model: Model) -> ShiftedModel:
        """``model`` (a network on data-space x_t) as a model of the shifted coordinate y."""
        return model if isinstance(model, ShiftedModel) else ShiftedModel(model, self)

    def objective(self, objective: Objective) -> ShiftedObjective:
        """``objective`` (on this path) trained on the shifted coordinate y0 = x0 - m."""
        return ShiftedObjective(objective, self)

    def sample(
        self,
        model: Model,
        noise: Tensor,
        sampler: Sampler | None = None,
        *,
        cond: dict[str, Any],
        hooks: Sequence[Hook[Any]] = (),
        index: Sequence[int] | Tensor | None = None,
        progress: bool = False,
        **options: Any,
    ) -> SampleResult:
        """Sample x0 given the prior means ``cond[key]`` with any solver: start at
        ``m + sigma(t_max) noise``, integrate y = x - m down to t = 0, return ``y + m``.

        Hooks act in the shifted coordinate (their state is y and their x0 is read as the
        model's x0 minus m). Other arguments are those of :func:`interpolant.sample`.
        """
        m = self.mean_of(cond, noise)
        result = loop_sample(
            self.model(model),
            noise,
            sampler,
            hooks=hooks,
            cond=cond,
            index=index,
            progress=progress,
            **options,
        )
        return dataclasses.replace(result, x=result.x + m.to(result.x.dtype))


class ShiftedModel(Model):
    """A data-space network seen in the shifted coordinate y = x - m of a :class:`ShiftedMean`.

    The network is called on ``y + m`` (with ``cond[key] = m`` unless ``pass_mean`` is False)
    and its x0 output becomes ``x0 - m``; the other kinds pass unchanged. The parameters are the
    wrapped model's (the same ``net`` module), so training one trains the other.
    """

    def __init__(self, model: Model, shift: ShiftedMean):
        if not isinstance(model, Model):
            raise WrongTypeError(
                f"model must be an interpolant Model, got {type(model).__name__}; wrap a network "
                "with ip.Model(net, path, predicts=...)"
            )
        if model.path != shift.path:
            raise UserError(
                f"the model's path is {model.path!r}, the shifted path's {shift.path!r}"
            )
        super().__init__(model.net, model.path, model.predicts)
        self.shift = shift

    def call_net(
        self, x: Tensor, t: Tensor, cond: dict[str, Any], dtype: torch.dtype | None = None
    ) -> Tensor:
        m = self.shift.mean_of(cond, x)
        if not self.shift.pass_mean:
            cond = {k: v for k, v in cond.items() if k != self.shift.key}
        value = super().call_net(x + m, t, cond, dtype)
        return value - m if self.predicts == "x0" else value


class ShiftedObjective:
    """An :class:`~interpolant.losses.Objective` on the shifted coordinate: the loss of y0 =
    x0 - m under the plain path, the network seeing ``x_t = y_t + m`` (DiffuseVAE's form-2
    training, any target kind, time sampler and weighting). The trainer passes m as
    ``cond[key]`` (``TrainConfig.cond_key = key`` with the prior means as ``labels``)."""

    def __init__(self, objective: Objective, shift: ShiftedMean):
        if not isinstance(objective, Objective):
            raise WrongTypeError(f"objective must be an Objective, got {type(objective).__name__}")
        if objective.path != shift.path:
            raise UserError(
                f"the objective's path is {objective.path!r}, the shifted path's {shift.path!r}"
            )
        self.objective, self.shift = objective, shift

    def loss(
        self,
        model: Model,
        x0: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """The objective's loss on y0 = x0 - m with ``model`` seen in y."""
        m = self.shift.mean_of(cond, x0)
        return self.objective.loss(self.shift.model(model), x0 - m, generator, cond, **kwargs)

    __call__ = loss

    def end_step(self) -> None:
        self.objective.end_step()

    def state(self) -> dict[str, Tensor]:
        return self.objective.state()

    def load_state(self, state: dict[str, Tensor]) -> None:
        self.objective.load_state(state)

    def config(self) -> dict[str, Any]:
        return {"objective": self.objective.config(), "shift": self.shift.config()}

    def __repr__(self) -> str:
        return f"ShiftedObjective({self.objective!r}, {self.shift!r})"


__all__ = ["DEFAULT_KEY", "ShiftedMean", "ShiftedModel", "ShiftedObjective"]
