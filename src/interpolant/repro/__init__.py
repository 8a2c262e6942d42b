"""Reproductions: one module per seed paper, each a small experiment that tests the paper's claim.

Every module ``seedNN_topic`` in this package defines ``REPRO = Repro(name, paper, title, claim,
run)``; the registry finds them by name, so adding a reproduction is adding a module. Modules are
imported on first use (so ``python -m interpolant.repro.NAME`` runs without a double import)::

    from interpolant import repro
    repro.list_repros()                      # {name: Repro}, ordered by paper number
    result = repro.get_repro("seed02_sde_correction")(quick=True)
    result.numbers, result.claim_held

Command lines: ``python -m interpolant.repro.NAME [--quick] [--seed S] [--record|--no-record]``
and ``python -m interpolant.repro.report`` (writes docs/reproductions.md from the JSON rows).
"""

from __future__ import annotations

import importlib
import pkgutil
import re

from ..errors import UserError, WrongTypeError
from .base import Repro, ReproResult, main

_MODULE_RE = re.compile(r"^seed\d\d_\w+$")


def repro_names() -> list[str]:
    """Names of the reproduction modules in this package (``seedNN_topic``), sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if _MODULE_RE.match(m.name))


def get_repro(name: str) -> Repro:
    """The registered reproduction ``name`` (its module is imported on demand)."""
    names = repro_names()
    if name not in names:
        raise UserError(f"unknown reproduction {name!r}; choose one of {names}")
    module = importlib.import_module(f"{__name__}.{name}")
    repro = getattr(module, "REPRO", None)
    if not isinstance(repro, Repro) or repro.name != name:
        raise WrongTypeError(
            f"module {module.__name__} must define REPRO = Repro(name={name!r}, ...)"
        )
    return repro


def list_repros() -> dict[str, Repro]:
    """Every registered reproduction by name, ordered by seed paper number then name."""
    repros = [get_repro(name) for name in repro_names()]
    return {r.name: r for r in sorted(repros, key=lambda r: (r.paper, r.name))}


__all__ = ["Repro", "ReproResult", "get_repro", "list_repros", "main", "repro_names"]
