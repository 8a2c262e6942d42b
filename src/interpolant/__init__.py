"""interpolant: one mathematical core for diffusion, flow and stochastic-interpolant models.

Convention: t in [0, 1], t = 0 is data, t = 1 the source. See docs/concepts.md.

    import interpolant as ip
    model = ip.Model(net, ip.paths.Linear(), predicts="velocity")
    spec = ip.Sampler("dpmpp_3m", nfe=10, grid="karras", seed=0)
    x = ip.sample(model, noise, spec).x
    result = ip.likelihood(model, x_data)
"""

from . import (
    adapters,
    configurable,
    data,
    errors,
    guidance,
    inverse,
    losses,
    metrics,
    models,
    paths,
    predictions,
    randomness,
    scaling,
    solvers,
)
from .errors import UserError
from .paths import get_path
from .predictions import KINDS, Model, Preconditioned, Prediction, convert
from .solvers import FunctionHook, Hook, Sampler, SampleResult, Trajectory, calibrate, sample
from .solvers import log_likelihood as likelihood

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
    "FunctionHook",
    "Hook",
    "Model",
    "Preconditioned",
    "Prediction",
    "SampleResult",
    "Sampler",
    "Trajectory",
    "UserError",
    "__version__",
    "adapters",
    "calibrate",
    "configurable",
    "convert",
    "data",
    "errors",
    "get_path",
    "guidance",
    "inverse",
    "likelihood",
    "losses",
    "metrics",
    "models",
    "paths",
    "predictions",
    "randomness",
    "sample",
    "scaling",
    "solvers",
    "text",
]
