"""``train(config, data)``: build the network and objective from a config and run the trainer.

The command line calls this; library users can also hand in their own model and objective.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..randomness import derive_seed
from .config import NETWORK_FIELDS, TrainConfig, as_config
from .trainer import CheckpointFn, Objective, SampleFn, StepHook, Trainer


def network_spec(config: TrainConfig) -> dict[str, Any]:
    """The config fields that define the network (compared on resume)."""
    return {name: getattr(config, name) for name in NETWORK_FIELDS}


def build_network(config: TrainConfig) -> nn.Module:
    """``Model(backbone, path, predicts)`` from ``config.model`` (``{"name": ..., **kwargs}`` as
    given by ``models.model_config``), ``config.path`` and ``config.predicts``, with EDM
    preconditioning around the backbone when ``config.precondition`` (sigma_data) is set.

    The weights are initialised from a generator seeded by ``config.seed`` alone, so every rank
    builds the same network.
    """
    from ..models import build_model
    from ..paths import from_config as path_from_config
    from ..predictions import Model, Preconditioned

    spec = dict(config.model)
    if "name" not in spec:
        raise UserError(f"config.model needs a 'name' (a registered backbone), got {spec}")
    path = path_from_config(config.path)
    torch.manual_seed(derive_seed("init", config.seed))
    net: nn.Module = build_model(spec.pop("name"), **spec)
    if config.precondition is not None:
        if config.predicts != "x0":
            raise UserError(
                f"precondition wraps an x0 (denoiser) network; config.predicts is "
                f"{config.predicts!r}, set it to 'x0'"
            )
        net = Preconditioned(net, path, sigma_data=config.precondition)
    model = Model(net, path, predicts=config.predicts)
    if config.lora is not None:  # the adapters' layout; train() loads the base weights
        from .lora import add_lora, lora_options

        add_lora(model, lora_options(config.lora).replace(base=None))
    return model


def build_objective(config: TrainConfig, path: Any) -> Objective:
    """``losses.Objective(path, **config.objective)`` (target, time, weight); ``time`` and
    ``weight`` may be names or JSON mappings ``{"name": ..., **options}``."""
    from ..losses import Objective as LossObjective
    from ..losses import time_from_config, weight_from_config

    kwargs = dict(config.objective)
    if "path" in kwargs:
        raise UserError("config.objective must not name a path: config.path is used")
    # A sampler or weighting with options is a mapping in JSON configs.
    if isinstance(kwargs.get("time"), dict):
        kwargs["time"] = time_from_config(kwargs["time"])
    if isinstance(kwargs.get("weight"), dict):
        kwargs["weight"] = weight_from_config(kwargs["weight"])
    return LossObjective(path, **kwargs)


def train(
    config: TrainConfig | dict[str, Any],
    data: Tensor,
    labels: Tensor | None = None,
    *,
    model: nn.Module | None = None,
    objective: Objective | None = None,
    data_info: dict[str, Any] | None = None,
    sample_fn: SampleFn | None = None,
    on_checkpoint: CheckpointFn | None = None,
    step_hook: StepHook | None = None,
) -> Trainer:
    """Train on ``data`` (N, ...) as ``config`` says, resuming from ``config.run_dir`` if a
    checkpoint is there. ``model`` / ``objective`` default to those the config describes.
    Returns the finished :class:`Trainer` (its ``module`` and ``ema`` hold the weights)."""
    cfg = as_config(config)
    network = network_spec(cfg) if model is None else {}
    if model is None:
        model = build_network(cfg)
    if cfg.lora is not None:  # base weights (unless resuming), adapters if not there yet
        from .lora import prepare_lora

        prepare_lora(model, cfg)
    if objective is None:
        path = getattr(model, "path", None)
        if path is None:
            from ..paths import from_config as path_from_config

            path = path_from_config(cfg.path)
        objective = build_objective(cfg, path)
    if cfg.tensorboard:  # fail before training, not at the first log
        from .tensorboard import summary_writer_class

        summary_writer_class()
    trainer = Trainer(
        model,
        objective,
        data,
        cfg,
        labels,
        network=network,
        data_info=data_info,
        sample_fn=sample_fn,
        on_checkpoint=on_checkpoint,
        step_hook=step_hook,
    )
    try:
        trainer.run()
        if cfg.lora is not None:
            from .lora import lora_options, save_run_adapter

            save_run_adapter(trainer, lora_options(cfg.lora))
    finally:
        trainer.close()
    return trainer
