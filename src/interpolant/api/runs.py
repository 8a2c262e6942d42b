"""Train, sample and evaluate runs: the functions behind ``interpolant train|sample|eval``.

    from interpolant import api
    run = api.train("toy2d-flow", overrides=["train.steps=500"])
    out = api.sample(run.run_dir, nfe=20)              # Samples(x, labels, meta)
    api.save_samples(out, "runs/toy2d-flow/samples")   # samples.npz + samples.png
    metrics = api.evaluate(out)                        # against the held-out split

A run folder holds what the trainer writes (``checkpoints/``, ``stats.jsonl``, ``config.json``,
``log.txt``) plus ``run_config.json`` (all four config sections, rewritten with every checkpoint)
and ``loss_curve.png``.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..configurable import keyword_names, refuse_unknown
from ..data import DataInfo, LoadedData, load_dataset
from ..data.streaming import in_memory
from ..errors import MissingFileError, UserError, WrongTypeError
from ..predictions import Model
from ..randomness import normal
from ..solvers import Calibration, Hook, Trajectory
from ..solvers import sample as sample_loop
from ..threads import apply_policy
from ..train import TrainConfig, Trainer, build_network
from ..train import checkpoint as ckpt
from ..train import train as train_loop
from ..train.structures import draws_itself, fit_structure
from .checks import RUN_CONFIG, check_belongs, check_data_options
from .config import DataConfig, RunConfig, SampleConfig, resolve_config
from .plugins import PluginContext, class_labels, plugin_hooks, sampler_of, without_plugins


def is_main_process() -> bool:
    """Rank 0 under torchrun (or a single process)."""
    return int(os.environ.get("RANK", "0")) == 0


def as_run_config(config: RunConfig | dict[str, Any] | str, overrides: Any = ()) -> RunConfig:
    """A RunConfig from itself, a dict of sections, a preset name or a config file path, with
    dotted overrides applied."""
    if isinstance(config, RunConfig):
        config = config.to_dict()
    if isinstance(config, dict):
        from .config import apply_overrides

        return RunConfig.from_dict(apply_overrides(config, list(overrides)))
    if isinstance(config, str) and Path(config).suffix.lower() in (
        ".yaml",
        ".yml",
        ".toml",
        ".json",
    ):
        return resolve_config(config_file=config, overrides=list(overrides))
    return resolve_config(preset=config, overrides=list(overrides))


# ----------------------------------------------------------------------------------------------
# Data and model shapes.


def load_data(data: DataConfig, split: str = "train", n: int | None = None) -> LoadedData:
    """The ``split`` of the data the config names (``n`` examples; default ``data.n`` for the
    train split)."""
    if not data.name:
        raise UserError(
            "data.name is empty: give a registered data set (see `interpolant info`) or a path "
            "to an image folder, a .npy/.npz array or a .csv table, e.g. data.name=path/to/images"
        )
    count = n if n is not None else (data.n if split == "train" else None)
    check_data_options(data.name, data.options)
    return load_dataset(
        data.name,
        n=count,
        split=split,
        seed=data.seed,
        test_fraction=data.test_fraction,
        **data.options,
    )


def _backbone_class(name: str) -> Any:
    from ..models import MODELS

    key = str(name).lower()
    if key not in MODELS:
        raise UserError(f"unknown model {name!r}; registered: {sorted(MODELS)}")
    factory = MODELS[key]
    return getattr(factory, "func", factory)  # the class behind a preset's partial


def fit_model_to_data(
    model: dict[str, Any], shape: tuple[int, ...], num_classes: int | None = None
) -> dict[str, Any]:
    """``model`` (``{"name": ..., **kwargs}``) with the sizes the data fix filled in (``dim`` of
    vector models, ``image_size``/``in_channels`` of image models, ``num_classes`` when labels
    are used); a size that contradicts the data is an error saying what the model expects."""
    from ..models import Conv1D

    spec = dict(model)
    name = spec.get("name")
    if not name:
        raise UserError(
            "train.model needs a name, e.g. train.model.name=mlp (see interpolant info)"
        )
    backbone = _backbone_class(name)
    refuse_unknown(str(name), set(spec) - {"name"}, keyword_names(backbone), key="train.model")
    params = inspect.signature(backbone).parameters
    shape = tuple(int(s) for s in shape)
    if "dim" in params:
        dim = math.prod(shape)
        spec.setdefault("dim", dim)
        if spec["dim"] != dim:
            raise UserError(
                f"model {name!r} has dim={spec['dim']} but each sample of the data has {dim} "
                f"values (shape {shape}): set train.model.dim={dim} or leave it out"
            )
    if "image_size" in params:
        if len(shape) != 3:
            raise UserError(
                f"model {name!r} takes images of shape (channels, height, width) but the data's "
                f"samples have shape {shape}: use a vector model (train.model.name=mlp)"
            )
        c, h, w = shape
        spec.setdefault("image_size", h if h == w else [h, w])
        spec.setdefault("in_channels", c)
        size = spec["image_size"]
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if (spec["in_channels"], *hw) != shape:
            raise UserError(
                f"model {name!r} expects images of shape ({spec['in_channels']}, {hw[0]}, "
                f"{hw[1]}) (in_channels={spec['in_channels']}, image_size={size}) but the data's "
                f"images are {shape}: set train.model.in_channels={c} train.model.image_size={h} "
                "or resize the images (data.options.size=... for an image folder)"
            )
    if isinstance(backbone, type) and issubclass(backbone, Conv1D) and len(shape) == 2:
        # The 1-D window model's input channels follow the data (1 + lags for series).
        spec.setdefault("channels", shape[0])
        if spec["channels"] != shape[0]:
            raise UserError(
                f"model {name!r} has channels={spec['channels']} but the data's windows have "
                f"{shape[0]} channels (shape {shape}): set train.model.channels={shape[0]} "
                "or leave it out"
            )
    if num_classes is not None:
        if "num_classes" not in params:
            raise UserError(f"model {name!r} takes no class labels; set data.labels=false")
        spec.setdefault("num_classes", num_classes)
        if spec["num_classes"] < num_classes:
            raise UserError(
                f"model {name!r} has num_classes={spec['num_classes']} but the data have "
                f"{num_classes} classes: set train.model.num_classes={num_classes}"
            )
    return spec


def _num_classes(data: LoadedData) -> int | None:
    if data.labels is None:
        return None
    if data.info.classes:
        return len(data.info.classes)
    return int(data.labels.max()) + 1


# ----------------------------------------------------------------------------------------------
# Training.


@dataclass
class TrainResult:
    """A finished training call: where it wrote, the resolved config and the trainer."""

    run_dir: Path
    config: RunConfig
    trainer: Trainer


def write_run_config(config: RunConfig, run_dir: Path) -> Path:
    """``run_dir/run_config.json`` (atomic)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RUN_CONFIG
    ckpt.write_text_atomic(path, config.to_json() + "\n")
    return path


def train(
    config: RunConfig | dict[str, Any] | str,
    overrides: Any = (),
    data: LoadedData | None = None,
    plots: bool = True,
) -> TrainResult:
    """Train the run a preset name, config file, dict or :class:`RunConfig` describes.

    ``data`` replaces the data the config names (its labels are used when ``data.labels`` is
    set). Works under ``torchrun``: every rank calls it, rank 0 writes the files.
    """
    cfg = as_run_config(config, overrides)
    loaded = data if data is not None else load_data(cfg.data, "train")
    labels = loaded.labels if cfg.data.labels else None
    if cfg.data.labels and labels is None:
        raise UserError(f"data.labels is true but the data {cfg.data.name!r} have no labels")
    classes = _num_classes(loaded) if labels is not None else None
    shape, codec = tuple(loaded.info.shape), None
    if cfg.train.encoder is not None:  # latent training: the network's shape is the latents'
        from ..train.latents import first_row, latent_shape, load_codec

        codec = load_codec(cfg.train.encoder)
        shape = latent_shape(codec.encode, first_row(loaded.x).float())
    # The structure (train.objective.name) fills in the sizes the data fix.
    cfg = replace(cfg, train=fit_structure(cfg.train, shape, classes, fit_model_to_data))
    run_dir = Path(cfg.train.run_dir)
    main = is_main_process()

    def on_checkpoint(step: int, path: Path) -> None:
        write_run_config(cfg, run_dir)

    sample_fn = _training_sampler(cfg, loaded, shape, codec) if cfg.train.sample_every else None
    trainer = train_loop(
        cfg.train,
        loaded.x,
        labels,
        data_info=loaded.info.to_dict(),
        sample_fn=sample_fn,
        on_checkpoint=on_checkpoint,
        cond=getattr(loaded, "cond", None),  # a data set of cond dicts (data.conditioned)
        cond_masks=getattr(loaded, "cond_masks", None),
    )
    if main:
        write_run_config(cfg, run_dir)
        if plots and (run_dir / "stats.jsonl").is_file():
            from ..plots import plot_loss_curve

            plot_loss_curve(run_dir, run_dir / "loss_curve.png", title=f"training loss: {run_dir}")
    return TrainResult(run_dir, cfg, trainer)


def _training_sampler(
    cfg: RunConfig, data: LoadedData, shape: tuple[int, ...], codec: Any = None
) -> Any:
    """``sample_fn`` for the trainer: a picture of samples every ``train.sample_every`` steps
    (latents of ``shape`` decoded by ``codec`` when it can)."""
    reference = data.x[:2000]

    def sample_fn(model: nn.Module, step: int, run_dir: Path) -> None:
        if not isinstance(model, Model):
            return
        # Plain sampling for the progress pictures (plug-ins such as teleport would refit).
        plain = without_plugins(cfg.sample)
        settings = replace(plain, n=min(cfg.sample.n, 100), batch_size=100)
        drawn = draw_samples(model, shape, settings, _classes_of(cfg.train), data=reference)
        x = drawn.x if codec is None or codec.decode is None else codec.decode_all(drawn.x)
        out = Samples(x, drawn.labels, {"step": step, "data": data.info.to_dict()})
        plot_samples(out, run_dir / "samples" / f"step-{step:08d}.png", reference)

    return sample_fn


# ----------------------------------------------------------------------------------------------
# Loading a run and sampling.


@dataclass
class LoadedRun:
    """A trained model from a run folder, ready to sample."""

    run_dir: Path
    config: RunConfig
    checkpoint: Path
    step: int
    model: Model
    data_info: DataInfo | None
    ema: bool
    latent_shape: tuple[int, ...] | None = None  # latent training (train.encoder): z's shape


def load_run(
    run_dir: str | Path,
    checkpoint: str | Path | None = None,
    ema: bool = True,
    device: str | torch.device = "auto",
) -> LoadedRun:
    """The newest complete checkpoint of ``run_dir`` (or ``checkpoint``) as a model in eval mode,
    with the EMA weights unless ``ema=False``. Sizes and hashes are verified first; a corrupt
    newest checkpoint is skipped with a message on stderr naming it and the one used. A
    ``checkpoint`` whose network, path or data shape differ from the run's is refused."""
    root = Path(run_dir)
    if not root.is_dir():
        raise MissingFileError(f"no run folder at {str(root)!r} (train one with interpolant train)")
    if checkpoint is not None:
        path = Path(checkpoint)
        if not (path / ckpt.STATE_FILE).is_file():
            raise MissingFileError(f"{str(path)!r} is not a checkpoint folder (no state.json)")
        ckpt.verify(path)
    else:
        found = ckpt.find_resume(root / "checkpoints", log=_warn)
        if found is None:
            raise MissingFileError(
                f"no checkpoint in {root / 'checkpoints'} (has the run saved one yet?)"
            )
        path = found
    state = json.loads((path / ckpt.STATE_FILE).read_text())
    train_cfg = TrainConfig.from_dict(state["config"])
    config_file = root / RUN_CONFIG
    if config_file.is_file():
        config = RunConfig.from_dict(json.loads(config_file.read_text()))
        config = replace(config, train=train_cfg)
    else:  # trained through interpolant.train directly: only the train section is known
        config = RunConfig(data=DataConfig(name=""), train=train_cfg)
    if checkpoint is not None:
        check_belongs(root, path, state)
    model = build_network(train_cfg)
    if not isinstance(model, Model):
        raise WrongTypeError(f"{path} does not describe an interpolant Model")
    tensors = ckpt.read_tensors(path, "model")
    ckpt.check_tensors(path / "model.safetensors", tensors, _shapes(model))
    use_ema = ema and "ema.safetensors" in state.get("files", {})
    if use_ema:
        tensors.update(ckpt.read_tensors(path, "ema"))
    model.load_state_dict(tensors)
    info = state.get("data", {}).get("info") or None
    data_info = DataInfo.from_dict(info) if info and "normalizer" in info else None
    target = _device(device) if isinstance(device, str) else device
    model = model.to(target).eval().requires_grad_(False)
    apply_policy(model)  # the command line's thread choice (interpolant.threads)
    latent = state.get("data", {}).get("latent_shape")
    shape = None if latent is None else tuple(int(s) for s in latent)
    return LoadedRun(root, config, path, int(state["step"]), model, data_info, use_ema, shape)


def _warn(message: str) -> None:
    print(f"interpolant: warning: {message}", file=sys.stderr)


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _classes_of(config: TrainConfig) -> int | None:
    """The number of classes of a conditional backbone (filled in by fit_model_to_data); a
    wrapper's (``two-time``) is its inner backbone's."""
    spec = config.model.get("backbone", config.model)
    count = spec.get("num_classes") if isinstance(spec, dict) else None
    return int(count) if count else None


@dataclass
class Samples:
    """Samples in model space (N, ...), their class labels (or None) and a JSON description."""

    x: Tensor
    labels: Tensor | None
    meta: dict[str, Any] = field(default_factory=dict)
    trajectory: Tensor | None = None  # (grid times, N, ...) states, when asked for
    latents: Tensor | None = None  # latent training: the drawn latents x was decoded from


def start_noise(shape: tuple[int, ...], seed: int, index: Sequence[int]) -> Tensor:
    """The source noise of samples ``index`` (len(index), *shape): sample i's own stream
    ``("sample-noise", seed, i)``, so it does not depend on the batch."""
    return normal(shape, seed, list(index), "sample-noise")


@dataclass
class Drawn:
    """Samples (N, ...) on the CPU in float32, their labels (or None), and the states at every
    grid time (times, N, ...) when a trajectory was asked for."""

    x: Tensor
    labels: Tensor | None
    trajectory: Tensor | None = None
    nfe: int = 0  # model evaluations spent per sample (SampleResult.nfe: hooks' included)
    calibration: Calibration | None = None  # the calibrated grid's record (grid: calibrated)


def draw_samples(
    model: Model,
    shape: tuple[int, ...],
    settings: SampleConfig,
    num_classes: int | None = None,
    cond_key: str = "class_labels",
    *,
    progress: bool = False,
    hooks: Sequence[Hook[Any]] = (),
    data: Tensor | Callable[[], Tensor] | None = None,
    trajectory: bool = False,
    calibration_cache: tuple[Path, str] | None = None,
) -> Drawn:
    """``settings.n`` samples of per-sample ``shape`` with the section's sampler spec
    (:func:`~interpolant.api.plugins.sampler_of`), its plug-ins (teleport, skip plan: their
    hooks come first; ``data`` is the training data they may need) and ``hooks`` (guidance).
    Sample i starts from :func:`start_noise` and draws from the stream of index i, so results
    do not depend on ``batch_size``. ``sample.grid: calibrated`` searches the grid of the
    section's solver and NFE on this model first (:func:`~interpolant.solvers.calibrate`),
    cached in ``calibration_cache = (folder, tag naming the checkpoint)``."""
    device = next(model.parameters()).device
    n = settings.n
    if draws_itself(model):  # multitask, diffusevae, forward: the structure's own sampler
        own = model.draw(  # type: ignore[operator]
            n,
            settings.seed,
            settings.batch_size,
            sampler=sampler_of(settings),
            progress=progress,
            data=data,  # the forward structure completes the training examples' contexts
        )
        return Drawn(own.x, own.labels, None, own.nfe)
    calibration = None
    if settings.grid == CALIBRATED:
        calibration = _calibrate(model, shape, settings, num_classes, cond_key, calibration_cache)
        spec = calibration.sampler.replace(seed=settings.seed)
    else:
        spec = sampler_of(settings)
    context = PluginContext(model, bool(num_classes), data)
    all_hooks = [*plugin_hooks(settings, context), *hooks]  # plug-ins fitted once, all batches
    labels = class_labels(settings, n, num_classes)
    parts, paths, nfe = [], [], 0
    for start in range(0, n, settings.batch_size):
        index = range(start, min(n, start + settings.batch_size))
        noise = start_noise(shape, settings.seed, index).to(device)
        cond = {} if labels is None else {cond_key: labels[start : index.stop].to(device)}
        recorder = Trajectory() if trajectory else None
        batch_hooks = all_hooks + ([recorder] if recorder is not None else [])
        result = sample_loop(
            model, noise, spec, hooks=batch_hooks, cond=cond, index=index, progress=progress
        )
        parts.append(result.x.detach().cpu().float())
        nfe = max(nfe, int(result.nfe))
        if recorder is not None:
            states = result.state(recorder).states
            paths.append(torch.stack(states).detach().cpu().float())
    stacked = torch.cat(paths, dim=1) if paths else None
    return Drawn(torch.cat(parts), labels, stacked, nfe, calibration)


CALIBRATED = "calibrated"


def _calibrate(
    model: Model,
    shape: tuple[int, ...],
    settings: SampleConfig,
    num_classes: int | None,
    cond_key: str,
    cache: tuple[Path, str] | None,
) -> Calibration:
    """The calibrated sampler of the section's solver and NFE (128 draws, 60 search runs)."""
    from ..solvers import calibrate

    if settings.grid_options:
        raise UserError("sample.grid=calibrated takes no grid_options (the grid is searched)")
    base = sampler_of(replace(settings, grid="auto"))
    draws = 128
    labels = class_labels(replace(settings, n=draws), draws, num_classes)
    param = next(model.parameters())
    return calibrate(
        model,
        shape,
        base,
        draws=draws,
        cond=None if labels is None else {cond_key: labels.to(param.device)},
        cache_dir=None if cache is None else cache[0],
        tag="" if cache is None else cache[1],
        dtype=param.dtype,
        device=param.device,
    )


def sample(
    run: str | Path | LoadedRun,
    overrides: Any = (),
    checkpoint: str | Path | None = None,
    device: str = "auto",
    progress: bool = False,
    keep_trajectory: bool = False,
    guidance: str | None = None,
    guidance_options: dict[str, Any] | None = None,
    **settings: Any,
) -> Samples:
    """Samples from a run folder's newest checkpoint (or ``checkpoint``), or from a loaded run.

    ``settings`` are SampleConfig fields (solver, nfe, grid, n, seed, ema, ...); they and the
    dotted ``overrides`` (``"sample.nfe=20"``) replace the run's own sample section. With
    ``ema=False`` the raw trained weights are used instead of the EMA.

    ``guidance`` is a spec such as ``"cfg:3.0"`` or ``"cfg:3.0@0.2-0.8"`` (see
    :func:`interpolant.guidance.from_spec`); ``guidance_options`` are its keyword arguments
    (``schedule``, ``interval``, ``reference`` for autoguidance, ...). CFG uses the run's null
    class, so it needs a class-conditional run.
    """
    from .config import apply_overrides

    loaded = run if isinstance(run, LoadedRun) else load_run(run, checkpoint, device=device)
    values = {"sample": {**loaded.config.sample.__dict__, **settings}}
    merged = RunConfig.from_dict(apply_overrides(values, list(overrides))).sample
    if merged.ema != loaded.ema and not isinstance(run, LoadedRun):
        loaded = load_run(run, checkpoint, ema=merged.ema, device=device)
    if merged.ema != loaded.ema:
        raise UserError(f"the run was loaded with ema={loaded.ema}; load it with ema={merged.ema}")
    if loaded.data_info is None:
        raise UserError(f"{loaded.checkpoint} does not record the data's shape")
    hooks = _guidance_hooks(loaded, guidance, guidance_options) if guidance else []
    drawn = draw_samples(
        loaded.model,
        loaded.latent_shape or tuple(loaded.data_info.shape),
        merged,
        _classes_of(loaded.config.train),
        loaded.config.train.cond_key,
        progress=progress,
        hooks=hooks,
        data=lambda: in_memory(load_data(loaded.config.data, "train").x),
        trajectory=keep_trajectory,
        calibration_cache=(
            Path(loaded.run_dir) / "calibration",
            f"{Path(loaded.checkpoint).name}:ema={loaded.ema}",
        ),
    )
    meta = {
        "run_dir": str(loaded.run_dir),
        "checkpoint": str(loaded.checkpoint),
        "step": loaded.step,
        "ema": loaded.ema,
        "nfe_spent": drawn.nfe,
        "sample": merged.__dict__,
        "guidance": guidance,
        "data_config": loaded.config.data.__dict__,
        "data": loaded.data_info.to_dict(),
    }
    if drawn.calibration is not None:
        record = drawn.calibration.to_dict()
        meta["calibration"] = {k: v for k, v in record.items() if k != "format_version"}
    x, latents = drawn.x, None
    encoder = loaded.config.train.encoder
    if loaded.latent_shape is not None and encoder is not None:  # back to data space
        from ..train.latents import load_codec

        codec = load_codec(encoder, next(loaded.model.parameters()).device)
        if codec.decode is not None:
            x, latents = codec.decode_all(drawn.x), drawn.x
        meta["latents"] = {"encoder": encoder, "decoded": codec.decode is not None}
    return Samples(x, drawn.labels, meta, drawn.trajectory, latents)


def _guidance_hooks(
    loaded: LoadedRun, spec: str, options: dict[str, Any] | None
) -> list[Hook[Any]]:
    """Prediction hooks for a guidance spec on a loaded run (CFG uses its null class)."""
    from ..guidance import from_spec, needs_null_label

    options = dict(options or {})
    if needs_null_label(spec) and "null_cond" not in options:
        if not _classes_of(loaded.config.train):
            raise UserError(
                f"CFG needs a class-conditional run; {loaded.run_dir} was trained without "
                "classes (set train.model.num_classes and a label dropout to train one)"
            )
        options["null_cond"] = {loaded.config.train.cond_key: None}
    return from_spec(spec, loaded.model, **options)


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ----------------------------------------------------------------------------------------------
# Files and pictures of samples.


def is_image_shape(shape: tuple[int, ...]) -> bool:
    """(C, H, W) with 1 or 3 channels: drawable as a picture."""
    return len(shape) == 3 and shape[0] in (1, 3)


def picture_of(shape: tuple[int, ...]) -> str | None:
    """What :func:`plot_samples` draws for samples of per-sample ``shape``, None if nothing."""
    if is_image_shape(shape):
        return "an image grid"
    if shape == (2,):
        return "a scatter plot over held-out data"
    if len(shape) == 1 and shape[0] >= 3:
        k = min(PAIR_COLUMNS, shape[0])
        return f"a pair plot of the first {k} of {shape[0]} columns over held-out data"
    return None


#: Columns of a table drawn in its pair plot.
PAIR_COLUMNS = 4


def plot_samples(samples: Samples, out: str | Path, reference: Tensor | None = None) -> Path | None:
    """A grid of images (rows by class for conditional samples), a 2-D scatter over
    ``reference``, or for rows of 3+ values a pair plot of the first :data:`PAIR_COLUMNS`;
    None for data that is none of these (:func:`picture_of` says which)."""
    from .. import plots

    x, labels = samples.x, samples.labels
    shape = tuple(x.shape[1:])
    if is_image_shape(shape):
        if labels is not None:
            k = int(labels.max()) + 1
            present = [c for c in range(k) if bool((labels == c).any())]  # one row per class drawn
            per_class = min(10, min(int((labels == c).sum()) for c in present))
            rows = [x[labels == c][:per_class] for c in present]
            classes = samples.meta.get("data", {}).get("classes") or [str(c) for c in range(k)]
            return plots.plot_image_grid(
                torch.cat(rows), out, nrow=per_class, row_labels=[classes[c] for c in present]
            )
        return plots.plot_image_grid(x[:100], out, nrow=10)
    if shape == (2,):
        return plots.plot_scatter(x, out, data=reference)
    if picture_of(shape) is not None:
        return plots.plot_pairs(x, out, data=reference, columns=PAIR_COLUMNS)
    return None


def save_samples(samples: Samples, out_dir: str | Path, reference: Tensor | None = None) -> dict:
    """``samples.npz`` (``samples`` in model space, ``samples_data`` in the data's units,
    ``labels``, ``meta`` as JSON, ``trajectory``) and ``samples.png`` when drawable (plus
    ``trajectories.png`` for 2-D paths); returns the paths."""
    import numpy as np

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {"samples": samples.x.numpy(), "meta": json.dumps(samples.meta)}
    info = samples.meta.get("data")
    if info and "normalizer" in info:
        arrays["samples_data"] = DataInfo.from_dict(info).normalizer.inverse(samples.x).numpy()
    if samples.labels is not None:
        arrays["labels"] = samples.labels.numpy()
    if samples.trajectory is not None:
        arrays["trajectory"] = samples.trajectory.numpy()
    if samples.latents is not None:
        arrays["latents"] = samples.latents.numpy()
    paths = {"npz": out / "samples.npz"}
    np.savez(paths["npz"], **arrays)
    picture = plot_samples(samples, out / "samples.png", reference)
    if picture is not None:
        paths["png"] = picture
    if samples.trajectory is not None and tuple(samples.x.shape[1:]) == (2,):
        from ..plots import plot_trajectories

        paths["trajectories"] = plot_trajectories(
            samples.trajectory, out / "trajectories.png", data=reference
        )
    return paths


def read_samples(path: str | Path) -> Samples:
    """Samples saved by :func:`save_samples`: a ``.npz`` file, a folder holding
    ``samples.npz``, or a run folder (its ``samples/samples.npz``)."""
    import numpy as np

    p = Path(path)
    candidates = [p] if p.suffix == ".npz" else [p / "samples.npz", p / "samples" / "samples.npz"]
    file = next((c for c in candidates if c.is_file()), None)
    if file is None:
        raise MissingFileError(
            f"no samples at {str(p)!r} (looked for {', '.join(str(c) for c in candidates)}); "
            "draw them with interpolant sample"
        )
    with np.load(file, allow_pickle=False) as z:
        if "samples" not in z.files:
            raise UserError(f"{file} holds no 'samples' array (arrays: {z.files})")
        x = torch.from_numpy(z["samples"]).float()
        labels = torch.from_numpy(z["labels"]) if "labels" in z.files else None
        meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    return Samples(x, labels, {**meta, "file": str(file)})


__all__ = [
    "RUN_CONFIG",
    "Drawn",
    "LoadedRun",
    "Samples",
    "TrainResult",
    "as_run_config",
    "draw_samples",
    "fit_model_to_data",
    "load_data",
    "load_run",
    "picture_of",
    "plot_samples",
    "read_samples",
    "sample",
    "save_samples",
    "start_noise",
    "train",
]
