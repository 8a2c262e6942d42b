"""The training configuration: one flat, typed, JSON-serialisable dataclass.

``TrainConfig.from_dict`` refuses unknown keys (naming the valid ones) so that a typo in a config
file or a dotted command-line override fails loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LR_SCHEDULES = ("constant", "cosine", "inverse_sqrt")
EMA_KINDS = ("none", "halflife", "power")
PRECISIONS = ("float32", "bf16")
PARALLEL = ("ddp", "fsdp")
DEVICES = ("auto", "cpu", "cuda")

#: Fields that define the network: a checkpoint whose values differ is refused on resume.
NETWORK_FIELDS = ("model", "path", "predicts", "precondition")


@dataclass
class TrainConfig:
    """Everything :func:`interpolant.train.train` needs, in EDM-style units.

    Batch: ``batch_size`` is the global batch (all ranks, all accumulation rounds) and fixes the
    optimisation; ``batch_per_gpu`` only sets memory use: each rank runs
    ``batch_size / (batch_per_gpu * world_size)`` accumulation rounds per step. ``noise_block``
    is the number of samples that share one generator for the loss's noise and time draws
    (default ``batch_per_gpu``); runs with equal ``noise_block`` see identical noise whatever
    ``batch_per_gpu`` and the world size are.
    """

    # What is trained (JSON specs; used when train() is not handed a model / objective).
    model: dict[str, Any] = field(default_factory=dict)  # {"name": ..., **backbone keywords}
    path: dict[str, Any] = field(default_factory=lambda: {"name": "linear"})
    predicts: str = "velocity"
    precondition: float | None = None  # sigma_data of EDM preconditioning; None: plain Model
    objective: dict[str, Any] = field(default_factory=dict)  # keyword arguments of Objective
    cond_key: str = "class_labels"  # keyword under which labels reach the network

    # Run.
    run_dir: str = "runs/train"
    seed: int = 0
    steps: int = 1000
    resume: bool = True

    # Batch.
    batch_size: int = 256
    batch_per_gpu: int | None = None
    noise_block: int | None = None

    # Optimiser (AdamW) and learning rate.
    lr: float = 1e-3
    lr_schedule: str = "constant"
    lr_warmup_steps: int = 0
    lr_decay_steps: int | None = None  # inverse_sqrt: decay starts here; cosine: default steps
    lr_min_ratio: float = 0.0  # cosine floor as a fraction of lr
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0  # max global grad norm; None disables clipping

    # EMA of the weights.
    ema: str = "halflife"
    ema_halflife_kimg: float = 500.0
    ema_rampup_ratio: float | None = 0.05
    ema_std: float = 0.05  # power EMA: relative standard deviation sigma_rel (EDM2)
    ema_snapshot_every: int | None = None  # post-hoc EMA: snapshot power EMAs this often
    ema_posthoc_stds: tuple[float, ...] = (0.05, 0.10)  # their sigma_rel (EDM2 uses these)

    # Hardware.
    device: str = "auto"
    precision: str = "float32"
    compile: bool = False
    parallel: str = "ddp"

    # Bookkeeping.
    log_every: int = 100
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    sample_every: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.ema_posthoc_stds = tuple(self.ema_posthoc_stds)
        self.validate()

    # --- validation -------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError naming the first field with a bad value."""
        _positive_int(self, "steps", "batch_size", "log_every", "checkpoint_every")
        _positive_int(self, "keep_checkpoints")
        _optional_positive_int(self, "batch_per_gpu", "noise_block", "lr_decay_steps")
        _optional_positive_int(self, "sample_every", "ema_snapshot_every")
        _choice(self, "lr_schedule", LR_SCHEDULES)
        _choice(self, "ema", EMA_KINDS)
        _choice(self, "precision", PRECISIONS)
        _choice(self, "parallel", PARALLEL)
        _choice(self, "device", DEVICES)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        if not isinstance(self.lr_warmup_steps, int) or self.lr_warmup_steps < 0:
            raise ValueError(f"lr_warmup_steps must be an int >= 0, got {self.lr_warmup_steps!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not 0.0 <= self.lr_min_ratio <= 1.0:
            raise ValueError(f"lr_min_ratio must lie in [0, 1], got {self.lr_min_ratio!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if not self.adam_eps > 0 or self.weight_decay < 0:
            raise ValueError("adam_eps must be > 0 and weight_decay >= 0")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip!r}")
        if not self.ema_halflife_kimg > 0:
            raise ValueError(f"ema_halflife_kimg must be > 0, got {self.ema_halflife_kimg!r}")
        if self.ema_rampup_ratio is not None and not self.ema_rampup_ratio > 0:
            raise ValueError(f"ema_rampup_ratio must be > 0 or None, got {self.ema_rampup_ratio}")
        if not 0.0 < self.ema_std < 0.28:  # sigma_rel -> 0.2887 as gamma -> -1
            raise ValueError(f"ema_std (sigma_rel) must lie in (0, 0.28), got {self.ema_std!r}")
        stds = self.ema_posthoc_stds
        if not stds or not all(isinstance(v, int | float) and 0.0 < v < 0.28 for v in stds):
            raise ValueError(f"ema_posthoc_stds must be sigma_rel values in (0, 0.28), got {stds}")
        if self.precondition is not None and not self.precondition > 0:
            raise ValueError(
                f"precondition (sigma_data) must be > 0 or None, got {self.precondition!r}"
            )
        for name in ("model", "path", "objective"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict, got {type(getattr(self, name)).__name__}")

    # --- batch arithmetic -------------------------------------------------------------------
    def rounds(self, world_size: int) -> tuple[int, int]:
        """(batch_per_gpu, accumulation rounds) for ``world_size`` ranks; the global batch is
        ``batch_per_gpu * rounds * world_size == batch_size`` exactly."""
        if self.batch_size % world_size:
            raise ValueError(
                f"batch_size={self.batch_size} is not divisible by world_size={world_size}"
            )
        per_rank = self.batch_size // world_size
        b = per_rank if self.batch_per_gpu is None else min(self.batch_per_gpu, per_rank)
        if per_rank % b:
            raise ValueError(
                f"batch_size / world_size = {per_rank} is not a multiple of batch_per_gpu={b}"
            )
        block = self.noise_block or b
        if b % block:
            raise ValueError(f"batch_per_gpu={b} is not a multiple of noise_block={block}")
        return b, per_rank // b

    # --- JSON round trip --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        out["ema_posthoc_stds"] = list(self.ema_posthoc_stds)
        return out

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text of the config; written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict, refusing unknown keys and values of the wrong type."""
        if not isinstance(values, dict):
            raise TypeError(f"config must be a dict, got {type(values).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; valid keys are {sorted(known)}")
        hints = typing.get_type_hints(cls)
        for key, value in values.items():
            _check_type(key, value, hints[key])
        return cls(**values)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> TrainConfig:
        """From JSON text or a path to a JSON file."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated like ``from_dict``)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def as_config(config: TrainConfig | dict[str, Any]) -> TrainConfig:
    """Accept a TrainConfig or a plain dict."""
    if isinstance(config, TrainConfig):
        config.validate()
        return config
    return TrainConfig.from_dict(config)


def _check_type(key: str, value: Any, hint: Any) -> None:
    """Raise TypeError if ``value`` does not fit the annotation ``hint`` (JSON types only)."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for kind in allowed:
        origin = typing.get_origin(kind) or kind
        if value is None and kind is type(None):
            return
        if origin is float and isinstance(value, int | float) and not isinstance(value, bool):
            return
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if origin is tuple and isinstance(value, list | tuple):
            return
        if origin in (str, bool, dict) and isinstance(value, origin):
            return
    raise TypeError(f"config key {key!r} expects {hint}, got {value!r}")


def _positive_int(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _optional_positive_int(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) is not None:
            _positive_int(cfg, name)


def _choice(cfg: TrainConfig, name: str, choices: tuple[str, ...]) -> None:
    if getattr(cfg, name) not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {getattr(cfg, name)!r}")
