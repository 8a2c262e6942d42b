"""Extra loss terms: regularisers that plug into :class:`~interpolant.losses.Objective`.

A term sees everything the denoising loss saw for one batch (:class:`LossInputs`: x0, the noise
eps, t, x_t and the model's :class:`~interpolant.predictions.Prediction`, readable as any kind)
and returns a per-sample penalty; the objective adds ``weight * penalty`` to each sample's loss:

    L_i = w(t_i) ||k_hat - k||^2 / D + sum_terms weight_term * penalty_term(inputs)_i.

A term that differentiates through the noise (``needs_noise_grad``) gets eps as a leaf with
``requires_grad`` before x_t is built, so ``torch.autograd.grad(., eps)`` is the Jacobian of the
prediction through x_t. A term with running statistics keeps them as tensors in
:meth:`LossTerm.state`, which the trainer writes into and reads from every checkpoint; it
accumulates during an optimiser step and updates once in :meth:`LossTerm.end_step`, from the sum
over the whole global batch (all-reduced across ranks), so the statistics do not depend on the
number of ranks, accumulation rounds or noise blocks.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..configurable import Configurable, Registry, number, option
from ..errors import UserError
from ..predictions import Prediction


@dataclass(frozen=True)
class LossInputs:
    """One batch of the denoising loss as a term sees it (all tensors of shape (B, ...))."""

    x0: Tensor
    eps: Tensor
    t: Tensor
    x_t: Tensor
    pred: Prediction
    sigma: Tensor  # sigma(t) broadcast to x0's shape
    generator: torch.Generator | None
    cond: dict[str, Any] | None
    #: The model handed to the objective, for terms that evaluate it away from x_t (derivatives
    #: in x and t, as the Fokker-Planck residual); None where no objective built the inputs.
    model: Any = None


@dataclass(frozen=True)
class LossTerm(Configurable, ABC):
    """Base of the extra loss terms; subclasses set ``name`` and implement :meth:`penalty`."""

    weight: float = option(1.0, help="factor on the term's per-sample penalty", check=number(0))

    #: Whether eps must be a leaf with gradients (terms that differentiate through the noise).
    needs_noise_grad: ClassVar[bool] = False

    @abstractmethod
    def penalty(self, inputs: LossInputs) -> Tensor:
        """The per-sample penalty, shape (B,)."""

    def state(self) -> dict[str, Tensor]:
        """Running statistics to checkpoint (name -> tensor, updated in place)."""
        return {}

    def load_state(self, state: dict[str, Tensor]) -> None:
        """Restore :meth:`state` from a checkpoint; names must match."""
        mine = self.state()
        if set(state) != set(mine):
            raise UserError(
                f"{self.name}: checkpointed state has {sorted(state)}, this term keeps "
                f"{sorted(mine)}"
            )
        for key, value in state.items():
            mine[key].copy_(value.to(mine[key]))

    def end_step(self) -> None:
        """Called by the trainer once per optimiser step, after the backward passes."""


LOSS_TERMS: Registry[LossTerm] = Registry("loss term", LossTerm)

#: Terms defined in packages above ``losses`` (they need its tools): name -> the module whose
#: import registers them, imported on first use of the name so configs can name them.
PLUGIN_TERMS = {"fokker-planck": "interpolant.analysis.fokker_planck"}


def _all_reduce_sum(value: Tensor) -> Tensor:
    """Sum over ranks when torch.distributed runs (the statistics then see the global batch)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
    return value


@LOSS_TERMS.register
@dataclass(frozen=True)
class StepVariation(LossTerm):
    """Smooth Diffusion's step-wise variation regulariser (Guo et al. 2024, Sec. 3.2).

    The aim is a constant ratio ||dx0_hat|| / ||dx_T||; one denoising step is its snapshot. With
    a random unit direction y in x0-space (y ~ N(0, I) sigma(t) / sqrt(D), as the released code
    draws it, where sigma(t) = sqrt(1 - abar_t) on VP), the induced noise-space variation is the
    vector-Jacobian product

        g = (d x0_hat / d eps)^T y,    ell = ||g||_2,

    and the penalty is (ell - a)^2 with a the running mean of ell (StyleGAN2's path-length
    regulariser applied to the denoiser). Differences from the released code, which keeps ``a``
    as a plain attribute updated per micro-batch: here ``a`` is checkpointed, updated once per
    optimiser step from the global batch mean of ell (``decay`` as the code's 0.01), and during
    the first max(1, ``warmup_steps``) steps ``a`` is the plain running average of ell while the
    penalty is off (from a = 0 the code's penalty starts at ell^2, which is the "reg loss shakes
    1~100" complaint). Every prediction kind works: x0_hat is read from the prediction.
    """

    name: ClassVar[str] = "step-variation"
    needs_noise_grad: ClassVar[bool] = True

    decay: float = option(0.01, help="EMA rate of the running mean of ell", check=number(0, 1))
    warmup_steps: int = option(
        0,
        help="steps with the penalty off while the mean of ell settles (at least 1)",
        check=number(0, integer=True),
    )
    running: Tensor = dataclasses.field(init=False, repr=False, compare=False)
    _sums: Tensor = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # running = [a, steps done]; _sums = [sum of ell, count] of the step in progress.
        object.__setattr__(self, "running", torch.zeros(2, dtype=torch.float64))
        object.__setattr__(self, "_sums", torch.zeros(2, dtype=torch.float64))
        super().__post_init__()

    def variation(self, inputs: LossInputs) -> Tensor:
        """ell = ||(d x0_hat / d eps)^T y|| per sample, differentiable (create_graph)."""
        x0_hat = inputs.pred.get("x0")
        if not x0_hat.requires_grad:
            raise UserError(
                "step-variation needs gradients of the prediction through the noise, but the "
                "model's output does not require grad (does it detach its input or run under "
                "torch.no_grad?)"
            )
        dim = x0_hat[0].numel()
        y = torch.randn(
            x0_hat.shape, generator=inputs.generator, device=x0_hat.device, dtype=x0_hat.dtype
        )
        y = y * inputs.sigma.to(x0_hat.dtype) / dim**0.5
        (g,) = torch.autograd.grad((x0_hat * y).sum(), inputs.eps, create_graph=True)
        return g.flatten(1).norm(dim=1)

    def penalty(self, inputs: LossInputs) -> Tensor:
        ell = self.variation(inputs)
        with torch.no_grad():
            self._sums[0] += ell.detach().double().sum().cpu()
            self._sums[1] += ell.numel()
        a, steps = float(self.running[0]), int(self.running[1])
        if steps < max(self.warmup_steps, 1):
            return ell * 0.0  # keeps the graph (and DDP's used-parameter set) unchanged
        return (ell - a).square()

    def end_step(self) -> None:
        total = _all_reduce_sum(self._sums.to(self._device(), copy=True))
        self._sums.zero_()
        if float(total[1]) == 0:
            return
        mean, steps = float(total[0] / total[1]), int(self.running[1])
        rate = 1.0 / (steps + 1) if steps < max(self.warmup_steps, 1) else self.decay
        self.running[0] += rate * (mean - float(self.running[0]))
        self.running[1] += 1

    def _device(self) -> torch.device:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def state(self) -> dict[str, Tensor]:
        return {"running": self.running}

    @property
    def mean_variation(self) -> float:
        """The running mean a of ell."""
        return float(self.running[0])


def _register_plugin(spec: Any) -> None:
    """Import the module of a :data:`PLUGIN_TERMS` name not registered yet."""
    name = spec.get("name") if isinstance(spec, dict) else spec
    if isinstance(name, str) and name.lower() in PLUGIN_TERMS and name.lower() not in LOSS_TERMS:
        import importlib

        importlib.import_module(PLUGIN_TERMS[name.lower()])


def get_terms(specs: Any) -> tuple[LossTerm, ...]:
    """Loss terms from a list of terms, names, ``"name:weight"`` strings or config dicts."""
    if specs is None:
        return ()
    if isinstance(specs, (str, dict, LossTerm)):
        specs = [specs]
    terms = []
    for spec in specs:
        if isinstance(spec, str) and ":" in spec:
            name, _, weight = spec.partition(":")
            try:
                spec = {"name": name, "weight": float(weight)}
            except ValueError:
                raise UserError(
                    f"loss term {spec!r}: the weight after ':' must be a number"
                ) from None
        _register_plugin(spec)
        terms.append(LOSS_TERMS.build(spec))
    names = [t.name for t in terms]
    if len(set(names)) != len(names):
        raise UserError(f"loss terms are named more than once: {names}")
    return tuple(terms)


__all__ = ["LOSS_TERMS", "PLUGIN_TERMS", "LossInputs", "LossTerm", "StepVariation", "get_terms"]
