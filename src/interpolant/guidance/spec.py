"""Guidance from a short text spec, for the command line (``interpolant sample --guidance``).

Grammar: one or more specs separated by commas, each ``NAME:SCALE[:SCHEDULE][@T_LO-T_HI]``::

    cfg:3.0                 CFG, w = 3 at every t
    cfg:3.0@0.2-0.8         CFG, w = 3 for t in [0.2, 0.8], w = 1 elsewhere
    cfg:4:cosine            CFG with the cosine schedule of the excess w - 1
    autoguidance:2.0        autoguidance with the reference model given as reference=...
    classifier:1.5@0-0.9    classifier guidance (classifier=..., n_classes=... given)
    apg:6                   adaptive projected guidance (cfg_rescale, cfg_zero_star alike)

NAME is one of ``cfg``, ``autoguidance``, ``classifier`` and the CFG variants ``cfg_rescale``
(phi = 0.7), ``apg`` (eta = 0) and ``cfg_zero_star`` (one zero-init step) with their default
options (build the hooks directly for others); SCHEDULE one of
``guidance.base.SCHEDULES``; times follow the library (t = 0 data, t = 1 noise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from ..configurable import Configurable, number, one_of, option
from ..errors import UserError
from ..predictions import Model
from ..solvers.hooks import Hook
from .base import SCHEDULES, GuidanceScale
from .cfg import APG, CFG, AutoGuidance, CFGRescale, CFGZeroStar
from .classifier import ClassifierGuidance

_SPEC = re.compile(
    r"^(?P<name>[a-z_]+):(?P<scale>[-+0-9.eE]+)(?::(?P<schedule>[a-z]+))?"
    r"(?:@(?P<lo>[0-9.eE+-]+?)-(?P<hi>[0-9.eE+]+))?$"
)

#: CFG variants by spec name (their options at the defaults).
CFG_VARIANTS = {"cfg": CFG, "cfg_rescale": CFGRescale, "apg": APG, "cfg_zero_star": CFGZeroStar}
NAMES = (*CFG_VARIANTS, "autoguidance", "classifier")
#: Kinds that extrapolate from a reference (w = 1 is no guidance); the others add a score term.
REFERENCE_KINDS = (*CFG_VARIANTS, "autoguidance")
#: What ``from_spec`` accepts besides the spec (what a spec string cannot say).
_OPTIONS = frozenset({"null_cond", "batched", "reference", "classifier", "n_classes", "labels"})


@dataclass(frozen=True)
class GuidanceSpec(Configurable):
    """One parsed guidance spec: its kind, scale, schedule and interval."""

    name: ClassVar[str] = ""
    kind: str = option(help="cfg (or a variant), autoguidance or classifier", check=one_of(*NAMES))
    scale: float = option(help="the guidance weight w", check=number())
    schedule: str = option("constant", help="shape of w over t", check=one_of(*SCHEDULES))
    interval: tuple[float, float] = option((0.0, 1.0), help="(t_lo, t_hi) where w applies")

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval", tuple(float(v) for v in self.interval))
        super().__post_init__()

    def validate(self) -> None:
        if len(self.interval) != 2:
            raise UserError(f"interval must be (t_lo, t_hi), got {self.interval}")
        self.weight()  # a bad interval fails here, when the spec is read

    @property
    def needs_null_label(self) -> bool:
        """Whether the hook calls the model with a null label (CFG and its variants)."""
        return self.kind in CFG_VARIANTS

    def weight(self) -> GuidanceScale:
        """w(t) of this spec (no guidance is w = 1 for CFG/autoguidance, 0 for a classifier)."""
        off = 1.0 if self.kind in REFERENCE_KINDS else 0.0
        return GuidanceScale(self.scale, self.schedule, self.interval, off)


def parse_spec(
    spec: str, schedule: str = "constant", interval: tuple[float, float] = (0.0, 1.0)
) -> list[GuidanceSpec]:
    """The :class:`GuidanceSpec` of each comma-separated spec (``schedule`` and ``interval``
    are the defaults for specs that do not name theirs)."""
    if not isinstance(spec, str) or not spec.strip():
        raise UserError("guidance spec must be a non-empty string like 'cfg:3.0'")
    out = []
    for part in spec.replace(" ", "").split(","):
        m = _SPEC.match(part.lower())
        if m is None:
            raise UserError(
                f"bad guidance spec {part!r}: expected NAME:SCALE[:SCHEDULE][@T_LO-T_HI], "
                "e.g. 'cfg:3.0' or 'cfg:3.0@0.2-0.8'"
            )
        if m["name"] not in NAMES:
            raise UserError(f"unknown guidance {m['name']!r} in {part!r}; choose one of {NAMES}")
        name_schedule = m["schedule"] or schedule
        if name_schedule not in SCHEDULES:
            raise UserError(
                f"unknown schedule {name_schedule!r} in {part!r}; choose one of {sorted(SCHEDULES)}"
            )
        try:
            scale = float(m["scale"])
            span = interval if m["lo"] is None else (float(m["lo"]), float(m["hi"]))
        except ValueError as err:
            raise UserError(f"bad number in guidance spec {part!r}: {err}") from None
        out.append(GuidanceSpec(m["name"], scale, name_schedule, span))
    return out


def needs_null_label(spec: str) -> bool:
    """Whether any hook of ``spec`` calls the model with a null label (CFG): a run must then be
    class-conditional and give ``null_cond``."""
    return any(part.needs_null_label for part in parse_spec(spec))


def from_spec(
    spec: str,
    model: Model | None = None,
    *,
    schedule: str = "constant",
    interval: tuple[float, float] = (0.0, 1.0),
    **kw: Any,
) -> list[Hook[Any]]:
    """Guidance hooks from a spec string (see the module docstring).

    ``schedule`` and ``interval`` apply to specs that do not give their own (the CLI's
    ``--guidance-schedule`` and ``--guidance-interval LO-HI``). Keyword arguments supply what a
    spec cannot say: ``null_cond`` and ``batched`` (CFG; default null
    ``{"class_labels": None}``), ``reference`` (a :class:`Model`, autoguidance), ``classifier``
    and ``n_classes`` (classifier guidance), ``labels``. ``model`` is the sampled model; when
    given, an autoguidance reference must share its path.
    """
    unknown = sorted(set(kw) - _OPTIONS)
    if unknown:
        raise UserError(f"from_spec has no option {unknown}; its options are {sorted(_OPTIONS)}")
    return [_hook(part, model, kw) for part in parse_spec(spec, schedule, interval)]


def _hook(part: GuidanceSpec, model: Model | None, kw: dict[str, Any]) -> Hook[Any]:
    """The hook of one parsed spec."""
    if part.kind in CFG_VARIANTS:
        variant = CFG_VARIANTS[part.kind]
        return variant(
            part.weight(), null_cond=kw.get("null_cond"), batched=kw.get("batched", False)
        )
    if part.kind == "autoguidance":
        reference = kw.get("reference")
        if not isinstance(reference, Model):
            raise UserError("autoguidance needs reference=Model(...) (the weaker model)")
        if model is not None and reference.path.config() != model.path.config():
            raise UserError(f"reference path {reference.path!r} differs from {model.path!r}")
        return AutoGuidance(reference, part.weight())
    if kw.get("classifier") is None or kw.get("n_classes") is None:
        raise UserError("classifier guidance needs classifier=... and n_classes=...")
    return ClassifierGuidance(
        kw["classifier"], part.weight(), kw["n_classes"], labels=kw.get("labels")
    )
