"""Training precisions (float32, bf16 and fp16 autocast, FP8 matmuls through torchao) and
gradient checkpointing: the settings that trade memory and speed for precision.

=========  ===========================================  ====================================
name       what runs in low precision                   what keeps it stable
=========  ===========================================  ====================================
float32    nothing                                      -
bf16       matmuls/convs under ``torch.autocast``       bf16's float32 range: nothing more
fp16       matmuls/convs under ``torch.autocast``       a dynamic loss scale (GradScaler):
                                                        grads are scaled up so small ones do
                                                        not flush to zero, steps with inf/NaN
                                                        grads are skipped and the scale halved
fp8        the Linear layers' matmuls in float8         torchao's dynamic per-tensor scales;
           (e4m3 forward, e5m2 gradients), the rest     the rest of the net as bf16
           under bf16 autocast
=========  ===========================================  ====================================

Master weights and optimiser states stay float32 in every mode. The fp16 loss scale is part of the
training state: it is saved in checkpoints so that a resumed run continues bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import MissingDependencyError, UserError

PRECISIONS = ("float32", "bf16", "fp16", "fp8")
# torchao's float8 matmul needs both dimensions of a weight divisible by 16.
FP8_MULTIPLE = 16


def autocast(precision: str, device: torch.device) -> Any:
    """The autocast context of one forward pass under ``precision``."""
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=precision in ("bf16", "fp16", "fp8"))


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A dynamic loss scaler for fp16 (PyTorch's defaults: 2^16 initial scale, x2 after 2000
    finite steps, /2 on an overflow); None for the other precisions, which need none."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def scaler_state(scaler: torch.amp.GradScaler | None) -> dict[str, float | int]:
    """The loss scaler's state as JSON numbers (empty without a scaler)."""
    if scaler is None:
        return {}
    return {
        k: (float(v) if isinstance(v, float) else int(v)) for k, v in scaler.state_dict().items()
    }


def load_scaler_state(
    scaler: torch.amp.GradScaler | None, state: dict[str, Any], where: str
) -> None:
    """Restore :func:`scaler_state`; a checkpoint written without fp16 starts a fresh scale."""
    if scaler is None or not state:
        return
    missing = sorted({"scale", "_growth_tracker"} - set(state))
    if missing:
        raise UserError(f"{where}: the fp16 loss-scaler state lacks {missing}")
    scaler.load_state_dict(dict(state))


def convert_to_fp8(module: nn.Module, device: torch.device, *, emulate: bool = False) -> int:
    """Swap the eligible ``nn.Linear`` layers of ``module`` for torchao's float8 training linears
    (dynamic tensorwise scaling, torchao's default recipe); returns how many were swapped.

    Eligible: both weight dimensions divisible by 16 (the float8 GEMM's tile constraint); the
    others (small embeddings, the output layer of a 2-D model) stay in bf16 autocast. Real fp8
    needs a GPU with float8 tensor cores (compute capability >= 8.9: Ada, Hopper); ``emulate``
    runs the same casts with float32 matmuls on any device (for tests)."""
    if not emulate:
        capable = device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)
        if not capable:
            raise UserError(
                f"precision 'fp8' needs a GPU with float8 tensor cores (compute capability >= 8.9, "
                f"e.g. H100); this run is on {device}: use precision 'bf16' here"
            )

    try:
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training
    except ImportError as err:
        raise MissingDependencyError(
            "precision 'fp8' needs torchao: pip install interpolant[fp8]"
        ) from err

    def eligible(layer: nn.Module, name: str) -> bool:
        return (
            isinstance(layer, nn.Linear)
            and layer.in_features % FP8_MULTIPLE == 0
            and layer.out_features % FP8_MULTIPLE == 0
        )

    count = sum(1 for name, layer in module.named_modules() if eligible(layer, name))
    if count == 0:
        raise UserError(
            "precision 'fp8': no Linear layer of the network has both dimensions divisible by "
            f"{FP8_MULTIPLE}, so nothing would run in float8; use 'bf16'"
        )
    convert_to_float8_training(
        module, config=Float8LinearConfig(emulate=emulate), module_filter_fn=eligible
    )
    return count


def enable_gradient_checkpointing(module: nn.Module) -> None:
    """Turn on gradient checkpointing in every backbone inside ``module`` that supports it."""
    from ..models.layers import Backbone

    found = [m for m in module.modules() if isinstance(m, Backbone)]
    if not any(m.supports_gradient_checkpointing for m in found):
        names = sorted({type(m).__name__ for m in found}) or [type(module).__name__]
        raise UserError(
            f"gradient_checkpointing: the network ({', '.join(names)}) has no checkpointable "
            "blocks; DiT, MMDiT and UNet have"
        )
    for backbone in found:
        if backbone.supports_gradient_checkpointing:
            backbone.set_gradient_checkpointing(True)
