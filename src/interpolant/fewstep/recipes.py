"""Small helpers shared by the reproductions, the benchmark and ``interpolant distill``:
train a Model with a few-step objective through the stock trainer, and sample it in K steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..predictions import Model
from ..solvers import Sampler, sample
from ..train import TrainConfig, train


def train_config(
    run_dir: str | Path,
    model: dict[str, Any],
    steps: int,
    *,
    predicts: str = "velocity",
    path: str = "linear",
    precondition: float | None = None,
    batch_size: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = False,
    **options: Any,
) -> TrainConfig:
    """A CPU-friendly TrainConfig (cosine lr, EMA half-life 5 kimg, one checkpoint at the end
    unless ``checkpoint_every`` is given)."""
    fields: dict[str, Any] = dict(
        model=model,
        path={"name": path},
        predicts=predicts,
        precondition=precondition,
        objective={"target": predicts if predicts != "x0" else "x0"},
        run_dir=str(run_dir),
        seed=seed,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        lr_schedule="cosine",
        ema_halflife_kimg=5.0,
        device="cpu",
        log_every=max(1, steps // 10),
        checkpoint_every=steps,
        keep_checkpoints=1,
        progress=progress,
    )
    fields.update(options)
    return TrainConfig(**fields)


def fit(
    config: TrainConfig,
    data: Tensor,
    objective: Any = None,
    model: Any = None,
    data_info: dict[str, Any] | None = None,
    sample_fn: Any = None,
    labels: Tensor | None = None,
) -> Model:
    """Train (resuming from ``config.run_dir``) and return the EMA model, frozen, in eval mode.
    ``data_info`` (the data's description) is stored with the checkpoints, as run folders need;
    ``labels`` (N,) reach the objective as ``cond = {config.cond_key: labels}``."""
    trainer = train(
        config,
        data,
        labels,
        objective=objective,
        model=model,
        data_info=data_info,
        sample_fn=sample_fn,
    )
    trainer.module.load_state_dict(trainer.averaged_state())
    module = trainer.module.eval().requires_grad_(False)
    if not isinstance(module, Model):
        raise TypeError(f"trained module is {type(module).__name__}, not a Model")
    return module


def euler_sample(model: Model, noise: Tensor, steps: int) -> Tensor:
    """K uniform Euler steps from t = 1 (one step: x0 = eps - u(eps, 1))."""
    with torch.no_grad():
        return sample(model, noise, Sampler("euler", steps=steps, grid="uniform")).x


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
