"""Negative log-likelihood in bits per dimension, from the core's probability-flow likelihood.

:func:`interpolant.solvers.likelihood.log_likelihood` gives bits/dim of model-space data
(continuous, or the discrete bound for a ``bin_width`` in model-space units). For continuous
data this module can also report it in the user's raw units: with ``y = (x - loc) / scale``,
``p_x(x) = p_y(y) / prod_d scale_d``, so

    bpd_raw = bpd_model + mean_d log2 scale_d.

The discrete bound needs no such term: a bin has the same probability in either space.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..data.stats import Normalizer
from ..errors import UserError

LIKELIHOOD_MODULE = "interpolant.solvers.likelihood"


def raw_space_offset(normalizer: Normalizer, sample_shape: tuple[int, ...] | torch.Size) -> float:
    """mean_d log2 scale_d over one sample's entries: bits/dim added when moving to raw units."""
    one = torch.ones((1, *sample_shape), dtype=torch.float64)
    # The inverse map's Jacobian is diag(scale), broadcast to the sample's entries.
    scale = normalizer.inverse(one) - normalizer.inverse(torch.zeros_like(one))
    return float(torch.log2(scale).mean())


def nll_bits_per_dim(
    model: Any,
    x: Tensor,
    normalizer: Normalizer | None = None,
    bin_width: float | None = None,
    **likelihood_kwargs: Any,
) -> Tensor:
    """Per-sample NLL in bits/dim of model-space data ``x`` (N, ...) under ``model``.

    ``bin_width`` (model-space units, e.g. 2/256 for 8-bit images in [-1, 1]) gives the
    discrete-data bound; ``normalizer`` instead reports continuous bits/dim in raw units.
    ``likelihood_kwargs`` (exact_divergence, method, rtol, seed, prior, ...) go to the core's
    :func:`~interpolant.solvers.likelihood.log_likelihood`.
    """
    if normalizer is not None and bin_width is not None:
        raise UserError(
            "pass normalizer (continuous bits/dim in raw units) or bin_width (discrete bound, "
            "the same in every space), not both"
        )
    from ..solvers.likelihood import log_likelihood

    bpd = log_likelihood(model, x, bin_width=bin_width, **likelihood_kwargs).bits_per_dim
    if normalizer is not None:
        bpd = bpd + raw_space_offset(normalizer, tuple(x.shape[1:]))
    return bpd
