"""The training loop: one process or many under ``torchrun``, resumable bit for bit.

One update ``step`` (0-based) of global batch B on W ranks with ``batch_per_gpu`` b runs
R = B / (b W) accumulation rounds per rank; round r of rank k feeds the examples
``sampler.rank_indices(step)[r b : (r + 1) b]`` and scales its loss by 1 / R, and DDP averages over
ranks, so the gradient is that of the mean loss over the global batch whatever b and W are.
Everything random is drawn from generators seeded by (seed, step, ...): the data order, and the
loss's time/noise draws and the global RNG (dropout) per block of ``noise_block`` samples, seeded
by the block's position in the global batch. Resuming at ``step`` therefore needs only the
checkpointed tensors.
"""

from __future__ import annotations

import copy
import gc
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..errors import UserError, WrongTypeError
from ..threads import apply_policy
from . import checkpoint as ckpt
from . import conditioning, latents
from . import distributed as dist_util
from . import state as st
from .config import NETWORK_FIELDS, TrainConfig, as_config
from .ema import EMA
from .loader import (
    StreamFeed,
    check_data,
    data_fingerprint,
    describe_data,
    position_change,
    stream_position,
)
from .objective_state import ObjectiveState
from .posthoc import PosthocTracker
from .precision import (
    autocast,
    convert_to_fp8,
    enable_gradient_checkpointing,
    grad_scaler,
    load_scaler_state,
    scaler_state,
)
from .sampler import StepSampler, generator, step_seed
from .schedules import lr_from_config
from .stats_log import StatsLog
from .stop import StopSignals, TrainingStopped, stop_decision

logger = logging.getLogger("interpolant.train")

SampleFn = Callable[[nn.Module, int, Path], Any]
CheckpointFn = Callable[[int, Path], Any]
StepHook = Callable[["Trainer", int], Any]


class Objective(Protocol):
    """What the trainer needs from a loss (``interpolant.losses.Objective`` fits). An objective
    over token ids sets the attribute ``integer_data = True`` and then gets int64 rows. Optional:
    ``end_step()`` (called once per optimiser step, after the backward passes) and
    ``state() / load_state(tensors)`` (running statistics written into every checkpoint)."""

    def loss(
        self,
        model: Any,
        x0: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
    ) -> Tensor: ...


class Trainer:
    """Trains ``model`` on the rows of ``data`` by minimising ``objective``.

    Args:
        model: the module handed to ``objective.loss`` (e.g. ``interpolant.Model``); its
            parameters are trained. Every rank must build it identically.
        objective: anything with ``loss(model, x0, generator=..., cond=...) -> scalar``.
        data: (N, ...) training examples, kept in memory on the training device; or a
            map-style ``torch.utils.data.Dataset`` (e.g. ``interpolant.data.streaming``'s
            readers of memory-mapped arrays, image folders, shards) read through a DataLoader
            (``config.num_workers``) in exactly the order the in-memory path reads rows, so both
            train the same model bit for bit.
        config: a :class:`TrainConfig` or dict.
        labels: optional (N,) labels, passed to the model as ``cond={config.cond_key: y}``.
        cond: optional per-sample conditioning of any structure, ``{name: (N, ...) tensor}``
            (``train.conditioning``): the loss gets ``{name: tensor[rows]}`` (with the labels
            under ``config.cond_key``); recorded in checkpoints, so a resume with other cond is
            refused. ``cond_masks``: optional ``{name: (N,) bool}``, False = modality missing
            (refused, as is a NaN row).
        network: JSON description of the network; a checkpoint written for another is refused.
        data_info: JSON data description (e.g. normalisation) stored with every checkpoint.
        sample_fn: ``sample_fn(model, step, run_dir)`` on rank 0 every ``sample_every`` steps and
            at the end, with a plain copy of the model holding the EMA weights.
        on_checkpoint: ``on_checkpoint(step, path)`` on rank 0 after each checkpoint.
        step_hook: ``step_hook(trainer, step)`` on every rank after each update.
        encoder: ``encoder(x) -> latents``, applied under ``no_grad`` to every block of rows
            before the loss (latent training with e.g. a VAE's encoder: ``lambda x:
            vae.encode(x).latent_dist.mode()``); the network then sees latents.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        data: Tensor | Dataset,
        config: TrainConfig | dict[str, Any],
        labels: Tensor | None = None,
        *,
        network: dict[str, Any] | None = None,
        data_info: dict[str, Any] | None = None,
        sample_fn: SampleFn | None = None,
        on_checkpoint: CheckpointFn | None = None,
        step_hook: StepHook | None = None,
        encoder: Callable[[Tensor], Tensor] | None = None,
        cond: Mapping[str, Tensor] | None = None,
        cond_masks: Mapping[str, Tensor] | None = None,
    ):
        self.config = cfg = as_config(config)
        if not isinstance(model, nn.Module):
            raise WrongTypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if not callable(getattr(objective, "loss", None)):
            raise WrongTypeError(
                f"objective needs a loss(model, x0, ...) method, got {objective!r}"
            )
        check_data(data, labels, integer=bool(getattr(objective, "integer_data", False)))
        self.info = info = dist_util.setup(cfg.device)
        self.batch_per_gpu, self.rounds = cfg.rounds(info.world_size)
        self.noise_block = cfg.noise_block or self.batch_per_gpu
        self.run_dir = Path(cfg.run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.objective = objective
        self.network = dict(network or {})
        self.data_info = dict(data_info or {})
        self.sample_fn, self.on_checkpoint, self.step_hook = sample_fn, on_checkpoint, step_hook
        self.step = 0  # updates done
        self.elapsed_s = 0.0  # training wall time of earlier sessions

        # Data: a tensor every rank keeps whole, or a Dataset each rank streams its rows of;
        # the sampler says which rows are read either way.
        n = int(data.shape[0]) if isinstance(data, Tensor) else len(data)  # type: ignore[arg-type]
        self.sampler = StepSampler(n, cfg.batch_size, cfg.seed)
        codec = None
        if encoder is None and cfg.encoder is not None:  # latent training named by the config
            codec = latents.load_codec(cfg.encoder, info.device)
            encoder = codec.encode
        self.encoder = encoder
        self.feed: StreamFeed | None = None
        if isinstance(data, Tensor):
            self.data = data.to(info.device)
        else:
            self.data = torch.zeros(0)  # unused: rows come from self.feed
            self.feed = StreamFeed(
                data,
                self.sampler,
                rank=info.rank,
                world_size=info.world_size,
                batch_per_gpu=self.batch_per_gpu,
                rounds=self.rounds,
                stop_step=cfg.steps,
                num_workers=cfg.num_workers,
                prefetch_factor=cfg.prefetch_factor,
                device=info.device,
                log=self.log,
            )
        self.cond = conditioning.to_device(
            conditioning.as_cond(labels, cond, cfg.cond_key, n, cond_masks), info.device
        )
        fingerprint = data_fingerprint(data)
        self.data_desc = describe_data(data, fingerprint, self.data_info, encoder, cfg.batch_size)
        if encoder is not None:  # what the network sees (and interpolant sample draws)
            example = latents.first_row(data).to(info.device)
            self.data_desc["latent_shape"] = list(latents.latent_shape(encoder, example))
            if codec is not None:
                self.data_desc["encoder"] = codec.name
        if self.cond is not None:  # old checkpoints (no entry) keep resuming
            self.data_desc["cond"] = conditioning.describe_cond(self.cond)

        # Model: same weights everywhere, then wrapped (DDP / FSDP2) and optionally compiled.
        self.module = model.to(info.device).train()
        if info.distributed and cfg.parallel == "fsdp":
            with torch.no_grad():
                for tensor in [*model.parameters(), *model.buffers()]:
                    torch.distributed.broadcast(tensor, src=0)
        self.sample_model = copy.deepcopy(model).eval() if sample_fn and info.is_main else None
        if cfg.gradient_checkpointing:
            enable_gradient_checkpointing(self.module)
        if cfg.precision == "fp8":
            swapped = convert_to_fp8(self.module, info.device)
            self.log(f"fp8: {swapped} Linear layers run their matmuls in float8")
        self.scaler = grad_scaler(cfg.precision, info.device)
        self.wrapped, self.unit = dist_util.wrap(self.module, info, cfg.parallel)
        if cfg.compile:
            dist_util.parallel_target(self.module).compile()
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        if not self.params:
            raise UserError("model has no trainable parameters")
        self.optimizer = torch.optim.AdamW(
            self.params,
            lr=cfg.lr,
            betas=cfg.betas,
            eps=cfg.adam_eps,
            weight_decay=cfg.weight_decay,
            fused=info.device.type == "cuda",
        )
        # Learned parameters of the loss (ANT-UW's log-variances): their own AdamW, no decay.
        self.objective_state = ObjectiveState(self.objective, cfg, info)
        self.objective_params = self.objective_state.params
        self.objective_optimizer = self.objective_state.optimizer
        self.ema = None
        if cfg.ema != "none":
            self.ema = EMA(
                self.module,
                cfg.ema,
                cfg.batch_size,
                cfg.ema_halflife_kimg,
                cfg.ema_rampup_ratio,
                cfg.ema_std,
            )
        self.posthoc = None
        if cfg.ema_snapshot_every is not None:
            self.posthoc = PosthocTracker(self.module, cfg.ema_posthoc_stds)
        self._bar: Any = None

    # --- logging ------------------------------------------------------------------------------
    def log(self, message: str, echo: bool = True) -> None:
        """A line in ``run_dir/log.txt`` and the ``interpolant.train`` logger (rank 0 only);
        ``echo``: also above the progress bar."""
        if not self.info.is_main:
            return
        logger.info(message)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "log.txt", "a") as f:
            f.write(f"[step {self.step}] {message}\n")
        if self.config.progress and echo:
            from tqdm import tqdm

            tqdm.write(f"[interpolant.train] {message}", file=sys.stderr)

    # --- one update ---------------------------------------------------------------------------
    def _autocast(self) -> Any:
        return autocast(self.config.precision, self.info.device)

    def _micro_loss(self, indices: Tensor, step: int, first: int) -> Tensor:
        """Mean loss over the examples ``indices`` whose global batch positions start at
        ``first``. Each block of ``noise_block`` samples gets its own generator for the loss's
        draws and reseeds the global RNG (for dropout inside the network), both from
        (seed, step, block position), so the draws do not depend on batch_per_gpu or ranks."""
        block = self.noise_block
        losses = []
        # A streamed micro-batch: the DataLoader's batch, checked to hold exactly these rows.
        streamed = None if self.feed is None else self.feed.batch(indices, step, first)
        self.data_desc["position"] = stream_position(
            step + 1, self.config.batch_size, self.sampler.n
        )
        for j in range(0, indices.numel(), block):
            rows = indices[j : j + block].to(self.info.device)
            where = (self.config.seed, step, (first + j) // block)
            gen = generator(step_seed("loss", *where), self.info.device)
            torch.manual_seed(step_seed("global", *where))  # dropout and the like
            cond = conditioning.select(self.cond, rows)
            x0 = self.data[rows] if streamed is None else streamed[j : j + block]
            if self.encoder is not None:  # latents, after the reseed (a sampling encoder)
                with torch.no_grad():
                    x0 = self.encoder(x0)
            with self._autocast():
                loss = self.objective.loss(self.wrapped, x0, generator=gen, cond=cond)
            if loss.ndim != 0:
                raise UserError(f"objective.loss must return a scalar, got shape {loss.shape}")
            losses.append(loss.float())
        return torch.stack(losses).mean()

    def _check_position(self, saved: dict[str, Any]) -> None:
        """Log when the checkpoint's stream position differs from where the stateless order
        resumes (:func:`~.loader.position_change`)."""
        now = stream_position(self.step, self.config.batch_size, self.sampler.n)
        self.data_desc["position"] = now
        message = position_change(saved.get("position"), now)
        if message:
            self.log(message)

    def train_step(self, step: int) -> tuple[Tensor, Tensor, float]:
        """Update ``step``: accumulate gradients over the rounds, clip, AdamW, EMA.
        Returns (this rank's mean loss, global grad norm before clipping, lr)."""
        cfg, info, b = self.config, self.info, self.batch_per_gpu
        lr = lr_from_config(cfg, step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.objective_state.start_step(lr)
        indices = self.sampler.rank_indices(step, info.rank, info.world_size)
        offset = info.rank * (cfg.batch_size // info.world_size)
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=info.device)
        for r in range(self.rounds):
            with dist_util.gradient_sync(self.unit, enabled=r == self.rounds - 1):
                loss = self._micro_loss(indices[r * b : (r + 1) * b], step, offset + r * b)
                scaled = loss / self.rounds
                (scaled if self.scaler is None else self.scaler.scale(scaled)).backward()
            total += loss.detach() / self.rounds
        end_step = getattr(self.objective, "end_step", None)
        if end_step is not None:
            end_step()
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else math.inf
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients
        grad_norm = st.full_value(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        self.objective_state.step(self.scaler)
        if self.scaler is None:
            self.optimizer.step()
        else:  # skips the step when a gradient overflowed, then adapts the scale
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.module, step)
        if self.posthoc is not None:
            self.posthoc.update(self.module, step)
        return total, grad_norm.detach(), lr

    # --- checkpoints --------------------------------------------------------------------------
    def save(self, echo: bool = True) -> Path | None:
        """Write a checkpoint of the current state (collective; rank 0 writes); ``echo``: say
        so above the progress bar."""
        info = self.info
        model = st.model_state(self.module)
        optim = st.optimizer_state(self.module, self.optimizer)
        ema = st.ema_state(self.ema.shadow) if self.ema is not None else {}
        posthoc = self.posthoc.state() if self.posthoc is not None else {}
        objective_tensors, objective_scalars = self.objective_state.checkpoint_parts()
        rngs = dist_util.all_gather_bytes(ckpt.rng_state_bytes(info.device), info)
        path = None
        if info.is_main:
            optim_tensors, optim_scalars = ckpt.flatten_optimizer(optim)
            tensors = {"model": model, "optimizer": optim_tensors}
            if self.ema is not None:
                tensors["ema"] = ema
            if self.posthoc is not None:
                tensors["posthoc"] = posthoc
            tensors.update(objective_tensors)
            state = {
                "config": self.config.to_dict(),
                "network": self.network,
                "data": self.data_desc,
                "optimizer_scalars": optim_scalars,
                "rng": {
                    "world_size": info.world_size,
                    "torch": [ckpt.encode_bytes(r) for r in rngs],
                },
                "elapsed_s": self.training_time_s,
                "kimg": self.step * self.config.batch_size / 1000.0,
                "torch_version": torch.__version__,
                "grad_scaler": scaler_state(self.scaler),
                **objective_scalars,
            }
            path = ckpt.write_checkpoint(
                self.ckpt_root, self.step, tensors, state, self.config.keep_checkpoints
            )
            self.log(f"saved checkpoint {path}", echo=echo)
            if self.on_checkpoint is not None:
                self.on_checkpoint(self.step, path)
        dist_util.barrier(info)
        return path

    def resume(self) -> int:
        """Load the newest complete checkpoint under ``run_dir`` if there is one; returns the
        step to continue from (0 for a fresh run). A corrupt or mismatched one raises."""
        info = self.info
        found: Path | None = None
        error: Exception | None = None
        if info.is_main:
            for tmp in ckpt.remove_incomplete(self.ckpt_root):
                self.log(f"removed incomplete checkpoint {tmp} (its write did not finish)")
            try:
                found = ckpt.find_resume(self.ckpt_root, self.log)
            except ckpt.CheckpointError as err:
                error = err
        code = -2 if error is not None else (-1 if found is None else int(found.name[5:]))
        code = dist_util.broadcast_int(code, info)
        if error is not None:
            raise error
        if code == -2:
            raise ckpt.CheckpointError("rank 0 refused the checkpoint under " + str(self.ckpt_root))
        if code == -1:
            return 0
        path = self.ckpt_root / ckpt.checkpoint_name(code)
        # find_resume verified sizes and hashes on rank 0; every rank reads the same files.
        self.load(path, json.loads((path / ckpt.STATE_FILE).read_text()))
        return self.step

    def _check_fresh(self) -> int:
        """With resume=False, refuse a run_dir that holds checkpoints (a later automatic resume
        could pick up the old run's newer ones); returns 0."""
        old = ckpt.list_checkpoints(self.ckpt_root) if self.info.is_main else []
        if dist_util.broadcast_int(len(old), self.info):
            newest = old[-1][1].name if old else "see rank 0"
            raise FileExistsError(
                f"{self.ckpt_root} already holds checkpoints (newest {newest}) and "
                "config.resume is False: choose a new run_dir or set resume=True"
            )
        return 0

    def load(self, path: Path, saved: dict[str, Any]) -> None:
        """Restore model, optimiser, EMA, RNG and counters from the checkpoint at ``path``."""
        ckpt.check_network(path / ckpt.STATE_FILE, saved.get("network", {}), self.network)
        ckpt.check_data_shape(path / ckpt.STATE_FILE, saved.get("data", {}), self.data_desc)
        conditioning.check_cond_resume(
            path / ckpt.STATE_FILE, saved.get("data", {}), self.data_desc.get("cond")
        )
        shapes = st.model_shapes(self.module)
        model = ckpt.read_tensors(path, "model")
        ckpt.check_tensors(path / "model.safetensors", model, shapes)
        optim = ckpt.unflatten_optimizer(
            ckpt.read_tensors(path, "optimizer"), saved.get("optimizer_scalars", {})
        )
        param_shapes = {n: tuple(p.shape) for n, p in self.module.named_parameters()}
        if self.ema is not None:
            if "ema.safetensors" not in saved["files"]:
                raise ckpt.CheckpointError(f"{path} has no EMA but config.ema={self.config.ema!r}")
            ema = ckpt.read_tensors(path, "ema")
            ckpt.check_tensors(path / "ema.safetensors", ema, param_shapes)
        if self.posthoc is not None:
            if "posthoc.safetensors" not in saved["files"]:
                raise ckpt.CheckpointError(f"{path} has no post-hoc EMA tracks to continue")
            posthoc = ckpt.read_tensors(path, "posthoc")
            ckpt.check_tensors(path / "posthoc.safetensors", posthoc, self.posthoc.shapes())
        slot_shapes = {f"{n}.{s}": param_shapes[n] for n, slots in optim.items() for s in slots}
        unknown = sorted(set(optim) - set(param_shapes))
        if unknown:
            raise ckpt.CheckpointError(f"{path / 'optimizer.safetensors'} names unknown {unknown}")
        for key, shape in slot_shapes.items():
            name, slot = key.rsplit(".", 1)
            value = optim[name][slot]
            if isinstance(value, Tensor) and value.ndim and tuple(value.shape) != shape:
                raise ckpt.CheckpointError(
                    f"{path / 'optimizer.safetensors'}: {key} has shape {tuple(value.shape)}, "
                    f"parameter has {shape}"
                )
        st.load_model_state(self.module, model)
        st.load_optimizer_state(self.module, self.optimizer, optim)
        if self.ema is not None:
            st.load_ema_state(self.ema.shadow, ema)
        if self.posthoc is not None:
            self.posthoc.load(posthoc)
        self.objective_state.load(path, saved)
        self.step = int(saved["step"])
        self.elapsed_s = float(saved.get("elapsed_s", 0.0))
        load_scaler_state(self.scaler, saved.get("grad_scaler", {}), str(path))
        self._restore_rng(saved.get("rng", {}))
        self._check_position(saved.get("data", {}))
        self._report_differences(saved)
        self.log(f"resumed from {path} at step {self.step}")

    def _restore_rng(self, rng: dict[str, Any]) -> None:
        states = rng.get("torch", [])
        if rng.get("world_size") == self.info.world_size and len(states) == self.info.world_size:
            ckpt.set_rng_state_bytes(ckpt.decode_bytes(states[self.info.rank]), self.info.device)
            return
        self.log(
            f"checkpoint RNG states are for world size {rng.get('world_size')}, now "
            f"{self.info.world_size}: global RNG re-seeded (dropout-like randomness will differ)"
        )
        torch.manual_seed(step_seed("torch", self.config.seed, self.step, self.info.rank))

    def _report_differences(self, saved: dict[str, Any]) -> None:
        old, new = saved.get("config", {}), self.config.to_dict()
        changed = sorted(k for k in new if k not in NETWORK_FIELDS and old.get(k) != new[k])
        if changed:
            self.log(
                "config differs from the checkpoint's in "
                + ", ".join(f"{k} ({old.get(k)!r} -> {new[k]!r})" for k in changed)
            )
        data = saved.get("data", {})
        if data.get("fingerprint") != self.data_desc["fingerprint"]:
            self.log("the data differ from the checkpoint's: continuation will not be identical")

    # --- the loop -----------------------------------------------------------------------------
    def _session_time(self) -> float:
        return time.perf_counter() - self._t0 if hasattr(self, "_t0") else 0.0

    @property
    def training_time_s(self) -> float:
        """Training wall time over every session of this run (resumed ones included)."""
        return self.elapsed_s + self._session_time()

    def request_stop(self) -> None:
        """Called from a step hook: checkpoint the step just done and return from :meth:`run`
        (rank 0's request decides, so every rank stops after the same step)."""
        self._stop_requested = True

    def run(self) -> Trainer:
        """Train until ``config.steps`` updates are done (resuming first if allowed).

        SIGINT (Ctrl-C) or SIGTERM on any rank: the step in progress finishes, every rank stops
        after it, a checkpoint is written and :class:`~.stop.TrainingStopped` is raised (a
        second signal stops at once, keeping the newest complete checkpoint)."""
        threads = apply_policy(self.module)
        if threads is not None:
            self.log(f"{threads} intra-op CPU thread(s) for this model (--threads N to choose)")
        with StopSignals() as signals:
            return self._run(signals)

    def _run(self, signals: StopSignals) -> Trainer:
        cfg, info = self.config, self.info
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        dist_util.barrier(info)
        start = self.resume() if cfg.resume else self._check_fresh()
        if start == 0:
            torch.manual_seed(step_seed("torch", cfg.seed, 0, info.rank))
        if info.is_main:
            ckpt.write_text_atomic(self.run_dir / "config.json", cfg.to_json() + "\n")
            StatsLog(self.run_dir, info, cfg.batch_size, False).trim(start)
            self.log(
                f"training steps {start}..{cfg.steps} on {info.world_size} x {info.device} "
                f"({cfg.parallel if info.distributed else 'single'}), batch {cfg.batch_size} = "
                f"{self.batch_per_gpu} x {self.rounds} rounds x {info.world_size} ranks"
            )
        self._t0 = time.perf_counter()
        if info.is_main and cfg.progress:
            from tqdm import tqdm

            self._bar = tqdm(total=cfg.steps, initial=start, desc="train", dynamic_ncols=True)
        stats = StatsLog(self.run_dir, info, cfg.batch_size, cfg.tensorboard)
        for step in range(start, cfg.steps):
            loss, grad_norm, lr = self.train_step(step)
            self.step = step + 1
            stats.add(loss, grad_norm)
            if self._bar is not None:
                self._bar.update(1)
            last = self.step == cfg.steps
            if self.step % cfg.log_every == 0 or last:
                stats.write(self.step, lr, self.training_time_s, self._ema_row(), self._bar)
            if self.posthoc is not None and cfg.ema_snapshot_every is not None:
                if self.step % cfg.ema_snapshot_every == 0 or last:
                    self._snapshot()
            if self.step % cfg.checkpoint_every == 0 or last:
                self.save()
            if self.sample_fn is not None and (
                last or (cfg.sample_every is not None and self.step % cfg.sample_every == 0)
            ):
                self._sample()
            if self.step_hook is not None:
                self.step_hook(self, self.step)
            requested = bool(getattr(self, "_stop_requested", False))
            signalled, requested = stop_decision(signals.received, requested, info)
            if (signalled or requested) and not last:
                # The steps since the last row, and the stop, reach stats.jsonl first.
                reason = signalled or "request"
                stats.stop(self.step, lr, self.training_time_s, reason, self._ema_row())
                if self.step % cfg.checkpoint_every:
                    self.save(echo=signalled is None)
                if signalled:
                    if self._bar is not None:
                        self._bar.close()
                    path = self.ckpt_root / ckpt.checkpoint_name(self.step)
                    stopped = TrainingStopped(signalled, self.step, cfg.steps, path)
                    self.log(str(stopped), echo=False)
                    raise stopped
                break
        if self._bar is not None:
            self._bar.close()
        return self

    def _ema_row(self) -> dict[str, float]:
        """The EMA decay of the step just done, for its stats row."""
        return {} if self.ema is None else {"ema_beta": self.ema.beta(self.step - 1)}

    def averaged_state(self) -> dict[str, Tensor]:
        """Full model state with the EMA weights in place of the parameters (collective)."""
        state = st.model_state(self.module)
        if self.ema is not None:
            state.update(st.ema_state(self.ema.shadow))
        return state

    def _snapshot(self) -> None:
        """Write the post-hoc EMA snapshot of the current step (collective; rank 0 writes)."""
        assert self.posthoc is not None
        state = self.posthoc.state()
        if self.info.is_main:
            self.posthoc.write_snapshot(self.run_dir, self.step, state)

    def _sample(self) -> None:
        state = self.averaged_state()
        if self.info.is_main and self.sample_model is not None and self.sample_fn is not None:
            self.sample_model.load_state_dict(state)
            with torch.no_grad():
                self.sample_fn(self.sample_model, self.step, self.run_dir)
        dist_util.barrier(self.info)

    def close(self) -> None:
        """Leave the process group if this trainer created it.

        The DDP wrapper holds the group, so it is dropped (and collected) first: a gloo group
        whose last holder dies during interpreter shutdown can abort the finished process
        ("terminate called without an active exception": 5 of 50 loaded 2-rank runs, 0 of 60 after).
        """
        if self.info.distributed:
            self.wrapped, self.unit = self.module, dist_util.parallel_target(self.module)
            gc.collect()
        dist_util.cleanup(self.info)
