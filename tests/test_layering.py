"""DESIGN.md's layering: lower packages never import higher ones. Imports are read with ``ast``
(module level, inside functions and under TYPE_CHECKING alike), so a forbidden import fails here
as soon as it is written."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "interpolant"

#: Package -> the packages it must never import (DESIGN.md sec. 5: the layout mirrors the math;
#: errors, configurable and randomness sit below everything). {"*", "a"}: all but "a".
FORBIDDEN = {
    "errors": {"*"},
    "configurable": {"*", "errors"},
    "randomness": {"*", "errors"},
    "threads": {"*"},
    "paths": {
        "solvers",
        "losses",
        "guidance",
        "inverse",
        "scaling",
        "text",
        "models",
        "train",
        "api",
        "cli",
        "repro",
        "data",
        "predictions",
    },
    "predictions": {
        "solvers",
        "losses",
        "guidance",
        "inverse",
        "scaling",
        "text",
        "models",
        "train",
        "api",
        "cli",
        "repro",
        "data",
    },
    "solvers": {
        "data",
        "train",
        "api",
        "cli",
        "repro",
        "guidance",
        "scaling",
        "inverse",
        "models",
        "losses",
        "text",
    },
    "losses": {"solvers", "api", "cli", "repro", "train", "guidance", "inverse", "scaling"},
    "models": {"solvers", "train", "api", "cli", "repro", "guidance", "inverse", "scaling"},
    "timeseries": {"api", "cli", "repro"},
    "graphs": {"api", "cli", "repro", "guidance", "inverse", "scaling", "text"},
    "fewstep": {"api", "cli", "repro", "guidance", "inverse", "scaling", "text", "graphs"},
    "analysis": {"api", "cli", "repro", "train", "guidance", "inverse", "scaling", "text"},
    "metrics": {"api", "cli", "repro", "train", "guidance", "inverse", "scaling"},
    "train": {"api", "cli", "repro", "guidance", "inverse", "scaling"},
    "forward_models": {"api", "cli", "repro", "train", "guidance", "scaling", "text", "graphs"},
    "diffusevae": {"api", "cli", "repro", "guidance", "inverse", "scaling", "text", "graphs"},
    "multitask": {"api", "cli", "repro", "train", "guidance", "scaling", "text", "graphs"},
}
ALL = {p.stem if p.is_file() else p.name for p in SRC.iterdir() if not p.name.startswith("_")}


def _imported_packages(path: Path, root: Path = SRC) -> set[tuple[str, int]]:
    """(top-level interpolant package, line) of every import in ``path`` (a file under
    ``root``, the interpolant source folder)."""
    rel = path.relative_to(root).parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level > 0:
                base = list(rel[:-1])[: len(rel) - node.level]
                parts = base + (node.module.split(".") if node.module else [])
                tops = [parts[0]] if parts else [alias.name for alias in node.names]
            elif node.module and node.module.startswith("interpolant."):
                tops = [node.module.split(".")[1]]
            else:
                tops = []
        elif isinstance(node, ast.Import):
            tops = [a.name.split(".")[1] for a in node.names if a.name.startswith("interpolant.")]
        else:
            continue
        found.update((top.removesuffix(".py"), node.lineno) for top in tops)
    return found


def _banned(top: str) -> set[str]:
    rules = FORBIDDEN[top]
    if "*" in rules:  # everything but the listed exceptions
        return ALL - {top} - (rules - {"*"})
    return rules


def test_no_lower_package_imports_a_higher_one():
    leaks = []
    for path in sorted(SRC.rglob("*.py")):
        top = path.relative_to(SRC).parts[0].removesuffix(".py")
        if top not in FORBIDDEN:
            continue
        banned = _banned(top)
        for package, line in _imported_packages(path):
            if package in banned:
                leaks.append(f"{path.relative_to(SRC)}:{line} imports {package}")
    assert not leaks, "imports against DESIGN.md's layering:\n" + "\n".join(sorted(leaks))


def test_the_checker_sees_a_forbidden_import_under_type_checking(tmp_path):
    # A check that cannot fail proves nothing: plant a leak and see it reported.
    (tmp_path / "paths").mkdir()
    leak = tmp_path / "paths" / "leak.py"
    leak.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..solvers import loop\n"
    )
    assert ("solvers", 3) in _imported_packages(leak, tmp_path)
    assert "solvers" in _banned("paths") and "data" in _banned("randomness")
