"""Per-sample distances D(prediction, target) for few-step objectives.

* ``l2``: mean over features of (a - b)^2 (SlimFlow's and rectified flow's default);
* ``pseudo-huber``: sqrt(|a - b|^2 + c^2) - c with c = 0.00054 sqrt(d) (Song & Dhariwal 2023,
  iCT Sec. 3.3; d the number of features), L2-like near 0 and L1-like far away.

LPIPS (SlimFlow's distance on images) needs VGG/AlexNet weights that this library cannot ship
or download at run time, so it is not offered; any callable ``distance(a, b) -> (B,)`` can be
passed instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor

from ..errors import UserError

Distance = Callable[[Tensor, Tensor], Tensor]


def l2(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared difference per sample, shape (B,)."""
    return (a - b).square().flatten(1).mean(dim=1)


def pseudo_huber(a: Tensor, b: Tensor, c: float | None = None) -> Tensor:
    """sqrt(|a - b|^2 + c^2) - c per sample (iCT's c = 0.00054 sqrt(d) by default)."""
    d = a[0].numel()
    c = 0.00054 * math.sqrt(d) if c is None else c
    return ((a - b).square().flatten(1).sum(dim=1) + c**2).sqrt() - c


DISTANCES: dict[str, Distance] = {"l2": l2, "pseudo-huber": pseudo_huber}


def get_distance(spec: str | Distance) -> Distance:
    """A distance from its name ("l2", "pseudo-huber") or a callable."""
    if callable(spec):
        return spec
    if spec == "lpips":
        raise UserError(
            "LPIPS needs pretrained VGG weights, which interpolant cannot ship or download; use "
            "'l2' or 'pseudo-huber', or pass your own distance(a, b) -> per-sample tensor"
        )
    if spec not in DISTANCES:
        raise UserError(f"distance must be one of {sorted(DISTANCES)} or a callable, got {spec!r}")
    return DISTANCES[spec]
