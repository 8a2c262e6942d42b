"""Training objectives as four separate choices: path, target kind, time sampler, weighting.

    objective = Objective(paths.Linear(), target="velocity", time=LogitNormal(0.0, 1.0),
                          weight="uniform")
    loss = objective.loss(model, x0, generator)

The time sampler says where the loss is evaluated (a density on t), the weighting how much each
t counts (a factor on the squared error in the target's space); see docs/concepts.md.
"""

from .coupling import COUPLINGS, Coupling, coupling_from_config, get_coupling, sinkhorn_plan
from .objective import Objective
from .terms import LOSS_TERMS, LossInputs, LossTerm, StepVariation, get_terms
from .time import (
    TIME_SAMPLERS,
    CosMap,
    EDMLogNormal,
    LogitNormal,
    Mode,
    Shift,
    TimeSampler,
    Uniform,
    get_time_sampler,
    time_from_config,
)
from .weights import (
    WEIGHTINGS,
    CallableWeight,
    DensityWeight,
    EDMWeight,
    MinSNR,
    SNRWeight,
    UniformWeight,
    Weighting,
    X0SpaceWeighting,
    get_weighting,
    kind_factor,
    weight_from_config,
)

__all__ = [
    "COUPLINGS",
    "LOSS_TERMS",
    "TIME_SAMPLERS",
    "WEIGHTINGS",
    "CallableWeight",
    "CosMap",
    "Coupling",
    "DensityWeight",
    "EDMLogNormal",
    "EDMWeight",
    "LogitNormal",
    "LossInputs",
    "LossTerm",
    "MinSNR",
    "Mode",
    "Objective",
    "SNRWeight",
    "Shift",
    "StepVariation",
    "TimeSampler",
    "Uniform",
    "UniformWeight",
    "Weighting",
    "X0SpaceWeighting",
    "coupling_from_config",
    "get_coupling",
    "get_terms",
    "get_time_sampler",
    "get_weighting",
    "kind_factor",
    "sinkhorn_plan",
    "time_from_config",
    "weight_from_config",
]
