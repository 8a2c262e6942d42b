"""interpolant: one mathematical core for diffusion, flow and stochastic-interpolant models.

Convention: t in [0, 1], t = 0 is data, t = 1 the source. See docs/concepts.md.
"""

from . import data, paths, predictions, solvers
from .paths import get_path
from .predictions import KINDS, Model, Prediction, Preconditioned, convert
from .solvers import sample

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "Model",
    "Prediction",
    "Preconditioned",
    "__version__",
    "convert",
    "data",
    "get_path",
    "paths",
    "predictions",
    "sample",
    "solvers",
]
