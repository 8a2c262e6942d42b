"""Jacobians, divergences and a Helmholtz-style conservativity check of vector fields.

A *field* is a callable ``f(x) -> (B, D)`` on a batch ``x`` of shape (B, D) whose rows are
independent (row i of the output depends on row i of x only), such as a model's score at a fixed
time. Everything here uses ``torch.func`` products, vectorised with ``vmap`` over the basis or
the probes, never a Python loop over dimensions:

* Jacobian ``J_ij = d f_i / d x_j``: row i is the vector-Jacobian product ``e_i^T J`` of one
  forward pass (``torch.func.vjp``, then one ``vmap`` over the D basis vectors for all rows of
  the batch at once; reverse mode measured faster than forward-mode JVPs for square Jacobians);
* exact divergence ``tr J = sum_i (e_i^T J)_i`` (D VJPs), refused above :data:`EXACT_MAX_DIM`;
* Hutchinson's estimate ``E_v[v^T J v]`` with Rademacher or Gaussian probes v (unbiased,
  E[v v^T] = I), drawn per sample from the ``"hutchinson"`` stream (``solvers.likelihood``);
* asymmetry ``|J - J^T|_F / |J|_F``: 0 exactly when the field is locally a gradient (a symmetric
  Jacobian is the curl-free condition of the Helmholtz decomposition).

The ``*_loop`` functions are the textbook alternative (one reverse pass per output dimension)
kept for the speed benchmark (``benchmarks/analysis_jacobian.py``) and as a cross-check in tests.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jvp, vjp, vmap

from ..errors import UserError, WrongTypeError
from ..solvers.likelihood import draw_probes

Field = Callable[[Tensor], Tensor]

#: The largest dimension the exact divergence and Jacobian accept (D JVPs per call).
EXACT_MAX_DIM = 256


def _check(field: Field, x: Tensor) -> None:
    if not callable(field):
        raise WrongTypeError(f"field must be callable f(x) -> (B, D), got {type(field).__name__}")
    if not isinstance(x, Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise UserError(f"x must be a (B, D) tensor, got {shape}; flatten samples first")


def _check_exact(x: Tensor, max_dim: int, what: str) -> None:
    if x.shape[1] > max_dim:
        raise UserError(
            f"the exact {what} needs {x.shape[1]} Jacobian-vector products per batch and is "
            f"limited to D <= {max_dim}; use hutchinson_divergence(field, x, n_probes=...) "
            "(unbiased) or raise max_dim="
        )


def jvp_of(field: Field, x: Tensor, v: Tensor) -> Tensor:
    """The Jacobian-vector product ``J(x) v`` row by row (forward mode)."""
    return jvp(field, (x,), (v,))[1]


def _vjp(field: Field, x: Tensor) -> tuple[Tensor, Callable[[Tensor], tuple[Tensor, ...]]]:
    """(f(x), the pullback v -> v^T J(x)) in one forward pass."""
    primal, pullback = vjp(field, x)[:2]
    return primal, pullback


def jacobian(field: Field, x: Tensor, max_dim: int = EXACT_MAX_DIM) -> Tensor:
    """The per-sample Jacobian ``J[b, i, j] = d f_i / d x_j`` at ``x`` (B, D) -> (B, D, D)."""
    _check(field, x)
    _check_exact(x, max_dim, "Jacobian")
    out, pullback = _vjp(field, x)
    basis = torch.eye(out.shape[1], dtype=out.dtype, device=out.device)
    rows = vmap(lambda e: pullback(e.expand_as(out))[0])(basis)  # (D_out, B, D_in)
    return rows.permute(1, 0, 2)


def divergence(field: Field, x: Tensor, max_dim: int = EXACT_MAX_DIM) -> Tensor:
    """The exact divergence ``tr J(x)`` per sample, shape (B,)."""
    _check(field, x)
    _check_exact(x, max_dim, "divergence")
    out, pullback = _vjp(field, x)
    basis = torch.eye(out.shape[1], dtype=out.dtype, device=out.device)
    diagonal = vmap(lambda e: (pullback(e.expand_as(out))[0] * e).sum(-1))(basis)  # (D, B)
    return diagonal.sum(0)


def hutchinson_divergence(
    field: Field, x: Tensor, n_probes: int = 1, seed: int = 0, probe: str = "rademacher"
) -> Tensor:
    """Hutchinson's unbiased estimate ``mean_k v_k^T J(x) v_k`` per sample, shape (B,).

    Probes come from ``solvers.likelihood.draw_probes`` (stream ``"hutchinson"``, sample i's
    from its own key), so a sample's estimate does not depend on the batch it is in.
    """
    _check(field, x)
    if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
        raise UserError(f"n_probes must be an int >= 1, got {n_probes!r}")
    probes = draw_probes(tuple(x.shape), n_probes, probe, seed).to(x.device, x.dtype).contiguous()
    quad = vmap(lambda v: (jvp_of(field, x, v) * v).sum(-1))(probes)  # (n_probes, B)
    return quad.mean(0)


def asymmetry(field: Field, x: Tensor, max_dim: int = EXACT_MAX_DIM) -> Tensor:
    """How far the field is from conservative at x: ``|J - J^T|_F / |J|_F`` per sample.

    0 for a gradient field (``-grad E``: its Jacobian is a Hessian, symmetric); 2 for a pure
    rotation ``c J x`` with J antisymmetric.
    """
    jac = jacobian(field, x, max_dim)
    norm = jac.flatten(1).norm(dim=1).clamp_min(torch.finfo(jac.dtype).tiny)
    return (jac - jac.mT).flatten(1).norm(dim=1) / norm


# ---------------------------------------------------------------------------- loop baselines


def jacobian_loop(field: Field, x: Tensor) -> Tensor:
    """The Jacobian by one reverse pass per output dimension (a Python loop; benchmark only)."""
    _check(field, x)
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        out = field(xr)
        rows = [
            torch.autograd.grad(out[:, i].sum(), xr, retain_graph=i < out.shape[1] - 1)[0]
            for i in range(out.shape[1])
        ]
    return torch.stack(rows, dim=1)


def divergence_loop(field: Field, x: Tensor) -> Tensor:
    """The exact divergence by a Python loop over dimensions (benchmark only)."""
    return torch.diagonal(jacobian_loop(field, x), dim1=1, dim2=2).sum(-1)


__all__ = [
    "EXACT_MAX_DIM",
    "Field",
    "asymmetry",
    "divergence",
    "divergence_loop",
    "hutchinson_divergence",
    "jacobian",
    "jacobian_loop",
    "jvp_of",
]
