"""DiffusionMBIR: z-differences and their adjoint, the soft threshold, the ADMM X-subproblem
against a direct solve, ADMM convergence, slice independence without coupling, a small run."""

from __future__ import annotations

import pytest
import torch

from interpolant.data.oracles import GaussianMixture
from interpolant.inverse.mbir import (
    ADMMTV,
    SliceOperator,
    Splitting,
    cg,
    diff_z,
    diff_z_adjoint,
    diffusion_mbir,
    soft_threshold,
)
from interpolant.inverse.operators import CT, RandomProjection, as_matrix
from interpolant.paths import VE
from interpolant.predictions import Model

DEPTH, SLICE = 3, (1, 4, 4)


def _volume_op() -> SliceOperator:
    # 20 >= 16 measurements per slice: A^T A + rho D^T D is then invertible.
    return SliceOperator(RandomProjection(SLICE, 20, seed=0), DEPTH)


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_diff_z_adjoint_and_slice_operator_adjoint() -> None:
    x, g = _rand(2, DEPTH, *SLICE, seed=1), _rand(2, DEPTH, *SLICE, seed=2)
    torch.testing.assert_close((diff_z(x) * g).sum(), (x * diff_z_adjoint(g)).sum())
    op = _volume_op()
    y = _rand(2, DEPTH, 20, seed=3)
    torch.testing.assert_close((op(x) * y).sum(), (x * op.adjoint(y)).sum())
    # Circular: the last difference wraps to the first slice.
    torch.testing.assert_close(diff_z(x)[:, -1], x[:, 0] - x[:, -1])


def test_soft_threshold_satisfies_the_prox_optimality_condition() -> None:
    v, tau = _rand(1000, seed=4), 0.3
    z = soft_threshold(v, tau)
    zero = z == 0
    assert bool((v[zero].abs() <= tau).all())
    torch.testing.assert_close(z[~zero] - v[~zero], -tau * torch.sign(z[~zero]))


def test_admm_x_update_solves_its_linear_subproblem() -> None:
    op = _volume_op()
    x_true = _rand(1, DEPTH, *SLICE, seed=5)
    y = op(x_true)
    admm = ADMMTV(op, y, tv_weight=0.04, rho=10.0)
    split = Splitting(_rand(1, DEPTH, *SLICE, seed=6), _rand(1, DEPTH, *SLICE, seed=7))
    assert split.z is not None and split.u is not None
    # Dense system (A^T A + rho D^T D) x = A^T y + rho D^T (z - u) on the flattened volume.
    n = DEPTH * 16
    a = as_matrix(op)
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, DEPTH, *SLICE)
    d = torch.stack([diff_z(e).flatten() for e in eye], 1)
    lhs = a.T @ a + 10.0 * d.T @ d
    rhs = a.T @ y.flatten() + 10.0 * d.T @ (split.z - split.u).flatten()
    direct = torch.linalg.solve(lhs, rhs)
    solved = admm.x_update(torch.zeros_like(x_true), split, iterations=200)
    torch.testing.assert_close(solved.flatten(), direct, rtol=1e-8, atol=1e-8)

    # One iteration (the paper's setting) is one CG step: it lowers the quadratic's value.
    def quad(v):
        return 0.5 * v @ lhs @ v - rhs @ v

    one = admm.x_update(torch.zeros_like(x_true), split).flatten()
    assert quad(one) < quad(torch.zeros(n, dtype=torch.float64))


def test_admm_converges_to_the_tv_regularised_least_squares_solution() -> None:
    op = _volume_op()
    y = op(_rand(1, DEPTH, *SLICE, seed=8))
    admm = ADMMTV(op, y, tv_weight=0.5, rho=2.0, cg_iterations=20)
    x, split = torch.zeros(1, DEPTH, *SLICE, dtype=torch.float64), Splitting()
    for _ in range(150):
        x = admm(x, split)
    # Primal feasibility Z = D_z X, and the objective is no worse than at nearby points.
    torch.testing.assert_close(split.z, diff_z(x), rtol=0, atol=1e-6)

    def objective(v):
        return 0.5 * (op(v) - y).square().sum() + 0.5 * diff_z(v).abs().sum()

    base = objective(x)
    for seed in range(5):
        assert objective(x + 1e-3 * _rand(*x.shape, seed=20 + seed)) >= base - 1e-9


def test_without_coupling_every_slice_is_its_own_problem() -> None:
    op = _volume_op()
    y = op(_rand(1, DEPTH, *SLICE, seed=9))
    x = _rand(1, DEPTH, *SLICE, seed=10)
    whole = ADMMTV(op, y, tv_weight=0.0, rho=0.0)(x, Splitting())
    for k in range(DEPTH):
        one = SliceOperator(op.slice_operator, 1)
        alone = ADMMTV(one, y[:, k : k + 1], tv_weight=0.0, rho=0.0)(x[:, k : k + 1], Splitting())
        torch.testing.assert_close(whole[:, k : k + 1], alone)


def test_cg_with_zero_residual_stays_put() -> None:
    x = _rand(2, 5, seed=11)
    torch.testing.assert_close(cg(lambda v: 2 * v, 2 * x, x, iterations=3), x)


def test_diffusion_mbir_couples_slices_of_a_small_ct_volume() -> None:
    size, depth = 8, 4
    g = torch.Generator().manual_seed(0)
    train = torch.rand(200, size * size, generator=g, dtype=torch.float64)
    cov = torch.cov(train.T) + 1e-3 * torch.eye(size * size, dtype=torch.float64)
    gm = GaussianMixture(train.mean(0)[None], cov[None])
    path = VE()

    def net(x, t):
        return gm.denoiser(x.flatten(1), t, path).reshape(x.shape)

    model = Model(net, path, predicts="x0")
    op = SliceOperator(CT((1, size, size), n_angles=4), depth)
    # A volume constant along z: the z-TV prior is exact for it.
    x_true = gm.sample(1, g).reshape(1, 1, 1, size, size).expand(1, depth, 1, size, size)
    y = op(x_true)
    # rho and lambda scaled to this small operator (||A^T A|| ~ 32, not ~2000 as in the paper).
    independent = diffusion_mbir(model, op, y, nfe=100, seed=0, couple=False)
    result = diffusion_mbir(model, op, y, nfe=100, seed=0, rho=1.0, tv_weight=0.004)
    coupled = result.x
    assert result.nfe == independent.nfe == 99  # pc: 50 predictor and 49 corrector evaluations
    independent = independent.x
    prior_mean = gm.means[0].reshape(1, 1, 1, size, size).expand_as(x_true)

    def mse(v):
        return float((v - x_true).square().mean())

    assert coupled.shape == x_true.shape and bool(torch.isfinite(coupled).all())
    assert mse(coupled) < mse(independent) < mse(prior_mean)
    assert float(diff_z(coupled).abs().sum()) < float(diff_z(independent).abs().sum())
    with pytest.raises(ValueError, match="SliceOperator"):
        diffusion_mbir(model, op.slice_operator, y, nfe=4)
