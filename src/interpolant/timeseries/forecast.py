"""TSDiff's unconditional window model: training, and forecasting / imputation by observation
self-guidance (Kollovieh et al. 2023, sec. 3).

The model is an eps-prediction network on scaled windows (B, C, L) on TSDiff's schedule, T = 100
steps with linear beta from 1e-4 to 0.1 (``paths.DiscreteVP``), trained with the library's
:class:`~interpolant.train.Trainer` and :class:`~interpolant.losses.Objective` (eps target,
uniform time, uniform weight; the paper draws integer steps, here t ~ U[0, 1] on the same
interpolated schedule). Windows' missing entries are 0 in the training data (the paper trains on
complete windows; a few gaps act as noise).

A forecast (or imputation) is a guided sample of the whole window: the hook
:class:`~interpolant.guidance.ObservationGuidance` pulls the model's Tweedie estimate x0_hat
toward the observed entries (eq. 8: MSE energy, or the quantile energy of TSDiff-Q, sample k of
S at level k / (S + 1)); any :class:`~interpolant.solvers.Sampler` runs it (default: ancestral
DDPM, ``ddim`` with eta = 1 over the 100 steps, as the paper; DDIM eta = 0 or any other solver
by passing a sampler).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from ..guidance import ObservationGuidance, quantile_levels
from ..paths import DiscreteVP
from ..paths.discrete_vp import ddpm_linear_alphas_cumprod
from ..predictions import Model
from ..randomness import Streams
from ..solvers import Sampler, sample
from ..solvers.dpm import DDIM
from ..solvers.grids import Uniform
from .windows import Windows, WindowSpec

#: TSDiff's diffusion steps.
STEPS = 100


def tsdiff_path(steps: int = STEPS) -> DiscreteVP:
    """TSDiff's schedule: linear beta 1e-4 .. 0.1 over ``steps`` steps."""
    return DiscreteVP(ddpm_linear_alphas_cumprod(1e-4, 0.1, steps))


def ancestral(steps: int = STEPS, seed: int = 0) -> Sampler:
    """The paper's sampler: ancestral DDPM (DDIM, eta = 1) over every step."""
    return Sampler(DDIM(eta=1.0), steps=steps, grid=Uniform(), seed=seed)


@dataclass(frozen=True)
class TrainSettings:
    """Size and optimisation of a window model (defaults: small, minutes on a CPU)."""

    width: int = 64
    depth: int = 6
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    grad_clip: float = 0.5
    ema_halflife_kimg: float = 10.0
    seed: int = 0
    device: str = "cpu"
    progress: bool = False


@dataclass
class TrainedModel:
    """A trained window model with the window spec it was trained on."""

    model: Model
    spec: WindowSpec
    run_dir: Path
    train_seconds: float


def train_window_model(
    windows: Windows,
    run_dir: str | Path,
    settings: TrainSettings = TrainSettings(),
    validation: Windows | None = None,
) -> TrainedModel:
    """Train the Conv1D eps-network on ``windows`` (scaled); the window spec is stored with
    every checkpoint (``data_info["timeseries"]``), so ``interpolant forecast RUN`` can rebuild
    the windows of a new history. With ``validation`` windows (after the training windows'
    horizons) the guidance scale with the lowest validation CRPS is stored in the run
    (``choose_scale``, ``RUN/guidance.json``) and becomes ``interpolant forecast``'s default."""
    from ..train import TrainConfig, train

    spec = windows.spec
    config = TrainConfig(
        model={
            "name": "conv1d",
            "channels": spec.channels,
            "width": settings.width,
            "depth": settings.depth,
        },
        path=tsdiff_path().config(),
        predicts="eps",
        objective={"target": "eps", "time": "uniform", "weight": "uniform"},
        run_dir=str(run_dir),
        seed=settings.seed,
        steps=settings.steps,
        batch_size=settings.batch_size,
        lr=settings.lr,
        grad_clip=settings.grad_clip,
        ema_halflife_kimg=settings.ema_halflife_kimg,
        device=settings.device,
        log_every=max(1, settings.steps // 4),
        checkpoint_every=settings.steps,
        keep_checkpoints=1,
        resume=False,
        progress=settings.progress,
    )
    start = time.perf_counter()
    trainer = train(config, windows.values.float(), data_info={"timeseries": spec.to_dict()})
    seconds = time.perf_counter() - start
    trainer.module.load_state_dict(trainer.averaged_state())
    model = trainer.module.eval().requires_grad_(False)
    if not isinstance(model, Model):
        raise UserError("the trained network is not an interpolant Model")
    if validation is not None:
        store_chosen_scale(run_dir, *choose_scale(model, validation, settings.seed))
    return TrainedModel(model, spec, Path(run_dir), seconds)


def check_windows(model: Model, windows: Windows) -> None:
    """Refuse windows whose channel count differs from the model's."""
    channels = getattr(model.net, "channels", None)
    if channels is not None and windows.spec.channels != channels:
        raise UserError(
            f"the model was trained on {channels} channel(s) (1 + lags), these windows have "
            f"{windows.spec.channels}; cut them with the run's lags"
        )


def guided_windows(
    model: Model,
    windows: Windows,
    samples: int,
    scale: float,
    *,
    energy: str = "quantile",
    mask: Tensor | None = None,
    sampler: Sampler | None = None,
    seed: int = 0,
) -> Tensor:
    """Guided samples of whole windows in model space, shape (N, S, C, L).

    ``mask`` (C, L) or (N, C, L): 1 where the window is observed (default: what is known at
    forecast time, ``spec.known()``); entries missing in the data are never used. Sample k of
    window n has the per-sample stream index n * S + k, so it does not depend on the batch."""
    check_windows(model, windows)
    n, (c, length) = len(windows), windows.values.shape[1:]
    if samples < 1:
        raise UserError(f"samples must be >= 1, got {samples}")
    base = windows.spec.known() if mask is None else mask.to(torch.float64)
    if base.shape not in ((c, length), (n, c, length)):
        raise UserError(f"mask must have shape ({c}, {length}) or ({n}, {c}, {length})")
    full_mask = (base * windows.observed).repeat_interleave(samples, 0)
    observed = windows.values.repeat_interleave(samples, 0).float()
    quantiles = quantile_levels(n, samples) if energy == "quantile" else None
    hooks = []
    if scale > 0:
        hooks.append(
            ObservationGuidance(observed, full_mask, scale, energy=energy, quantiles=quantiles)
        )
    index = torch.arange(n * samples)
    noise = Streams(seed, index, "timeseries-start").normal((c, length))
    spec = ancestral(seed=seed) if sampler is None else sampler
    out = sample(model, noise, spec, hooks=hooks, index=index).x
    return out.reshape(n, samples, c, length)


def forecast(
    model: Model,
    windows: Windows,
    samples: int = 16,
    scale: float = 4.0,
    *,
    energy: str = "quantile",
    horizon: int | None = None,
    sampler: Sampler | None = None,
    seed: int = 0,
) -> Tensor:
    """Sample forecasts of channel 0's horizon in the series' units, shape (N, S, H)."""
    spec = windows.spec
    h = spec.horizon if horizon is None else horizon
    if h > spec.horizon:
        raise UserError(f"horizon {h} is longer than the trained window's horizon {spec.horizon}")
    out = guided_windows(model, windows, samples, scale, energy=energy, sampler=sampler, seed=seed)
    return windows.unscale(out[:, :, 0, spec.context : spec.context + h])


def missing_mask(
    spec: WindowSpec, n: int, kind: str, fraction: float = 0.5, seed: int = 0
) -> Tensor:
    """(n, C, L) observation masks of TSDiff's missing-value scenarios on top of
    ``spec.known()``: ``"random"`` (RM: each context point missing with probability
    ``fraction``), ``"block-end"`` (BM-E: the last ``fraction`` of the context missing) or
    ``"block-start"`` (BM-B: the first ``fraction``)."""
    if not 0 <= fraction < 1:
        raise UserError(f"fraction must lie in [0, 1), got {fraction}")
    known = spec.known().expand(n, -1, -1).clone()
    drop = torch.zeros(n, spec.length, dtype=torch.bool)
    width = round(fraction * spec.context)
    if kind == "random":
        u = Streams(seed, n, "timeseries-missing").uniform((spec.context,), dtype=torch.float64)
        drop[:, : spec.context] = u < fraction
    elif kind == "block-end":
        drop[:, spec.context - width : spec.context] = True
    elif kind == "block-start":
        drop[:, :width] = True
    else:
        raise UserError(f"kind must be 'random', 'block-end' or 'block-start', got {kind!r}")
    known[:, 0][drop] = 0.0
    return known


def impute(
    model: Model,
    windows: Windows,
    mask: Tensor,
    samples: int = 16,
    scale: float = 4.0,
    **options: Any,
) -> Tensor:
    """Samples of channel 0 with the entries ``mask == 0`` filled in, the series' units,
    shape (N, S, L) (observed entries are returned as sampled; read the masked ones)."""
    out = guided_windows(model, windows, samples, scale, mask=mask, **options)
    return windows.unscale(out[:, :, 0])


#: Guidance scales tried on validation windows (the official TSDiff configs use 2, 4 and 8).
SCALES = (0.5, 1.0, 2.0, 4.0, 8.0)
#: The file of a run folder holding the guidance scale chosen on validation windows.
CHOSEN_SCALE_FILE = "guidance.json"


def choose_scale(
    model: Model,
    val: Windows,
    seed: int,
    samples: int = 16,
    scales: tuple[float, ...] = SCALES,
) -> tuple[float, dict[str, float]]:
    """The guidance scale of ``scales`` with the lowest CRPS on the validation windows ``val``
    (windows the model was not trained on), and the CRPS of each scale."""
    from .metrics import scores

    y = val.horizon()
    crps_by_scale = {}
    for scale in scales:
        fc = forecast(model, val, samples, scale, energy="quantile", seed=seed)
        crps_by_scale[f"{scale:g}"] = scores(fc.double(), y)["crps"]
    best = min(crps_by_scale, key=lambda k: crps_by_scale[k])
    return float(best), crps_by_scale


def store_chosen_scale(run_dir: str | Path, scale: float, crps_by_scale: dict[str, float]) -> Path:
    """Write the validation-chosen guidance scale to ``RUN/guidance.json`` (read by
    ``interpolant forecast RUN`` when ``--scale`` is not given)."""
    import json

    path = Path(run_dir) / CHOSEN_SCALE_FILE
    path.write_text(json.dumps({"scale": scale, "validation_crps": crps_by_scale}, indent=2))
    return path


def read_chosen_scale(run_dir: str | Path) -> float | None:
    """The guidance scale stored in ``RUN/guidance.json``, or None when the run has none."""
    import json

    path = Path(run_dir) / CHOSEN_SCALE_FILE
    if not path.is_file():
        return None
    try:
        return float(json.loads(path.read_text())["scale"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} holds no guidance scale; delete it or pass --scale") from None
