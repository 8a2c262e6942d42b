"""`interpolant info`: versions, devices, every registry, and one object's options."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import UserError

#: Kinds of configurable objects whose options `interpolant info --options` prints.
OPTION_KINDS = ("solver", "grid", "path", "time", "weighting")


def _registry(kind: str) -> Any:
    from .. import losses, paths, solvers

    registries = {
        "solver": solvers.SOLVERS,
        "grid": solvers.GRIDS,
        "path": paths.PATHS,
        "time": losses.TIME_SAMPLERS,
        "weighting": losses.WEIGHTINGS,
    }
    if kind not in registries:
        raise UserError(f"unknown kind {kind!r} for --options; choose one of {OPTION_KINDS}")
    return registries[kind]


def print_options(kind: str, name: str) -> None:
    """The options of one registered object, from its fields' metadata."""
    registry = _registry(kind)
    if name.lower() not in registry:
        raise UserError(f"unknown {kind} {name!r}; choose one of {sorted(registry)}")
    cls = registry[name.lower()]
    doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
    print(f"{kind} {cls.name} ({cls.__name__}): {doc}")
    rows = cls.options()
    if not rows:
        print("  (no options)")
    for option, kind_name, default, text in rows:
        print(f"  {option} ({kind_name}, default {json.dumps(default)}): {text}")


def cmd_info(args: argparse.Namespace) -> int:
    from ..api import info

    if args.options:
        print_options(*args.options)
        return 0
    if getattr(args, "samplers", False):
        from ..solvers.peer_names import format_peer_names

        print(format_peer_names())
        return 0
    values = info()
    if args.json:
        print(json.dumps(values, indent=2))
        return 0
    print(
        f"interpolant {values['interpolant']}  torch {values['torch']}  python {values['python']}"
    )
    print(f"devices: {', '.join(values['devices'])}  (torch threads: {values['threads']})")
    for key in ("paths", "solvers", "grids", "models", "time_samplers", "weightings"):
        print(f"{key.replace('_', ' ')}: {', '.join(values[key])}")
    for key in ("datasets", "presets", "reproductions"):
        print(f"{key}:")
        for name, text in values[key].items():
            print(f"  {name:<24} {text}")
    return 0
