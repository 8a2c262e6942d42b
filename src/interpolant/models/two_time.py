"""A second time input for any registered backbone: ``net(x, t, gap=g, **cond)``.

MeanFlow (Geng et al. 2025) trains u(z_t, r, t), the average velocity over [r, t], and feeds the
network (t, t - r); shortcut models (Frans et al. 2024) feed (t, d), d the step size. Both are
a backbone with a second scalar embedded next to t. :class:`TwoTime` builds any registered
backbone whose time embedding is a :class:`~.layers.TimestepEmbedding` called ``time_embed``
(``mlp``, ``unet``, ``dit``, ``mmdit``) and replaces that embedding by
:class:`TwoTimeEmbedding`: e(t, g) = E_t(t) + E_g(g), the sum the MeanFlow code uses, with E_g's
output layer zero-initialised. So at initialisation the two-time network equals the backbone
at every gap, and a trained one-time flow of the same architecture loads into it unchanged
(:meth:`TwoTime.load_backbone`): the student starts as the teacher.

**The gap when none is given.** The sampling loop calls the network with (x, t) only. With
``steps`` K in the config, the default gap is the distance from t down to the uniform K-step
grid {0, 1/K, ..., 1}: g(t) = t - (ceil(K t) - 1) / K (g = 1/K on the grid's nodes, where
a float32 t is read to within 1e-3 of a step). Then an Euler step of the run's K-step uniform
sampler, x - (t - r) u(x, t, t - r), is exactly MeanFlow's / the shortcut model's K-step
update. On another grid a node's gap still reaches the K-grid node below it, which is not the
step the solver takes: sample such a network with its run's K-step uniform Euler sampler (what
``interpolant distill`` writes), or call it with an explicit ``gap``. Without ``steps`` the
default gap is 0: the instantaneous velocity, an ordinary flow.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UserError
from .layers import Backbone, TimestepEmbedding, time_batch

#: Fraction of a grid step within which a float32 t counts as a node of the K-step grid.
GRID_TOLERANCE = 1e-3


class TwoTimeEmbedding(TimestepEmbedding):
    """E_t(t) + E_g(g): the backbone's own time embedding (same parameter names ``fc1``,
    ``fc2``) plus a second one of the gap, whose output layer starts at zero. The gap of the
    current call is set by :class:`TwoTime` around the backbone's forward."""

    def __init__(self, dim: int, freq_dim: int, time_scale: float) -> None:
        super().__init__(dim, freq_dim=freq_dim, time_scale=time_scale)
        self.gap_fc1 = nn.Linear(freq_dim, dim)
        self.gap_fc2 = nn.Linear(dim, dim)
        nn.init.zeros_(self.gap_fc2.weight)
        nn.init.zeros_(self.gap_fc2.bias)
        self.gap: Tensor | None = None

    @classmethod
    def replacing(cls, embedding: TimestepEmbedding) -> TwoTimeEmbedding:
        """A two-time embedding holding ``embedding``'s weights for t."""
        new = cls(embedding.fc2.out_features, embedding.fc1.in_features, embedding.time_scale)
        new.fc1.load_state_dict(embedding.fc1.state_dict())
        new.fc2.load_state_dict(embedding.fc2.state_dict())
        return new.to(embedding.fc1.weight.dtype)

    def forward(self, t: Tensor) -> Tensor:
        if self.gap is None:
            raise UserError("TwoTimeEmbedding is called by TwoTime, which sets the gap first")
        h = self.sinusoidal(self.gap).to(self.gap_fc1.weight.dtype)
        gap_emb = self.gap_fc2(torch.nn.functional.silu(self.gap_fc1(h)))
        return super().forward(t) + gap_emb


class TwoTime(Backbone):
    """``net(x, t, gap=None, **cond)``: a registered backbone with a second time input.

    Args:
        backbone: the backbone's config, ``{"name": "mlp", "dim": 2, ...}`` (as
            ``models.model_config`` gives it); its embedding must be ``time_embed``.
        steps: K of the uniform K-step grid that sets the default gap (module docstring);
            None: the default gap is 0.

    ``gap`` is a float or a (B,) tensor of t - r >= 0; conditioning (``class_labels``, ...) goes
    to the backbone.
    """

    registry_name = "two-time"

    def __init__(self, backbone: dict[str, Any], steps: int | None = None) -> None:
        super().__init__()
        from . import build_model  # the registry imports this module

        if not isinstance(backbone, dict) or "name" not in backbone:
            raise UserError(
                f"two-time backbone needs backbone={{'name': ..., **kwargs}}, got {backbone!r}"
            )
        if steps is not None and not (isinstance(steps, int) and steps >= 1):
            raise UserError(f"two-time steps must be a positive integer or None, got {steps!r}")
        self._save_config(backbone=dict(backbone), steps=steps)
        spec = dict(backbone)
        name = str(spec.pop("name"))
        if name.lower() == self.registry_name:
            raise UserError("a two-time backbone cannot wrap another two-time backbone")
        self.backbone = build_model(name, **spec)
        embedding = getattr(self.backbone, "time_embed", None)
        if not isinstance(embedding, TimestepEmbedding):
            raise UserError(
                f"backbone {name!r} has no TimestepEmbedding 'time_embed' to add a second time "
                "to; use mlp, unet, dit or mmdit"
            )
        self.backbone.time_embed = TwoTimeEmbedding.replacing(embedding)
        self.steps = steps

    @property
    def embedding(self) -> TwoTimeEmbedding:
        """The backbone's two-time embedding (registered once, under the backbone)."""
        embedding = self.backbone.time_embed
        assert isinstance(embedding, TwoTimeEmbedding)
        return embedding

    def default_gap(self, t: Tensor) -> Tensor:
        """t minus the node of the uniform ``steps``-grid below t (0 without ``steps``)."""
        if self.steps is None:
            return torch.zeros_like(t)
        k = float(self.steps)
        below = (torch.ceil(t.double() * k - GRID_TOLERANCE) - 1.0).clamp(min=0.0) / k
        return (t.double() - below).clamp(min=0.0).to(t.dtype)

    def forward(
        self, x: Tensor, t: Tensor, gap: Tensor | float | None = None, **cond: Any
    ) -> Tensor:
        t = time_batch(t, x)
        if gap is None:
            g = self.default_gap(t)
        else:
            g = torch.as_tensor(gap, device=t.device).to(t.dtype).expand(t.shape[0])
        self.embedding.gap = g
        try:
            out: Tensor = self.backbone(x, t, **cond)
        finally:
            self.embedding.gap = None
        return out

    def load_backbone(self, state: dict[str, Tensor]) -> None:
        """Load a one-time backbone's state dict (a trained flow of the same architecture); the
        gap embedding keeps its (zero-output) initialisation."""
        mine = self.backbone.state_dict()
        wrong = [k for k, v in state.items() if k in mine and mine[k].shape != v.shape]
        if wrong:
            raise UserError(
                f"the backbone's weights do not fit this two-time network: {wrong[:4]} have "
                "other shapes (same architecture needed)"
            )
        missing, unexpected = self.backbone.load_state_dict(state, strict=False)
        extra = [k for k in missing if not k.startswith("time_embed.gap_")]
        if extra or unexpected:
            raise UserError(
                "the backbone's weights do not fit this two-time network: missing "
                f"{extra[:4]}, unexpected {list(unexpected)[:4]} (same architecture needed)"
            )
