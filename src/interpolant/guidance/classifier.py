"""Classifier guidance with a noise-aware classifier, and the recipe that trains one.

Dhariwal & Nichol 2021 (sec. 4, eq. 14 for eps models): with a classifier p_phi(c | x_t, t)
trained on noised data, sample from p_t(x | c)^.. by adding its gradient to the score,

    s_w(x_t) = s(x_t) + w grad_x log p_phi(c | x_t, t)      (eps_w = eps - w sigma grad ...)

w = 1 with the exact classifier P(c | x_t) gives the exact conditional score (Bayes' rule);
w > 1 sharpens the class (seed paper 1, sec. 1.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError, WrongTypeError
from ..models.layers import TimestepEmbedding, time_batch
from ..models.mlp import ResidualBlock
from ..paths import GaussianPath
from ..paths.nodes import Node
from ..predictions import Prediction, net_dtype
from ..solvers.base import Run
from ..solvers.hooks import Hook
from .base import GuidanceScale, add_to_score, as_scale, check_score_path

Classifier = Callable[[Tensor, Tensor], Tensor]


@dataclass
class ClassifierCalls:
    """Per-run state of :class:`ClassifierGuidance`: how often it called the classifier (a
    classifier call is not a model evaluation, so it is not in the run's NFE)."""

    classifier_calls: int = 0


class ClassifierGuidance(Hook[ClassifierCalls]):
    """Prediction hook: ``score += w(t) grad_x log softmax(classifier(x_t, t))[c]``.

    Args:
        classifier: ``classifier(x_t, t) -> logits`` of shape (B, n_classes), t of shape (B,)
            in [0, 1] (t = 0 data), trained on x_t from the sampled model's path.
        scale: the guidance weight w (0 means no guidance), or a :class:`GuidanceScale`.
        n_classes: the number of classes the logits must have.
        labels: the target class per sample (B,); default ``cond[label_key]`` of the run.
        schedule, interval: time dependence of w (see :class:`GuidanceScale`); outside the
            interval w = 0 and the classifier is not called.

    ``result.state(hook).classifier_calls`` counts the classifier calls of a run.
    """

    def __init__(
        self,
        classifier: Classifier,
        scale: float | GuidanceScale,
        n_classes: int,
        *,
        labels: Tensor | None = None,
        label_key: str = "class_labels",
        schedule: str | Callable[[float], float] = "constant",
        interval: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        if not callable(classifier):
            raise WrongTypeError(
                f"classifier must be callable(x_t, t) -> logits, got {classifier!r}"
            )
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise UserError(f"n_classes must be an int >= 2, got {n_classes!r}")
        self.classifier, self.n_classes = classifier, n_classes
        self.weight = as_scale(scale, schedule, interval, off=0.0)
        self.labels, self.label_key = labels, label_key

    def start(self, run: Run) -> ClassifierCalls:
        return ClassifierCalls()

    def target_labels(self, run: Run, batch: int) -> Tensor:
        """The class per sample: ``labels`` if given, else the run's ``cond[label_key]``."""
        labels = self.labels if self.labels is not None else run.cond.get(self.label_key)
        if not isinstance(labels, Tensor):
            raise UserError(
                f"classifier guidance needs target classes: pass labels= or "
                f"cond={{{self.label_key!r}: tensor of shape ({batch},)}} to sample"
            )
        if labels.shape != (batch,) or labels.is_floating_point():
            raise UserError(
                f"labels must be an integer tensor of shape ({batch},), "
                f"got {labels.dtype} of shape {tuple(labels.shape)}"
            )
        if bool(((labels < 0) | (labels >= self.n_classes)).any()):
            raise UserError(f"labels must lie in [0, {self.n_classes - 1}]")
        return labels

    def grad_log_prob(self, x: Tensor, t: float, labels: Tensor) -> Tensor:
        """grad_x log p(labels | x_t = x) per sample, through the classifier by autograd."""
        dtype = net_dtype(self.classifier, x)
        with torch.enable_grad():
            x_in = x.detach().to(dtype).requires_grad_(True)
            logits = self.classifier(
                x_in, torch.full((x.shape[0],), t, dtype=dtype, device=x.device)
            )
            if logits.ndim != 2 or logits.shape != (x.shape[0], self.n_classes):
                raise UserError(
                    f"classifier returned logits of shape {tuple(logits.shape)}; expected "
                    f"({x.shape[0]}, n_classes={self.n_classes}): logits.shape[-1] must be the "
                    "number of classes"
                )
            log_p = torch.log_softmax(logits, dim=-1).gather(1, labels[:, None].to(x.device))
            (grad,) = torch.autograd.grad(log_p.sum(), x_in)
        return grad.to(x.dtype)

    def on_prediction(
        self, pred: Prediction, node: Node, run: Run, state: ClassifierCalls
    ) -> Prediction:
        w = self.weight(node.t)
        if w == 0.0:
            return pred
        check_score_path(run.path)
        labels = self.target_labels(run, pred.x.shape[0])
        state.classifier_calls += 1
        return add_to_score(pred, self.grad_log_prob(pred.x, node.t, labels), w)

    def __repr__(self) -> str:
        return f"ClassifierGuidance({self.weight!r}, n_classes={self.n_classes})"


class NoiseAwareClassifier(nn.Module):
    """A small MLP classifier ``net(x_t, t) -> logits`` with a sinusoidal time embedding added
    in every residual block (the shape of ``models.MLP``, with a class head)."""

    def __init__(self, dim: int, n_classes: int, width: int = 128, depth: int = 2) -> None:
        super().__init__()
        if dim < 1 or n_classes < 2 or width < 1 or depth < 0:
            raise UserError(
                f"need dim >= 1, n_classes >= 2, width >= 1, depth >= 0; "
                f"got {dim}, {n_classes}, {width}, {depth}"
            )
        self.dim, self.n_classes = dim, n_classes
        self.time_embed = TimestepEmbedding(width, freq_dim=2 * max(1, width // 2))
        self.fc_in = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(ResidualBlock(width, width, True, 0.0) for _ in range(depth))
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.dim:
            raise UserError(f"x must have {self.dim} features per sample, got {tuple(x.shape)}")
        emb = F.silu(self.time_embed(time_batch(t, x)))
        h = self.fc_in(x.reshape(x.shape[0], self.dim))
        for block in self.blocks:
            h = block(h, emb)
        return self.head(F.silu(h))


class ClassifierObjective:
    """Cross-entropy of ``classifier(x_t, t)`` against the labels, with x_t drawn from
    ``path`` at t ~ U(t_min, t_max) (the corruption the guided sampler will see). Has the
    ``loss(model, x0, generator, cond)`` shape of the trainer's objectives."""

    def __init__(
        self,
        path: GaussianPath,
        label_key: str = "class_labels",
        t_min: float = 0.0,
        t_max: float = 1.0,
    ) -> None:
        if not 0.0 <= t_min < t_max <= 1.0:
            raise UserError(f"need 0 <= t_min < t_max <= 1, got {t_min}, {t_max}")
        self.path, self.label_key, self.t_min, self.t_max = path, label_key, t_min, t_max

    def loss(
        self,
        model: Callable[..., Tensor],
        x0: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        labels = (cond or {}).get(self.label_key)
        if not isinstance(labels, Tensor):
            raise UserError(f"the classifier objective needs labels under cond[{self.label_key!r}]")
        u = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64, device=x0.device)
        t = (self.t_min + (self.t_max - self.t_min) * u).to(x0.dtype)
        x_t = self.path.sample_xt(x0, t, self.path.noise_like(x0, generator))
        return F.cross_entropy(model(x_t, t), labels.long())


def train_noise_aware_classifier(
    data: Tensor,
    labels: Tensor,
    path: GaussianPath,
    *,
    classifier: nn.Module | None = None,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 2e-3,
    width: int = 128,
    depth: int = 2,
    t_max: float = 1.0,
    seed: int = 0,
    run_dir: str = "runs/noise_aware_classifier",
    **config: Any,
) -> nn.Module:
    """Train a noise-aware classifier on ``path``'s corruption of ``data`` with the project's
    trainer (``interpolant.train``: AdamW, EMA, checkpoints in ``run_dir``); returns the
    classifier holding the EMA weights, in eval mode.

    ``classifier`` defaults to a :class:`NoiseAwareClassifier` of ``width`` x ``depth``;
    further keyword arguments go to :class:`interpolant.train.TrainConfig`.
    """
    from ..train import TrainConfig, Trainer

    if labels.shape != (data.shape[0],) or labels.is_floating_point():
        raise UserError(f"labels must be an integer tensor of shape ({data.shape[0]},)")
    n_classes = int(labels.max()) + 1
    if classifier is None:
        torch.manual_seed(seed)
        classifier = NoiseAwareClassifier(math.prod(data.shape[1:]), n_classes, width, depth)
    cfg = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        run_dir=run_dir,
        cond_key="class_labels",
        **{"progress": False, "checkpoint_every": steps, "log_every": steps, **config},
    )
    trainer = Trainer(classifier, ClassifierObjective(path, t_max=t_max), data, cfg, labels)
    try:
        trainer.run()
    finally:
        trainer.close()
    if trainer.ema is not None:
        classifier.load_state_dict(trainer.averaged_state())
    return classifier.eval()
