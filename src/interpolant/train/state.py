"""Full (unsharded) training state in and out of a module that may be plain, DDP-wrapped or
FSDP2-sharded, keyed by parameter name so checkpoints do not depend on the parallelism.

Under FSDP2 the gathers are collectives: every rank must call the ``*_state`` functions; the full
tensors land on CPU on rank 0 (other ranks get empty dicts from torch's state-dict API).
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from .distributed import is_fsdp


def _options(**kwargs: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def full_value(value: Tensor) -> Tensor:
    """A DTensor's full value (collective), any other tensor as is."""
    full = getattr(value, "full_tensor", None)
    return full() if callable(full) else value


def model_state(module: nn.Module) -> dict[str, Tensor]:
    """Parameters and buffers, full and on CPU."""
    if is_fsdp(module):
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return cast(
            dict[str, Tensor], get_model_state_dict(module, options=_options(cpu_offload=True))
        )
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def model_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """Full shapes of the parameters and buffers (DTensors report their global shape)."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def load_model_state(module: nn.Module, state: dict[str, Tensor]) -> None:
    """Load full tensors (every rank passes the full dict; FSDP2 keeps its own shard)."""
    if is_fsdp(module):
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        set_model_state_dict(module, cast(Any, state), options=_options())
        return
    module.load_state_dict(state, strict=True)


def _param_names(module: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Parameter names in the optimiser's index order."""
    by_id = {id(p): name for name, p in module.named_parameters()}
    return [by_id[id(p)] for group in optimizer.param_groups for p in group["params"]]


def optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    """``{param_name: {slot: value}}`` with full tensors on CPU."""
    if is_fsdp(module):
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        full = get_optimizer_state_dict(module, optimizer, options=_options(cpu_offload=True))
        return dict(cast(Any, full).get("state", {}))
    names = _param_names(module, optimizer)
    out: dict[str, dict] = {}
    for index, slots in optimizer.state_dict()["state"].items():
        out[names[index]] = {
            k: v.detach().cpu() if isinstance(v, Tensor) else v for k, v in slots.items()
        }
    return out


def load_optimizer_state(
    module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, dict]
) -> None:
    """Load ``{param_name: {slot: value}}``; hyperparameters stay those of ``optimizer``."""
    names = _param_names(module, optimizer)
    unknown = sorted(set(state) - set(names))
    if unknown:
        raise KeyError(f"optimizer state names unknown parameters {unknown[:8]}")
    current = optimizer.state_dict()
    if is_fsdp(module):
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        groups = [{**g, "params": [names[i] for i in g["params"]]} for g in current["param_groups"]]
        full = {"state": state, "param_groups": groups}
        set_optimizer_state_dict(module, optimizer, cast(Any, full), options=_options())
        return
    index = {name: i for i, name in enumerate(names)}
    optimizer.load_state_dict(
        {
            "state": {index[name]: slots for name, slots in state.items()},
            "param_groups": current["param_groups"],
        }
    )


def ema_state(shadow: dict[str, Tensor]) -> dict[str, Tensor]:
    """The EMA tensors, full and on CPU (gathers DTensor shards)."""
    return {k: full_value(v).detach().cpu() for k, v in shadow.items()}


@torch.no_grad()
def load_ema_state(shadow: dict[str, Tensor], state: dict[str, Tensor]) -> None:
    """Copy full EMA tensors into ``shadow`` (re-sharding DTensors like their parameters)."""
    missing, extra = set(shadow) - set(state), set(state) - set(shadow)
    if missing or extra:
        raise KeyError(f"EMA state mismatch: missing {sorted(missing)}, extra {sorted(extra)}")
    for name, target in shadow.items():
        value = state[name]
        mesh = getattr(target, "device_mesh", None)
        if mesh is not None:
            from torch.distributed.tensor import distribute_tensor

            placements = cast(Any, target).placements
            value = distribute_tensor(value.to(target.device), mesh, placements)
        target.copy_(value)
