"""Clipping and dynamic thresholding of the data prediction, for pixel-space models whose data lie
in [-1, 1] (diffusers' ``clip_sample`` and ``thresholding`` options of its DDPM/DDIM/DPM-Solver
schedulers; Saharia et al. 2022, "Imagen", sec. 2.3).

Both are prediction hooks: after every model evaluation they replace x0_hat and leave the solver
alone, so they work with every solver and path.

* ``Thresholding("clip")``: x0_hat <- clamp(x0_hat, -r, r) (static thresholding).
* ``Thresholding("dynamic")``: per sample, s = clamp(quantile_p(|x0_hat|), 1, s_max) over all
  of its entries, then x0_hat <- clamp(x0_hat, -s, s) / s (Imagen's dynamic thresholding:
  saturated pixels are pushed inwards instead of being clipped flat).

The new x0_hat is a prediction at the same x_t: every other kind (eps_hat, the velocity, the
score) is re-derived from it, so data-, noise- and velocity-based solvers all move with it. This
is diffusers' DPM-Solver++ thresholding and its DDIM with ``use_clipped_model_output=True``
(GLIDE's choice; the DDPM posterior mean from x0_hat and x_t is the same thing). diffusers' DDIM
default (``use_clipped_model_output=False``) pairs the clipped x0_hat with the network's unclipped
eps_hat, which no longer describe the same x_t; our DDIM steps from x and x0_hat (its first-order
DPM-Solver++ form), so that mixture is not offered.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..predictions import Prediction
from .base import Node, Run
from .hooks import Hook

MODES = ("clip", "dynamic")


class Thresholding(Hook[None]):
    """Clip (``mode="clip"``, range ``clip_range``) or dynamically threshold (``"dynamic"``,
    quantile ``ratio`` and ceiling ``max_value``) every data prediction; the other kinds are
    re-derived from it (see the module docstring)."""

    def __init__(
        self,
        mode: str = "dynamic",
        *,
        ratio: float = 0.995,
        max_value: float = 1.0,
        clip_range: float = 1.0,
    ) -> None:
        if mode not in MODES:
            raise UserError(f"Thresholding: mode must be one of {MODES}, got {mode!r}")
        if not 0.0 < ratio <= 1.0:
            raise UserError(f"Thresholding: ratio is a quantile in (0, 1], got {ratio}")
        if max_value < 1.0:
            raise UserError(
                f"Thresholding: max_value must be >= 1 (s is clamped to [1, max_value]), "
                f"got {max_value}"
            )
        if clip_range <= 0.0:
            raise UserError(f"Thresholding: clip_range must be > 0, got {clip_range}")
        self.mode = mode
        self.ratio, self.max_value = float(ratio), float(max_value)
        self.clip_range = float(clip_range)

    def threshold(self, x0: torch.Tensor) -> torch.Tensor:
        """The thresholded data prediction (per sample: row i depends on row i only)."""
        if self.mode == "clip":
            return x0.clamp(-self.clip_range, self.clip_range)
        flat = x0.reshape(x0.shape[0], -1)
        # quantile needs float32/64; the level s is computed in at least float32.
        level = torch.quantile(flat.abs().to(torch.promote_types(flat.dtype, torch.float32)),
                               self.ratio, dim=1)  # fmt: skip
        level = level.clamp(1.0, self.max_value).to(x0.dtype)
        shape = (x0.shape[0],) + (1,) * (x0.dim() - 1)
        s = level.reshape(shape)
        return torch.maximum(torch.minimum(x0, s), -s) / s

    def on_prediction(self, pred: Prediction, node: Node, run: Run, state: None) -> Prediction:
        return pred.replace("x0", self.threshold(pred.x0))

    def __repr__(self) -> str:
        if self.mode == "clip":
            return f"Thresholding('clip', clip_range={self.clip_range})"
        return f"Thresholding('dynamic', ratio={self.ratio}, max_value={self.max_value})"


__all__ = ["MODES", "Thresholding"]
