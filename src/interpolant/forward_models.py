"""Observation-space diffusion with a known forward model (DFM, Tewari et al. 2023).

The signal S (a scene, a full image) is never observed; only observations O = F(S, phi) from
a known differentiable forward model F at views phi. Training tuples are (O_c, phi_c, O_g, phi_g)
of one signal: a context and a target view. The diffusion state lives in observation space,
the network's output in signal space, and F couples them (the paper's ``pred_x0`` objective):

    O_t = alpha(t) O_g + sigma(t) eps                                  (noise the target view)
    S   = signal_net(O_t, t, context=O_c, context_view=phi_c, target_view=phi_g)
    L   = w(t) |F(S, phi_g) - O_g|^2 / D + lambda_c |F(S, phi_c) - O_c|^2 / D

(``|.|^2 / D``: the mean over the observation's entries). Sampling runs the library's one loop
on O with the x0-prediction ``F(signal_net(O, t, ...), phi_g)`` and returns the signal itself,
``signal_net(O_0, 0, ...)`` at the sample O_0 (one more network evaluation, counted in ``nfe``).

For a Gaussian signal and linear views the optimal network is E[S | O_t, O_c] in closed form
(:class:`GaussianSignalNet`): its rendered x0-prediction is E[O_g | O_t, O_c], so sampling with
it draws O_g from p(O_g | O_c) exactly, and when the two views determine S the returned signal
is an exact draw of p(S | O_c). Forward models are the measurement operators of
``inverse.operators`` (masks, blur, projections: one per view) or any differentiable callable
``render(S, view)``; one that does not pass gradients to the signal is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import UserError, WrongTypeError
from .inverse.base import Operator
from .inverse.operators import Inpaint, as_matrix
from .losses.time import TimeSampler, get_time_sampler
from .losses.weights import Weighting, get_weighting
from .models.layers import TimestepEmbedding
from .paths import GaussianPath
from .predictions import Model
from .solvers import Sampler, SampleResult, sample

Render = Callable[[Tensor, Tensor], Tensor]


class ForwardModel:
    """A known differentiable renderer ``F(S, view) -> O`` over a family of views.

    Args:
        render: one :class:`~interpolant.inverse.base.Operator` per view (views are then the
            integer indices (B,) into the list; all must share x_shape and y_shape), or a
            callable ``render(signal, view)`` for views of any form (poses, ...).
        signal_shape: the shape of one signal (taken from the operators when not given).
        probe_views: views (a batch) used to check a callable is differentiable (default: the
            view 0).
    """

    def __init__(
        self,
        render: Sequence[Operator] | Render,
        signal_shape: Sequence[int] | None = None,
        probe_views: Tensor | None = None,
    ) -> None:
        self.operators: tuple[Operator, ...] = ()
        if callable(render) and not isinstance(render, Operator):
            if signal_shape is None:
                raise UserError("ForwardModel: a callable render needs signal_shape")
            self._render = render
        else:
            if isinstance(render, Operator):
                render = [render]
            ops = tuple(render)
            if not ops or not all(isinstance(op, Operator) for op in ops):
                raise WrongTypeError("ForwardModel needs operators (one per view) or a callable")
            shapes = {(tuple(op.x_shape), tuple(getattr(op, "y_shape", ()))) for op in ops}
            if len(shapes) != 1:
                raise UserError(
                    f"ForwardModel: every view must map the same signal shape to the same "
                    f"observation shape, got (x_shape, y_shape) {sorted(shapes)}"
                )
            self.operators = ops
            signal_shape = ops[0].x_shape if signal_shape is None else signal_shape
            probe_views = torch.arange(len(ops)) if probe_views is None else probe_views
        self.signal_shape = tuple(int(s) for s in signal_shape)
        if probe_views is None:
            probe_views = torch.zeros(1, dtype=torch.long)
        self._check_differentiable(probe_views)

    @property
    def n_views(self) -> int | None:
        """The number of views of an operator family (None for a callable)."""
        return len(self.operators) or None

    def render(self, signal: Tensor, view: Tensor) -> Tensor:
        """F(S, view) for a batch of signals (B, *signal_shape) and views (B, ...)."""
        if tuple(signal.shape[1:]) != self.signal_shape:
            raise UserError(
                f"signal must have shape (B, *{self.signal_shape}), got {tuple(signal.shape)}"
            )
        if not self.operators:
            return self._render(signal, view)
        view = torch.as_tensor(view, device=signal.device).long().reshape(-1)
        if view.shape[0] != signal.shape[0]:
            raise UserError(f"{view.shape[0]} views for {signal.shape[0]} signals")
        if int(view.min()) < 0 or int(view.max()) >= len(self.operators):
            raise UserError(
                f"views must be indices in [0, {len(self.operators)}), got "
                f"{int(view.min())}..{int(view.max())}"
            )
        out: Tensor | None = None
        for k in view.unique().tolist():
            rows = (view == k).nonzero().flatten()
            part = self.operators[k](signal[rows])
            if out is None:
                out = signal.new_zeros((signal.shape[0], *part.shape[1:]))
            out = out.index_copy(0, rows, part)
        assert out is not None
        return out

    __call__ = render

    def _check_differentiable(self, views: Tensor) -> None:
        """Refuse a forward model that does not pass gradients back to the signal."""
        views = torch.as_tensor(views)
        gen = torch.Generator().manual_seed(0)
        probe = torch.randn(views.shape[0], *self.signal_shape, generator=gen)
        probe.requires_grad_(True)
        with torch.enable_grad():
            out = self.render(probe, views)
            grad = None
            if isinstance(out, Tensor) and out.requires_grad:
                grad = torch.autograd.grad(out.square().sum(), probe, allow_unused=True)[0]
        if grad is None or not bool(grad.abs().sum() > 0):
            raise UserError(
                "the forward model passes no gradient to the signal (it detaches it, e.g. "
                ".detach(), .numpy() or torch.no_grad()): observation-space diffusion trains the "
                "signal network only through F(S, view), so F must be differentiable in S"
            )


def mask_views(masks: Tensor) -> ForwardModel:
    """Views that are 0/1 masks of the signal: view k renders ``masks[k] * S`` (``Inpaint``)."""
    masks = torch.as_tensor(masks)
    if masks.ndim < 2:
        raise UserError(f"masks must have shape (views, *signal_shape), got {tuple(masks.shape)}")
    return ForwardModel([Inpaint(m) for m in masks])


def digit_views() -> Tensor:
    """The eight views of the digits task (seed 20's note), masks of shape (8, 64) on 8x8:
    the top, bottom, left and right halves, and the complements of the four quadrants."""
    grid = torch.zeros(8, 8, 8, dtype=torch.float64)
    grid[0, :4], grid[1, 4:], grid[2, :, :4], grid[3, :, 4:] = 1, 1, 1, 1
    for q, (r, c) in enumerate(((0, 0), (0, 4), (4, 0), (4, 4))):
        grid[4 + q] = 1
        grid[4 + q, r : r + 4, c : c + 4] = 0
    return grid.reshape(8, 64)


# ----------------------------------------------------------------------------------------------
# The objective.


@dataclass(frozen=True)
class ViewBatch:
    """One batch of training tuples (or a sampling request): the target observation (None when
    sampling), the target views, the context observation and its views."""

    target_view: Tensor
    context: Tensor
    context_view: Tensor
    target: Tensor | None = None

    def cond(self) -> dict[str, Tensor]:
        """What the signal network receives besides (O_t, t)."""
        return {
            "context": self.context,
            "context_view": self.context_view,
            "target_view": self.target_view,
        }


class ObservationDiffusion:
    """The observation-space denoising loss of DFM (see the module; the paper's eq. 5).

    Args:
        path: the Gaussian path of the target observation.
        forward: the :class:`ForwardModel` (or the operators / callable to build one).
        context_weight: lambda_c, the weight of the context render's error.
        time: the time sampler (default U[0, 1]).
        weight: the weighting w(t) of the target render's error, in x0 space (the render is the
            x0 prediction); default uniform, "snr", "min-snr-5", ... as for ``Objective``.
    """

    def __init__(
        self,
        path: GaussianPath,
        forward: ForwardModel | Sequence[Operator] | Render,
        context_weight: float = 1.0,
        time: TimeSampler | str | dict[str, Any] | None = None,
        weight: Weighting | str | dict[str, Any] | None = "uniform",
    ) -> None:
        if not isinstance(path, GaussianPath):
            raise WrongTypeError(f"path must be a GaussianPath, got {type(path).__name__}")
        if not math.isfinite(context_weight) or context_weight < 0:
            raise UserError(f"context_weight must be a finite number >= 0, got {context_weight}")
        self.path = path
        self.forward = forward if isinstance(forward, ForwardModel) else ForwardModel(forward)
        self.context_weight = float(context_weight)
        self.time = get_time_sampler(time).with_path(path)
        self.weight = get_weighting(weight)

    def signal(self, net: Callable[..., Tensor], x_t: Tensor, t: Tensor, batch: ViewBatch):
        """S = signal_net(O_t, t, context=..., context_view=..., target_view=...), checked."""
        out = net(x_t, t, **batch.cond())
        shape = (x_t.shape[0], *self.forward.signal_shape)
        if not isinstance(out, Tensor) or tuple(out.shape) != shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise UserError(f"the signal network returned {got}, expected signals of {shape}")
        return out

    def per_sample_loss(
        self,
        net: Callable[..., Tensor],
        batch: ViewBatch,
        generator: torch.Generator | None = None,
        *,
        t: Tensor | None = None,
        eps: Tensor | None = None,
    ) -> Tensor:
        """w(t) mean (F(S, phi_g) - O_g)^2 + lambda_c mean (F(S, phi_c) - O_c)^2, shape (B,)."""
        target = batch.target
        if target is None or target.ndim < 1 or target.shape[0] == 0:
            raise UserError("the loss needs target observations of shape (batch, ...)")
        n = target.shape[0]
        if batch.context.shape[0] != n:
            raise UserError(f"{batch.context.shape[0]} contexts for {n} targets")
        t = self.time.sample(n, generator) if t is None else t
        if t.shape != (n,):
            raise UserError(f"t must have shape ({n},), got {tuple(t.shape)}")
        dtype = target.dtype if target.dtype in (torch.float32, torch.float64) else torch.float32
        t = t.to(device=target.device, dtype=dtype)
        eps = self.path.noise_like(target, generator) if eps is None else eps
        x_t = self.path.sample_xt(target, t, eps)
        signal = self.signal(net, x_t, t, batch)
        rendered = self.forward.render(signal, batch.target_view)
        w = self.weight(self.path, t, "x0").to(target.dtype)
        loss = w * (rendered - target).square().flatten(1).mean(1)
        if self.context_weight:
            context = self.forward.render(signal, batch.context_view)
            loss = loss + self.context_weight * (context - batch.context).square().flatten(1).mean(
                1
            )
        return loss

    def loss(self, net: Callable[..., Tensor], batch: ViewBatch, generator=None, **kw) -> Tensor:
        """The batch mean of :meth:`per_sample_loss`."""
        return self.per_sample_loss(net, batch, generator, **kw).mean()

    __call__ = loss

    def model(self, net: Callable[..., Tensor]) -> Model:
        """The x0-prediction model of the observation diffusion: F(signal_net(O, t, ...), phi_g)
        (the conditioning arrives through the sampling loop's ``cond``)."""
        return Model(RenderedSignal(net, self.forward), self.path, predicts="x0")


class RenderedSignal(nn.Module):
    """``net(O, t, **cond)`` rendered at the target view: the x0-prediction in observation space."""

    def __init__(self, net: Callable[..., Tensor], forward: ForwardModel) -> None:
        super().__init__()
        self.net, self.forward_model = net, forward

    def forward(self, x: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        return self.forward_model.render(self.net(x, t, **cond), cond["target_view"])


@dataclass
class SignalSample:
    """What :func:`sample_signal` returns: the signals, their target observations, the NFE per
    sample (the loop's and the final signal evaluation) and the loop's result."""

    signal: Tensor
    observation: Tensor
    nfe: int
    result: SampleResult


def sample_signal(
    objective: ObservationDiffusion,
    net: Callable[..., Tensor],
    noise: Tensor,
    batch: ViewBatch,
    sampler: Sampler | None = None,
    **options: Any,
) -> SignalSample:
    """Sample O_g ~ p(O_g | O_c) with the library's loop (any solver; DFM used DDIM) and return
    the signal S = signal_net(O_0, t_end, ...) at the final observation."""
    model = objective.model(net)
    result = sample(model, noise, sampler, cond=batch.cond(), **options)
    t_end = torch.full((noise.shape[0],), float(result.grid[-1]), dtype=result.x.dtype)
    signal = objective.signal(net, result.x, t_end.to(result.x.device), batch)
    return SignalSample(signal, result.x, result.nfe + 1, result)


# ----------------------------------------------------------------------------------------------
# The closed-form optimum for a Gaussian signal and linear views.


class GaussianSignalNet(nn.Module):
    """E[S | O_t, O_c] for S ~ N(mean, cov) and linear views (operators): the exact minimiser of
    :class:`ObservationDiffusion`'s loss (any lambda_c > 0 and w > 0).

    With A_g, A_c the views' matrices, y = [O_t; O_c] = B S + n, B = [alpha A_g; A_c] and
    Cov(n) = diag(sigma^2 I, 0):  E[S | y] = mu + Sigma B^T (B Sigma B^T + R)^+ (y - B mu)
    (pseudo-inverse: mask views have zero rows). :meth:`posterior_cov` is Cov(S | y).
    """

    def __init__(
        self, mean: Tensor, cov: Tensor, forward: ForwardModel, path: GaussianPath
    ) -> None:
        super().__init__()
        if not forward.operators:
            raise UserError("GaussianSignalNet needs a forward model of linear operators")
        self.mean = mean.to(torch.float64).flatten()
        self.cov = cov.to(torch.float64)
        self.matrices = torch.stack([as_matrix(op) for op in forward.operators])
        self.path = path
        self.signal_shape = forward.signal_shape

    def _system(self, t: Tensor, target_view: Tensor, context_view: Tensor):
        """(B, gain) per sample, solved once per distinct (t, target view, context view)."""
        keys = torch.stack(
            [t.double(), target_view.double().reshape(-1), context_view.double().reshape(-1)], 1
        )
        unique, inverse = keys.unique(dim=0, return_inverse=True)
        b, gain = self._solve(unique[:, 0], unique[:, 1].long(), unique[:, 2].long())
        return b[inverse], gain[inverse]

    def _solve(self, t: Tensor, target_view: Tensor, context_view: Tensor):
        t = t.to(torch.float64)
        alpha, sigma = self.path.alpha(t).reshape(-1, 1, 1), self.path.sigma(t).reshape(-1)
        a_g = self.matrices[target_view.long().reshape(-1).cpu()]
        a_c = self.matrices[context_view.long().reshape(-1).cpu()]
        b = torch.cat([alpha * a_g, a_c], dim=1)  # (B, 2m, d)
        m = a_g.shape[1]
        noise = torch.cat([sigma[:, None].expand(-1, m) ** 2, torch.zeros(len(sigma), m)], 1)
        k = b @ self.cov @ b.transpose(1, 2) + torch.diag_embed(noise)
        gain = self.cov @ b.transpose(1, 2) @ torch.linalg.pinv(k, hermitian=True)
        return b, gain

    def forward(
        self, x: Tensor, t: Tensor, context: Tensor, context_view: Tensor, target_view: Tensor
    ) -> Tensor:
        t = t.reshape(-1).expand(x.shape[0]).cpu()
        b, gain = self._system(t, target_view, context_view)
        y = torch.cat([x.flatten(1), context.flatten(1)], 1).cpu().double()
        out = self.mean + (gain @ (y - b @ self.mean)[:, :, None])[:, :, 0]
        return out.reshape(x.shape[0], *self.signal_shape).to(device=x.device, dtype=x.dtype)

    def posterior_cov(self, t: Tensor, target_view: Tensor, context_view: Tensor) -> Tensor:
        """Cov(S | O_t, O_c) per sample, (B, d, d)."""
        b, gain = self._system(t.double().cpu(), target_view, context_view)
        return self.cov - gain @ b @ self.cov


# ----------------------------------------------------------------------------------------------
# A small network for mask views on flat signals (the digits task).


class MaskedViewNet(nn.Module):
    """Signal network for mask views of a flat signal (seed 20's CPU task): a residual MLP on
    ``[O_c, m_c, m_g * O_t, m_g]`` with a sinusoidal embedding of t added to every block,
    outputting S. ``use_noisy_target=False`` zeroes O_t: the deterministic baseline (same
    network and loss, no diffusion input)."""

    def __init__(
        self, masks: Tensor, width: int = 256, depth: int = 4, use_noisy_target: bool = True
    ) -> None:
        super().__init__()
        masks = torch.as_tensor(masks, dtype=torch.float32)
        if masks.ndim != 2:
            raise UserError(f"masks must have shape (views, dim), got {tuple(masks.shape)}")
        self.masks: Tensor
        self.register_buffer("masks", masks, persistent=False)
        dim = masks.shape[1]
        self.use_noisy_target = use_noisy_target
        self.time_embed = TimestepEmbedding(width, freq_dim=2 * max(1, width // 2))
        self.inp = nn.Linear(4 * dim, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(),
                          nn.Linear(width, width))
            for _ in range(depth)
        )  # fmt: skip
        self.out = nn.Linear(width, dim)

    def forward(
        self, x: Tensor, t: Tensor, context: Tensor, context_view: Tensor, target_view: Tensor
    ) -> Tensor:
        m_c = self.masks[context_view.long()].to(x.dtype)
        m_g = self.masks[target_view.long()].to(x.dtype)
        noisy = m_g * x if self.use_noisy_target else torch.zeros_like(x)
        h = self.inp(torch.cat([context * m_c, m_c, noisy, m_g], dim=1))
        emb = self.time_embed(t.reshape(-1).expand(x.shape[0]).to(x.dtype))
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(F.silu(h))


__all__ = [
    "ForwardModel",
    "GaussianSignalNet",
    "MaskedViewNet",
    "ObservationDiffusion",
    "RenderedSignal",
    "SignalSample",
    "ViewBatch",
    "digit_views",
    "mask_views",
    "sample_signal",
]
