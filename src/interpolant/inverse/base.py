"""The measurement-operator interface every inverse-problem solver uses.

A measurement is ``y = A(x) + noise_std * n`` with ``n ~ N(0, I)``. Operators act on batches
(B, *x_shape) -> (B, *y_shape); linear operators also give the adjoint (for gradients and
data-consistency steps) and, where it exists in closed form, the pseudo-inverse.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from .._porting import randn_like


class Operator(ABC):
    """Forward model A with Gaussian measurement noise of standard deviation ``noise_std``.

    ``x_shape`` is the shape of one signal (without the batch dimension); calling the operator
    on a batch of another shape raises a ValueError that names both shapes.
    """

    #: True when A is linear (adjoint and data-consistency projections are then exact).
    linear: bool = True

    def __init__(self, x_shape: tuple[int, ...], noise_std: float = 0.0) -> None:
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.x_shape = tuple(int(s) for s in x_shape)
        self.noise_std = float(noise_std)

    def check(self, x: Tensor, argument: str = "x") -> None:
        """Raise if ``x`` is not a batch of signals of shape ``x_shape``."""
        if tuple(x.shape[1:]) != self.x_shape:
            raise ValueError(
                f"{type(self).__name__} acts on signals of shape {self.x_shape}; "
                f"{argument} has shape {tuple(x.shape)} (batch first)"
            )

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """A(x), noiseless."""

    def adjoint(self, y: Tensor) -> Tensor:
        """A^T y (linear operators only)."""
        raise TypeError(f"{type(self).__name__} is not linear: it has no adjoint")

    def pinv(self, y: Tensor) -> Tensor:
        """A^+ y, the minimum-norm least-squares solution (where a closed form exists)."""
        raise TypeError(f"{type(self).__name__} has no closed-form pseudo-inverse")

    def __call__(self, x: Tensor) -> Tensor:
        self.check(x)
        return self.forward(x)

    def measure(self, x: Tensor, generators: list[torch.Generator] | None = None) -> Tensor:
        """y = A(x) + noise_std * n, one generator per sample when given."""
        y = self(x)
        if self.noise_std > 0:
            y = y + self.noise_std * randn_like(y, generators)
        return y
