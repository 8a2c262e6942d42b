"""Process-group setup and model wrapping for single-process or ``torchrun`` training.

The backend follows the device: NCCL on CUDA, gloo on CPU. ``parallel="ddp"`` replicates the
model (DistributedDataParallel); ``parallel="fsdp"`` shards parameters, gradients and optimiser
state with FSDP2 (``torch.distributed.fsdp.fully_shard``), which also runs on CPU with gloo.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import UserError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size, its device and the backend (None: single)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None
    owns_group: bool  # True when setup() created the process group (and cleanup destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when available; a CUDA device is ``cuda:local_rank``."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was requested but CUDA is not available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if device == "cpu":
        return torch.device("cpu")
    raise UserError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")


def setup(device: str = "auto") -> DistInfo:
    """Join the ``torchrun`` process group if the environment describes one (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size <= 1 and not dist.is_initialized():
        return DistInfo(0, 1, 0, dev, None, False)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend=backend)
    else:
        backend = str(dist.get_backend())
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, backend, owns)


def cleanup(info: DistInfo) -> None:
    """Destroy the process group if ``setup`` created it, once every rank got there (the
    destruction is meant to be collective). Objects that hold the group (a DDP wrapper) should
    be released first: :meth:`interpolant.train.Trainer.close` does that."""
    if info.owns_group and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_mean(value: Tensor, info: DistInfo) -> Tensor:
    """The mean of ``value`` over ranks (a copy; ``value`` itself is untouched)."""
    out = value.detach().clone()
    if info.distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= info.world_size
    return out


def broadcast_int(value: int, info: DistInfo) -> int:
    """Rank 0's ``value`` on every rank."""
    if not info.distributed:
        return value
    buf = torch.tensor([value], dtype=torch.int64, device=info.device)
    dist.broadcast(buf, src=0)
    return int(buf.item())


def all_gather_bytes(data: bytes, info: DistInfo) -> list[bytes]:
    """Every rank's ``data`` (as raw bytes, no pickling), in rank order."""
    if not info.distributed:
        return [data]
    size = torch.tensor([len(data)], dtype=torch.int64, device=info.device)
    sizes = [torch.zeros_like(size) for _ in range(info.world_size)]
    dist.all_gather(sizes, size)
    longest = max(int(s.item()) for s in sizes)
    buf = torch.zeros(longest, dtype=torch.uint8, device=info.device)
    buf[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(info.device)
    bufs = [torch.empty_like(buf) for _ in range(info.world_size)]
    dist.all_gather(bufs, buf)
    return [bytes(b[: int(s.item())].cpu().numpy().tobytes()) for b, s in zip(bufs, sizes)]


class DDP(DistributedDataParallel):
    """DistributedDataParallel whose unknown attributes resolve on the wrapped module, so code
    that reads ``model.path`` or ``model.predicts`` works on the wrapper too."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def shard_units(module: nn.Module) -> list[nn.Module]:
    """The submodules that FSDP2 shards as one unit each: every direct child with parameters,
    and each element of a child ModuleList / Sequential (transformer blocks, U-Net levels)."""
    units: list[nn.Module] = []
    for child in module.children():
        if isinstance(child, nn.ModuleList | nn.Sequential):
            units.extend(c for c in child.children() if any(True for _ in c.parameters()))
        elif any(True for _ in child.parameters()):
            units.append(child)
    return units


def parallel_target(model: nn.Module) -> nn.Module:
    """The module to replicate or shard: the network inside an :class:`interpolant.Model` (whose
    forward returns a Prediction, not tensors), else the model itself (also a Model whose class
    sets ``parallel_whole``: a training structure's model whose forward returns tensors and
    whose objective needs the model itself, e.g. MT-Diffusion's)."""
    from ..predictions import Model

    whole = getattr(type(model), "parallel_whole", False)
    if isinstance(model, Model) and isinstance(model.net, nn.Module) and not whole:
        return model.net
    return model


def wrap(model: nn.Module, info: DistInfo, parallel: str = "ddp") -> tuple[nn.Module, nn.Module]:
    """(the module the objective calls, the DDP / FSDP2 unit) for ``model``.

    One process: ``(model, model)``. DDP wraps :func:`parallel_target` and, for an
    ``interpolant.Model``, rebuilds the Model around the wrapper (sharing its parameters).
    FSDP2 converts the target in place (its parameters become DTensor shards), so ``model`` is
    called as is.
    """
    if not info.distributed:
        return model, model
    target = parallel_target(model)
    if parallel == "ddp":
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        unit = DDP(target, device_ids=device_ids)
        if target is model:
            return unit, unit
        from ..predictions import Model

        assert isinstance(model, Model)
        return Model(unit, model.path, model.predicts), unit
    if parallel == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(info.device.type, (info.world_size,))
        for sub in shard_units(target):
            fully_shard(sub, mesh=mesh)
        fully_shard(target, mesh=mesh)
        return model, target
    raise UserError(f"parallel must be 'ddp' or 'fsdp', got {parallel!r}")


def is_fsdp(module: nn.Module) -> bool:
    """True when ``module`` or a submodule was converted by ``fully_shard``."""
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in module.modules())


@contextmanager
def gradient_sync(wrapped: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce of non-final accumulation rounds (DDP ``no_sync``, FSDP2
    ``set_requires_gradient_sync``); a no-op on one process."""
    if enabled:
        yield
        return
    if isinstance(wrapped, DistributedDataParallel):
        with wrapped.no_sync():
            yield
        return
    if is_fsdp(wrapped):
        from torch.distributed.fsdp import FSDPModule

        assert isinstance(wrapped, FSDPModule)
        wrapped.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            wrapped.set_requires_gradient_sync(True)
        return
    with nullcontext():
        yield
