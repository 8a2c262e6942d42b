"""Time series as a modality (TSDiff, seed paper 13): windows with lags and per-window scaling,
an unconditional window diffusion model, forecasting and imputation by observation
self-guidance, energy-based refinement of any forecaster, synthetic data (TSTR, LPS), and the
CRPS / quantile-loss / MASE / coverage metrics."""

from __future__ import annotations

from .baselines import Ridge, ridge_forecast, seasonal_naive
from .data import (
    STATSMODELS_SERIES,
    SeriesSet,
    gaussian_conditional,
    gp_windows,
    load_series_file,
    load_statsmodels,
    seasonal_ar_covariance,
)
from .forecast import (
    TrainedModel,
    TrainSettings,
    ancestral,
    forecast,
    guided_windows,
    impute,
    missing_mask,
    train_window_model,
    tsdiff_path,
)
from .metrics import coverage, crps, gaussian_crps, mase, scores, weighted_quantile_loss
from .refine import (
    ITERATION_GRID,
    PRIOR_SCALES,
    RefineChoice,
    RefineResult,
    best_step,
    choose_refinement,
    refine,
    refine_chosen,
    step_losses,
)
from .synthesize import as_windows, linear_predictive_score, ridge_trainer, synthesize, tstr
from .windows import (
    Windows,
    WindowSpec,
    forecast_windows,
    make_windows,
    train_test_windows,
    train_val_test_windows,
)

__all__ = [
    "ITERATION_GRID",
    "PRIOR_SCALES",
    "STATSMODELS_SERIES",
    "RefineChoice",
    "RefineResult",
    "Ridge",
    "SeriesSet",
    "TrainSettings",
    "TrainedModel",
    "WindowSpec",
    "Windows",
    "ancestral",
    "as_windows",
    "best_step",
    "choose_refinement",
    "coverage",
    "crps",
    "forecast",
    "forecast_windows",
    "gaussian_conditional",
    "gaussian_crps",
    "gp_windows",
    "guided_windows",
    "impute",
    "linear_predictive_score",
    "load_series_file",
    "load_statsmodels",
    "make_windows",
    "mase",
    "missing_mask",
    "refine",
    "refine_chosen",
    "ridge_forecast",
    "ridge_trainer",
    "scores",
    "seasonal_ar_covariance",
    "seasonal_naive",
    "step_losses",
    "synthesize",
    "train_test_windows",
    "train_val_test_windows",
    "train_window_model",
    "tsdiff_path",
    "tstr",
    "weighted_quantile_loss",
]
