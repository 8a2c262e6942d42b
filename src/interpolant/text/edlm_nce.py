"""EDLM-NCE (seed 19, Xu et al. 2025, sec. 3.3): a residual energy trained by noise-contrastive
estimation on top of a frozen masked-diffusion model.

The corrected denoiser is p_{theta,phi}(x0 | x_t) ∝ p_theta(x0 | x_t) exp(-E_phi(x0, x_t)) (eq. 5).
NCE (Gutmann & Hyvarinen 2010) trains E_phi as a binary classifier whose logit is -E_phi, with
k = 1 noise sample per data sample, as in the official code (``EBM._forward_pass_diffusion``):

* x0+ ~ data, t ~ U(0, 1] (stratified), x_t ~ q(x_t | x0+) (the masking forward process);
* x0- ~ p_theta(. | x_t), the factorised proposal with visible tokens carried over (SUBS), drawn
  by :func:`interpolant.text.edlm.draw_proposals`, the proposal the importance sampler uses;
* loss (eq. 8) = -log sigma(-E(x0+, x_t)) - log sigma(E(x0-, x_t))
               = softplus(E+) + softplus(-E-).

For each x_t the pointwise minimiser of the expected loss is sigma(E) = q / (p + q), i.e.

    E*(x0, x_t) = log p_theta(x0 | x_t) - log p_data(x0 | x_t),

so p_theta exp(-E*) = p_data(x0 | x_t) exactly (normalised, no free constant): the NCE optimum is
EDLM-AR with the true law, E_AR = -log p(x0) + log p_theta(x0 | x_t), shifted by log p(x_t's
visible tokens), which the importance weights ignore.

The energy network (:class:`EnergyTransformer`) follows the official one: the embeddings of x_t
and x0 (one shared table over V + 1 ids) are concatenated and projected (``vocab_proj``), passed
through bidirectional rotary blocks (:class:`interpolant.text.models.Block`), mean-pooled and read
out by an MLP head to a scalar. The official network also takes the noise level; for masked
diffusion with an exact or time-agnostic denoiser the optimum E* depends on x_t only (seed 7),
and x_t carries the masking level, so time conditioning is optional here (``time_conditioning``).
The untrained energy is small (weights ~N(0, 0.02^2)), so importance sampling with it is
close to MDLM.

Initialisation (the paper's EDLM-NCE starts from the pretrained diffusion transformer):
:meth:`EnergyTransformer.load_denoiser` copies the embedding, blocks and final norm of a trained
:class:`~interpolant.text.models.DiffusionTransformer` and sets ``vocab_proj`` to ``[I | I]``, so
the initial trunk runs the denoiser's blocks (whose attention has learned which neighbours a
token depends on) on ``embed(x_t) + embed(x0)``. The x0 half must not start at zero: at t = 1
x_t is all masks, and with rotary positions only every position of an all-mask input is the
same, so features of x_t alone carry nothing there (measured: held-out loss after 1000 steps
1.09 with ``[I | I]``, 1.16 with ``[I | 0]``, 1.20 with a random ``vocab_proj``). From scratch, on a
sparse order-2 chain (V 16, L 32), training does not leave the zero energy: the marginals of the
proposal are exact, so a randomly initialised trunk (near-uniform attention) gives the loss no
first-order signal, while the random initial energy costs loss (1.398 > 2 log 2); within ~25
Adam steps the head's ReLUs die (94% of units), the gradient norm falls from 10 to 1e-3 and the
energy is a constant, although the Bayes-optimal energy reaches 0.45 on the same pairs (seed-19
reproduction, ``docs/papers/19-edlm.md``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError, WrongTypeError
from ..paths.discrete import DiscretePath
from ..randomness import Streams, derive_seed
from ..train import TrainConfig, Trainer, as_config
from .base import Denoiser, check_tokens
from .edlm import draw_proposals
from .loop import denoiser_probs
from .losses import stratified_times
from .models import (
    Block,
    DiffusionTransformer,
    _init,
    add_time,
    check_sizes,
    run_blocks,
    time_embedding,
)


class EnergyTransformer(nn.Module):
    """E_phi(x0, x_t, t) -> (B,): a bidirectional rotary transformer over
    ``proj([embed(x_t) ; embed(x0)])``, mean-pooled, MLP head to a scalar (the official EDLM
    energy network, without adaLN; an optional additive embedding of t).

    Args:
        vocab_size: V clean tokens; x_t may hold the mask id V, x0 may not.
        dim, depth, heads, mlp_ratio: trunk size (as :class:`~interpolant.text.models.
            DiffusionTransformer`).
        time_conditioning: add a sinusoidal-MLP embedding of t to every position.
        pool: "mean" (the official network: mean over positions, then the MLP head) or "sum"
            (the MLP head at every position, summed): an extensive energy, like the optimum
            log q - log p, which is a sum of local terms over the masked positions of a Markov
            chain; its gradient does not shrink like 1 / L.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        time_conditioning: bool = False,
        pool: str = "mean",
    ):
        super().__init__()
        if pool not in ("mean", "sum"):
            raise UserError(f"pool must be 'mean' or 'sum', got {pool!r}")
        self.pool = pool
        check_sizes(vocab_size, dim, heads)
        self.vocab_size, self.heads = vocab_size, heads
        self._config: dict[str, Any] = {
            "vocab_size": vocab_size,
            "dim": dim,
            "depth": depth,
            "heads": heads,
            "mlp_ratio": mlp_ratio,
            "time_conditioning": bool(time_conditioning),
            "pool": pool,
        }
        self.embed = nn.Embedding(vocab_size + 1, dim)
        self.vocab_proj = nn.Linear(2 * dim, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, 0.0) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.energy_head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))
        self.time_mlp = time_embedding(dim) if time_conditioning else None
        # Small random init everywhere, the head included: with a zero last layer no gradient
        # reaches the trunk, and the head alone sees unigram features of x0, whose expected
        # NCE gradient vanishes (the proposal's marginals are the data's): a saddle.
        self.apply(_init)

    def forward(self, x0: Tensor, x_t: Tensor, t: Tensor | None = None) -> Tensor:
        check_tokens(x0, self.vocab_size, allow_mask=False)
        check_tokens(x_t, self.vocab_size)
        if x0.shape != x_t.shape:
            raise UserError(f"x0 and x_t must have one shape, got {x0.shape} and {x_t.shape}")
        h = self.vocab_proj(torch.cat([self.embed(x_t), self.embed(x0)], -1))
        h = add_time(h, self.time_mlp, t, "energy")
        h = run_blocks(self.blocks, self.norm, h, self.heads, causal=False)
        if self.pool == "mean":
            return self.energy_head(h.mean(1))[:, 0]
        return self.energy_head(h)[..., 0].sum(1)

    def config(self) -> dict[str, Any]:
        return {"kind": "edlm-energy", **self._config}

    @torch.no_grad()
    def load_denoiser(self, denoiser: DiffusionTransformer) -> EnergyTransformer:
        """Initialise the trunk from a trained masked-diffusion transformer (EDLM-NCE starts from
        the pretrained DiT): its embedding, blocks and final norm are copied and ``vocab_proj``
        becomes ``[I | I]``, so ``proj([embed(x_t); embed(x0)]) = embed(x_t) + embed(x0)`` goes
        through the denoiser's blocks; the head keeps its own initialisation. Returns ``self``.
        The sizes (V, dim, depth, heads, mlp_ratio) must match."""
        if not isinstance(denoiser, DiffusionTransformer):
            raise WrongTypeError(f"denoiser must be a DiffusionTransformer, got {type(denoiser)!r}")
        ours, theirs = self._config, denoiser.config()
        for key in ("vocab_size", "dim", "depth", "heads", "mlp_ratio"):
            if ours[key] != theirs[key]:
                raise UserError(
                    f"denoiser {key}={theirs[key]!r} does not match the energy's {ours[key]!r}"
                )
        if theirs["time_conditioning"] or theirs.get("max_length") is not None:
            raise UserError(
                "the denoiser must be a plain masked-diffusion transformer (no time "
                "conditioning, no absolute positions): the energy has no such inputs"
            )
        self.embed.load_state_dict(denoiser.embed.state_dict())
        self.blocks.load_state_dict(denoiser.blocks.state_dict())
        self.norm.load_state_dict(denoiser.norm.state_dict())
        dim = int(ours["dim"])
        eye = torch.eye(dim, dtype=self.vocab_proj.weight.dtype)
        self.vocab_proj.weight.copy_(torch.cat([eye, eye], 1))
        self.vocab_proj.bias.zero_()
        return self


def optimal_energy(language: Any, x0: Tensor, x_t: Tensor) -> Tensor:
    """The NCE optimum E*(x0, x_t) = log q(x0 | x_t) - log p(x0 | x_t) (N,) float64 against the
    exact denoiser q of a language with exact ``posterior``, ``log_prob`` and ``log_marginal``
    (:class:`~interpolant.text.markov.MarkovLanguage`): log p(x0 | x_t) = log p(x0) - log P(x_t's
    visible tokens). Its loss is the Bayes-optimal NCE loss, the floor of any trained energy."""
    check_tokens(x0, language.vocab_size, allow_mask=False)
    masked = x_t == language.vocab_size
    q = language.posterior(x_t).gather(-1, x0[..., None])[..., 0]
    log_q = torch.where(masked, q.clamp_min(1e-300).log(), torch.zeros_like(q)).sum(1)
    return log_q - language.log_prob(x0) + language.log_marginal(x_t)


def nce_loss(energy_pos: Tensor, energy_neg: Tensor) -> Tensor:
    """Per-pair NCE loss (eq. 8, k = 1): -log sigma(-E+) - log sigma(E-) = softplus(E+) +
    softplus(-E-), computed stably."""
    return F.softplus(energy_pos) + F.softplus(-energy_neg)


class NCEObjective:
    """The trainer's objective for the EDLM energy: ``loss(energy_net, x0, generator)`` is the
    batch mean of :func:`nce_loss` with x_t ~ q(x_t | x0) at stratified times and one negative
    x0- ~ p_theta(. | x_t) from the frozen ``denoiser`` (never trained: it is not the module
    the trainer optimises). ``integer_data = True``: the trainer hands over int64 token rows.
    """

    integer_data = True

    def __init__(self, denoiser: Denoiser, vocab_size: int, path: DiscretePath | None = None):
        path = DiscretePath("linear") if path is None else path
        if path.kind != "mask":
            raise UserError(f"EDLM-NCE needs a masked DiscretePath, got kind {path.kind!r}")
        self.denoiser, self.vocab_size, self.path = denoiser, int(vocab_size), path

    def pairs(
        self, x0: Tensor, t: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(x_t, x0-, t): a masked x_t of each row and one proposal draw given it."""
        check_tokens(x0, self.vocab_size, allow_mask=False)
        if t is None:
            t = stratified_times(x0.shape[0], generator, x0.device)
        x_t = self.path.corrupt(x0, t, self.vocab_size, generator)
        with torch.no_grad():
            probs = denoiser_probs(self.denoiser, x_t, t.to(torch.float32), self.vocab_size)
        # One stream per row, its seed drawn from the trainer's generator (works on any device).
        where = generator.device if generator is not None else x0.device
        seed = int(torch.randint(0, 2**62, (), generator=generator, device=where))
        streams = Streams(seed, x0.shape[0], stream="edlm-nce-negatives")
        negative, _ = draw_proposals(x_t, probs, 1, streams)
        return x_t, negative[:, 0].to(x0.device), t

    def per_pair(
        self,
        model: Any,
        x0: Tensor,
        t: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """NCE loss per data row (B,)."""
        x_t, negative, t = self.pairs(x0, t, generator)
        t32 = t.to(torch.float32)
        # Positives and negatives in one call, so a DDP-wrapped model runs forward once.
        energy = model(torch.cat([x0, negative]), torch.cat([x_t, x_t]), torch.cat([t32, t32]))
        e_pos, e_neg = energy.float().chunk(2)
        return nce_loss(e_pos, e_neg)

    def loss(
        self,
        model: Any,
        x0: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        """Mean NCE loss of the batch (the trainer's scalar); 2 log 2 for a zero energy."""
        if cond:
            raise UserError("the NCE objective takes no conditioning (cond must be None)")
        return self.per_pair(model, x0, generator=generator).mean()

    def config(self) -> dict[str, Any]:
        return {"kind": "edlm-nce", "vocab_size": self.vocab_size, "path": self.path.config()}


class NCEEnergy:
    """A trained :class:`EnergyTransformer` as an EDLM :class:`~interpolant.text.edlm.Energy`:
    ``energy(x0, x_t, proposal_logp) -> E (N,)`` in float64 (the proposal log-probability is
    not needed: the network models the residual directly). ``t`` is passed only to a
    time-conditioned network, as the fraction of masked tokens of x_t (= t on the linear path).
    """

    def __init__(self, net: EnergyTransformer, batch_size: int = 4096) -> None:
        self.net, self.batch_size = net.eval().requires_grad_(False), int(batch_size)

    @torch.no_grad()
    def __call__(self, x0: Tensor, x_t: Tensor, proposal_logp: Tensor | None = None) -> Tensor:
        device = next(self.net.parameters()).device
        out = []
        for a, b in zip(x0.split(self.batch_size), x_t.split(self.batch_size), strict=True):
            a, b = a.to(device), b.to(device)
            t = (b == self.net.vocab_size).float().mean(1)
            out.append(self.net(a, b, t).to(torch.float64).cpu())
        return torch.cat(out).to(x0.device)


def train_nce_energy(
    denoiser: Denoiser,
    data: Tensor,
    vocab_size: int,
    config: TrainConfig | dict[str, Any],
    net: dict[str, Any] | None = None,
    path: DiscretePath | None = None,
    init: DiffusionTransformer | None = None,
) -> tuple[NCEEnergy, Trainer]:
    """Train an EDLM-NCE energy on token rows ``data`` (N, L) against the frozen ``denoiser``
    through :class:`interpolant.train.Trainer` (one process or ``torchrun`` DDP, checkpoints in
    ``config.run_dir``, resume). ``net`` holds :class:`EnergyTransformer` keywords; ``init``, a
    trained masked-diffusion transformer of the same size, initialises the trunk
    (:meth:`EnergyTransformer.load_denoiser`, as the paper does). Returns the energy (EMA
    weights when the config keeps an EMA) and the finished trainer."""
    cfg = as_config(config)
    torch.manual_seed(derive_seed("init", cfg.seed))  # identical initial weights on every rank
    model = EnergyTransformer(vocab_size, **(net or {}))
    if init is not None:
        model.load_denoiser(init)
    objective = NCEObjective(denoiser, vocab_size, path)
    network = {"text_model": model.config(), "objective": objective.config()}
    trainer = Trainer(model, objective, data, cfg, network=network)
    try:
        trainer.run()
    finally:
        trainer.close()
    trained = EnergyTransformer(vocab_size, **(net or {}))
    trained.load_state_dict(trainer.module.state_dict())
    if trainer.ema is not None:
        trainer.ema.copy_to(trained)
    trained = trained.to(trainer.info.device)
    if trainer.info.is_main:
        meta = {"model": model.config(), "objective": objective.config(), "step": trainer.step}
        (Path(cfg.run_dir) / "energy.json").write_text(json.dumps(meta, indent=1) + "\n")
    return NCEEnergy(trained), trainer
