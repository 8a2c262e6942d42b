"""Inverse problems: measurement operators, exact posteriors and posterior samplers.

Modules: base.py (the Operator ABC and what the methods share), operators.py, posterior.py,
solvers.py (DPS, RED-diff, data consistency, RePaint), smc.py (TDS, MCGdiff: asymptotically
exact SMC posterior samplers), quality.py (PSNR, SSIM); inversion.py
(DDIM inversion, CycleDiffusion's DPM-Encoder), cow.py, flowchef.py, mbir.py (DiffusionMBIR).
Every sampling method takes a :class:`~interpolant.solvers.Sampler` spec (keyword shortcuts
change it) and reports the model evaluations it made. Imports and ``__all__`` are kept sorted
(ruff), so both groups share one list.
"""

from .base import Operator, Reconstruction, TapedModel, renoise
from .cow import COW_SAMPLER, COWSettings, ReplaceRegion, cow, cow_solve
from .flowchef import FLOWCHEF_SAMPLER, FlowChef, FlowChefResult, default_gradient_scale, flowchef
from .inversion import (
    ENCODER,
    INVERSION,
    Inversion,
    Latent,
    Translation,
    cycle_translate,
    dpm_decode,
    dpm_encode,
    invert,
    reconstruct,
    round_trip_error,
)
from .mbir import ADMMTV, MBIR_SAMPLER, SliceOperator, Splitting, VolumeADMM, diffusion_mbir
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
from .smc import SMC_SAMPLER, TDS, MCGdiff, SMCResult, smc_posterior
from .solvers import (
    ANCESTRAL,
    DPS,
    METHODS,
    RED_WEIGHTINGS,
    REPAINT,
    DataConsistency,
    apply_pinv,
    data_consistency_sample,
    dps,
    red_diff,
    repaint,
    repaint_schedule,
    solve,
)

__all__ = [
    "ADMMTV",
    "ANCESTRAL",
    "COW_SAMPLER",
    "CT",
    "DPS",
    "ENCODER",
    "FLOWCHEF_SAMPLER",
    "INVERSION",
    "MBIR_SAMPLER",
    "METHODS",
    "MRI",
    "RED_WEIGHTINGS",
    "REPAINT",
    "SMC_SAMPLER",
    "TDS",
    "COWSettings",
    "DataConsistency",
    "FlowChef",
    "FlowChefResult",
    "GaussianBlur",
    "Inpaint",
    "Inversion",
    "Latent",
    "MCGdiff",
    "MatrixOperator",
    "MixturePosterior",
    "Operator",
    "RandomProjection",
    "Reconstruction",
    "ReplaceRegion",
    "SMCResult",
    "SliceOperator",
    "Splitting",
    "SuperResolution",
    "TapedModel",
    "Translation",
    "VolumeADMM",
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
    "reconstruct",
    "red_diff",
    "renoise",
    "repaint",
    "repaint_schedule",
    "round_trip_error",
    "smc_posterior",
    "solve",
    "ssim",
]
