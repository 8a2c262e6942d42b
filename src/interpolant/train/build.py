"""``train(config, data)``: build the network and objective from a config and run the trainer.

The command line calls this; library users can also hand in their own model and objective.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..randomness import derive_seed
from .config import NETWORK_FIELDS, TrainConfig, as_config
from .structures import Standard, structure_of
from .trainer import CheckpointFn, Objective, SampleFn, StepHook, Trainer


def network_spec(config: TrainConfig) -> dict[str, Any]:
    """The config fields that define the network (compared on resume); a structure other than
    the standard one (``train.objective.name``) is part of the network too."""
    spec = {name: getattr(config, name) for name in NETWORK_FIELDS}
    structure = structure_of(config)
    if not isinstance(structure, Standard):
        spec["structure"] = structure.config()
    return spec


def build_network(config: TrainConfig) -> nn.Module:
    """The module the config's structure trains (``train.structures``; the standard one is
    ``Model(backbone, path, predicts)`` from ``config.model`` (``{"name": ..., **kwargs}`` as
    given by ``models.model_config``), ``config.path`` and ``config.predicts``, with EDM
    preconditioning around the backbone when ``config.precondition`` (sigma_data) is set).

    The weights are initialised from a generator seeded by ``config.seed`` alone, so every rank
    builds the same network.
    """
    from ..models import build_model

    if "name" not in config.model:
        raise UserError(f"config.model needs a 'name' (a registered backbone), got {config.model}")
    structure = structure_of(config)
    if not isinstance(structure, Standard) and (
        config.precondition is not None or config.lora is not None
    ):
        raise UserError(
            f"train.objective.name={structure.name} takes no precondition or lora "
            "(they wrap the standard Model)"
        )

    def backbone(values: dict[str, Any]) -> nn.Module:
        values = dict(values)
        torch.manual_seed(derive_seed("init", config.seed))
        return build_model(values.pop("name"), **values)

    return structure.network(config, backbone)  # type: ignore[no-any-return]


def build_objective(config: TrainConfig, path: Any, model: nn.Module | None = None) -> Objective:
    """The loss of the config's structure: for the standard one ``losses.Objective(path,
    **config.objective)`` (target, time, weight; ``time`` and ``weight`` may be names or JSON
    mappings ``{"name": ..., **options}``); other structures build theirs for ``model``."""
    structure = structure_of(config)
    if model is None and not isinstance(structure, Standard):
        raise UserError(f"the {structure.name} objective is built for its model: pass model=")
    return structure.objective(config, model, path)  # type: ignore[no-any-return]


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
    cond: Mapping[str, Tensor] | None = None,
    cond_masks: Mapping[str, Tensor] | None = None,
) -> Trainer:
    """Train on ``data`` (N, ...) as ``config`` says, resuming from ``config.run_dir`` if a
    checkpoint is there. ``model`` / ``objective`` default to those the config describes (its
    structure, ``train.objective.name``, may add conditioning derived from the data, e.g.
    DiffuseVAE's prior means). ``cond`` / ``cond_masks``: per-sample conditioning of any
    structure (``train.conditioning``; a data set's ``ConditionedData.cond``).
    Returns the finished :class:`Trainer` (its ``module`` and ``ema`` hold the weights)."""
    cfg = as_config(config)
    network = network_spec(cfg) if model is None else {}
    if model is None:
        model = build_network(cfg)
        derived = structure_of(cfg).conditioning(cfg, model, data)
        if derived:
            clash = sorted(set(derived) & set(cond or {}))
            if clash:
                raise UserError(f"cond keys {clash} are the {structure_of(cfg).name} structure's")
            cond = {**(cond or {}), **derived}
    if cfg.lora is not None:  # base weights (unless resuming), adapters if not there yet
        from .lora import prepare_lora

        prepare_lora(model, cfg)
    if objective is None:
        path = getattr(model, "path", None)
        if path is None:
            from ..paths import from_config as path_from_config

            path = path_from_config(cfg.path)
        objective = build_objective(cfg, path, model)
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
        cond=cond,
        cond_masks=cond_masks,
    )
    try:
        trainer.run()
        if cfg.lora is not None:
            from .lora import lora_options, save_run_adapter

            save_run_adapter(trainer, lora_options(cfg.lora))
    finally:
        trainer.close()
    return trainer
