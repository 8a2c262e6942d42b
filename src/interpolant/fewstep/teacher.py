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

    With ``labels`` it is class-conditional: called with ``class_labels`` (B,), row b's
    posterior runs over the points of class ``class_labels[b]`` only (the exact flow of that
    class's empirical distribution); without ``class_labels``, over all points.

    Args:
        data: (N, ...) the data points (kept as a buffer, so they are part of the hash).
        chunk: data rows per block of the log-sum-exp (memory N x B per block).
        labels: optional (N,) integer class of each point (a buffer too, hashed).
    """

    data: Tensor
    labels: Tensor | None

    def __init__(self, data: Tensor, chunk: int = 4096, labels: Tensor | None = None) -> None:
        super().__init__()
        if not isinstance(data, Tensor) or data.ndim < 2 or data.shape[0] < 1:
            raise UserError("AnalyticFlow needs a data tensor of shape (N, ...) with N >= 1")
        self.register_buffer("data", data.detach().to(torch.float64).flatten(1).clone())
        if labels is not None:
            if labels.shape != (data.shape[0],) or labels.is_floating_point():
                raise UserError(
                    f"AnalyticFlow labels must be (N,) = ({data.shape[0]},) integers, got "
                    f"{tuple(labels.shape)} {labels.dtype}"
                )
            self.register_buffer("labels", labels.detach().to(torch.int64).clone())
        else:
            self.labels = None
        self.shape = tuple(data.shape[1:])
        self.chunk = int(chunk)

    def forward(self, x: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        flat = x.to(torch.float64).flatten(1)
        if flat.shape[1] != self.data.shape[1]:
            raise UserError(
                f"the analytic teacher's data have {self.data.shape[1]} features per sample, "
                f"x has {flat.shape[1]}"
            )
        if class_labels is not None and self.labels is None:
            raise UserError("class_labels given, but this AnalyticFlow was built without labels")
        if class_labels is not None and self.labels is not None:
            absent = sorted(set(class_labels.tolist()) - set(self.labels.tolist()))
            if absent:
                raise UserError(f"the analytic teacher has no data points of classes {absent}")
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
            if class_labels is not None and self.labels is not None:
                # Class-conditional: only the points of row b's class enter its posterior.
                same = class_labels.to(x.device)[:, None] == self.labels[start : start + self.chunk]
                logits = logits.masked_fill(~same.to(x.device), -torch.inf)
            new_top = torch.maximum(top, logits.max(dim=1, keepdim=True).values)
            # A block without a point of the row's class leaves -inf; exp(-inf - -inf) = nan.
            finite = torch.where(torch.isfinite(new_top), new_top, torch.zeros_like(new_top))
            scale = torch.exp(top - finite)
            w = torch.exp(logits - finite)
            norm = norm * scale + w.sum(dim=1, keepdim=True)
            acc = acc * scale + w @ block
            top = new_top
        return (acc / norm).reshape(x.shape).to(x.dtype)


def analytic_teacher(data: Tensor, chunk: int = 4096, labels: Tensor | None = None) -> Model:
    """The exact rectified-flow model of ``data`` (x0 prediction on ``paths.Linear()``);
    class-conditional with ``labels`` (see :class:`AnalyticFlow`)."""
    return Model(AnalyticFlow(data, chunk, labels), Linear(), predicts="x0")


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
