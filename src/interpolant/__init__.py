"""interpolant: one mathematical core for diffusion, flow and stochastic-interpolant models.

Convention: t in [0, 1], t = 0 is data, t = 1 the source. See docs/concepts.md.
"""

from . import adapters, data, losses, paths, predictions, solvers
from .paths import get_path
from .predictions import KINDS, Model, Preconditioned, Prediction, convert
from .solvers import sample

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "Model",
    "Preconditioned",
    "Prediction",
    "__version__",
    "adapters",
    "convert",
    "data",
    "get_path",
    "losses",
    "paths",
    "predictions",
    "sample",
    "solvers",
]
