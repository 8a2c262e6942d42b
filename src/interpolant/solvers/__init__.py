"""Solvers (stateless steps), time grids and the one sampling loop with hooks."""

from . import dpm, ode, sde, unipc  # noqa: F401  (register the solvers)
from .base import SOLVERS, Node, Solver, State, StepContext, get_solver, make_nodes, node_at
from .grids import GRIDS, get_grid
from .loop import SampleContext, SampleResult, make_generators, randn_like, sample

__all__ = [
    "GRIDS",
    "SOLVERS",
    "Node",
    "SampleContext",
    "SampleResult",
    "Solver",
    "State",
    "StepContext",
    "get_grid",
    "get_solver",
    "make_generators",
    "make_nodes",
    "node_at",
    "randn_like",
    "sample",
]
