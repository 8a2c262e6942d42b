"""What an objective carries besides the network: learned loss parameters and running statistics.

Some objectives learn parameters of the loss itself (ANT-UW's per-term log-variances) or keep
running statistics (loss-term scales). ``ObjectiveState`` gives them their own AdamW (no weight
decay), averages their gradients over ranks (DDP averages only the model's) and writes / reads
them in the checkpoint bit for bit, so that ``Trainer`` treats the objective as one more part of
the state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import checkpoint as ckpt
from .config import TrainConfig
from .distributed import DistInfo


class ObjectiveState:
    """The learned parameters (``objective.named_parameters()``), their optimiser, and the
    objective's running state (``objective.state()`` / ``load_state``)."""

    def __init__(self, objective: Any, cfg: TrainConfig, info: DistInfo) -> None:
        self.objective = objective
        self.info = info
        named = getattr(objective, "named_parameters", None)
        self.params: dict[str, nn.Parameter] = dict(named()) if callable(named) else {}
        with torch.no_grad():
            for p in self.params.values():
                p.data = p.data.to(info.device)
        self.optimizer: torch.optim.AdamW | None = None
        if self.params:
            self.optimizer = torch.optim.AdamW(
                list(self.params.values()),
                lr=cfg.lr,
                betas=cfg.betas,
                eps=cfg.adam_eps,
                weight_decay=0.0,
            )

    def start_step(self, lr: float) -> None:
        """Set the step's learning rate and clear the loss parameters' gradients."""
        if self.optimizer is None:
            return
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)

    def step(self, scaler: Any) -> None:
        """AdamW on the loss's own parameters, with gradients averaged over ranks."""
        opt = self.optimizer
        if opt is None:
            return
        if self.info.distributed:
            for p in self.params.values():
                grad = p.grad if p.grad is not None else torch.zeros_like(p)
                torch.distributed.all_reduce(grad)
                p.grad = grad / self.info.world_size
        if scaler is None:
            opt.step()
        else:
            scaler.step(opt)

    def running_state(self) -> dict[str, Tensor]:
        """The objective's running statistics (empty when it keeps none)."""
        state = getattr(self.objective, "state", None)
        return dict(state()) if state is not None else {}

    def checkpoint_parts(self) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any]]:
        """Tensor files to write (``objective``, ``objective-params``, ``objective-optimizer``)
        and the JSON entries to add to the checkpoint's state (the optimiser's scalars)."""
        tensors: dict[str, dict[str, Tensor]] = {}
        state: dict[str, Any] = {}
        running = {k: v.detach().cpu() for k, v in self.running_state().items()}
        if running:
            tensors["objective"] = running
        if self.optimizer is not None:
            tensors["objective-params"] = {k: p.detach().cpu() for k, p in self.params.items()}
            obj_tensors, state["objective_optimizer_scalars"] = ckpt.flatten_optimizer(
                self._optimizer_state()
            )
            tensors["objective-optimizer"] = obj_tensors
        return tensors, state

    def _optimizer_state(self) -> dict[str, dict[str, Any]]:
        """``{param_name: {slot: value}}`` of the loss parameters' optimiser, on the CPU."""
        assert self.optimizer is not None
        names = list(self.params)
        return {
            names[i]: {k: v.detach().cpu() if isinstance(v, Tensor) else v for k, v in d.items()}
            for i, d in self.optimizer.state_dict()["state"].items()
        }

    def load(self, path: Path, saved: dict[str, Any]) -> None:
        """Restore the running state, then the learned parameters and their optimiser."""
        self._load_running_state(path, saved)
        self._load_parameters(path, saved)

    def _load_parameters(self, path: Path, saved: dict[str, Any]) -> None:
        """The loss's learned parameters and their optimiser state, bit for bit."""
        stored = "objective-params.safetensors" in saved["files"]
        if not self.params and not stored:
            return
        if not stored or self.optimizer is None:
            mine = sorted(self.params)
            raise ckpt.CheckpointError(
                f"{path} has {'no' if not stored else ''} learned loss parameters but the "
                f"objective learns {mine or 'none'} (was the weighting changed?)"
            )
        values = ckpt.read_tensors(path, "objective-params")
        shapes = {k: tuple(p.shape) for k, p in self.params.items()}
        ckpt.check_tensors(path / "objective-params.safetensors", values, shapes)
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(values[k])
        slots = ckpt.unflatten_optimizer(
            ckpt.read_tensors(path, "objective-optimizer"),
            saved.get("objective_optimizer_scalars", {}),
        )
        index = {name: i for i, name in enumerate(self.params)}
        unknown = sorted(set(slots) - set(index))
        if unknown:
            raise ckpt.CheckpointError(
                f"{path}: optimiser state of unknown loss parameters {unknown}"
            )
        self.optimizer.load_state_dict(
            {
                "state": {index[n]: v for n, v in slots.items()},
                "param_groups": self.optimizer.state_dict()["param_groups"],
            }
        )

    def _load_running_state(self, path: Path, saved: dict[str, Any]) -> None:
        """The objective's running statistics (loss terms); refused when they do not match."""
        mine = self.running_state()
        stored = "objective.safetensors" in saved["files"]
        if not mine and not stored:
            return
        if not stored:
            raise ckpt.CheckpointError(
                f"{path} has no objective state but the objective keeps {sorted(mine)}"
            )
        load_state = getattr(self.objective, "load_state", None)
        if load_state is None:
            raise ckpt.CheckpointError(
                f"{path} holds objective state but this objective cannot load any"
            )
        try:
            load_state(ckpt.read_tensors(path, "objective"))
        except ValueError as err:  # UserError: the terms differ
            raise ckpt.CheckpointError(f"{path / 'objective.safetensors'}: {err}") from err
