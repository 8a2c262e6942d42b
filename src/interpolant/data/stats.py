"""Data statistics and the invertible affine map between raw values and model space.

EDM (Karras et al. 2022, Sec. 5 and Table 1) preconditions with ``sigma_data``, the standard
deviation of the training data; :func:`estimate_sigma_data` computes it in model space (after
normalisation). :class:`Normalizer` is ``y = (x - loc) / scale`` with one scalar or one value per
channel, stored as plain numbers so it goes into a checkpoint's JSON config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

NORMALIZER_KINDS = ("identity", "range", "standardize")


def _flat_channels(x: Tensor, channel_dim: int) -> Tensor:
    """x as float64 (C, everything else)."""
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, C, ...), got {tuple(x.shape)}")
    return x.to(torch.float64).movedim(channel_dim, 0).reshape(x.shape[channel_dim], -1)


def estimate_sigma_data(x: Tensor) -> float:
    """EDM's sigma_data: the standard deviation of the data over all entries (Bessel-corrected)."""
    if x.numel() < 2:
        raise ValueError(f"x needs at least 2 entries to estimate a std, got {x.numel()}")
    return float(x.to(torch.float64).std())


def channel_stats(x: Tensor, channel_dim: int = 1) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std (float64, shape (C,)) over the batch and all other axes."""
    flat = _flat_channels(x, channel_dim)
    return flat.mean(1), flat.std(1)


@dataclass(frozen=True)
class Normalizer:
    """Affine map to model space ``y = (x - loc) / scale`` and back ``x = y * scale + loc``.

    ``loc`` and ``scale`` hold one number (the same for every entry) or one per channel (axis
    ``channel_dim`` of a batch). ``kind`` records how it was made: ``"identity"``, ``"range"``
    (``[low, high] -> [-1, 1]``) or ``"standardize"`` (zero mean, unit std).
    """

    kind: str = "identity"
    loc: tuple[float, ...] = (0.0,)
    scale: tuple[float, ...] = (1.0,)
    channel_dim: int = 1

    def __post_init__(self) -> None:
        if self.kind not in NORMALIZER_KINDS:
            raise ValueError(f"kind must be one of {NORMALIZER_KINDS}, got {self.kind!r}")
        object.__setattr__(self, "loc", tuple(float(v) for v in self.loc))
        object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
        if len(self.loc) != len(self.scale) or not self.loc:
            raise ValueError(f"loc and scale must have the same nonzero length, got {self}")
        if any(not s > 0 for s in self.scale):
            raise ValueError(f"scale must be positive, got {self.scale}")

    @classmethod
    def identity(cls) -> Normalizer:
        """The map that changes nothing."""
        return cls()

    @classmethod
    def from_range(cls, low: float, high: float) -> Normalizer:
        """Map the known raw range ``[low, high]`` onto ``[-1, 1]``."""
        if not high > low:
            raise ValueError(f"high must exceed low, got low={low}, high={high}")
        return cls("range", ((high + low) / 2,), ((high - low) / 2,))

    @classmethod
    def fit(
        cls, x: Tensor, kind: str = "standardize", per_channel: bool = False, channel_dim: int = 1
    ) -> Normalizer:
        """Fit ``kind`` ("standardize" or "range") to data, globally or per channel.

        A constant channel (std or range 0) gets scale 1 so the map stays invertible.
        """
        if kind not in ("standardize", "range"):
            raise ValueError(f"kind must be 'standardize' or 'range', got {kind!r}")
        flat = _flat_channels(x, channel_dim) if per_channel else x.to(torch.float64).reshape(1, -1)
        if flat.shape[1] < 2:
            raise ValueError("x needs at least 2 values per channel to fit a normalizer")
        if kind == "standardize":
            loc, scale = flat.mean(1), flat.std(1)
        else:
            lo, hi = flat.min(1).values, flat.max(1).values
            loc, scale = (hi + lo) / 2, (hi - lo) / 2
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return cls(kind, tuple(loc.tolist()), tuple(scale.tolist()), channel_dim)

    def _coeffs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """loc and scale shaped to broadcast against x (float64)."""
        loc = torch.tensor(self.loc, dtype=torch.float64, device=x.device)
        scale = torch.tensor(self.scale, dtype=torch.float64, device=x.device)
        if len(self.loc) == 1:
            return loc.reshape(()), scale.reshape(())
        dim = self.channel_dim % max(x.ndim, 1)
        if x.ndim <= dim or x.shape[dim] != len(self.loc):
            raise ValueError(
                f"normalizer has {len(self.loc)} channels on axis {self.channel_dim}; "
                f"x has shape {tuple(x.shape)}"
            )
        shape = [1] * x.ndim
        shape[dim] = len(self.loc)
        return loc.reshape(shape), scale.reshape(shape)

    def forward(self, x: Tensor) -> Tensor:
        """Raw values to model space, ``(x - loc) / scale`` (same dtype as x if floating)."""
        loc, scale = self._coeffs(x)
        out = (x.to(torch.float64) - loc) / scale
        return out.to(x.dtype if x.is_floating_point() else torch.float32)

    __call__ = forward

    def inverse(self, y: Tensor) -> Tensor:
        """Model space back to raw values, ``y * scale + loc``."""
        loc, scale = self._coeffs(y)
        out = y.to(torch.float64) * scale + loc
        return out.to(y.dtype if y.is_floating_point() else torch.float32)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only."""
        return {
            "kind": self.kind,
            "loc": list(self.loc),
            "scale": list(self.scale),
            "channel_dim": self.channel_dim,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalizer:
        """Inverse of :meth:`to_dict`."""
        return cls(d["kind"], tuple(d["loc"]), tuple(d["scale"]), int(d.get("channel_dim", 1)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Normalizer:
        return cls.from_dict(json.loads(text))
