"""Toy 2-D distributions, sampled i.i.d. in torch from an explicit generator.

Geometry and constants follow the sets used by FFJORD (Grathwohl et al. 2019) and torchcfm, which
most flow/diffusion papers plot; unlike ``sklearn.datasets.make_*`` (evenly spaced angles, then
shuffled) every point here is an independent draw, so any subset is an i.i.d. sample. Each
function returns ``(x, labels)``: float32 (n, 2) points and int64 component labels or None.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

ToySampler = Callable[..., tuple[Tensor, Tensor | None]]


def _check_n(n: int) -> int:
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return int(n)


def _uniform(n: int, g: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=g, dtype=torch.float64)


def _normal(n: int, g: torch.Generator | None) -> Tensor:
    return torch.randn(n, 2, generator=g, dtype=torch.float64)


def moons(
    n: int, noise: float = 0.1, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Two interleaving half circles (sklearn's ``make_moons`` geometry), centred at 0.

    Label 0: ``(cos s, sin s)``; label 1: ``(1 - cos s, 1/2 - sin s)``; s ~ U[0, pi], each label
    with probability 1/2, plus N(0, noise^2) per coordinate, then shifted by ``-(1/2, 1/4)``.
    """
    n = _check_n(n)
    label = (_uniform(n, generator) < 0.5).long()
    s = math.pi * _uniform(n, generator)
    upper = torch.stack([torch.cos(s), torch.sin(s)], 1)
    lower = torch.stack([1 - torch.cos(s), 0.5 - torch.sin(s)], 1)
    x = torch.where(label[:, None] == 0, upper, lower) + noise * _normal(n, generator)
    return (x - torch.tensor([0.5, 0.25], dtype=torch.float64)).float(), label


def swiss_roll(
    n: int, noise: float = 1.0, generator: torch.Generator | None = None
) -> tuple[Tensor, None]:
    """2-D Swiss roll (FFJORD): ``s = 1.5 pi (1 + 2u)``, ``(s cos s, s sin s) + noise z``, / 5."""
    n = _check_n(n)
    s = 1.5 * math.pi * (1 + 2 * _uniform(n, generator))
    x = torch.stack([s * torch.cos(s), s * torch.sin(s)], 1) + noise * _normal(n, generator)
    return (x / 5).float(), None


def eight_gaussians(
    n: int,
    radius: float = 2 * math.sqrt(2),
    std: float = 0.5 / math.sqrt(2),
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Eight equal Gaussians at angles ``k pi / 4`` on a circle (FFJORD: radius 4/sqrt 2,
    std 0.5/sqrt 2); the label is k."""
    n = _check_n(n)
    k = torch.randint(0, 8, (n,), generator=generator)
    angle = k.to(torch.float64) * (math.pi / 4)
    centre = radius * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    return (centre + std * _normal(n, generator)).float(), k


def checkerboard(n: int, generator: torch.Generator | None = None) -> tuple[Tensor, None]:
    """Uniform on the 8 dark squares of a 4x4 board of side 2 covering [-4, 4]^2 (FFJORD).

    ``x1 ~ U[-2, 2]``, ``x2 = U[0, 1] - 2 b + (floor(x1) mod 2)`` with b ~ Bernoulli(1/2), times 2.
    """
    n = _check_n(n)
    x1 = 4 * _uniform(n, generator) - 2
    b = (_uniform(n, generator) < 0.5).to(torch.float64)
    x2 = _uniform(n, generator) - 2 * b + torch.remainder(torch.floor(x1), 2)
    return (2 * torch.stack([x1, x2], 1)).float(), None


def circles(
    n: int,
    factor: float = 0.5,
    noise: float = 0.08,
    scale: float = 3.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Two concentric circles (sklearn's ``make_circles`` geometry, FFJORD's constants).

    Label 0: radius 1, label 1: radius ``factor``, each with probability 1/2, angle ~ U[0, 2 pi),
    plus N(0, noise^2) per coordinate, all times ``scale``.
    """
    n = _check_n(n)
    if not 0 < factor < 1:
        raise ValueError(f"factor must be in (0, 1), got {factor}")
    label = (_uniform(n, generator) < 0.5).long()
    angle = 2 * math.pi * _uniform(n, generator)
    r = torch.where(label == 0, 1.0, factor).to(torch.float64)
    x = r[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    return (scale * (x + noise * _normal(n, generator))).float(), label


TOY_SETS: dict[str, ToySampler] = {
    "moons": moons,
    "swiss_roll": swiss_roll,
    "8gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "circles": circles,
}
"""Name -> sampler ``f(n, generator=..., **params) -> (x, labels or None)``."""

TOY_CLASSES: dict[str, list[str] | None] = {
    "moons": ["upper", "lower"],
    "swiss_roll": None,
    "8gaussians": [f"mode{k}" for k in range(8)],
    "checkerboard": None,
    "circles": ["outer", "inner"],
}
