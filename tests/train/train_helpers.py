"""Tiny models, data and configs shared by the trainer tests (and their subprocess scripts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from interpolant import Model, paths
from interpolant.losses import Objective
from interpolant.train import TrainConfig


class TinyNet(nn.Module):
    """A two-layer MLP velocity field with dropout (so the global RNG state matters) and an
    optional label embedding."""

    def __init__(self, dim: int = 2, width: int = 16, num_classes: int = 3, dropout: float = 0.1):
        super().__init__()
        self.inp = nn.Linear(dim + 1, width)
        self.label = nn.Embedding(num_classes, width)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(width, dim)

    def forward(self, x: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        h = self.inp(torch.cat([x, t[:, None].to(x.dtype)], dim=1))
        if class_labels is not None:
            h = h + self.label(class_labels)
        return self.out(self.drop(torch.tanh(h)))


def make_model(width: int = 16, seed: int = 0) -> Model:
    torch.manual_seed(seed)
    return Model(TinyNet(width=width), paths.Linear(), predicts="velocity")


def make_objective() -> Objective:
    return Objective(paths.Linear(), target="velocity")


def make_data(n: int = 40, seed: int = 0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=gen)
    x = 0.5 * torch.randn(n, 2, generator=gen) + labels[:, None].float()
    return x, labels


def make_config(run_dir: str | Path, **changes: Any) -> TrainConfig:
    base: dict[str, Any] = dict(
        run_dir=str(run_dir),
        device="cpu",
        steps=8,
        batch_size=16,
        lr=1e-2,
        lr_warmup_steps=2,
        grad_clip=1.0,
        ema="halflife",
        ema_halflife_kimg=0.04,
        log_every=2,
        checkpoint_every=4,
        keep_checkpoints=10,
        progress=False,
    )
    base.update(changes)
    return TrainConfig.from_dict(base)


def state_of(trainer: Any) -> dict[str, Tensor]:
    """Model, EMA and optimiser tensors of a trainer, flat, as CPU copies."""
    from interpolant.train import state as st

    out = {f"model/{k}": v.clone() for k, v in st.model_state(trainer.module).items()}
    if trainer.ema is not None:
        out.update({f"ema/{k}": v.clone() for k, v in st.ema_state(trainer.ema.shadow).items()})
    if trainer.posthoc is not None:
        out.update({f"posthoc/{k}": v.clone() for k, v in trainer.posthoc.state().items()})
    for name, slots in st.optimizer_state(trainer.module, trainer.optimizer).items():
        out.update({f"optim/{name}.{s}": v.clone() for s, v in slots.items()})
    return out


def assert_same(a: dict[str, Tensor], b: dict[str, Tensor], atol: float = 0.0) -> None:
    """Equal keys and values (bitwise when atol = 0)."""
    assert sorted(a) == sorted(b)
    for key in a:
        if atol == 0.0:
            assert torch.equal(a[key], b[key]), f"{key} differs by {(a[key] - b[key]).abs().max()}"
        else:
            torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0.0, msg=key)
