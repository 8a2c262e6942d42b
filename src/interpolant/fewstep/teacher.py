"""The analytic teacher: the exact rectified-flow velocity of an empirical data set.

For data {x^(i)}_{i=1..N} and the linear path x_t = (1 - t) x0 + t eps (t = 0 data), x_t given
x0 = x^(i) is N((1 - t) x^(i), t^2 I), so the exact denoiser is the softmax-weighted mean

    E[x0 | x_t] = sum_i w_i(x_t) x^(i),   w = softmax_i(-|x_t - (1 - t) x^(i)|^2 / (2 t^2)),

and the probability-flow velocity is u = eps_hat - x0_hat = (x_t - E[x0 | x_t]) / t. This is
SlimFlow's ``AnalyticFlow`` (their t = 1 is data: v(x, s) = (E[x1 | x] - x) / (1 - s) with
s = 1 - t, the same field with the opposite sign). Its ODE sends every noise draw to one of the
data points, so it is a teacher whose pairs, straightness and one-step error are known exactly
enough to test reflow and distillation.

:func:`teacher_hash` fingerprints any teacher :class:`~interpolant.Model` (its class, path,
prediction kind, parameters and buffers), so a pairs file made by another teacher is refused.
"""

from __future__ import annotations

import hashlib
import json

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..paths import Linear
from ..predictions import Model


class AnalyticFlow(nn.Module):
    """The exact posterior mean E[x0 | x_t] of an empirical data set on the linear path (an x0
    network; wrap with :func:`analytic_teacher`). Computed in float64, in chunks of data rows.

    Args:
        data: (N, ...) the data points (kept as a buffer, so they are part of the hash).
        chunk: data rows per block of the log-sum-exp (memory N x B per block).
    """

    data: Tensor

    def __init__(self, data: Tensor, chunk: int = 4096) -> None:
        super().__init__()
        if not isinstance(data, Tensor) or data.ndim < 2 or data.shape[0] < 1:
            raise UserError("AnalyticFlow needs a data tensor of shape (N, ...) with N >= 1")
        self.register_buffer("data", data.detach().to(torch.float64).flatten(1).clone())
        self.shape = tuple(data.shape[1:])
        self.chunk = int(chunk)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        flat = x.to(torch.float64).flatten(1)
        if flat.shape[1] != self.data.shape[1]:
            raise UserError(
                f"the analytic teacher's data have {self.data.shape[1]} features per sample, "
                f"x has {flat.shape[1]}"
            )
        t64 = t.to(torch.float64).reshape(-1, 1).clamp(min=1e-12)
        alpha = 1.0 - t64
        # logits_ij = -|x_i - alpha x^(j)|^2 / (2 t^2); a running log-sum-exp over data blocks.
        top = torch.full((flat.shape[0], 1), -torch.inf, dtype=torch.float64, device=x.device)
        norm = torch.zeros_like(top)
        acc = torch.zeros_like(flat)
        for start in range(0, self.data.shape[0], self.chunk):
            block = self.data[start : start + self.chunk].to(x.device)
            # |x - a y|^2 = |x|^2 - 2 a x.y + a^2 |y|^2 (no B x N x D tensor).
            cross = flat @ block.T
            d2 = flat.square().sum(1, keepdim=True) - 2 * alpha * cross
            d2 = (d2 + alpha.square() * block.square().sum(1)[None]).clamp(min=0)
            logits = -d2 / (2 * t64.square())
            new_top = torch.maximum(top, logits.max(dim=1, keepdim=True).values)
            scale = torch.exp(top - new_top)
            w = torch.exp(logits - new_top)
            norm = norm * scale + w.sum(dim=1, keepdim=True)
            acc = acc * scale + w @ block
            top = new_top
        return (acc / norm).reshape(x.shape).to(x.dtype)


def analytic_teacher(data: Tensor, chunk: int = 4096) -> Model:
    """The exact rectified-flow model of ``data`` (x0 prediction on ``paths.Linear()``)."""
    return Model(AnalyticFlow(data, chunk), Linear(), predicts="x0")


def teacher_hash(model: Model) -> str:
    """sha256 of what determines a teacher's predictions: the network's class, the path's
    config, the prediction kind and every parameter and buffer (name, shape, dtype, bytes)."""
    if not isinstance(model, Model):
        raise UserError(f"a teacher must be an interpolant Model, got {type(model).__name__}")
    h = hashlib.sha256()
    header = {
        "net": type(model.net).__qualname__,
        "path": model.path.config(),
        "predicts": model.predicts,
    }
    h.update(json.dumps(header, sort_keys=True, default=str).encode())
    if isinstance(model.net, nn.Module):
        for name, tensor in sorted(model.net.state_dict().items()):
            h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    else:
        raise UserError(
            "teacher_hash needs a Model whose net is an nn.Module (a plain function has no "
            "weights to fingerprint); wrap it in an nn.Module"
        )
    return h.hexdigest()
