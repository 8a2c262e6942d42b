"""MT-Diffusion's model, multi-task loss and joint sampler (Chen et al. 2024, Secs. 3.2-3.3).

The model is a multi-head network on the diffusion space (an eps head, and one decoder head per
extra modality) plus learned modality encoders E_i that map each modality into that space; the
image is the diffusion variable itself (E_1 = identity), so z_0 is the image.

Training (the multi-task ELBO, Eq. 9, with lambda_t = 1):

    s ~ U{1..T}, eps ~ N(0, I), z_s = sqrt(abar_s) z_0 + c_s E(x) + sqrt(1 - abar_s) eps,
    L = ||eps - eps_theta(z_s, s)||^2 / D + sum_i lambda_i (-log p_theta(x_i | z_s)).

Joint generation (ancestral sampling with plug-in estimates): from z_T ~ N(0, I), at each step
the heads give eps_hat and p_theta(x_i | z_s); E_hat = sum_i E_i(x_hat_i) with the label's
softmax-weighted embedding sum_k p(k) E(k); z0_hat = (z_s - c_s E_hat - sqrt(1 - abar_s) eps_hat) /
sqrt(abar_s) (clipped to the data range); z_{s-1} ~ q(z_{s-1} | z_s, z0_hat, E_hat). The result
is z_0 and the labels' argmax at s = 1.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..errors import UserError, WrongTypeError
from ..losses.multitask import MultiTaskObjective
from ..randomness import Streams
from .process import AggregatedProcess, strided_steps


class JointModel(nn.Module):
    """``net`` (multi-head: ``net(z, t) -> {head: output}``) and label encoders.

    Args:
        net: a multi-head network over the diffusion space whose outputs include ``eps_head``
            and, per label modality, its logits head (e.g. ``MultiHeadMLP(dim, heads={"eps":
            "x", "label": 10})``).
        labels: label modality (its cond key, e.g. "class_labels") -> (number of classes, the
            name of its logits head). Each gets a learned embedding E_i: (B,) ids -> (B, *shape)
            in the diffusion space.
        shape: the shape of one sample of the diffusion space (e.g. (1, 8, 8)).
        eps_head: the name of the eps head.
    """

    def __init__(
        self,
        net: nn.Module,
        labels: Mapping[str, tuple[int, str]],
        shape: tuple[int, ...],
        eps_head: str = "eps",
    ):
        super().__init__()
        if not isinstance(net, nn.Module):
            raise WrongTypeError(f"net must be an nn.Module, got {type(net).__name__}")
        self.net = net
        self.shape = tuple(int(s) for s in shape)
        self.eps_head = eps_head
        self.heads = {key: head for key, (_, head) in labels.items()}
        dim = int(torch.tensor(self.shape).prod())
        # Small initial embeddings: the offset starts as a perturbation of plain DDPM.
        self.encoders = nn.ModuleDict()
        for key, (classes, _) in labels.items():
            embedding = nn.Embedding(int(classes), dim)
            nn.init.normal_(embedding.weight, std=0.1)
            self.encoders[key] = embedding

    def embed(self, labels: Mapping[str, Tensor]) -> Tensor:
        """E(x) = sum_i E_i(x_i) for given label ids, shape (B, *shape)."""
        missing = sorted(set(self.encoders) - set(labels))
        if missing:
            raise UserError(f"the model aggregates {sorted(self.encoders)}; missing {missing}")
        parts = [self.encoders[key](labels[key].long()) for key in self.encoders]
        return torch.stack(parts).sum(0).reshape(-1, *self.shape)

    def expected_embedding(self, outputs: Mapping[str, Tensor]) -> Tensor:
        """E_hat = sum_i sum_k softmax(logits_i)_k E_i(k), the plug-in estimate of E(x)."""
        parts = []
        for key, encoder in self.encoders.items():
            assert isinstance(encoder, nn.Embedding)
            probs = outputs[self.heads[key]].float().softmax(dim=-1).to(encoder.weight.dtype)
            parts.append(probs @ encoder.weight)
        return torch.stack(parts).sum(0).reshape(-1, *self.shape)

    def forward(
        self, z: Tensor, t: Tensor, offset: Tensor | None = None, **labels: Tensor
    ) -> dict[str, Tensor]:
        """Heads at (z + offset E(labels), t): training passes the offset-free part of z_s,
        c_s and the labels, so the encoders are used inside the (DDP-wrapped) forward;
        sampling passes z_s alone."""
        if labels:
            if offset is None:
                raise UserError("labels were given without the offset c_s to scale E(x) by")
            z = z + offset.to(z.dtype).reshape(-1, *([1] * (z.ndim - 1))) * self.embed(labels)
        out = self.net(z, t)
        if not isinstance(out, dict) or self.eps_head not in out:
            raise UserError(f"net must return a dict with an {self.eps_head!r} head")
        return out


class MTDiffusionObjective:
    """The multi-task loss of MT-Diffusion for the trainer (``loss(model, x0, generator, cond)``).

    Args:
        process: the aggregated forward process.
        label_weights: label modality (cond key) -> lambda_i on its cross-entropy (default 1).
    """

    def __init__(
        self, process: AggregatedProcess, label_weights: Mapping[str, float] | None = None
    ):
        if not isinstance(process, AggregatedProcess):
            raise WrongTypeError(f"process must be an AggregatedProcess, got {type(process)}")
        self.process = process
        self.label_weights = dict(label_weights or {})

    def heads_loss(self, model: nn.Module) -> tuple[JointModel, MultiTaskObjective]:
        joint = getattr(model, "module", model)  # DDP keeps the model as .module
        if not isinstance(joint, JointModel):  # a run's model holds it as .net
            joint = getattr(joint, "net", joint)
        if not isinstance(joint, JointModel):
            raise WrongTypeError(f"MT-Diffusion trains a JointModel, got {type(joint).__name__}")
        losses: dict[str, str] = {joint.eps_head: "mse"}
        weights = {joint.eps_head: 1.0}
        unknown = sorted(set(self.label_weights) - set(joint.heads))
        if unknown:
            raise UserError(
                f"label_weights name {unknown}; the model's labels are {sorted(joint.heads)}"
            )
        for key, head in joint.heads.items():
            losses[head] = "ce"
            weights[head] = float(self.label_weights.get(key, 1.0))
        return joint, MultiTaskObjective(losses, weights)

    def per_modality(
        self,
        model: nn.Module,
        x0: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Tensor], MultiTaskObjective]:
        """The unweighted per-sample losses of each head, and the weighting."""
        joint, objective = self.heads_loss(model)
        labels = {key: (cond or {}).get(key) for key in joint.heads}
        missing = sorted(key for key, value in labels.items() if value is None)
        if missing:
            raise UserError(
                f"MT-Diffusion needs every modality in cond; missing {missing} (the trainer "
                "passes labels under config.cond_key)"
            )
        batch = x0.shape[0]
        # Drawn on the generator's device (a CUDA generator on GPU), looked up on the CPU.
        where = generator.device if generator is not None else torch.device("cpu")
        s = torch.randint(1, self.process.steps + 1, (batch,), generator=generator, device=where)
        s = s.cpu()
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        free = self.process.sample(x0, torch.zeros_like(x0), s, eps)  # sqrt(abar) z0 + std eps
        t = self.process.time(s).to(device=x0.device, dtype=x0.dtype)
        offset = self.process.c[s].to(device=x0.device, dtype=x0.dtype)
        outputs = model(free, t, offset=offset, **labels)
        targets = {joint.eps_head: eps, **{joint.heads[k]: v for k, v in labels.items()}}
        return objective.per_modality(outputs, targets), objective  # type: ignore[arg-type]

    def loss(
        self,
        model: nn.Module,
        x0: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        terms, objective = self.per_modality(model, x0, generator, cond)
        weighted = [objective.weight(name) * value for name, value in terms.items()]
        return torch.stack(weighted).sum(0).mean()

    def config(self) -> dict[str, Any]:
        return {"process": self.process.config(), "label_weights": self.label_weights}


@dataclass
class JointSample:
    """Generated images z_0 (N, *shape), per label modality its ids (N,) and probabilities
    (N, K) at the last step, and the number of network evaluations."""

    x: Tensor
    labels: dict[str, Tensor]
    probs: dict[str, Tensor]
    nfe: int


@torch.no_grad()
def sample_joint(
    model: JointModel,
    process: AggregatedProcess,
    n: int,
    seed: int = 0,
    *,
    index: Any = None,
    batch_size: int = 500,
    clip: tuple[float, float] | None = (-1.0, 1.0),
    progress: bool = False,
    nfe: int | None = None,
) -> JointSample:
    """Generate ``n`` (image, labels) pairs jointly (ancestral sampling, module docstring).

    Sample i's draws come from its own stream (``Streams(seed, index[i], "mt-diffusion")``), so
    it does not depend on the batch size. ``clip``: the data range z0_hat is clipped to (DDPM's
    practice; None keeps it unclipped). ``nfe``: network evaluations per sample (default T): the
    chain's steps visited, the uniform subsequence of
    :func:`~interpolant.multitask.process.strided_steps`, each an ancestral step of the strided
    posterior (DDIM's stride with DDPM's variance; nfe = T is the full chain). The returned
    ``nfe`` is the total over the ``n`` samples.
    """
    if not isinstance(model, JointModel):
        raise WrongTypeError(f"sample_joint needs a JointModel, got {type(model).__name__}")
    if n < 1:
        raise UserError(f"n must be >= 1, got {n}")
    index = torch.arange(n) if index is None else torch.as_tensor(index, dtype=torch.long)
    if index.shape != (n,):
        raise UserError(f"index must hold {n} sample numbers, got shape {tuple(index.shape)}")
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    xs: list[Tensor] = []
    ids: dict[str, list[Tensor]] = {k: [] for k in model.heads}
    probs: dict[str, list[Tensor]] = {k: [] for k in model.heads}
    visited = strided_steps(process.steps, nfe)
    chunks = list(range(0, n, batch_size))
    bar = tqdm(total=len(chunks) * (len(visited) - 1), desc="mt-diffusion", disable=not progress)
    for start in chunks:
        rows = index[start : start + batch_size]
        streams = Streams(seed, rows.numpy(), "mt-diffusion")
        z = streams.normal(model.shape, dtype=param.dtype, device=param.device)
        outputs: dict[str, Tensor] = {}
        for s_int, prev in itertools.pairwise(visited):
            s = torch.full((rows.numel(),), s_int, dtype=torch.long)
            outputs = model(z, process.time(s).to(param.device, param.dtype))
            e_hat = model.expected_embedding(outputs).to(z.dtype)
            z0_hat = process.z0_from_eps(z, e_hat, outputs[model.eps_head], s)
            if clip is not None:
                z0_hat = z0_hat.clamp(*clip)
            mean, var = process.posterior(z, z0_hat, e_hat, s, torch.full_like(s, prev))
            noise = streams.normal(model.shape, dtype=z.dtype, device=z.device)
            z = mean + var.sqrt() * noise  # var = 0 at the last step (to s = 0)
            bar.update(1)
        xs.append(z.cpu())
        for key, head in model.heads.items():
            p = outputs[head].float().softmax(dim=-1).cpu()
            probs[key].append(p)
            ids[key].append(p.argmax(dim=-1))
    bar.close()
    model.train(was_training)
    return JointSample(
        torch.cat(xs),
        {k: torch.cat(v) for k, v in ids.items()},
        {k: torch.cat(v) for k, v in probs.items()},
        nfe=(len(visited) - 1) * n,
    )


@torch.no_grad()
def classify(
    model: JointModel, process: AggregatedProcess, x0: Tensor, step: int = 1, seed: int = 0
) -> dict[str, Tensor]:
    """The label heads' probabilities on real images noised to ``step`` *without* the label
    offset (the label is what is asked): z_s = sqrt(abar_s) x0 + sqrt(1 - abar_s) eps."""
    streams = Streams(seed, x0.shape[0], "mt-diffusion-classify")
    eps = streams.normal(x0.shape[1:], dtype=x0.dtype, device=x0.device)
    s = torch.full((x0.shape[0],), int(step), dtype=torch.long)
    z = process.sample(x0, torch.zeros_like(x0), s, eps)
    was_training = model.training
    model.eval()
    outputs = model(z, process.time(s).to(x0.device, x0.dtype))
    model.train(was_training)
    return {key: outputs[head].float().softmax(dim=-1) for key, head in model.heads.items()}


__all__ = ["JointModel", "JointSample", "MTDiffusionObjective", "classify", "sample_joint"]
