"""Paths in the one convention: t = 0 is data, t = 1 is the source (noise, or a second data set)."""

from __future__ import annotations

from typing import Any

from .base import LOGSNR_LIMIT, GaussianPath, as_time, expand_like
from .discrete_vp import DiscreteVP
from .gaussian import EDM, VE, Linear, Trig, VPCosine, VPLinear
from .interpolant import GaussianEndpoints, Interpolant, OneSided, sample_interpolant
from .nodes import Coefficients, Node, make_nodes, node_at, shift_time
from .pfgm import PFGM

#: Registry of Gaussian paths by name (aliases included).
PATHS: dict[str, type[GaussianPath]] = {
    "vp": VPLinear,
    "vp-linear": VPLinear,
    "cosine": VPCosine,
    "vp-cosine": VPCosine,
    "ve": VE,
    "edm": EDM,
    "linear": Linear,
    "rectified-flow": Linear,
    "trig": Trig,
    "pfgm": PFGM,
    "discrete-vp": DiscreteVP,
    "one-sided": OneSided,
}

# Short names used in the DESIGN sketch (ip.paths.VP(), ip.paths.Cosine()).
VP = VPLinear
Cosine = VPCosine


def get_path(path: str | GaussianPath, **kwargs: Any) -> GaussianPath:
    """A path object from its name (see ``PATHS``) or the object itself."""
    if isinstance(path, GaussianPath):
        if kwargs:
            raise ValueError("keyword arguments are only used with a path name")
        return path
    if not isinstance(path, str) or path.lower() not in PATHS:
        raise ValueError(f"unknown path {path!r}; choose one of {sorted(set(PATHS))}")
    return PATHS[path.lower()](**kwargs)


def from_config(config: dict[str, Any]) -> GaussianPath:
    """Rebuild a path from ``path.config()``."""
    config = dict(config)
    if "name" not in config:
        raise ValueError(f"path config needs a 'name' key, got keys {sorted(config)}")
    return get_path(config.pop("name"), **config)


__all__ = [
    "EDM",
    "LOGSNR_LIMIT",
    "PATHS",
    "PFGM",
    "VE",
    "VP",
    "Coefficients",
    "Cosine",
    "DiscreteVP",
    "GaussianEndpoints",
    "GaussianPath",
    "Interpolant",
    "Linear",
    "Node",
    "OneSided",
    "Trig",
    "VPCosine",
    "VPLinear",
    "as_time",
    "expand_like",
    "from_config",
    "get_path",
    "make_nodes",
    "node_at",
    "sample_interpolant",
    "shift_time",
]
