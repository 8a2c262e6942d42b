"""The training configuration: one flat, typed, JSON-serialisable dataclass.

``TrainConfig.from_dict`` refuses unknown keys (naming the valid ones) so that a typo in a config
file or a dotted command-line override fails loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..configurable import option
from ..errors import UserError, WrongTypeError
from .precision import PRECISIONS

LR_SCHEDULES = ("constant", "cosine", "inverse_sqrt")
EMA_KINDS = ("none", "halflife", "power")
PARALLEL = ("ddp", "fsdp")
DEVICES = ("auto", "cpu", "cuda")

_WHAT = "What is trained"
_OPT = "Optimiser (AdamW) and learning rate"

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
    model: dict[str, Any] = option(
        default_factory=dict,
        help="backbone {name: mlp|unet|dit-s/2|..., **its keywords}; dim, image_size, "
        "in_channels, num_classes are filled in from the data when absent",
        group=_WHAT,
    )
    path: dict[str, Any] = option(
        default_factory=lambda: {"name": "linear"},
        help="Gaussian path {name: linear|vp|cosine|ve|edm|trig|pfgm, **options}",
        group=_WHAT,
    )
    predicts: str = option(
        "velocity", help="what the network outputs: x0, eps, velocity, score or v", group=_WHAT
    )
    precondition: float | None = option(
        None, help="sigma_data of EDM preconditioning; None: plain Model", group=_WHAT
    )
    objective: dict[str, Any] = option(
        default_factory=dict,
        help="keyword arguments of Objective: target (a kind), time (uniform, logit-normal, "
        "edm-log-normal, mode, cosmap, or {name: ..., **options}), weight (uniform, snr, "
        "min-snr-5, edm), coupling (independent, ot: exact minibatch OT pairing of noise and "
        "data, sinkhorn)",
        group=_WHAT,
    )
    cond_key: str = option(
        "class_labels", help="keyword under which labels reach the network", group=_WHAT
    )
    lora: dict[str, Any] | None = option(
        None,
        help="LoRA fine-tuning {rank: 8, alpha: rank, dropout: 0, targets: [globs], base: run, "
        "checkpoint or .safetensors}: only the adapters train (interpolant.train.lora)",
        group=_WHAT,
    )
    encoder: str | None = option(
        None,
        help="latent training: a local diffusers AutoencoderKL folder or 'module:object' with "
        "encode/decode, applied on the fly; interpolant sample decodes (train.latents)",
        group=_WHAT,
    )

    # Run.
    run_dir: str = option(
        "runs/train",
        help="run folder: checkpoints/, stats.jsonl, config.json, run_config.json, log.txt",
        group="Run",
    )
    seed: int = option(
        0, help="seed of the initial weights, the data order and the loss's noise", group="Run"
    )
    steps: int = option(
        1000, help="optimiser updates in all (a resumed run continues up to this)", group="Run"
    )
    resume: bool = option(True, help="continue from the newest checkpoint in run_dir", group="Run")

    # Batch.
    batch_size: int = option(
        256, help="global batch: all ranks and accumulation rounds together", group="Batch"
    )
    batch_per_gpu: int | None = option(
        None,
        help="examples per rank per forward pass (memory only; default: the rank's share)",
        group="Batch",
    )
    noise_block: int | None = option(
        None, help="samples that share one noise generator (default batch_per_gpu)", group="Batch"
    )

    # Optimiser (AdamW) and learning rate.
    lr: float = option(1e-3, help="AdamW learning rate (peak)", group=_OPT)
    lr_schedule: str = option("constant", help=f"one of {', '.join(LR_SCHEDULES)}", group=_OPT)
    lr_warmup_steps: int = option(0, help="linear warm-up from 0", group=_OPT)
    lr_decay_steps: int | None = option(
        None, help="inverse_sqrt: decay starts here; cosine: default steps", group=_OPT
    )
    lr_min_ratio: float = option(0.0, help="cosine floor as a fraction of lr", group=_OPT)
    betas: tuple[float, float] = option((0.9, 0.999), help="AdamW betas", group=_OPT)
    adam_eps: float = option(1e-8, help="AdamW epsilon", group=_OPT)
    weight_decay: float = option(0.0, help="AdamW decoupled weight decay", group=_OPT)
    grad_clip: float | None = option(
        1.0, help="max global grad norm; None disables clipping", group=_OPT
    )

    # EMA of the weights.
    ema: str = option("halflife", help=f"one of {', '.join(EMA_KINDS)}", group="EMA of the weights")
    ema_halflife_kimg: float = option(
        500.0,
        help="halflife EMA: thousands of examples over which old weights halve",
        group="EMA of the weights",
    )
    ema_rampup_ratio: float | None = option(
        0.05,
        help="halflife at most this times the examples seen so far (EDM ramp-up)",
        group="EMA of the weights",
    )
    ema_std: float = option(
        0.05,
        help="power EMA: relative standard deviation sigma_rel (EDM2)",
        group="EMA of the weights",
    )
    ema_snapshot_every: int | None = option(
        None, help="post-hoc EMA: snapshot power EMAs this often", group="EMA of the weights"
    )
    ema_posthoc_stds: tuple[float, ...] = option(
        (0.05, 0.10), help="their sigma_rel (EDM2 uses these)", group="EMA of the weights"
    )

    # Hardware.
    device: str = option("auto", help=f"one of {', '.join(DEVICES)}", group="Hardware")
    precision: str = option(
        "float32",
        help=f"one of {', '.join(PRECISIONS)} (bf16/fp16: autocast, fp16 with a loss scaler; "
        "fp8: torchao float8 matmuls, Hopper GPUs)",
        group="Hardware",
    )
    gradient_checkpointing: bool = option(
        False,
        help="recompute each block's activations in the backward pass (less memory, ~1 more "
        "forward); DiT, MMDiT, UNet",
        group="Hardware",
    )
    compile: bool = option(False, help="torch.compile the network", group="Hardware")
    parallel: str = option(
        "ddp", help=f"under torchrun: one of {', '.join(PARALLEL)}", group="Hardware"
    )

    # Data loading (a streamed data set: data.options.stream=true, shards, a Dataset).
    num_workers: int = option(
        0,
        help="DataLoader worker processes reading a streamed data set (0: the trainer reads)",
        group="Data loading",
    )
    prefetch_factor: int | None = option(
        None, help="micro-batches each worker reads ahead (default 2)", group="Data loading"
    )

    # Bookkeeping.
    log_every: int = option(100, help="steps between rows of stats.jsonl", group="Bookkeeping")
    checkpoint_every: int = option(
        1000, help="steps between checkpoints (the last step always gets one)", group="Bookkeeping"
    )
    keep_checkpoints: int = option(
        3, help="how many of the newest checkpoints are kept", group="Bookkeeping"
    )
    sample_every: int | None = option(
        None,
        help="steps between sample images in run_dir/samples/ (interpolant train)",
        group="Bookkeeping",
    )
    progress: bool = option(True, help="show a tqdm progress bar", group="Bookkeeping")
    tensorboard: bool = option(
        False,
        help="also log stats.jsonl's scalars to run_dir/tensorboard (extra: tensorboard)",
        group="Bookkeeping",
    )

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
            raise UserError(f"seed must be an int >= 0, got {self.seed!r}")
        if not isinstance(self.lr_warmup_steps, int) or self.lr_warmup_steps < 0:
            raise UserError(f"lr_warmup_steps must be an int >= 0, got {self.lr_warmup_steps!r}")
        if not self.lr > 0:
            raise UserError(f"lr must be > 0, got {self.lr!r}")
        if not 0.0 <= self.lr_min_ratio <= 1.0:
            raise UserError(f"lr_min_ratio must lie in [0, 1], got {self.lr_min_ratio!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise UserError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if not self.adam_eps > 0 or self.weight_decay < 0:
            raise UserError("adam_eps must be > 0 and weight_decay >= 0")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise UserError(f"grad_clip must be > 0 or None, got {self.grad_clip!r}")
        if not self.ema_halflife_kimg > 0:
            raise UserError(f"ema_halflife_kimg must be > 0, got {self.ema_halflife_kimg!r}")
        if self.ema_rampup_ratio is not None and not self.ema_rampup_ratio > 0:
            raise UserError(f"ema_rampup_ratio must be > 0 or None, got {self.ema_rampup_ratio}")
        if not 0.0 < self.ema_std < 0.28:  # sigma_rel -> 0.2887 as gamma -> -1
            raise UserError(f"ema_std (sigma_rel) must lie in (0, 0.28), got {self.ema_std!r}")
        stds = self.ema_posthoc_stds
        if not stds or not all(isinstance(v, int | float) and 0.0 < v < 0.28 for v in stds):
            raise UserError(f"ema_posthoc_stds must be sigma_rel values in (0, 0.28), got {stds}")
        if self.precondition is not None and not self.precondition > 0:
            raise UserError(
                f"precondition (sigma_data) must be > 0 or None, got {self.precondition!r}"
            )
        for name in ("model", "path", "objective"):
            if not isinstance(getattr(self, name), dict):
                raise UserError(f"{name} must be a dict, got {type(getattr(self, name)).__name__}")
        if self.lora is not None:  # refuse bad LoRA options before anything is built
            from .lora import lora_options

            try:
                lora_options(self.lora)
            except UserError as err:
                raise UserError(f"lora: {err}") from err

    # --- batch arithmetic -------------------------------------------------------------------
    def rounds(self, world_size: int) -> tuple[int, int]:
        """(batch_per_gpu, accumulation rounds) for ``world_size`` ranks; the global batch is
        ``batch_per_gpu * rounds * world_size == batch_size`` exactly."""
        if self.batch_size % world_size:
            raise UserError(
                f"batch_size={self.batch_size} is not divisible by world_size={world_size}"
            )
        per_rank = self.batch_size // world_size
        b = per_rank if self.batch_per_gpu is None else min(self.batch_per_gpu, per_rank)
        if per_rank % b:
            raise UserError(
                f"batch_size / world_size = {per_rank} is not a multiple of batch_per_gpu={b}"
            )
        block = self.noise_block or b
        if b % block:
            raise UserError(f"batch_per_gpu={b} is not a multiple of noise_block={block}")
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
            raise WrongTypeError(f"config must be a dict, got {type(values).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserError(f"unknown config keys {unknown}; valid keys are {sorted(known)}")
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
    raise WrongTypeError(f"config key {key!r} expects {hint}, got {value!r}")


def _positive_int(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{name} must be a positive int, got {value!r}")


def _optional_positive_int(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) is not None:
            _positive_int(cfg, name)


def _choice(cfg: TrainConfig, name: str, choices: tuple[str, ...]) -> None:
    if getattr(cfg, name) not in choices:
        raise UserError(f"{name} must be one of {choices}, got {getattr(cfg, name)!r}")
