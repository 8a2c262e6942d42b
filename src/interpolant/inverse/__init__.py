"""Inverse problems: measurement operators, exact posteriors and posterior samplers.

Modules: base.py (the Operator ABC), operators.py, posterior.py, solvers.py (DPS, RED-diff,
data consistency, RePaint), quality.py (PSNR, SSIM); inversion.py (DDIM inversion,
CycleDiffusion's DPM-Encoder), cow.py, flowchef.py, mbir.py (DiffusionMBIR). Imports and
``__all__`` are kept sorted (ruff), so both groups share one list.
"""

from .base import Operator
from .cow import COWSettings, ReplaceRegion, cow, cow_solve, renoise
from .flowchef import FlowChef, default_gradient_scale, flowchef
from .inversion import (
    Latent,
    cycle_translate,
    dpm_decode,
    dpm_encode,
    invert,
    round_trip_error,
)
from .mbir import ADMMTV, SliceOperator, diffusion_mbir
from .operators import (
    CT,
    MRI,
    GaussianBlur,
    Inpaint,
    MatrixOperator,
    RandomProjection,
    SuperResolution,
    as_matrix,
    box_mask,
    kspace_lines,
    least_squares,
    make_operator,
    radon_matrix,
    random_mask,
)
from .posterior import MixturePosterior, fit_mixture, mixture_posterior, posterior_error
from .quality import psnr, ssim
from .solvers import (
    DPS,
    METHODS,
    RED_WEIGHTINGS,
    DataConsistency,
    apply_pinv,
    data_consistency_sample,
    dps,
    dps_model,
    red_diff,
    repaint,
    repaint_schedule,
    solve,
)

__all__ = [
    "ADMMTV",
    "CT",
    "DPS",
    "METHODS",
    "MRI",
    "RED_WEIGHTINGS",
    "COWSettings",
    "DataConsistency",
    "FlowChef",
    "GaussianBlur",
    "Inpaint",
    "Latent",
    "MatrixOperator",
    "MixturePosterior",
    "Operator",
    "RandomProjection",
    "ReplaceRegion",
    "SliceOperator",
    "SuperResolution",
    "apply_pinv",
    "as_matrix",
    "box_mask",
    "cow",
    "cow_solve",
    "cycle_translate",
    "data_consistency_sample",
    "default_gradient_scale",
    "diffusion_mbir",
    "dpm_decode",
    "dpm_encode",
    "dps",
    "dps_model",
    "fit_mixture",
    "flowchef",
    "invert",
    "kspace_lines",
    "least_squares",
    "make_operator",
    "mixture_posterior",
    "posterior_error",
    "psnr",
    "radon_matrix",
    "random_mask",
    "red_diff",
    "renoise",
    "repaint",
    "repaint_schedule",
    "round_trip_error",
    "solve",
    "ssim",
]
