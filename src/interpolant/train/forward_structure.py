"""The ``forward`` training structure: observation-space diffusion with a known forward model
(DFM, seed 20; :mod:`interpolant.forward_models`) from ``interpolant train``.

The run's data are the signals S (e.g. the 8x8 digits), but the loss never sees one whole:
each training example is rendered at two different views (0/1 masks of ``views``), a context
O_c and a target O_g, and :class:`~interpolant.forward_models.ObservationDiffusion` noises O_g,
predicts S from (O_t, O_c, views) and scores the renders F(S, phi_g) and F(S, phi_c). The views
of example i at a step come from the loss's generator (distinct context and target).

``interpolant sample`` completes contexts: sample i is conditioned on the ``context_view``
render of training example i mod N, its target view is ``target_view``, the observation
diffusion runs on the run's sampler spec (any solver; DFM used DDIM) and the returned sample is
the signal S (in the data's shape), one network evaluation more than the solver's (counted).

Options (``train.objective``): ``views`` ("digits": :func:`~interpolant.forward_models.
digit_views`, the note's eight masks of an 8x8 image), ``context_view`` / ``target_view``
(sampling), ``context_weight`` (lambda_c), ``weight`` (w(t) of the target render, as for the
standard objective). The signal network is ``train.model.name=masked-view``
(:class:`~interpolant.forward_models.MaskedViewNet`; options width, depth, use_noisy_target).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..configurable import number, one_of, option
from ..errors import UserError, WrongTypeError
from ..predictions import Model
from ..randomness import derive_seed
from ..solvers import Sampler
from .config import TrainConfig
from .structures import Drawing, FitModel, Structure, _shape_check

#: Named view families: name -> (views, *signal_shape) masks.
VIEW_FAMILIES = ("digits",)
#: The signal networks the structure builds (``train.model.name``) and their options.
SIGNAL_NETS = {"masked-view": ("width", "depth", "use_noisy_target")}


def view_masks(name: str) -> Tensor:
    """The (views, D) masks of a named family."""
    from ..forward_models import digit_views

    if name == "digits":
        return digit_views().float()
    raise UserError(f"unknown views {name!r}; choose from {list(VIEW_FAMILIES)}")


@dataclass(frozen=True)
class ForwardStructure(Structure):
    """Observation-space diffusion (seed 20): the loss sees rendered views only (see the module)."""

    name: ClassVar[str] = "forward"
    views: str = option("digits", help="the view family (0/1 masks)", check=one_of(*VIEW_FAMILIES))
    context_view: int = option(
        0, help="the view sampling conditions on (digits: 0 = top half)", check=number(lo=0)
    )
    target_view: int = option(
        1, help="the view the sampler diffuses (digits: 1 = bottom half)", check=number(lo=0)
    )
    context_weight: float = option(1.0, help="lambda_c of the context render", check=number(lo=0))
    weight: str = option("uniform", help="w(t) of the target render (uniform, snr, min-snr-5...)")
    shape: list[int] | None = option(
        None, help="shape of one signal (filled in from the data)", check=_shape_check
    )

    def validate(self) -> None:
        n = view_masks(self.views).shape[0]
        for key in ("context_view", "target_view"):
            value = getattr(self, key)
            if not isinstance(value, int) or not 0 <= value < n:
                raise UserError(
                    f"train.objective.{key} must be a view index in [0, {n}), got {value}"
                )
        if self.context_view == self.target_view:
            raise UserError("train.objective.context_view and target_view must differ")
        from ..losses.weights import get_weighting

        get_weighting(self.weight)  # a bad name fails when the config is read

    def fit(self, config: TrainConfig, shape: tuple[int, ...], classes: int | None, fit: FitModel):
        if classes is not None:
            raise UserError("train.objective.name=forward takes no labels: set data.labels=false")
        dim = view_masks(self.views).shape[1]
        if math.prod(shape) != dim:
            raise UserError(
                f"views={self.views!r} are masks of {dim} values, but each sample of the data "
                f"has shape {shape} ({math.prod(shape)} values): use 8x8 digits (data.name=digits)"
            )
        spec = dict(config.model)
        allowed = SIGNAL_NETS.get(str(spec.get("name")))
        if allowed is None:
            raise UserError(
                f"train.objective.name=forward trains a signal network: set train.model.name to "
                f"one of {sorted(SIGNAL_NETS)}, got {spec.get('name')!r}"
            )
        unknown = sorted(set(spec) - {"name", *allowed})
        if unknown:
            raise UserError(f"train.model ({spec['name']}) has no option {unknown}; use {allowed}")
        return config.replace(objective={**config.objective, "shape": list(shape)})

    def filled(self, config: TrainConfig) -> ForwardStructure:
        if self.shape is None:
            raise UserError("train.objective (forward) lacks the signal shape: set shape")
        return self

    def network(self, config: TrainConfig, backbone: Callable[[dict[str, Any]], nn.Module]):
        from ..forward_models import MaskedViewNet
        from ..paths import GaussianPath
        from ..paths import from_config as path_from_config

        s = self.filled(config)
        spec = dict(config.model)
        if spec.pop("name", None) not in SIGNAL_NETS:
            raise UserError(f"train.model.name must be one of {sorted(SIGNAL_NETS)} for forward")
        path = path_from_config(config.path)
        if not isinstance(path, GaussianPath):
            raise UserError(f"forward diffuses observations on a Gaussian path, got {config.path}")
        torch.manual_seed(derive_seed("init", config.seed))  # every rank builds the same net
        net = MaskedViewNet(view_masks(self.views), **spec)
        return ObservationModel(net, path, s)

    def objective(self, config: TrainConfig, model: nn.Module | None, path: Any) -> Any:
        if not isinstance(model, ObservationModel):
            raise WrongTypeError(f"forward trains an ObservationModel, got {type(model)}")
        return ForwardObjective(model.observation)


class ObservationModel(Model):
    """A run's model for the ``forward`` structure: called with (O_t, t, context, context_view,
    target_view) it returns the signal (training); :meth:`draw` completes contexts."""

    #: DDP replicates the model itself: its forward returns the signal tensor.
    parallel_whole: ClassVar[bool] = True

    def __init__(self, net: nn.Module, path: Any, structure: ForwardStructure):
        from ..forward_models import ObservationDiffusion, mask_views

        super().__init__(net, path, predicts="x0")
        self.structure = structure
        self.observation = ObservationDiffusion(
            path,
            mask_views(view_masks(structure.views)),
            context_weight=structure.context_weight,
            weight=structure.weight,
        )

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Any:  # type: ignore[override]
        return self.net(x, t, **cond)

    def contexts(self, signals: Tensor) -> Any:
        """The sampling request for ``signals`` (B, ...): their ``context_view`` renders and the
        ``target_view`` (a :class:`~interpolant.forward_models.ViewBatch`)."""
        from ..forward_models import ViewBatch

        flat = signals.flatten(1).to(next(self.parameters()).dtype)
        n, s = flat.shape[0], self.structure
        context_view = torch.full((n,), s.context_view, device=flat.device)
        target_view = torch.full((n,), s.target_view, device=flat.device)
        return ViewBatch(target_view, self.observation.forward(flat, context_view), context_view)

    @torch.no_grad()
    def complete(
        self, signals: Tensor, seed: int, index: Any, sampler: Sampler | None = None
    ) -> tuple[Tensor, int]:
        """Signals (B, *shape) sampled given the context renders of ``signals`` (its truth is
        not used beyond the context), from sample numbers ``index``; and the NFE per sample."""
        from ..forward_models import sample_signal
        from ..randomness import normal

        param = next(self.parameters())
        batch = self.contexts(signals.to(param.device))
        dim = batch.context.shape[1]
        noise = normal((dim,), seed, list(index), "sample-noise").to(param.device, param.dtype)
        out = sample_signal(self.observation, self.net, noise, batch, sampler)
        return out.signal.reshape(signals.shape).float().cpu(), int(out.nfe)

    def draw(
        self,
        n: int,
        seed: int,
        batch_size: int,
        sampler: Sampler | None = None,
        data: Tensor | Callable[[], Tensor] | None = None,
        **_: Any,
    ) -> Drawing:
        """``n`` signals completing the context views of the training examples i mod N."""
        if data is None:
            raise UserError("the forward structure samples completions: it needs the run's data")
        signals = data() if callable(data) else data
        if not isinstance(signals, Tensor) or signals.shape[0] < 1:
            raise UserError("the forward structure needs the training signals as a tensor")
        parts, nfe = [], 0
        for start in range(0, n, batch_size):
            index = range(start, min(n, start + batch_size))
            rows = torch.tensor(list(index)) % signals.shape[0]
            x, nfe = self.complete(signals[rows], seed, index, sampler)
            parts.append(x)
        return Drawing(torch.cat(parts), None, nfe)


class ForwardObjective:
    """The trainer's loss for the ``forward`` structure: each signal of the batch is rendered at
    a context view and a different target view (drawn from the loss's generator), and scored by
    :class:`~interpolant.forward_models.ObservationDiffusion` (the loss sees the renders only)."""

    def __init__(self, observation: Any):
        self.observation = observation

    def loss(
        self,
        model: nn.Module,
        x0: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        from ..forward_models import ViewBatch

        if cond:
            raise UserError(f"the forward structure takes no conditioning, got {sorted(cond)}")
        signal = x0.flatten(1)
        n, views = signal.shape[0], self.observation.forward.n_views
        where = generator.device if generator is not None else torch.device("cpu")
        context = torch.randint(0, views, (n,), generator=generator, device=where)
        shift = torch.randint(1, views, (n,), generator=generator, device=where)
        context, target = context.to(x0.device), ((context + shift) % views).to(x0.device)
        render = self.observation.forward
        batch = ViewBatch(target, render(signal, context), context, target=render(signal, target))
        return self.observation.loss(model, batch, generator)


__all__ = ["ForwardObjective", "ForwardStructure", "ObservationModel", "view_masks"]
