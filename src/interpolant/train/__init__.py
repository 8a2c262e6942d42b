"""Training: the trainer, EMA, learning-rate schedules, checkpoints and distributed helpers.

    from interpolant.train import TrainConfig, train
    trainer = train(TrainConfig(model={"name": "mlp", "dim": 2}, steps=2000), data)

Run the same script under ``torchrun --nproc_per_node=N`` for DDP (gloo on CPU, NCCL on GPU) or
set ``parallel="fsdp"`` for FSDP2 sharding. Checkpoints are safetensors plus JSON, written
atomically; a run restarted with the same ``run_dir`` resumes from the newest complete one and
continues exactly as if it had not stopped.
"""

from .build import build_network, build_objective, network_spec, train
from .checkpoint import CheckpointError, find_resume, list_checkpoints, verify
from .config import TrainConfig, as_config
from .ema import (
    EMA,
    gamma_to_sigma_rel,
    halflife_beta,
    posthoc_coefficients,
    posthoc_reconstruct,
    power_beta,
    sigma_rel_to_gamma,
)
from .sampler import StepSampler, step_seed
from .schedules import lr_at, lr_from_config
from .trainer import Trainer

__all__ = [
    "EMA",
    "CheckpointError",
    "StepSampler",
    "TrainConfig",
    "Trainer",
    "as_config",
    "build_network",
    "build_objective",
    "find_resume",
    "gamma_to_sigma_rel",
    "halflife_beta",
    "list_checkpoints",
    "lr_at",
    "lr_from_config",
    "network_spec",
    "posthoc_coefficients",
    "posthoc_reconstruct",
    "power_beta",
    "sigma_rel_to_gamma",
    "step_seed",
    "train",
    "verify",
]
