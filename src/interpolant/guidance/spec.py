"""Guidance from a short text spec, for the command line (``interpolant sample --guidance``).

Grammar: one or more specs separated by commas, each ``NAME:SCALE[:SCHEDULE][@T_LO-T_HI]``::

    cfg:3.0                 CFG, w = 3 at every t
    cfg:3.0@0.2-0.8         CFG, w = 3 for t in [0.2, 0.8], w = 1 elsewhere
    cfg:4:cosine            CFG with the cosine schedule of the excess w - 1
    autoguidance:2.0        autoguidance with the reference model given as reference=...
    classifier:1.5@0-0.9    classifier guidance (classifier=..., n_classes=... given)

NAME is one of ``cfg``, ``autoguidance``, ``classifier``; SCHEDULE one of
``guidance.base.SCHEDULES``; times follow the library (t = 0 data, t = 1 noise).
"""

from __future__ import annotations

import re
from typing import Any

from ..predictions import Model
from ..solvers.hooks import Hook
from .base import SCHEDULES
from .cfg import CFG, AutoGuidance
from .classifier import ClassifierGuidance

_SPEC = re.compile(
    r"^(?P<name>[a-z_]+):(?P<scale>[-+0-9.eE]+)(?::(?P<schedule>[a-z]+))?"
    r"(?:@(?P<lo>[0-9.eE+-]+?)-(?P<hi>[0-9.eE+]+))?$"
)

NAMES = ("cfg", "autoguidance", "classifier")


def parse_spec(
    spec: str, schedule: str = "constant", interval: tuple[float, float] = (0.0, 1.0)
) -> list[dict[str, Any]]:
    """The parts of each comma-separated spec: name, scale, schedule, interval (``schedule`` and
    ``interval`` are the defaults for specs that do not name theirs)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("guidance spec must be a non-empty string like 'cfg:3.0'")
    out = []
    for part in spec.replace(" ", "").split(","):
        m = _SPEC.match(part.lower())
        if m is None:
            raise ValueError(
                f"bad guidance spec {part!r}: expected NAME:SCALE[:SCHEDULE][@T_LO-T_HI], "
                "e.g. 'cfg:3.0' or 'cfg:3.0@0.2-0.8'"
            )
        if m["name"] not in NAMES:
            raise ValueError(f"unknown guidance {m['name']!r} in {part!r}; choose one of {NAMES}")
        name_schedule = m["schedule"] or schedule
        if name_schedule not in SCHEDULES:
            raise ValueError(
                f"unknown schedule {schedule!r} in {part!r}; choose one of {sorted(SCHEDULES)}"
            )
        try:
            scale = float(m["scale"])
            span = interval if m["lo"] is None else (float(m["lo"]), float(m["hi"]))
        except ValueError as err:
            raise ValueError(f"bad number in guidance spec {part!r}: {err}") from None
        out.append({"name": m["name"], "scale": scale, "schedule": name_schedule, "interval": span})
    return out


def from_spec(
    spec: str,
    model: Model | None = None,
    *,
    schedule: str = "constant",
    interval: tuple[float, float] = (0.0, 1.0),
    **kw: Any,
) -> list[Hook[Any]]:
    """Prediction hooks from a spec string (see the module docstring).

    ``schedule`` and ``interval`` apply to specs that do not give their own (the CLI's
    ``--guidance-schedule`` and ``--guidance-interval LO-HI``). Keyword arguments supply what a
    spec cannot say: ``null_cond`` (CFG; default
    ``{"class_labels": None}``), ``reference`` (a :class:`Model`, autoguidance), ``classifier``
    and ``n_classes`` (classifier guidance), ``labels``. ``model`` is the sampled model; when
    given, an autoguidance reference must share its path.
    """
    hooks: list[Hook[Any]] = []
    for part in parse_spec(spec, schedule, interval):
        common = {"schedule": part["schedule"], "interval": part["interval"]}
        name = part["name"]
        if name == "cfg":
            hooks.append(CFG(part["scale"], null_cond=kw.get("null_cond"), **common))
        elif name == "autoguidance":
            reference = kw.get("reference")
            if not isinstance(reference, Model):
                raise ValueError("autoguidance needs reference=Model(...) (the weaker model)")
            if model is not None and reference.path.config() != model.path.config():
                raise ValueError(f"reference path {reference.path!r} differs from {model.path!r}")
            hooks.append(AutoGuidance(reference, part["scale"], **common))
        else:
            if kw.get("classifier") is None or kw.get("n_classes") is None:
                raise ValueError("classifier guidance needs classifier=... and n_classes=...")
            hooks.append(
                ClassifierGuidance(
                    kw["classifier"],
                    part["scale"],
                    kw["n_classes"],
                    labels=kw.get("labels"),
                    **common,
                )
            )
    return hooks
