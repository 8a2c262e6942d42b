"""interpolant: one mathematical core for diffusion, flow and stochastic-interpolant models.

Convention: t in [0, 1], t = 0 is data, t = 1 the source. See docs/concepts.md.

    import interpolant as ip
    model = ip.Model(net, ip.paths.Linear(), predicts="velocity")
    x = ip.sample(model, noise, solver="dpmpp_3m", nfe=10, grid="karras", seed=0)
    result = ip.likelihood(model, x_data)
"""

from . import (
    adapters,
    data,
    guidance,
    inverse,
    losses,
    metrics,
    models,
    paths,
    predictions,
    scaling,
    solvers,
)
from .paths import get_path
from .predictions import KINDS, Model, Preconditioned, Prediction, convert
from .solvers import log_likelihood as likelihood
from .solvers import sample

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The text package loads the trainer and (on use) the optional tokenizers library: import it
    # on first access (``ip.text``) rather than with the package.
    if name == "text":
        import importlib

        return importlib.import_module(".text", __name__)
    raise AttributeError(f"module 'interpolant' has no attribute {name!r}")


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
    "guidance",
    "inverse",
    "likelihood",
    "losses",
    "metrics",
    "models",
    "paths",
    "predictions",
    "sample",
    "scaling",
    "solvers",
    "text",
]
