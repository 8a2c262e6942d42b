"""A class-labelled Gaussian mixture with exact conditional models and the exact noise-aware
classifier on every Gaussian path: the test bed on which guidance is checked exactly.

Each component k of a :class:`~interpolant.data.oracles.GaussianMixture` carries a class c(k).
The class-c data law is the sub-mixture of its components (weights renormalised), and at time t

    P(c | x_t) = sum_{k: c(k) = c} P(k | x_t)          (the mixture's posterior weights)
    grad log p_t(x | c) = grad log p_t(x) + grad log P(c | x_t)   (Bayes' rule)

so classifier guidance with ``log P(c | x_t)`` as the classifier, at w = 1, is the exact
conditional model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..data.oracles import GaussianMixture
from ..errors import UserError
from ..paths import GaussianPath
from ..predictions import Model


class LabelledMixture:
    """``mixture`` with component k in class ``classes[k]`` (classes 0..n_classes-1)."""

    def __init__(self, mixture: GaussianMixture, classes: Sequence[int] | Tensor) -> None:
        classes = torch.as_tensor(classes, dtype=torch.long)
        k = mixture.means.shape[0]
        if classes.shape != (k,) or bool((classes < 0).any()):
            raise UserError(f"classes must be {k} nonnegative class indices, one per component")
        self.mixture, self.classes = mixture, classes
        self.n_classes = int(classes.max()) + 1
        if set(classes.tolist()) != set(range(self.n_classes)):
            raise UserError(f"every class in 0..{self.n_classes - 1} needs a component")
        self.members = torch.nn.functional.one_hot(classes, self.n_classes).to(torch.float64)
        self.conditionals = [self._sub(c) for c in range(self.n_classes)]

    def _sub(self, c: int) -> GaussianMixture:
        keep = self.classes == c
        m = self.mixture
        return GaussianMixture(m.means[keep], m.covs[keep], m.weights[keep])

    @property
    def class_weights(self) -> Tensor:
        """P(c), shape (n_classes,)."""
        return self.mixture.weights @ self.members

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n exact draws and their class labels."""
        comp = torch.multinomial(self.mixture.weights, n, replacement=True, generator=generator)
        m = self.mixture
        z = torch.randn(n, m.dim, generator=generator, dtype=torch.float64)
        x = m.means[comp] + torch.einsum("nij,nj->ni", m.chol[comp], z)
        return x, self.classes[comp]

    def class_log_posterior(self, x: Tensor, t: float | Tensor, path: GaussianPath) -> Tensor:
        """log P(c | x_t = x), shape (B, n_classes): the exact noise-aware classifier's logits.
        Differentiable in x."""
        w = self.mixture.posterior_weights(x, t, path)
        return torch.log(w @ self.members)

    def classifier(self, path: GaussianPath) -> Callable[[Tensor, Tensor], Tensor]:
        """The exact noise-aware classifier as ``classifier(x_t, t) -> logits``."""

        def logits(x: Tensor, t: Tensor) -> Tensor:
            return self.class_log_posterior(x, t.to(torch.float64), path).to(x.dtype)

        return logits

    def denoiser(
        self, x: Tensor, t: float | Tensor, path: GaussianPath, labels: Tensor | None = None
    ) -> Tensor:
        """E[x0 | x_t = x, c] per sample; ``labels=None`` (or the null index ``n_classes``)
        gives the unconditional E[x0 | x_t = x]."""
        if labels is None:
            return self.mixture.denoiser(x, t, path)
        if labels.shape != (x.shape[0],):
            raise UserError(f"labels must have shape ({x.shape[0]},), got {tuple(labels.shape)}")
        out = torch.empty(x.shape, dtype=torch.float64, device=x.device)
        t_b = t if isinstance(t, Tensor) and t.ndim == 1 else None
        for c in range(self.n_classes + 1):
            rows = labels == c
            if not bool(rows.any()):
                continue
            mix = self.mixture if c == self.n_classes else self.conditionals[c]
            out[rows] = mix.denoiser(x[rows], t if t_b is None else t_b[rows], path)
        return out

    def model(self, path: GaussianPath, dtype: torch.dtype = torch.float64) -> Model:
        """The exact conditional denoiser as a :class:`Model` ``net(x, t, class_labels=None)``
        predicting x0; no labels, or the null index ``n_classes``, is the unconditional one."""

        def net(x: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
            return self.denoiser(x, t.to(torch.float64), path, class_labels).to(dtype)

        return Model(net, path, predicts="x0")


def two_class_mixture(
    dim: int = 2, separation: float = 1.5, std: float = 1.0, n_per_class: int = 1
) -> LabelledMixture:
    """Classes N(+mu, std^2 I) and N(-mu, std^2 I) with mu = separation e_1 (paper 1's analytic
    guidance example, sec. 1.3 of the research notes); ``n_per_class > 1`` splits each class
    into components spread along e_2 (a multi-modal class)."""
    if dim < 1 or n_per_class < 1 or std <= 0:
        raise UserError(
            f"need dim >= 1, n_per_class >= 1, std > 0; got {dim}, {n_per_class}, {std}"
        )
    means, classes = [], []
    for c, sign in enumerate((1.0, -1.0)):
        for j in range(n_per_class):
            mu = torch.zeros(dim, dtype=torch.float64)
            mu[0] = sign * separation
            if dim > 1 and n_per_class > 1:
                mu[1] = 2.0 * (j - (n_per_class - 1) / 2)
            means.append(mu)
            classes.append(c)
    covs = (std**2) * torch.eye(dim, dtype=torch.float64).expand(len(means), dim, dim).clone()
    return LabelledMixture(GaussianMixture(torch.stack(means), covs), classes)
