"""Reward-conditioned generation for black-box optimisation (seed paper 1, sec. 5; Yuan et al.
2023, "Reward-directed conditional diffusion"): train a conditional model p(x | r) on (x, reward)
pairs with the condition dropped at random, then sample at a target reward a with CFG.

The network takes the reward as a scalar condition ``net(x, t, reward=None)``: a small MLP embeds
r and adds it to the time embedding; ``reward=None``, or NaN entries, select a learned null
embedding (the unconditional model), so ``CFG(w, null_cond={"reward": None})`` guides it and
``null_cond={"reward": float("nan")}`` allows the batched forward.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError
from ..models.layers import TimestepEmbedding, time_batch
from ..models.mlp import ResidualBlock
from ..paths import GaussianPath
from ..predictions import Model


class RewardMLP(nn.Module):
    """MLP backbone conditioned on a scalar reward, with a null condition for CFG.

    Args:
        dim: features per sample. width, depth: the residual MLP (as ``models.MLP``).
        dropout_prob: probability, in training mode, that a sample's reward is replaced by the
            null embedding (CFG's condition dropout, Ho & Salimans 2022), drawn from torch's
            global RNG (the trainer seeds it per block of samples).
        reward_scale: rewards are divided by it before the embedding (so O(1) inputs).
    """

    def __init__(
        self,
        dim: int,
        width: int = 128,
        depth: int = 3,
        dropout_prob: float = 0.15,
        reward_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if dim < 1 or width < 1 or depth < 0:
            raise UserError(f"need dim >= 1, width >= 1, depth >= 0; got {dim}, {width}, {depth}")
        if not 0.0 <= dropout_prob <= 1.0 or reward_scale <= 0:
            raise UserError("need 0 <= dropout_prob <= 1 and reward_scale > 0")
        self.dim, self.dropout_prob, self.reward_scale = dim, dropout_prob, reward_scale
        self.time_embed = TimestepEmbedding(width, freq_dim=2 * max(1, width // 2))
        self.reward_embed = nn.Sequential(nn.Linear(1, width), nn.SiLU(), nn.Linear(width, width))
        self.null = nn.Parameter(torch.zeros(width))
        self.fc_in = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(ResidualBlock(width, width, True, 0.0) for _ in range(depth))
        self.norm_out = nn.LayerNorm(width)
        self.fc_out = nn.Linear(width, dim)
        nn.init.zeros_(self.fc_out.weight)
        nn.init.zeros_(self.fc_out.bias)

    def embed_reward(self, reward: Tensor | None, batch: int, like: Tensor) -> Tensor:
        """The reward embedding (B, width); None, NaN or dropped entries get the null one."""
        null = self.null.to(like.dtype).expand(batch, -1)
        if reward is None:
            return null
        r = reward.reshape(-1).to(like.dtype)
        if r.shape != (batch,):
            raise UserError(
                f"reward must have {batch} entries (one per sample), got "
                f"shape {tuple(reward.shape)}"
            )
        keep = ~torch.isnan(r)
        if self.training and self.dropout_prob > 0:
            keep = keep & (torch.rand(batch, device=r.device) >= self.dropout_prob)
        emb = self.reward_embed(torch.where(keep, r, 0.0)[:, None] / self.reward_scale)
        return torch.where(keep[:, None], emb, null)

    def forward(self, x: Tensor, t: Tensor, reward: Tensor | None = None) -> Tensor:
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.dim:
            raise UserError(f"x must have {self.dim} features per sample, got {tuple(x.shape)}")
        h_x = x.reshape(x.shape[0], self.dim)
        emb = F.silu(self.time_embed(time_batch(t, x)) + self.embed_reward(reward, x.shape[0], h_x))
        h = self.fc_in(h_x)
        for block in self.blocks:
            h = block(h, emb)
        return self.fc_out(F.silu(self.norm_out(h))).reshape(x.shape)


def train_reward_model(
    data: Tensor,
    rewards: Tensor,
    path: GaussianPath,
    *,
    predicts: str = "eps",
    steps: int = 3000,
    batch_size: int = 256,
    lr: float = 2e-3,
    width: int = 128,
    depth: int = 3,
    dropout_prob: float = 0.15,
    seed: int = 0,
    run_dir: str = "runs/reward_model",
    objective: dict[str, Any] | None = None,
    **config: Any,
) -> Model:
    """Train ``Model(RewardMLP, path, predicts)`` on (data, rewards) with the project's trainer,
    the rewards reaching the network as ``cond={"reward": r}``; returns the model with the EMA
    weights in eval mode. ``rewards`` are standardised by their spread (``reward_scale``).
    Further keyword arguments go to :class:`interpolant.train.TrainConfig`."""
    from ..train import TrainConfig, train

    rewards = rewards.reshape(-1).to(data.dtype)
    if rewards.shape != (data.shape[0],) or bool(torch.isnan(rewards).any()):
        raise UserError(f"rewards must be {data.shape[0]} finite numbers, one per row of data")
    torch.manual_seed(seed)
    net = RewardMLP(
        math.prod(data.shape[1:]), width, depth, dropout_prob, float(rewards.std()) or 1.0
    )
    model = Model(net, path, predicts=predicts)
    cfg = TrainConfig(
        path=path.config(),
        predicts=predicts,
        objective={"target": predicts, **(objective or {})},
        cond_key="reward",
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        run_dir=run_dir,
        **{"progress": False, "checkpoint_every": steps, "log_every": steps, **config},
    )
    trainer = train(cfg, data, rewards, model=model)
    if trainer.ema is not None:
        model.load_state_dict(trainer.averaged_state())
    return model.eval()
