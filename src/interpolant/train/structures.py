"""What ``interpolant train`` builds: a registry of training structures keyed by
``train.objective.name``.

A structure says which network, which loss and which conditioning a run trains, and how its
samples are drawn:

* ``standard`` (the default, no ``name``): ``Model(backbone, path, predicts)`` and
  ``losses.Objective(path, **train.objective)``; sampled by the one sampling loop.
* ``multitask``: MT-Diffusion (seed 14): a multi-head backbone (``train.model``, e.g.
  ``multihead-mlp``) with an eps head and a label head, learned label embeddings, the aggregated
  forward process and its multi-task loss; the labels (``data.labels=true``) are its second
  modality. Sampled jointly (images and labels) by the ancestral sampler, in ``sample.nfe``
  steps (a uniform subsequence of the T-step chain, as DDIM strides DDPM's).
* ``diffusevae``: DiffuseVAE (seed 26): a VAE stage trained first (saved in
  ``run_dir/vae/``) whose reconstructions are the per-sample prior means, then the refiner
  (``train.model``, an image backbone: the coarse image enters as extra channels) in form 1
  (plain path) or form 2 (the shifted-mean path). The VAE is a frozen part of the checkpointed
  model, so ``interpolant sample`` decodes z ~ N(0, I) and refines with any solver.
* ``forward``: observation-space diffusion with a known forward model (seed 20; the module
  :mod:`.forward_structure`): the loss sees masked views of the data only; ``interpolant
  sample`` completes context views and returns the signal.

Each structure's options are the other keys of ``train.objective`` (an unknown one is refused
with the list of valid ones); sizes that follow from the data (``shape``, ``num_classes``) are
filled in by :func:`fit_structure` when the data are loaded, and recorded in the checkpoints.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..configurable import Configurable, Registry, number, one_of, option
from ..errors import UserError, WrongTypeError
from ..predictions import Model
from ..randomness import derive_seed
from ..solvers import Sampler
from .config import TrainConfig

#: ``fit(model_spec, shape, num_classes) -> model_spec``: api.runs.fit_model_to_data.
FitModel = Callable[[dict[str, Any], tuple[int, ...], int | None], dict[str, Any]]


@dataclass
class Drawing:
    """Samples (N, ...) on the CPU in float32, their labels (or None) and the model evaluations
    each sample cost."""

    x: Tensor
    labels: Tensor | None
    nfe: int


#: MT-Diffusion's offset-weight schedules (``multitask.WEIGHT_SCHEDULES``, imported lazily).
WEIGHTS = ("early", "spread", "none")


def _shape_check(value: Any) -> str | None:
    if value is None:
        return None
    ok = isinstance(value, list | tuple) and value and all(isinstance(v, int) for v in value)
    return None if ok else "a list of ints (the shape of one sample) or None"


@dataclass(frozen=True)
class Structure(Configurable):
    """Base of the training structures (see the module)."""

    name: ClassVar[str] = ""

    def fit(self, config: TrainConfig, shape: tuple[int, ...], classes: int | None, fit: FitModel):
        """``config`` with the sizes the data fix filled in (backbone and structure options)."""
        return config.replace(model=fit(config.model, shape, classes))

    def network(self, config: TrainConfig, backbone: Callable[[dict[str, Any]], nn.Module]):
        """The trained module: here the standard ``Model(backbone, path, predicts)``, with EDM
        preconditioning when ``config.precondition`` (sigma_data) is set and the LoRA
        adapters' layout when ``config.lora`` is; other structures build their own."""
        from ..paths import from_config as path_from_config
        from ..predictions import Model, Preconditioned

        path = path_from_config(config.path)
        net = backbone(dict(config.model))
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

    def objective(self, config: TrainConfig, model: nn.Module | None, path: Any) -> Any:
        """The loss the trainer minimises: here ``losses.Objective(path, **config.objective)``;
        other structures build theirs for ``model``."""
        return _standard_objective(config, path)

    def conditioning(
        self, config: TrainConfig, model: nn.Module, data: Tensor
    ) -> dict[str, Tensor] | None:
        """Per-sample conditioning the structure derives from the data (None: none)."""
        return None

    def filled(self, config: TrainConfig) -> Structure:
        """The options after :meth:`fit` (refused when the data sizes are still missing)."""
        return self

    def as_dict(self) -> dict[str, Any]:
        return self.config()


@dataclass(frozen=True)
class Standard(Structure):
    """``Model(backbone, path, predicts)`` trained by ``losses.Objective(path, **options)``."""

    name: ClassVar[str] = "standard"


@dataclass(frozen=True)
class MultiTask(Structure):
    """MT-Diffusion (seed 14) on a multi-head backbone; the labels are the second modality."""

    name: ClassVar[str] = "multitask"
    diffusion_steps: int = option(
        200, help="T of the discrete chain", check=number(lo=2, integer=True)
    )
    weights: str = option(
        "early",
        help="offset weights w_s: early, spread or none",
        check=one_of(*("early", "spread", "none")),
    )
    weight_total: float = option(1.0, help="sum of the offset weights", check=number(lo=0))
    weight_fraction: float = option(
        0.25, help="share of the steps of 'early'", check=number(0, 1, open_lo=True)
    )
    label_weight: float = option(1.0, help="lambda of the label loss", check=number(lo=0))
    clip: bool = option(True, help="clip z0_hat to [-1, 1] when sampling (DDPM's practice)")
    num_classes: int | None = option(None, help="label classes (filled in from the data)")
    shape: list[int] | None = option(
        None, help="shape of one sample (filled in from the data)", check=_shape_check
    )

    def process(self) -> Any:
        from ..multitask import AggregatedProcess

        return AggregatedProcess(
            steps=self.diffusion_steps,
            weights=self.weights,
            weight_total=self.weight_total,
            weight_fraction=self.weight_fraction,
        )

    def fit(self, config: TrainConfig, shape: tuple[int, ...], classes: int | None, fit: FitModel):
        if classes is None:
            raise UserError(
                "train.objective.name=multitask generates images and labels jointly: it needs "
                "labelled data (set data.labels=true)"
            )
        spec = fit(config.model, shape, None)
        heads = dict(spec.get("heads") or {"eps": "x", "label": classes})
        if heads.get("label") != classes or heads.get("eps") != "x":
            raise UserError(
                f"train.model.heads must be {{eps: x, label: {classes}}} for multitask on data "
                f"with {classes} classes, got {heads}"
            )
        spec["heads"] = heads
        options = {**config.objective, "num_classes": classes, "shape": list(shape)}
        return config.replace(model=spec, objective=options)

    def filled(self, config: TrainConfig) -> MultiTask:
        if self.num_classes is None or self.shape is None:
            raise UserError(
                "train.objective (multitask) lacks num_classes and shape: train through "
                "interpolant train / api.train, which fill them in from the data, or set them"
            )
        return self

    def network(self, config: TrainConfig, backbone: Callable[[dict[str, Any]], nn.Module]):
        from ..multitask import JointModel

        s = self.filled(config)
        spec = dict(config.model)
        spec.setdefault("heads", {"eps": "x", "label": s.num_classes})
        net = backbone(spec)
        assert s.num_classes is not None and s.shape is not None
        joint = JointModel(net, {config.cond_key: (s.num_classes, "label")}, tuple(s.shape))
        return MultiTaskModel(joint, s.process(), s.clip)

    def objective(self, config: TrainConfig, model: nn.Module | None, path: Any) -> Any:
        from ..multitask import MTDiffusionObjective

        process = model.process if isinstance(model, MultiTaskModel) else self.process()
        return MTDiffusionObjective(process, {config.cond_key: self.label_weight})


class MultiTaskModel(Model):
    """A :class:`~interpolant.multitask.JointModel` with its aggregated process, as a run's
    model: called like the joint model (training), sampled by :meth:`draw` (the ancestral joint
    sampler on a uniform subsequence of the chain's T steps: ``sample.nfe`` network evaluations
    per sample, at most T)."""

    #: DDP replicates this model, not its net: its forward returns the heads' tensors and the
    #: MT-Diffusion loss finds the joint model through it (distributed.parallel_target).
    parallel_whole: ClassVar[bool] = True

    def __init__(self, joint: nn.Module, process: Any, clip: bool = True):
        super().__init__(joint, process.path, predicts="eps")
        self.process, self.clip = process, bool(clip)

    def forward(self, z: Tensor, t: Tensor, **kwargs: Any) -> Any:  # type: ignore[override]
        return self.net(z, t, **kwargs)

    def budget(self, sampler: Sampler | None) -> int:
        """The network evaluations per sample ``sampler`` asks for (its nfe or steps; T when
        neither is set); a solver or grid the ancestral sampler cannot follow is refused."""
        if sampler is None:
            return int(self.process.steps)
        solver, grid = getattr(sampler.solver, "name", ""), getattr(sampler.grid, "name", None)
        if solver != "auto" or grid not in ("auto", "uniform"):
            raise UserError(
                f"multitask samples with its own ancestral sampler on a uniform subsequence of "
                f"the chain's steps: set sample.solver=auto and sample.grid=auto (or uniform), "
                f"got solver {solver or sampler.solver!r}, grid {grid or sampler.grid!r}"
            )
        count = sampler.nfe if sampler.nfe is not None else sampler.steps
        return int(self.process.steps) if count is None else int(count)

    def draw(
        self,
        n: int,
        seed: int,
        batch_size: int,
        sampler: Sampler | None = None,
        progress: bool = False,
        **_: Any,
    ) -> Drawing:
        from ..multitask import sample_joint

        joint: Any = self.net
        budget = self.budget(sampler)
        out = sample_joint(
            joint,
            self.process,
            n,
            seed,
            batch_size=batch_size,
            clip=(-1.0, 1.0) if self.clip else None,
            progress=progress,
            nfe=budget,
        )
        key = next(iter(joint.heads))
        return Drawing(out.x.float(), out.labels[key], out.nfe // n)


@dataclass(frozen=True)
class DiffuseVAEStructure(Structure):
    """DiffuseVAE (seed 26): a VAE stage, then the refiner on its reconstructions."""

    name: ClassVar[str] = "diffusevae"
    form: str = option(
        "form2", help="form1 (plain path) or form2 (shifted mean)", check=one_of("form1", "form2")
    )
    latent_dim: int = option(8, help="VAE latent size", check=number(lo=1, integer=True))
    vae_width: int = option(32, help="VAE conv width", check=number(lo=1, integer=True))
    vae_steps: int = option(
        1000, help="VAE training steps (stage 1)", check=number(lo=1, integer=True)
    )
    vae_batch_size: int = option(128, help="VAE batch size", check=number(lo=1, integer=True))
    vae_lr: float = option(2e-3, help="VAE Adam learning rate", check=number(lo=0))
    kl_weight: float = option(0.1, help="VAE KL weight (beta)", check=number(lo=0))
    shape: list[int] | None = option(
        None, help="image shape (C, H, W), filled in from the data", check=_shape_check
    )

    def fit(self, config: TrainConfig, shape: tuple[int, ...], classes: int | None, fit: FitModel):
        if len(shape) != 3:
            raise UserError(f"diffusevae trains on images (C, H, W); the data are {shape}")
        spec = fit(config.model, shape, classes)
        return config.replace(model=spec, objective={**config.objective, "shape": list(shape)})

    def filled(self, config: TrainConfig) -> DiffuseVAEStructure:
        if self.shape is None:
            raise UserError("train.objective (diffusevae) lacks the image shape: set shape")
        return self

    def network(self, config: TrainConfig, backbone: Callable[[dict[str, Any]], nn.Module]):
        from ..diffusevae import ChannelConcat, ConvVAE
        from ..paths import from_config as path_from_config

        s = self.filled(config)
        assert s.shape is not None
        spec = dict(config.model)
        if "in_channels" not in spec:
            raise UserError("diffusevae needs an image backbone with in_channels (e.g. unet)")
        spec["in_channels"] = 2 * int(spec["in_channels"])  # x_t and the coarse image
        net = ChannelConcat(backbone(spec))
        c, h, w = s.shape
        vae = ConvVAE((c, h, w), s.latent_dim, s.vae_width)
        path = path_from_config(config.path)
        return DiffuseVAEModel(net, path, config.predicts, vae, s.form)

    def objective(self, config: TrainConfig, model: nn.Module | None, path: Any) -> Any:
        from ..diffusevae import ShiftedMean

        objective = _standard_objective(config, path)
        return ShiftedMean(path).objective(objective) if self.form == "form2" else objective

    def conditioning(self, config: TrainConfig, model: nn.Module, data: Tensor):
        """Stage 1: train the VAE (or read it from ``run_dir/vae/``), freeze it in the model;
        the prior means are its reconstructions of the training images."""
        from ..diffusevae import DEFAULT_KEY, coarse_images, train_vae

        if not isinstance(model, DiffuseVAEModel):
            raise WrongTypeError(f"diffusevae trains a DiffuseVAEModel, got {type(model)}")
        if not isinstance(data, Tensor):
            raise UserError("diffusevae needs the training images in memory (not streamed)")
        vae: Any = model.vae
        file = Path(config.run_dir) / "vae" / "vae.safetensors"
        if config.resume and file.is_file():
            from safetensors.torch import load_file

            vae.load_state_dict(load_file(str(file)))
        else:
            vae.requires_grad_(True)
            torch.manual_seed(derive_seed("diffusevae-vae-init", config.seed))
            fresh = type(vae)(vae.image_shape, vae.latent_dim, vae.width)
            vae.load_state_dict(fresh.state_dict())
            train_vae(
                vae,
                data,
                steps=self.vae_steps,
                batch_size=self.vae_batch_size,
                lr=self.vae_lr,
                kl_weight=self.kl_weight,
                seed=config.seed,
                progress=config.progress,
            )
            if int(os.environ.get("RANK", "0")) == 0:  # every rank trained the same VAE
                from safetensors.torch import save_file

                file.parent.mkdir(parents=True, exist_ok=True)
                partial = file.with_name(file.name + ".partial")  # a reader never sees half
                save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(partial))
                os.replace(partial, file)
        vae.eval().requires_grad_(False)
        return {DEFAULT_KEY: coarse_images(vae, data, seed=config.seed)}


class DiffuseVAEModel(Model):
    """The refiner (``net`` sees x_t and the coarse image) with its frozen VAE: trained as a
    plain model on ``cond["prior_mean"]``; :meth:`draw` decodes z ~ N(0, I) (stream
    ``"vae-prior"`` of sample i) and refines with any sampler spec."""

    def __init__(self, net: nn.Module, path: Any, predicts: str, vae: nn.Module, form: str):
        super().__init__(net, path, predicts)
        self.vae, self.form = vae.requires_grad_(False), form

    def draw(
        self, n: int, seed: int, batch_size: int, sampler: Sampler | None = None, **_: Any
    ) -> Drawing:
        from ..diffusevae import DiffuseVAE, prior_latents

        refiner = Model(self.net, self.path, self.predicts)
        generator = DiffuseVAE(self.vae, refiner, self.form)  # type: ignore[arg-type]
        parts = []
        for start in range(0, n, batch_size):
            index = torch.arange(start, min(n, start + batch_size))
            z = prior_latents(self.vae, seed, index)  # type: ignore[arg-type]
            out = generator.generate(sampler=sampler, seed=seed, z=z, index=index)
            parts.append(out.x)
        return Drawing(torch.cat(parts).float().cpu(), None, out.nfe)


STRUCTURES: Registry[Structure] = Registry("training structure", Structure)
for _cls in (Standard, MultiTask, DiffuseVAEStructure):
    STRUCTURES.register(_cls)
from .forward_structure import ForwardStructure  # noqa: E402 (it builds on Structure)

STRUCTURES.register(ForwardStructure)


def split_objective(objective: dict[str, Any]) -> tuple[Structure, dict[str, Any]]:
    """(the structure ``objective["name"]`` names, the keywords left for ``losses.Objective``:
    all the others for ``standard``, none for the other structures, whose options they are)."""
    values = dict(objective)
    name = values.pop("name", "standard")
    cls = STRUCTURES.resolve(name, key="train.objective.name")
    if cls is Standard:
        return Standard(), values
    from ..configurable import build

    return build(cls, values, key="train.objective"), {}


def structure_of(config: TrainConfig) -> Structure:
    """The structure a train config names."""
    return split_objective(config.objective)[0]


def check_objective(config: TrainConfig) -> None:
    """Refuse an unknown structure or option (the standard one's keys are ``Objective``'s)."""
    from ..configurable import keyword_names, refuse_unknown
    from ..losses import Objective

    structure, rest = split_objective(config.objective)
    if isinstance(structure, Standard):
        allowed = keyword_names(Objective, exclude=("path",))
        refuse_unknown("the objective", rest, allowed, key="train.objective")


def fit_structure(
    config: TrainConfig, shape: tuple[int, ...], classes: int | None, fit: FitModel
) -> TrainConfig:
    """``config`` with the sizes of the data filled in, as its structure needs."""
    return structure_of(config).fit(config, tuple(int(s) for s in shape), classes, fit)


def _standard_objective(config: TrainConfig, path: Any) -> Any:
    """``losses.Objective(path, **keywords)``; ``time`` / ``weight`` may be JSON mappings."""
    from ..losses import Objective as LossObjective
    from ..losses import time_from_config, weight_from_config

    _, kwargs = split_objective(config.objective)
    if "path" in kwargs:
        raise UserError("config.objective must not name a path: config.path is used")
    if isinstance(kwargs.get("time"), dict):
        kwargs["time"] = time_from_config(kwargs["time"])
    if isinstance(kwargs.get("weight"), dict):
        kwargs["weight"] = weight_from_config(kwargs["weight"])
    return LossObjective(path, **kwargs)


def draws_itself(model: nn.Module) -> bool:
    """Whether a run's model has its own sampler (:class:`MultiTaskModel`,
    :class:`DiffuseVAEModel`, the forward structure's ``ObservationModel``) instead of the one
    sampling loop."""
    return callable(getattr(model, "draw", None)) and isinstance(model, Model)


__all__ = [
    "STRUCTURES",
    "DiffuseVAEModel",
    "DiffuseVAEStructure",
    "Drawing",
    "ForwardStructure",
    "MultiTask",
    "MultiTaskModel",
    "Standard",
    "Structure",
    "check_objective",
    "draws_itself",
    "fit_structure",
    "split_objective",
    "structure_of",
]
