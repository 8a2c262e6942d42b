"""Solvers (stateless steps), time grids and the one sampling loop with hooks."""

from . import adams, dpm, lml, ode, sde, unipc  # noqa: F401  (register the solvers)
from .adaptive import odeint_dopri5, reference_sample
from .base import SOLVERS, Node, Solver, State, StepContext, get_solver, make_nodes, node_at
from .grids import GRIDS, get_grid
from .likelihood import Likelihood, log_likelihood
from .loop import SampleContext, SampleResult, make_generators, randn_like, sample
from .teleport import teleport, teleport_sample

__all__ = [
    "GRIDS",
    "SOLVERS",
    "Likelihood",
    "Node",
    "SampleContext",
    "SampleResult",
    "Solver",
    "State",
    "StepContext",
    "get_grid",
    "get_solver",
    "log_likelihood",
    "make_generators",
    "make_nodes",
    "node_at",
    "odeint_dopri5",
    "randn_like",
    "reference_sample",
    "sample",
    "teleport",
    "teleport_sample",
]
