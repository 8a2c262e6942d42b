"""Solvers (stateless steps), time grids, the sampler spec and the one sampling loop with hooks."""

from . import (  # noqa: F401  (register the solvers)
    adams,
    ancestral,
    cfg_pp,
    dpm,
    dpm_sde,
    er_sde,
    gradient_estimation,
    heunpp,
    ipndm_v,
    kdpm,
    lcm,
    lml,
    multistep_peers,
    ode,
    res_multistep,
    sa_solver,
    sde,
    seeds,
    singlestep,
    unipc,
)
from .adaptive import odeint_dopri5, reference_sample
from .base import (
    SOLVERS,
    History,
    Multistep,
    Node,
    Output,
    Run,
    Solver,
    State,
    fixed_run,
    get_solver,
    make_nodes,
    node_at,
)
from .bridge import BridgeRun, sample_bridge
from .calibrate import Calibration, calibrate
from .grids import GRIDS, Grid, as_grid, get_grid
from .hooks import FunctionHook, Hook, Plan, Recording, Step, Trajectory
from .likelihood import Likelihood, log_likelihood
from .loop import SampleResult, StepInfo, sample
from .spec import Sampler, as_sampler
from .teleport import Teleport, teleport, teleport_sample
from .thresholding import Thresholding

__all__ = [
    "GRIDS",
    "SOLVERS",
    "BridgeRun",
    "Calibration",
    "FunctionHook",
    "Grid",
    "History",
    "Hook",
    "Likelihood",
    "Multistep",
    "Node",
    "Output",
    "Plan",
    "Recording",
    "Run",
    "SampleResult",
    "Sampler",
    "Solver",
    "State",
    "Step",
    "StepInfo",
    "Teleport",
    "Thresholding",
    "Trajectory",
    "as_grid",
    "as_sampler",
    "calibrate",
    "fixed_run",
    "get_grid",
    "get_solver",
    "log_likelihood",
    "make_nodes",
    "node_at",
    "odeint_dopri5",
    "reference_sample",
    "sample",
    "sample_bridge",
    "teleport",
    "teleport_sample",
]
