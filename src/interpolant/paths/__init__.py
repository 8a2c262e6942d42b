"""Paths in the one convention: t = 0 is data, t = 1 is the source (noise, or a second data set).

Every path is a frozen dataclass whose fields are its options: ``config()``, ``repr``, ``==`` and
``from_config`` are derived, and ``PATHS`` (a :class:`~interpolant.configurable.Registry`) builds
a Gaussian path from its name, its config dict or the object itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..configurable import Registry
from .base import LOGSNR_LIMIT, GaussianPath, as_time, expand_like
from .discrete import DiscretePath
from .discrete_vp import DiscreteVP
from .gaussian import EDM, VE, Linear, Trig, VPCosine, VPLinear
from .interpolant import GaussianEndpoints, Interpolant, OneSided
from .nodes import Coefficients, Node, make_nodes, node_at, shift_time
from .pfgm import PFGM

#: Registry of Gaussian paths by name (aliases included).
PATHS: Registry[GaussianPath] = Registry("path", GaussianPath)
PATHS.register(VPLinear, "vp-linear")
PATHS.register(VPCosine, "vp-cosine")
PATHS.register(Linear, "rectified-flow")
for _cls in (VE, EDM, Trig, PFGM, DiscreteVP, OneSided):
    PATHS.register(_cls)

# Short names used in the DESIGN sketch (ip.paths.VP(), ip.paths.Cosine()).
VP = VPLinear
Cosine = VPCosine


def get_path(path: str | Mapping[str, Any] | GaussianPath, **options: Any) -> GaussianPath:
    """A path object from its name (see ``PATHS``) with ``options``, its config dict, or the
    object itself."""
    return PATHS.build(path, **options)


def from_config(config: Mapping[str, Any]) -> GaussianPath:
    """Rebuild a path from ``path.config()`` (also the configs earlier versions wrote)."""
    return PATHS.build(config)


__all__ = [
    "EDM",
    "LOGSNR_LIMIT",
    "PATHS",
    "PFGM",
    "VE",
    "VP",
    "Coefficients",
    "Cosine",
    "DiscretePath",
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
    "shift_time",
]
