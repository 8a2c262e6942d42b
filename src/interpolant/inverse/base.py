"""The measurement-operator interface, and what every inverse-problem method shares.

A measurement is ``y = A(x) + noise_std * n`` with ``n ~ N(0, I)``. Operators act on batches
(B, *x_shape) -> (B, *y_shape); linear operators also give the adjoint (for gradients and
data-consistency steps) and, where it exists in closed form, the pseudo-inverse.

Shared by the methods: the :class:`Reconstruction` result of a method that is not one sampling
run, the start noise drawn from a spec's seed (:func:`start_noise`), the exact forward
transition (:func:`renoise`), and the gradient of a loss of x0_hat through the network
(:class:`TapedModel`, :func:`model_gradient`) without a second forward pass.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError, WrongTypeError
from ..paths import GaussianPath
from ..predictions import Evaluations, Model, Prediction
from ..randomness import Streams, fresh_seed
from ..solvers import Node, Run, Sampler, node_at

#: The stream of measurement noise (``Operator.measure``).
MEASUREMENT_STREAM = "measurement-noise"
#: The stream of the start noise of the inverse-problem samplers (row i: sample i).
START_STREAM = "inverse-start"

Rows = Sequence[int] | Tensor


class Operator(ABC):
    """Forward model A with Gaussian measurement noise of standard deviation ``noise_std``.

    ``x_shape`` is the shape of one signal (without the batch dimension); calling the operator
    on a batch of another shape raises a :class:`UserError` that names both shapes.
    """

    #: True when A is linear (adjoint and data-consistency projections are then exact).
    linear: bool = True

    def __init__(self, x_shape: tuple[int, ...], noise_std: float = 0.0) -> None:
        if noise_std < 0:
            raise UserError(f"noise_std must be >= 0, got {noise_std}")
        self.x_shape = tuple(int(s) for s in x_shape)
        self.noise_std = float(noise_std)

    def check(self, x: Tensor, argument: str = "x") -> None:
        """Raise if ``x`` is not a batch of signals of shape ``x_shape``."""
        if tuple(x.shape[1:]) != self.x_shape:
            raise UserError(
                f"{type(self).__name__} acts on signals of shape {self.x_shape}; "
                f"{argument} has shape {tuple(x.shape)} (batch first)"
            )

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """A(x), noiseless."""

    def adjoint(self, y: Tensor) -> Tensor:
        """A^T y (linear operators only)."""
        raise WrongTypeError(f"{type(self).__name__} is not linear: it has no adjoint")

    def pinv(self, y: Tensor) -> Tensor:
        """A^+ y, the minimum-norm least-squares solution (where a closed form exists)."""
        raise WrongTypeError(f"{type(self).__name__} has no closed-form pseudo-inverse")

    def __call__(self, x: Tensor) -> Tensor:
        self.check(x)
        return self.forward(x)

    def measure(self, x: Tensor, seed: int | None = None, index: Rows | None = None) -> Tensor:
        """y = A(x) + noise_std * n, with n from the per-sample stream ``measurement-noise`` of
        ``seed`` (row r: sample ``index[r]``, default 0..B-1), so a sample's noise does not
        depend on its batch; ``seed=None`` draws a seed from torch's global generator."""
        y = self(x)
        if self.noise_std == 0:
            return y
        seed = fresh_seed() if seed is None else seed
        rows = x.shape[0] if index is None else index
        return y + self.noise_std * Streams(seed, rows, MEASUREMENT_STREAM).normal_like(y)


@dataclass(frozen=True)
class Reconstruction:
    """An estimate of x from y and the model evaluations per sample it cost."""

    x: Tensor
    nfe: int


def seeded(sampler: Sampler) -> tuple[Sampler, int]:
    """``sampler`` with a seed (drawn from torch's global generator if it has none) and that
    seed: the start noise, the solver's noise and a method's own draws all derive from it."""
    seed = fresh_seed() if sampler.seed is None else sampler.seed
    return sampler.replace(seed=seed), seed


def start_noise(seed: int, shape: Sequence[int], like: Tensor, index: Rows | None = None) -> Tensor:
    """Standard normals (B, *shape[1:]) from the ``inverse-start`` stream of ``seed`` (row r:
    sample ``index[r]``, default 0..B-1) in ``like``'s dtype and device."""
    rows = shape[0] if index is None else index
    return Streams(seed, rows, START_STREAM).normal(shape[1:], dtype=like.dtype, device=like.device)


def renoise(path: GaussianPath, x: Tensor, t_from: float, t_to: float, noise: Tensor) -> Tensor:
    """A draw of q(x_{t_to} | x_{t_from}) for t_to >= t_from: the exact forward transition
    x' = (alpha' / alpha) x + sqrt(sigma'^2 - (alpha' / alpha)^2 sigma^2) z (``noise`` = z)."""
    if t_to < t_from:
        raise UserError(f"renoise goes up in noise: need t_to >= t_from, got {t_to} < {t_from}")
    now, nxt = node_at(path, t_from), node_at(path, t_to)
    scale = nxt.alpha / now.alpha
    return scale * x + math.sqrt(max(nxt.sigma**2 - (scale * now.sigma) ** 2, 0.0)) * noise


def x0_variance(node: Node, data_std: float) -> float:
    """Var[x0 | x_t] per coordinate for N(0, d^2 I) data at ``node``: d^2 sigma^2 / (d^2 alpha^2
    + sigma^2) (the Gaussian posterior; PiGDM, Song et al. 2023, sec. 3, uses it as the
    likelihood's variance at high noise, and the samplers' twisting functions do too)."""
    d2 = data_std**2
    return d2 * node.sigma**2 / (d2 * node.alpha**2 + node.sigma**2)


class TapedModel(Model):
    """``model`` whose evaluations at nodes record the autograd graph from the state (a fresh
    leaf, unless the state already requires grad), so a hook can differentiate the prediction
    with respect to x_t from the sampler's own forward pass (:func:`model_gradient`)."""

    def __init__(self, model: Model) -> None:
        super().__init__(model.net, model.path, model.predicts)
        self.inner = model

    def input_dtype(self, like: Tensor) -> torch.dtype:
        return self.inner.input_dtype(like)

    def at(
        self,
        x: Tensor,
        node: Node,
        counter: Evaluations,
        cond: dict[str, Any] | None = None,
        dtype: torch.dtype | None = None,
        evaluations: int = 1,
    ) -> Prediction:
        with torch.enable_grad():
            leaf = x if x.requires_grad else x.detach().requires_grad_(True)
            return self.inner.at(leaf, node, counter, cond, dtype, evaluations)


def taped(model: Model) -> Model:
    """``model`` as a :class:`TapedModel` (unchanged if it is one)."""
    return model if isinstance(model, TapedModel) else TapedModel(model)


def model_gradient(
    pred: Prediction, node: Node, run: Run, loss: Callable[[Tensor], Tensor]
) -> tuple[Tensor, Tensor]:
    """(grad_{x_t} sum_i loss(x0_hat(x_t))_i through the network, the per-sample loss).

    The prediction's own graph is used when it has one (a :class:`TapedModel`); otherwise the
    model is evaluated once more with gradients, counted on the run."""
    with torch.enable_grad():
        if not (pred.x.requires_grad and pred.value.grad_fn is not None):
            leaf = pred.x.detach().requires_grad_(True)
            pred = run.model.at(leaf, node, run, dtype=run.model_dtype)
        value = loss(pred.x0)
        (grad,) = torch.autograd.grad(value.sum(), pred.x)
    return grad.detach(), value.detach()


def detached(pred: Prediction) -> Prediction:
    """``pred`` without its autograd graph (what the solver steps with)."""
    if not (pred.x.requires_grad or pred.value.requires_grad):
        return pred
    return Prediction(pred.x.detach(), pred.t, pred.kind, pred.value.detach(), pred.coeffs)


__all__ = [
    "MEASUREMENT_STREAM",
    "START_STREAM",
    "Operator",
    "Reconstruction",
    "TapedModel",
    "detached",
    "model_gradient",
    "renoise",
    "seeded",
    "start_noise",
    "taped",
    "x0_variance",
]
