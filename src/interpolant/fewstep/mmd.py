"""MMD fine-tuning (MMD-DDM, Aiello et al. 2023): fine-tune a model for a fixed K-step sampler
by back-propagating an MMD between its K-step samples and real data through the sampler.

* **Differentiable sampler.** The one sampling loop has no ``no_grad`` inside, so
  ``sample(checkpointed(model), noise, Sampler("ddim", steps=K))`` is differentiable in the
  weights; :func:`checkpointed` recomputes each network evaluation in the backward pass
  (``torch.utils.checkpoint`` per step), so memory grows with K by one state, not by K
  activations.
* **Unbiased MMD^2** (Gretton et al. 2012, Eq. 3; MMD-DDM Eq. 9) between features of m
  generated and n real samples,

      MMD^2 = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (n (n - 1))
              - 2 sum_{i, j} k(x_i, y_j) / (m n),

  with the KID polynomial kernel k(a, b) = (a.b / d + 1)^3 (Binkowski et al. 2018) or a
  Gaussian kernel (``metrics.mmd``, one formula for both).
* **Frozen features.** Training uses the shipped digit classifier's penultimate features
  (``metrics.classifier``); evaluate in a different space so the test metric is not the one
  optimised (the reproduction uses PCA of pixels).

The objective fits the trainer (data = real examples). Under DDP the trainer hands it
``Model(DDP(net))``, and the K-step sampler calls that wrapper at every step: K forwards (and,
with checkpointing, K recomputed forwards inside the backward) before one backward. DDP's reducer
fires once per parameter in that backward, so the all-reduced gradient equals one process's on
the same global batch (``tests/fewstep/test_mmd_ddp.py``: 2 gloo ranks against 2 accumulation
rounds, equal to 1e-6 over 3 steps, with and without checkpointing). MMD^2 is not a mean over
samples, so, as with accumulation rounds, the gradient is the mean of the per-micro-batch MMD^2
gradients (micro-batch = ``batch_per_gpu``), not that of one MMD^2 over the global batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..errors import UserError
from ..metrics.distances import mmd as rbf_mmd
from ..predictions import Model
from ..solvers import Sampler, sample

Features = Callable[[Tensor], Tensor]
KERNELS = ("polynomial", "rbf")


def polynomial_kernel(a: Tensor, b: Tensor) -> Tensor:
    """KID's cubic kernel (a.b / d + 1)^3, shape (len(a), len(b))."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: Tensor, y: Tensor, kernel: str = "polynomial", bandwidth: Any = "median"):
    """The unbiased MMD^2 of the module docstring between rows of x (m, d) and y (n, d)."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise UserError(f"MMD needs (m, d) and (n, d) features, got {x.shape} and {y.shape}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise UserError("the unbiased MMD needs at least 2 rows on each side")
    if kernel == "rbf":
        return rbf_mmd(x, y, bandwidth=bandwidth, unbiased=True)
    if kernel != "polynomial":
        raise UserError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return within_x + within_y - 2 * kxy.mean()


class _CheckpointedNet(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        if not torch.is_grad_enabled():
            return self.net(x, t, **cond)
        return checkpoint(lambda a, b: self.net(a, b, **cond), x, t, use_reentrant=False)


def checkpointed(model: Model) -> Model:
    """The same model (shared weights) with every network evaluation checkpointed."""
    if not isinstance(model, Model) or not isinstance(model.net, nn.Module):
        raise UserError("checkpointed needs a Model whose net is an nn.Module")
    return Model(_CheckpointedNet(model.net), model.path, model.predicts)


class _Through(nn.Module):
    """The network of a wrapper (DDP) around a whole Model, called through the wrapper."""

    def __init__(self, wrapper: nn.Module) -> None:
        super().__init__()
        self.wrapper = wrapper

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        value: Tensor = self.wrapper(x, t, **cond).value
        return value


def _through_wrapper(model: Any) -> Model:
    """A Model whose every evaluation goes through ``model``, a DDP/FSDP wrapper around a
    Model (so its gradients are reduced), not around the bare Model inside."""
    inner = getattr(model, "module", None)
    if not isinstance(inner, Model) or not isinstance(model, nn.Module):
        raise UserError(f"MMD fine-tuning trains an interpolant Model, got {type(model).__name__}")
    return Model(_Through(model), inner.path, inner.predicts)


def digits_feature_map() -> Features:
    """The shipped digit classifier's penultimate features (frozen; differentiable in x)."""
    from ..metrics.classifier import load_digits_classifier

    net = load_digits_classifier()
    return lambda x: net.features(x.float()).double()


class MMDFinetune:
    """MMD-DDM's objective: MMD^2 between features of K-step samples and of the real batch.

    Args:
        sampler: the fixed few-step sampler (e.g. ``Sampler("ddim", steps=4, grid="uniform")``).
        features: a frozen feature map x -> (B, d) (default: the digit classifier's features).
        kernel: "polynomial" (KID, the paper's) or "rbf".
        checkpoint_steps: recompute each step's network evaluation in the backward pass.
    """

    def __init__(
        self,
        sampler: Sampler,
        features: Features | None = None,
        kernel: str = "polynomial",
        checkpoint_steps: bool = True,
    ) -> None:
        if not isinstance(sampler, Sampler):
            raise UserError(f"sampler must be a Sampler spec, got {type(sampler).__name__}")
        if sampler.solver.stochastic:
            raise UserError("MMD fine-tuning needs a deterministic sampler (ddim, euler, ...)")
        if kernel not in KERNELS:
            raise UserError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        self.sampler, self.kernel, self.checkpoint_steps = sampler, kernel, checkpoint_steps
        self._features = features

    @property
    def features(self) -> Features:
        if self._features is None:
            self._features = digits_feature_map()
        return self._features

    def loss(
        self,
        model: Any,
        x0: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        inner = model if isinstance(model, Model) else _through_wrapper(model)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        student = checkpointed(inner) if self.checkpoint_steps else inner
        x_gen = sample(student, noise, self.sampler, cond=cond).x
        return mmd2_unbiased(self.features(x_gen), self.features(x0), self.kernel)
