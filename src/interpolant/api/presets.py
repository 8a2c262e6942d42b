"""Named run configurations: ``interpolant train --preset NAME`` (see docs/howto/presets.md).

Each preset is a partial :class:`~interpolant.api.config.RunConfig` dict; unspecified fields keep
their dataclass defaults. Model sizes that follow from the data (``dim``, ``image_size``,
``in_channels``, ``num_classes``) are filled in when the data are loaded.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import UserError

# sigma_data (EDM preconditioning) measured with data.estimate_sigma_data on the train splits.
SIGMA_DATA_DIGITS = 0.75
SIGMA_DATA_MOONS = 0.72

# Rectified flow (Liu et al. 2023; SD3's logit-normal times, Esser et al. 2024).
_FLOW: dict[str, Any] = {
    "path": {"name": "linear"},
    "predicts": "velocity",
    "objective": {"target": "velocity", "time": "logit-normal", "weight": "uniform"},
}


def _edm(sigma_data: float) -> dict[str, Any]:
    """EDM (Karras et al. 2022, Table 1): preconditioned x0 network, log-normal noise levels,
    EDM weighting; preconditioning and weighting share ``sigma_data``."""
    return {
        "path": {"name": "edm"},
        "predicts": "x0",
        "precondition": sigma_data,
        "objective": {
            "target": "x0",
            "time": "edm-log-normal",
            "weight": {"name": "edm", "sigma_data": sigma_data},
        },
    }


# The training schedule shared by the digits presets, and by the 2-D presets (same MLP, steps,
# optimiser and EMA; the recipes differ only in path, target and sampler).
_DIGITS_TRAIN: dict[str, Any] = {
    "model": {"name": "mlp", "width": 384, "depth": 3},
    "steps": 6000,
    "batch_size": 128,
    "lr": 2e-3,
    "lr_schedule": "cosine",
    "lr_min_ratio": 0.05,
    "ema_halflife_kimg": 25.0,
    "log_every": 100,
    "checkpoint_every": 2000,
}
_TOY_TRAIN: dict[str, Any] = {
    "model": {"name": "mlp", "width": 256, "depth": 3},
    "steps": 2000,
    "batch_size": 512,
    "lr": 2e-3,
    "lr_schedule": "cosine",
    "ema_halflife_kimg": 100.0,
    "log_every": 50,
    "checkpoint_every": 1000,
}


# TSDiff (Kollovieh et al. 2023): eps-network on windows, linear beta 1e-4 .. 0.1 over 100 steps.
_TSDIFF_BETAS = [1e-4 + k * (0.1 - 1e-4) / 99 for k in range(100)]


def _series(source: str, period: int, what: str, context: int = 36, horizon: int = 12) -> dict:
    """A TSDiff preset on ``data.name=series`` (windows of context + horizon, one lag channel
    at the seasonal period, standardised by each window's context; the Conv1D eps-network)."""
    lags = [period] if period > 1 else []
    return {
        "description": f"TSDiff on {what} (context {context}, horizon {horizon}); then "
        "interpolant forecast RUN --history FILE / interpolant eval RUN",
        "data": {
            "name": "series",
            "options": {
                "source": source,
                "context": context,
                "horizon": horizon,
                "lags": lags,
                "scaling": "standard",
                "test_windows": 8 if source != "nile" else 3,
                # The horizons before the test ones choose the guidance scale and refinement.
                "val_windows": 4 if source != "nile" else 2,
            },
        },
        "train": {
            "model": {"name": "conv1d", "width": 64, "depth": 6},  # channels: 1 + lags, filled in
            "path": {"name": "discrete-vp", "betas": _TSDIFF_BETAS},
            "predicts": "eps",
            "objective": {"target": "eps", "time": "uniform", "weight": "uniform"},
            "run_dir": f"runs/series-{source or 'csv'}",
            "steps": 2000,
            "batch_size": 64,
            "lr": 1e-3,
            "grad_clip": 0.5,
            "ema_halflife_kimg": 10.0,
            "log_every": 100,
            "checkpoint_every": 1000,
        },
        "sample": {"solver": "ddim", "nfe": 100, "grid": "uniform", "n": 64},
    }


PRESETS: dict[str, dict[str, Any]] = {
    "digits-flow": {
        "description": "rectified flow on sklearn's 8x8 digits, residual MLP on the 64 pixels "
        "(the demo; about 2 minutes on 2 CPU cores)",
        "data": {"name": "digits"},
        "train": {
            **_FLOW,
            **_DIGITS_TRAIN,
            "run_dir": "runs/digits-flow",
        },
        # UniPC was the best of our solvers at 10 NFE on this model (docs/howto/presets.md).
        "sample": {"solver": "unipc", "nfe": 10, "grid": "uniform", "n": 1000},
        "eval": {"metrics": ["auto"]},
    },
    "digits-edm": {
        "description": "EDM (preconditioned x0 network, log-normal noise levels, EDM weighting) "
        "on 8x8 digits with the same MLP, Heun on the Karras grid",
        "data": {"name": "digits"},
        "train": {
            **_edm(SIGMA_DATA_DIGITS),
            **_DIGITS_TRAIN,
            "run_dir": "runs/digits-edm",
        },
        "sample": {"solver": "heun", "nfe": 35, "grid": "karras", "n": 1000},
        "eval": {"metrics": ["auto"]},
    },
    "toy2d-flow": {
        "description": "rectified flow on the 2-D two-moons set (any toy set: data.name=...), "
        "small MLP; under a minute on a CPU",
        "data": {"name": "moons"},
        "train": {
            **_FLOW,
            **_TOY_TRAIN,
            "run_dir": "runs/toy2d-flow",
        },
        "sample": {"solver": "heun", "nfe": 20, "grid": "uniform", "n": 2000},
        "eval": {"metrics": ["auto"]},
    },
    "toy2d-edm": {
        "description": "EDM on the 2-D two-moons set: preconditioned x0 network, Heun on the "
        "Karras grid",
        "data": {"name": "moons"},
        "train": {
            **_edm(SIGMA_DATA_MOONS),
            **_TOY_TRAIN,
            "run_dir": "runs/toy2d-edm",
        },
        "sample": {"solver": "heun", "nfe": 35, "grid": "karras", "n": 2000},
        "eval": {"metrics": ["auto"]},
    },
    "dit-s2": {
        "description": "GPU preset: DiT-S/2 rectified flow on your image folder or latents "
        "(data.name=PATH), bf16, batch 256, AdamW 1e-4 (the DiT paper's settings)",
        "data": {"name": ""},
        "train": {
            **_FLOW,
            "model": {"name": "dit-s/2"},
            "run_dir": "runs/dit-s2",
            "steps": 400_000,
            "batch_size": 256,
            "lr": 1e-4,
            "lr_warmup_steps": 1000,
            "ema_halflife_kimg": 500.0,
            "precision": "bf16",
            "device": "auto",
            "log_every": 100,
            "checkpoint_every": 5000,
            "sample_every": 20_000,
        },
        "sample": {"solver": "heun", "nfe": 50, "grid": "shift", "n": 64, "batch_size": 64},
        "eval": {"metrics": ["auto"]},
    },
    # Training structures (issue 16; train.objective.name, see docs/howto/training-structures.md).
    "multitask": {
        "description": "MT-Diffusion on 8x8 digits: a two-head MLP (eps and label) with a "
        "learned label embedding; interpolant sample draws images and labels jointly",
        "data": {"name": "digits", "labels": True},
        "train": {
            "model": {"name": "multihead-mlp", "width": 256, "depth": 3},
            "objective": {"name": "multitask", "diffusion_steps": 200, "weights": "early"},
            "run_dir": "runs/multitask",
            "steps": 2500,
            "batch_size": 128,
            "lr": 2e-3,
            "lr_schedule": "cosine",
            "ema_halflife_kimg": 20.0,
            "log_every": 50,
            "checkpoint_every": 500,
        },
        # The ancestral sampler's full chain (sample.nfe=N < 200 strides it, DDIM-style).
        "sample": {"nfe": 200, "n": 1000},
        "eval": {"metrics": ["auto"]},
    },
    "diffusevae": {
        "description": "DiffuseVAE (form 2) on 8x8 digits: a small VAE, then an eps-UNet "
        "refiner on the shifted-mean path around its reconstructions; DDIM in 10 steps",
        "data": {"name": "digits"},
        "train": {
            "model": {
                "name": "unet",
                "model_channels": 16,
                "channel_mult": [1, 2],
                "num_res_blocks": 1,
                "attn_resolutions": [],
            },
            "path": {"name": "vp"},
            "predicts": "eps",
            "objective": {"name": "diffusevae", "form": "form2", "vae_steps": 1000},
            "run_dir": "runs/diffusevae",
            "steps": 1000,
            "batch_size": 64,
            "lr": 2e-3,
            "lr_schedule": "cosine",
            "ema_halflife_kimg": 20.0,
            "log_every": 50,
            "checkpoint_every": 500,
        },
        "sample": {"solver": "ddim", "nfe": 10, "grid": "uniform", "n": 1000},
        "eval": {"metrics": ["auto"]},
    },
    "forward-digits": {
        "description": "observation-space diffusion (seed 20) on 8x8 digits: the loss sees only "
        "masked views (halves, quadrant complements); interpolant sample completes the top "
        "halves of training digits and returns the whole digit; DDIM in 50 steps",
        "data": {"name": "digits"},
        "train": {
            "model": {"name": "masked-view", "width": 256, "depth": 3},
            "path": {"name": "vp"},
            "objective": {
                "name": "forward",
                "views": "digits",
                "context_view": 0,
                "target_view": 1,
            },
            "run_dir": "runs/forward-digits",
            "steps": 1200,
            "batch_size": 256,
            "lr": 1e-3,
            "lr_schedule": "cosine",
            "ema_halflife_kimg": 20.0,
            "log_every": 50,
            "checkpoint_every": 400,
        },
        "sample": {"solver": "ddim", "nfe": 50, "grid": "uniform", "n": 1000},
    },
    "series-co2": _series("co2", 12, "Mauna Loa CO2 (statsmodels, monthly)"),
    "series-elnino": _series("elnino", 12, "Nino 1+2 sea-surface temperature (monthly)"),
    "series-sunspots": _series("sunspots", 11, "yearly sunspot numbers (statsmodels)"),
    "series-nile": _series("nile", 1, "the yearly Nile flow (statsmodels)", 24, 8),
    "series-csv": _series(
        "",
        1,
        "your series: data.options.source=FILE.csv|.npy (one column per series, or "
        "data.options.id_column=ID); a seasonal lag P: data.options.period=P "
        "data.options.lags=[P] (train.model.channels follows the lags)",
    ),
}
"""Name -> partial run config (its "description" is shown by `interpolant info`)."""


def get_preset(name: str) -> dict[str, Any]:
    """A deep copy of preset ``name`` without its description (an unknown name lists them)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; valid presets are {sorted(PRESETS)}")
    values = copy.deepcopy(PRESETS[name])
    values.pop("description", None)
    return values


def preset_descriptions() -> dict[str, str]:
    """Name -> one-line description."""
    return {name: str(p.get("description", "")) for name, p in PRESETS.items()}


__all__ = ["PRESETS", "get_preset", "preset_descriptions"]
