"""Configurable objects: frozen dataclasses whose settings are their config.

Paths, solvers, grids, time samplers and weightings are frozen dataclasses built on
:class:`Configurable`. Everything that describes them is derived from their fields:

* ``config()`` is ``{"name": ..., **fields}`` (JSON-ready), ``from_config`` rebuilds the object,
  ``repr`` and ``==`` come from the dataclass;
* validation is declared on each field (:func:`option` with ``check=``) and runs in one place,
  :meth:`Configurable.__post_init__`, raising a :class:`~interpolant.errors.UserError` that names
  the class, the field, what it must be and what it got;
* help text (``interpolant info --options``) is the field metadata, never the source text.

A :class:`Registry` maps names to classes and builds objects from a name, a config dict or the
object itself.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import MISSING, fields
from typing import Any, ClassVar, Generic, TypeVar

import torch

from .errors import UserError

#: A check returns None for a valid value, else what the value must be ("a number >= 0").
Check = Callable[[Any], "str | None"]

C = TypeVar("C", bound="Configurable")


def option(
    default: Any = MISSING,
    *,
    help: str,
    check: Check | Sequence[Check] = (),
    default_factory: Any = MISSING,
    group: str = "",
    compare: bool = True,
    repr: bool = True,
) -> Any:
    """A dataclass field with its help text, checks and (for long configs) its group in the
    metadata; ``compare`` and ``repr`` as for ``dataclasses.field``."""
    checks = (check,) if callable(check) else tuple(check)
    meta = {"help": help, "checks": checks, "group": group}
    if default_factory is not MISSING:
        return dataclasses.field(
            default_factory=default_factory, metadata=meta, compare=compare, repr=repr
        )
    return dataclasses.field(default=default, metadata=meta, compare=compare, repr=repr)


# ----------------------------------------------------------------------------------------------
# Checks.


def number(
    lo: float | None = None,
    hi: float | None = None,
    *,
    open_lo: bool = False,
    open_hi: bool = False,
    integer: bool = False,
    allow_inf: bool = False,
) -> Check:
    """A real (or integer) number in [lo, hi] (ends open where asked); bools are refused."""
    kind = "an int" if integer else ("a number" if allow_inf else "a finite number")
    if lo is not None and hi is not None:
        want = f"{kind} in {'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
    elif lo is not None:
        want = f"{kind} {'>' if open_lo else '>='} {lo:g}"
    elif hi is not None:
        want = f"{kind} {'<' if open_hi else '<='} {hi:g}"
    else:
        want = kind

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return want
        if integer and not isinstance(value, int):
            return want
        if math.isnan(value) or (math.isinf(value) and not allow_inf):
            return want
        if lo is not None and (value < lo or (open_lo and value == lo)):
            return want
        if hi is not None and (value > hi or (open_hi and value == hi)):
            return want
        return None

    return check


def one_of(*choices: Any) -> Check:
    """One of the given values."""

    want = f"one of {', '.join(map(repr, choices))}"
    allow_bool = any(isinstance(c, bool) for c in choices)

    def check(value: Any) -> str | None:
        if isinstance(value, bool) and not allow_bool:
            return want  # True == 1 must not pass for an int choice
        return None if value in choices else want

    return check


def boolean(value: Any) -> str | None:
    """True or False."""
    return None if isinstance(value, bool) else "True or False"


def optional(inner: Check) -> Check:
    """None, or what ``inner`` accepts."""

    def check(value: Any) -> str | None:
        if value is None:
            return None
        message = inner(value)
        return None if message is None else f"None or {message}"

    return check


def number_or_callable(lo: float | None = None) -> Check:
    """A number >= lo, or a callable of t (checked where it is used)."""
    as_number = number(lo)

    def check(value: Any) -> str | None:
        if callable(value):
            return None
        message = as_number(value)
        return None if message is None else f"{message} or a callable of t"

    return check


# ----------------------------------------------------------------------------------------------
# The base class.


def _any(obj: Any) -> Any:
    return obj


def _fields(obj: Any) -> tuple[dataclasses.Field[Any], ...]:
    """The dataclass fields of a configurable class or instance."""
    return fields(obj)


def jsonable(value: Any) -> Any:
    """A config value in JSON form: nested configurables as their config, dtypes as names,
    tuples as lists, tensors as lists of numbers; other values unchanged."""
    if isinstance(value, Configurable):
        return value.config()
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


class Configurable:
    """Base of the configurable objects (subclasses are ``@dataclass(frozen=True)``).

    ``name`` is the registry name; fields declared with :func:`option` carry their help and
    checks. Subclasses put cross-field rules in :meth:`validate`.
    """

    name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in _fields(self):
            value = getattr(self, f.name)
            for check in f.metadata.get("checks", ()):
                message = check(value)
                if message is not None:
                    raise UserError(
                        f"{type(self).__name__}: {f.name} must be {message}, got {value!r}"
                    )
        self.validate()

    def validate(self) -> None:
        """Rules that involve several fields (raise :class:`UserError`)."""

    def config(self) -> dict[str, Any]:
        """``{"name": ..., **fields}`` in JSON form; ``from_config`` rebuilds the object."""
        out: dict[str, Any] = {"name": self.name} if self.name else {}
        for f in _fields(self):
            if f.init:
                out[f.name] = jsonable(getattr(self, f.name))
        return out

    @classmethod
    def from_config(cls: type[C], config: Mapping[str, Any]) -> C:
        """The object ``config()`` describes (unknown keys are refused by name)."""
        values = dict(config)
        name = values.pop("name", cls.name)
        if cls.name and name != cls.name:
            raise UserError(f"config is for {name!r}, not {cls.name!r}")
        return build(cls, values)

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated again)."""
        out: C = dataclasses.replace(_any(self), **changes)
        return out

    @classmethod
    def options(cls) -> list[tuple[str, str, Any, str]]:
        """(field, type, default, help) for every settable field."""
        rows = []
        for f in _fields(cls):
            if not f.init:
                continue
            default = f.default if f.default is not MISSING else None
            if f.default_factory is not MISSING:
                default = f.default_factory()
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            rows.append((f.name, kind, jsonable(default), f.metadata.get("help", "")))
        return rows


def refuse_unknown(
    label: str, given: Iterable[str], allowed: Iterable[str] | None, key: str = ""
) -> None:
    """Raise :class:`UserError` for names in ``given`` that are not in ``allowed`` (None: any
    name is allowed), listing the valid ones. ``key`` is the dotted config key that holds the
    options (``train.model``): the message then starts with the full keys of the unknown
    ones (``train.model.widht: ...``)."""
    if allowed is None:
        return
    valid = sorted(set(allowed))
    unknown = sorted(set(given) - set(valid))
    if unknown:
        where = ", ".join(f"{key}.{name}" for name in unknown) + ": " if key else ""
        raise UserError(
            f"{where}{label} has no option {', '.join(map(repr, unknown))}; "
            f"its options are {valid or 'none'}"
        )


def option_names(cls: type[Configurable]) -> list[str]:
    """The settable fields of a configurable class."""
    return [f.name for f in _fields(cls) if f.init]


def keyword_names(fn: Callable[..., Any], exclude: Iterable[str] = ()) -> set[str] | None:
    """The names ``fn`` takes as keyword arguments, less ``exclude``; None when it takes
    ``**kwargs`` (so any name may be right)."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in params if p.kind in kinds} - set(exclude)


def build(cls: type[C], values: Mapping[str, Any], key: str = "") -> C:
    """``cls(**values)``, with unknown keys refused by name (a TypeError from the constructor
    would not say which options exist); ``key``: the dotted config key of ``values``."""
    refuse_unknown(cls.name or cls.__name__, values, option_names(cls), key)
    return cls(**values)


class Registry(Mapping[str, "type[C]"], Generic[C]):
    """Names -> classes of one kind (solvers, grids, paths, ...), with aliases."""

    def __init__(self, kind: str, base: type[Any]) -> None:
        # ``base`` (often abstract) only serves isinstance checks.
        self.kind, self.base = kind, base
        self._classes: dict[str, type[C]] = {}

    def register(self, cls: type[C], *aliases: str) -> type[C]:
        """Add ``cls`` under ``cls.name`` (and ``aliases``); returns ``cls`` (a decorator)."""
        for key in (cls.name, *aliases):
            self._classes[key] = cls
        return cls

    def __getitem__(self, name: str) -> type[C]:
        return self._classes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def resolve(self, name: Any, key: str = "") -> type[C]:
        """The class registered as ``name`` (case-insensitive); an unknown name lists the valid
        ones (``key``: the dotted config key that named it)."""
        lookup = name.lower() if isinstance(name, str) else name
        if not isinstance(lookup, str) or lookup not in self._classes:
            where = f"{key}: " if key else ""
            raise UserError(f"{where}unknown {self.kind} {name!r}; choose one of {sorted(self)}")
        return self._classes[lookup]

    def build(self, spec: Any, **options: Any) -> C:
        """An object from itself, its name (with ``options``) or its config dict."""
        if isinstance(spec, self.base):
            if options:
                raise UserError(f"{self.kind} options are only used with a {self.kind} name")
            return spec
        if isinstance(spec, Mapping):
            values = dict(spec)
            if "name" not in values:
                raise UserError(f"a {self.kind} config needs a 'name' key, got {sorted(values)}")
            spec = values.pop("name")
            options = {**values, **options}
        return build(self.resolve(spec), options)


__all__ = [
    "Check",
    "Configurable",
    "Registry",
    "boolean",
    "build",
    "jsonable",
    "keyword_names",
    "number",
    "number_or_callable",
    "one_of",
    "option",
    "option_names",
    "optional",
    "refuse_unknown",
]
