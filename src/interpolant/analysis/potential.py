"""Conservative scores: a scalar energy network whose score is ``-grad_x E`` (seed papers 5, 10).

A score ``s = -grad_x E_theta(x, t)`` is conservative by construction (its Jacobian is minus a
Hessian, symmetric), and ``u = -E`` is an unnormalised log-density, so the log-density form of the
Fokker-Planck residual (``fokker_planck``) applies. That residual needs the Laplacian of ``u``:
activations whose second derivative vanishes almost everywhere (ReLU and its piecewise-linear
relatives) make it identically zero, so they are refused there (:func:`check_twice_differentiable`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import grad

from ..errors import UserError, WrongTypeError

#: Activations with zero second derivative almost everywhere: no Laplacian.
PIECEWISE_LINEAR = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.Hardtanh, nn.RReLU)

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "softplus": lambda: nn.Softplus(beta=10.0),
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
}


def check_twice_differentiable(module: object, what: str = "a Laplacian") -> None:
    """Refuse a module that contains a piecewise-linear activation (its Hessian is 0 a.e.)."""
    if not isinstance(module, nn.Module):
        return
    bad = sorted({type(m).__name__ for m in module.modules() if isinstance(m, PIECEWISE_LINEAR)})
    if bad:
        raise UserError(
            f"{what} needs second derivatives, but the potential network uses {', '.join(bad)}, "
            "whose second derivative is zero almost everywhere; build it with a smooth "
            "activation (PotentialNet(..., activation='softplus' | 'silu' | 'tanh' | 'gelu'))"
        )


class PotentialNet(nn.Module):
    """A scalar energy ``E(x, t)``: an MLP on ``[x, t]`` with a smooth activation (the paper's
    ``[t, x] -> 80 -> 80 -> 80 -> 1`` softplus network by default). Returns shape (B,)."""

    def __init__(
        self, dim: int, width: int = 80, depth: int = 3, activation: str = "softplus"
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise UserError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if dim < 1 or width < 1 or depth < 1:
            raise UserError(f"dim, width and depth must be >= 1, got {dim}, {width}, {depth}")
        layers: list[nn.Module] = []
        size = dim + 1
        for _ in range(depth):
            layers += [nn.Linear(size, width), ACTIVATIONS[activation]()]
            size = width
        layers.append(nn.Linear(size, 1))
        self.mlp = nn.Sequential(*layers)
        self.dim, self.activation = dim, activation

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = t.to(x.dtype).reshape(-1, 1).expand(x.shape[0], 1)
        return self.mlp(torch.cat([x, t], dim=1)).squeeze(-1)


class ConservativeScore(nn.Module):
    """The score ``s(x, t) = -grad_x E(x, t)`` of an energy network ``E(x, t) -> (B,)``.

    Use it as the network of a score model: ``Model(ConservativeScore(PotentialNet(2)), path,
    predicts="score")``. The gradient is taken with ``torch.func.grad``, so the score composes
    with the Jacobian and divergence utilities and trains through the usual backward pass.
    """

    def __init__(self, energy: nn.Module) -> None:
        super().__init__()
        if not callable(energy):
            raise WrongTypeError(f"energy must be callable E(x, t), got {type(energy).__name__}")
        self.energy = energy

    def log_density(self, x: Tensor, t: Tensor) -> Tensor:
        """The unnormalised log-density ``u = -E`` (B,)."""
        return -self.energy(x, t)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return grad(lambda y: self.log_density(y, t).sum())(x)


__all__ = [
    "ACTIVATIONS",
    "ConservativeScore",
    "PotentialNet",
    "check_twice_differentiable",
]
