"""LoRA fine-tuning (Hu et al. 2021) of our backbones and of foreign (diffusers) models, via peft.

A target layer ``y = W x`` becomes ``y = W x + (alpha / r) B A x`` with ``A`` (r, in) and ``B``
(out, r); ``B`` starts at zero, so the adapted model starts as the base model, and only ``A`` and
``B`` are trained (the base weights are frozen and stay bitwise as they were). For a convolution
``A`` is a convolution with the base's kernel, stride and padding and ``B`` a 1x1 convolution.

    from interpolant.train.lora import add_lora, save_lora, load_lora, merge_lora
    add_lora(model, rank=8)               # in place; model.parameters() now train only A, B
    ...train...
    save_lora(model, "adapter.safetensors")
    load_lora(other_copy_of_the_base, "adapter.safetensors")   # refused for another base
    merge_lora(model)                     # W <- W + (alpha / r) B A, plain layers again

Default targets (:func:`default_targets`), by the block that holds the layer:

==========================  ==============================================================
block                       adapted layers
==========================  ==============================================================
MLP ``ResidualBlock``       ``fc1``, ``fc2``
DiT ``DiTBlock``            attention ``qkv.proj``, ``out``; MLP ``mlp.0``, ``mlp.2``
MM-DiT ``StreamIn/Out``     ``qkv.proj``; ``out``, ``mlp.0``, ``mlp.2`` (both streams)
UNet ``ResBlock``           ``conv1``, ``conv2``
UNet ``AttentionBlock``     ``qkv``, ``proj``
diffusers ``Attention``     ``to_q``, ``to_k``, ``to_v``, ``to_out.0`` (their LoRA scripts')
diffusers ``FeedForward``   ``net.0.proj``, ``net.2``
diffusers ``ResnetBlock2D`` ``conv1``, ``conv2``
anything else               every ``nn.Linear`` and ``nn.Conv1d/2d``
==========================  ==============================================================

Embeddings, adaLN modulations and the input/output layers stay frozen by default (as in the
LoRA recipes of diffusers and of DiT fine-tuning); ``targets`` (glob patterns over module names,
a pattern without a dot also matching a name's last parts) choose others.

An adapter file is a safetensors file holding only ``{module}.lora_A.weight`` and
``{module}.lora_B.weight``, with metadata naming its LoRA options and the base model it was
trained on: the sha256 of the base's architecture (tensor names, shapes, dtypes) and of its
weights (:func:`base_fingerprint`). :func:`load_lora` refuses a file made for another base and
says which part differs.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..configurable import Configurable, number, option, optional
from ..errors import MissingDependencyError, MissingFileError, UserError, WrongTypeError

FORMAT = "interpolant.lora"
FORMAT_VERSION = "1"
ADAPTER = "default"  # peft's adapter name; never written to files
_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)

#: Block class name -> the child layers adapted by default (see the module docstring).
DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "interpolant.models.mlp.ResidualBlock": ("fc1", "fc2"),
    "interpolant.models.dit.DiTBlock": ("qkv.proj", "out", "mlp.0", "mlp.2"),
    "interpolant.models.mmdit.StreamIn": ("qkv.proj",),
    "interpolant.models.mmdit.StreamOut": ("out", "mlp.0", "mlp.2"),
    "interpolant.models.unet.ResBlock": ("conv1", "conv2"),
    "interpolant.models.unet.AttentionBlock": ("qkv", "proj"),
    "diffusers.Attention": ("to_q", "to_k", "to_v", "to_out.0"),
    "diffusers.FeedForward": ("net.0.proj", "net.2"),
    "diffusers.ResnetBlock2D": ("conv1", "conv2"),
}


def _check_targets(value: Any) -> str | None:
    if value is None or (
        isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value)
    ):
        return None
    return "None (the default targets) or a non-empty list of module-name patterns"


@dataclass(frozen=True)
class LoraOptions(Configurable):
    """LoRA settings (``train.lora`` in a run config)."""

    rank: int = option(8, help="r: rank of the update B A", check=number(1, integer=True))
    alpha: float | None = option(
        None, help="scale alpha (update x alpha / r); default: rank", check=optional(number(0))
    )
    dropout: float = option(0.0, help="dropout on the LoRA branch's input", check=number(0, 1))
    targets: tuple[str, ...] | None = option(
        None,
        help="module-name globs to adapt; default: see interpolant.train.lora",
        check=_check_targets,
    )
    base: str | None = option(
        None, help="train only: base weights (a run folder, checkpoint folder or .safetensors)"
    )

    def __post_init__(self) -> None:
        if isinstance(self.targets, list):
            object.__setattr__(self, "targets", tuple(self.targets))
        super().__post_init__()

    @property
    def scale_alpha(self) -> float:
        return float(self.rank if self.alpha is None else self.alpha)


def lora_options(
    spec: LoraOptions | Mapping[str, Any] | None = None, **changes: Any
) -> LoraOptions:
    """Options from a mapping (unknown keys refused by name), updated with ``changes``."""
    if isinstance(spec, LoraOptions):
        return spec.replace(**changes) if changes else spec
    if spec is not None and not isinstance(spec, Mapping):
        raise WrongTypeError(f"LoRA options must be a mapping, got {type(spec).__name__}")
    return LoraOptions.from_config({**(spec or {}), **changes})


def _peft() -> Any:
    try:
        import peft
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "LoRA needs peft: pip install 'interpolant[finetune]'"
        ) from err
    return peft


def _class_key(module: nn.Module) -> str:
    cls = type(module)
    if cls.__module__.startswith("diffusers."):
        return f"diffusers.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_lora_layer(module: nn.Module) -> bool:
    return hasattr(module, "lora_A") and hasattr(module, "base_layer")


def lora_layers(model: nn.Module) -> dict[str, Any]:
    """The LoRA-adapted layers of ``model`` by module name."""
    return {name: m for name, m in model.named_modules() if _is_lora_layer(m)}


def _candidates(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if name and isinstance(m, _LAYER_TYPES)]


def default_targets(model: nn.Module) -> list[str]:
    """Names of the layers adapted by default (the table in the module docstring)."""
    found: list[str] = []
    for name, block in model.named_modules():
        children = DEFAULT_TARGETS.get(_class_key(block), ())
        for child in children:
            full = f"{name}.{child}" if name else child
            layer = model.get_submodule(full) if _has_submodule(model, full) else None
            if isinstance(layer, _LAYER_TYPES):
                found.append(full)
    return found or _candidates(model)


def _has_submodule(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def _matches(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, "*." + pattern)


def resolve_targets(model: nn.Module, targets: Sequence[str] | None = None) -> list[str]:
    """The module names ``targets`` (globs) select, or :func:`default_targets`; each pattern must
    select at least one ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d``."""
    if targets is None:
        return default_targets(model)
    candidates = _candidates(model)
    chosen: list[str] = []
    for pattern in targets:
        hits = [name for name in candidates if _matches(name, pattern)]
        if not hits:
            shown = ", ".join(candidates[:12]) + (" ..." if len(candidates) > 12 else "")
            raise UserError(
                f"LoRA target {pattern!r} matches no Linear/Conv layer of "
                f"{type(model).__name__}; its layers are: {shown}"
            )
        chosen += [name for name in hits if name not in chosen]
    return chosen


def add_lora(
    model: nn.Module,
    options: LoraOptions | Mapping[str, Any] | None = None,
    **changes: Any,
) -> nn.Module:
    """Inject LoRA layers into ``model`` in place (returned for chaining) and freeze everything
    else: afterwards only the ``lora_A`` / ``lora_B`` weights have ``requires_grad``.

    ``options``: :class:`LoraOptions` or a mapping; keywords (rank, alpha, dropout, targets)
    override it. The adapted model computes exactly the base model's output until B is trained.
    """
    if not isinstance(model, nn.Module):
        raise WrongTypeError(f"model must be an nn.Module, got {type(model).__name__}")
    opts = lora_options(options, **changes)
    if lora_layers(model):
        raise UserError(f"{type(model).__name__} already holds LoRA layers (merge_lora first)")
    names = resolve_targets(model, opts.targets)
    if not names:
        raise UserError(f"{type(model).__name__} has no Linear/Conv layer to adapt")
    peft = _peft()
    config = peft.LoraConfig(
        r=opts.rank,
        lora_alpha=opts.scale_alpha,
        lora_dropout=opts.dropout,
        target_modules=names,
        bias="none",
    )
    peft.inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in f".{name}")
    return model


def trainable_names(model: nn.Module) -> list[str]:
    """Names of the parameters that require gradients."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


# --- the base model's identity ---------------------------------------------------------------


def _is_lora_key(key: str) -> bool:
    return any(part.startswith("lora_") for part in key.split("."))


def base_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The base model's tensors in a (possibly LoRA-adapted) state dict, under the base's own
    names: LoRA tensors dropped, peft's ``.base_layer`` taken out of the names."""
    return {
        key.replace(".base_layer.", "."): value
        for key, value in state.items()
        if not _is_lora_key(key)
    }


def _tensor_bytes(t: Tensor) -> bytes:
    flat = t.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def base_fingerprint(model_or_state: nn.Module | Mapping[str, Tensor]) -> dict[str, Any]:
    """sha256 of the base's architecture (sorted tensor names, shapes, dtypes) and of its weights
    (names and bytes in that order), with its tensor and parameter counts."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    base = base_state(state)
    shapes = {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in base.items()}
    arch = hashlib.sha256(json.dumps(sorted(shapes.items())).encode()).hexdigest()
    weights = hashlib.sha256()
    for key in sorted(base):
        weights.update(key.encode())
        weights.update(_tensor_bytes(base[key]))
    return {
        "architecture": arch,
        "weights": weights.hexdigest(),
        "tensors": len(base),
        "numel": int(sum(v.numel() for v in base.values())),
    }


def _shape_table(state: Mapping[str, Tensor]) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in base_state(state).items()}


# --- adapter files ---------------------------------------------------------------------------


def _layer_options(model: nn.Module) -> LoraOptions:
    layers = lora_layers(model)
    if not layers:
        raise UserError(f"{type(model).__name__} holds no LoRA layers (add_lora first)")
    first = next(iter(layers.values()))
    rank = int(first.r[ADAPTER])
    alpha = float(first.lora_alpha[ADAPTER])
    drop = first.lora_dropout[ADAPTER]
    dropout = float(drop.p) if isinstance(drop, nn.Dropout) else 0.0
    return LoraOptions(rank=rank, alpha=alpha, dropout=dropout, targets=tuple(layers))


def _adapter_tensors(model: nn.Module, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for name in lora_layers(model):
        for part in ("lora_A", "lora_B"):
            key = f"{name}.{part}.{ADAPTER}.weight"
            out[f"{name}.{part}.weight"] = state[key].detach().cpu().contiguous()
    return out


def save_lora(
    model: nn.Module, path: str | Path, state: Mapping[str, Tensor] | None = None
) -> Path:
    """Write the adapter of ``model`` to ``path`` (safetensors). ``state``: a full state dict to
    take the tensors from instead of the model's own (e.g. the trainer's EMA weights)."""
    from safetensors.torch import save_file

    options = _layer_options(model)
    state = model.state_dict() if state is None else state
    config = options.config()
    config.pop("base", None)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lora": json.dumps(config),
        "base": json.dumps(base_fingerprint(state)),
        "base_shapes": json.dumps(_shape_table(state)),
    }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file(_adapter_tensors(model, state), str(tmp), metadata=metadata)
    tmp.replace(out)
    return out


@dataclass
class AdapterFile:
    """What an adapter file holds: options, the base's fingerprint and shapes, the tensors."""

    path: Path
    options: LoraOptions
    base: dict[str, Any]
    base_shapes: dict[str, list[int]]
    tensors: dict[str, Tensor]


def read_lora(path: str | Path) -> AdapterFile:
    """Read and check an adapter file written by :func:`save_lora`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    file = Path(path)
    if not file.is_file():
        raise MissingFileError(f"no LoRA adapter file at {str(file)!r}")
    try:
        with safe_open(str(file), framework="pt") as handle:
            meta = handle.metadata() or {}
        tensors = load_file(str(file))
    except Exception as err:  # safetensors raises its own error types
        raise UserError(f"{file} is not a readable safetensors file: {err}") from err
    if meta.get("format") != FORMAT:
        raise UserError(
            f"{file} is not an interpolant LoRA adapter (metadata format "
            f"{meta.get('format')!r}, expected {FORMAT!r}; write it with save_lora)"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{file} has adapter format version {meta.get('format_version')!r}; this version of "
            f"interpolant reads {FORMAT_VERSION!r}"
        )
    options = lora_options(json.loads(meta["lora"]))
    return AdapterFile(
        file, options, json.loads(meta["base"]), json.loads(meta["base_shapes"]), tensors
    )


def _difference(file: AdapterFile, model: nn.Module) -> str | None:
    """Why ``model`` is not the base ``file`` was trained on (None when it is)."""
    mine = base_fingerprint(model)
    if mine["architecture"] != file.base["architecture"]:
        theirs, ours = file.base_shapes, _shape_table(model.state_dict())
        missing = sorted(set(theirs) - set(ours))
        extra = sorted(set(ours) - set(theirs))
        shape = sorted(k for k in set(theirs) & set(ours) if theirs[k] != ours[k])
        parts = []
        if missing:
            parts.append(f"tensors only in the adapter's base: {missing[:6]}")
        if extra:
            parts.append(f"tensors only in this model: {extra[:6]}")
        if shape:
            parts.append(
                "shapes differ: " + ", ".join(f"{k} {theirs[k]} vs {ours[k]}" for k in shape[:6])
            )
        return (
            f"its base has another architecture ({file.base['numel']} values in "
            f"{file.base['tensors']} tensors, this model {mine['numel']} in {mine['tensors']}; "
            f"{'; '.join(parts) or 'dtypes differ'})"
        )
    if mine["weights"] != file.base["weights"]:
        return (
            f"its base has the same architecture but other weights (sha256 "
            f"{file.base['weights'][:12]}, this model {mine['weights'][:12]}): it was trained "
            "from another checkpoint of this network"
        )
    return None


def load_lora(model: nn.Module, path: str | Path) -> nn.Module:
    """Put the adapter at ``path`` into ``model`` (its base, with or without LoRA layers) in
    place. Refused, naming the difference, when ``model`` is not the base the adapter was
    trained on (another architecture, or the same one with other weights)."""
    file = read_lora(path)
    why = _difference(file, model)
    if why is not None:
        raise UserError(f"LoRA adapter {file.path} was not trained on this model: {why}")
    layers = lora_layers(model)
    if not layers:
        add_lora(model, file.options)
        layers = lora_layers(model)
    expected = {f"{name}.{part}.weight" for name in layers for part in ("lora_A", "lora_B")}
    missing, extra = sorted(expected - set(file.tensors)), sorted(set(file.tensors) - expected)
    if missing or extra:
        raise UserError(
            f"LoRA adapter {file.path} does not fit this model's LoRA layers: missing "
            f"{missing[:6]}, unexpected {extra[:6]} (rank/targets of the file: "
            f"{file.options.rank}, {len(file.options.targets or ())} layers)"
        )
    with torch.no_grad():
        for name, layer in layers.items():
            for part in ("lora_A", "lora_B"):
                param = getattr(layer, part)[ADAPTER].weight
                value = file.tensors[f"{name}.{part}.weight"]
                if tuple(value.shape) != tuple(param.shape):
                    raise UserError(
                        f"LoRA adapter {file.path}: {name}.{part} has shape "
                        f"{tuple(value.shape)}, this model's {tuple(param.shape)}"
                    )
                param.copy_(value)
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight (W <- W + (alpha / r) B A) and put the plain
    layers back, in place; the result has the base's architecture and no peft modules."""
    layers = lora_layers(model)
    if not layers:
        raise UserError(f"{type(model).__name__} holds no LoRA layers to merge")
    for name, layer in layers.items():
        layer.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.get_base_layer())
    return model


def load_base_weights(model: nn.Module, source: str | Path) -> Path:
    """Copy base weights into ``model`` (with or without LoRA layers) from a run folder (its
    newest checkpoint), a checkpoint folder (the EMA weights when it has them) or a
    ``.safetensors`` file of the base's state dict. Returns the file or folder read."""
    from . import checkpoint as ckpt

    src = Path(source)
    if src.is_file():
        from safetensors.torch import load_file

        tensors, used = load_file(str(src)), src
    elif (src / ckpt.STATE_FILE).is_file() or (src / "checkpoints").is_dir():
        found = src if (src / ckpt.STATE_FILE).is_file() else None
        if found is None:
            found = ckpt.find_resume(src / "checkpoints", log=lambda message: None)
            if found is None:
                raise MissingFileError(f"no complete checkpoint in {src / 'checkpoints'}")
        saved = ckpt.verify(found)
        tensors = ckpt.read_tensors(found, "model")
        if "ema.safetensors" in saved.get("files", {}):
            tensors.update(ckpt.read_tensors(found, "ema"))
        used = found
    else:
        raise MissingFileError(
            f"LoRA base {str(src)!r} is neither a .safetensors file, a checkpoint folder nor a "
            "run folder with checkpoints/"
        )
    tensors = base_state(tensors)  # a LoRA run's checkpoint can serve as a base too
    names = {key: key.replace(".base_layer.", ".") for key in model.state_dict()}
    targets = {canonical: key for key, canonical in names.items() if not _is_lora_key(key)}
    missing, extra = sorted(set(targets) - set(tensors)), sorted(set(tensors) - set(targets))
    if missing or extra:
        raise UserError(
            f"LoRA base {used} does not fit the model: missing {missing[:6]}, "
            f"unexpected {extra[:6]} (is train.model the base run's model?)"
        )
    own = model.state_dict()
    with torch.no_grad():
        for canonical, key in targets.items():
            if tuple(own[key].shape) != tuple(tensors[canonical].shape):
                raise UserError(
                    f"LoRA base {used}: {canonical} has shape {tuple(tensors[canonical].shape)}, "
                    f"the model's {tuple(own[key].shape)}"
                )
            own[key].copy_(tensors[canonical])
    return used


def prepare_lora(model: nn.Module, config: Any) -> nn.Module:
    """What ``train`` does before training when ``config.lora`` (a TrainConfig's) is set: load
    the base weights (unless the run will resume from its own checkpoint, which holds them) and
    add the adapters unless ``model`` already has them (``build_network`` adds them)."""
    from . import checkpoint as ckpt

    opts = lora_options(config.lora)
    resuming = config.resume and ckpt.list_checkpoints(Path(config.run_dir) / "checkpoints")
    if opts.base and not resuming:
        load_base_weights(model, opts.base)
    if not lora_layers(model):
        add_lora(model, opts.replace(base=None))
    return model


def save_run_adapter(trainer: Any, options: LoraOptions) -> Path | None:
    """After training: write ``run_dir/lora.safetensors`` from the trainer's averaged (EMA)
    weights (collective; rank 0 writes)."""
    state = trainer.averaged_state()
    if not trainer.info.is_main:
        return None
    path = save_lora(trainer.module, Path(trainer.run_dir) / "lora.safetensors", state=state)
    trainer.log(f"wrote LoRA adapter {path} (rank {options.rank})")
    return path


__all__ = [
    "DEFAULT_TARGETS",
    "AdapterFile",
    "LoraOptions",
    "add_lora",
    "base_fingerprint",
    "base_state",
    "default_targets",
    "load_base_weights",
    "load_lora",
    "lora_layers",
    "lora_options",
    "merge_lora",
    "prepare_lora",
    "read_lora",
    "resolve_targets",
    "save_lora",
    "save_run_adapter",
    "trainable_names",
]
