"""Diffusion features for classification (Mukhopadhyay et al. 2023, "Diffusion Models Beat GANs
on Image Classification").

A frozen denoiser is run on noised inputs x_t = alpha(t) x + sigma(t) eps and the activations of
named layers are read with forward hooks (no hard-coded block numbers: any module name of
``net.named_modules()``), pooled and averaged over ``n_noise`` noise draws:

    f_layer(x) = (1 / n_noise) sum_k pool(act_layer(alpha(t) x + sigma(t) eps_k, t)).

A linear probe (logistic regression) on f at one (t, layer) is the paper's protocol; the
accuracy over a grid of (t, layer) is its key figure (an inverted U in t: small non-zero noise
is best). Noise draws are per sample (``randomness``), so features do not depend on the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import MissingDependencyError, UserError
from ..predictions import Model
from ..randomness import normal


def _pool(act: Tensor, pool: int) -> Tensor:
    """(B, C, H, W) maps -> adaptive average pool to pool x pool; (B, N, C) tokens -> mean over
    tokens; (B, F) as is; flattened to (B, features)."""
    if act.ndim == 4:
        return F.adaptive_avg_pool2d(act, pool).flatten(1)
    if act.ndim == 3:
        return act.mean(dim=1)
    return act.flatten(1)


def layer_names(net: nn.Module) -> list[str]:
    """The names ``diffusion_features`` accepts (every named submodule)."""
    return [name for name, _ in net.named_modules() if name]


def diffusion_features(
    model: Model,
    x: Tensor,
    t: float,
    layers: Sequence[str],
    *,
    pool: int = 2,
    n_noise: int = 1,
    seed: int = 0,
    index: Sequence[int] | Tensor | None = None,
    cond: dict[str, Any] | None = None,
    batch_size: int = 512,
) -> dict[str, Tensor]:
    """Features of ``x`` at noise level ``t`` from each named layer: {layer: (B, F)}.

    ``index`` numbers the samples for their noise draws (default 0..B-1); ``n_noise`` draws per
    sample are averaged. t = 0 feeds the clean input (no noise is drawn)."""
    net = model.net
    if not isinstance(net, nn.Module):
        raise UserError(
            f"diffusion_features reads layers of an nn.Module, got {type(net).__name__}"
        )
    modules = dict(net.named_modules())
    unknown = [name for name in layers if name not in modules or not name]
    if unknown:
        names = layer_names(net)
        shown = ", ".join(names[:25]) + (" ..." if len(names) > 25 else "")
        raise UserError(f"the network has no layer {unknown}; its layers are: {shown}")
    if not 0 <= t <= 1:
        raise UserError(f"t must be in [0, 1], got {t}")
    if n_noise < 1:
        raise UserError(f"n_noise must be >= 1, got {n_noise}")
    rows = torch.arange(x.shape[0]) if index is None else torch.as_tensor(index)
    if rows.shape != (x.shape[0],):
        raise UserError(f"index must have {x.shape[0]} entries, got {tuple(rows.shape)}")
    captured: dict[str, Tensor] = {}
    hooks = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(
                name, out[0] if isinstance(out, tuple) else out
            )
        )
        for name in layers
    ]
    out: dict[str, list[Tensor]] = {name: [] for name in layers}
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                chunk, idx = x[start : start + batch_size], rows[start : start + batch_size]
                sums: dict[str, Tensor] = {}
                draws = 1 if t == 0 else n_noise
                for k in range(draws):
                    x_t = chunk
                    if t > 0:
                        eps = normal(chunk.shape[1:], seed, idx, f"features-noise-{k}")
                        eps = eps.to(chunk)
                        tt = torch.full((chunk.shape[0],), float(t), dtype=torch.float64)
                        x_t = model.path.sample_xt(chunk, tt.to(chunk.dtype), eps)
                    tt = torch.full((chunk.shape[0],), float(t), dtype=chunk.dtype)
                    model.call_net(x_t, tt, cond or {})
                    for name in layers:
                        feat = _pool(captured[name], pool).float()
                        sums[name] = feat if k == 0 else sums[name] + feat
                for name in layers:
                    out[name].append(sums[name] / draws)
    finally:
        for hook in hooks:
            hook.remove()
    return {name: torch.cat(parts) for name, parts in out.items()}


def linear_probe_accuracy(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, c: float = 1.0
) -> float:
    """Test accuracy of a logistic-regression probe (standardised features, L2 penalty ``c`` as
    scikit-learn's C) trained on (train_x, train_y)."""
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError as err:
        raise MissingDependencyError(
            "linear probes need scikit-learn: pip install interpolant[all]"
        ) from err
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    probe.fit(train_x.double().numpy(), train_y.numpy())
    return float(probe.score(test_x.double().numpy(), test_y.numpy()))


__all__ = ["diffusion_features", "layer_names", "linear_probe_accuracy"]
