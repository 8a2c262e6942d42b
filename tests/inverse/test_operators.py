"""Measurement operators: adjoints, pseudo-inverses, the Radon matrix, specs and shape errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from interpolant.inverse.base import Operator
from interpolant.inverse.operators import (
    CT,
    MRI,
    GaussianBlur,
    Inpaint,
    SuperResolution,
    as_matrix,
    kspace_lines,
    least_squares,
    make_operator,
)

SHAPE = (2, 16, 16)
SPECS = ["inpaint-box", "inpaint-random:0.3", "sr:4", "blur:1.5", "project:40", "mri:4", "ct:12"]


def _ops() -> list[Operator]:
    return [make_operator(s, SHAPE) for s in SPECS] + [GaussianBlur(SHAPE, 1.0, padding="zeros")]


@pytest.mark.parametrize("op", _ops(), ids=[*SPECS, "blur-zeros"])
def test_adjoint_identity(op: Operator) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, *SHAPE, generator=g, dtype=torch.float64)
    y = torch.randn(op(x).shape, generator=g, dtype=torch.float64)
    lhs, rhs = (op(x) * y).sum(), (x * op.adjoint(y)).sum()
    assert float((lhs - rhs).abs()) < 1e-9 * float(lhs.abs() + 1)
    # float32 too, to ~1e-5 relative
    lhs32 = (op(x.float()) * y.float()).sum()
    rhs32 = (x.float() * op.adjoint(y.float())).sum()
    assert float((lhs32 - rhs32).abs()) < 1e-5 * float(x.norm() * y.norm())


@pytest.mark.parametrize(
    "spec", ["inpaint-box", "inpaint-random:0.3", "sr:2", "project:40", "mri:4"]
)
def test_pinv_is_the_matrix_pinv(spec: str) -> None:
    shape = (2, 8, 8)
    op = make_operator(spec, shape)
    a = as_matrix(op)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, *shape, generator=g, dtype=torch.float64)
    y = torch.randn(op(x).shape, generator=g, dtype=torch.float64)
    expected = y.reshape(2, -1) @ torch.linalg.pinv(a).T
    torch.testing.assert_close(op.pinv(y).reshape(2, -1), expected, atol=1e-9, rtol=1e-7)
    # Penrose identities A A^+ A = A and A^+ A A^+ = A^+ on vectors.
    torch.testing.assert_close(op(op.pinv(op(x))), op(x), atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(op.pinv(op(op.pinv(y))), op.pinv(y), atol=1e-10, rtol=1e-9)


def test_circular_blur_pinv_matches_truncated_matrix_pinv() -> None:
    op = GaussianBlur((1, 12, 12), 1.0, rcond=1e-3)
    p = torch.linalg.pinv(as_matrix(op), rtol=1e-3)
    y = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(op.pinv(y).reshape(2, -1), y.reshape(2, -1) @ p.T)


def test_blur_adjoint_is_flipped_kernel_and_circular_blur_is_circulant() -> None:
    op = GaussianBlur((1, 9, 9), 0.8)
    a = as_matrix(op)
    torch.testing.assert_close(a, a.T)  # symmetric kernel, circular padding: A = A^T
    assert float(op.transfer().imag.abs().max()) < 1e-12  # real, symmetric spectrum
    torch.testing.assert_close(op(torch.ones(1, 1, 9, 9)), torch.ones(1, 1, 9, 9))


def test_super_resolution_is_average_pooling() -> None:
    op = SuperResolution((1, 4, 4), 2)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert op(x)[0, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]
    assert op.pinv(op(x)).shape == x.shape


def test_ct_matches_grid_sample_rotation_and_sums_columns() -> None:
    op = CT((2, 16, 16), n_angles=7)
    x = torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = op(x)
    for a, theta in enumerate(op.angles.tolist()):
        rot = torch.tensor(
            [[math.cos(theta), -math.sin(theta), 0.0], [math.sin(theta), math.cos(theta), 0.0]],
            dtype=torch.float64,
        ).expand(3, 2, 3)
        grid = F.affine_grid(rot, [3, 2, 16, 16], align_corners=False)
        rotated = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
        torch.testing.assert_close(y[:, :, a], rotated.sum(-2))
    # Angle 0 is a plain column sum.
    torch.testing.assert_close(y[:, :, 0], x.sum(-2))


def test_fbp_reconstructs_a_disc() -> None:
    n = 32
    r = torch.linspace(-1, 1, n, dtype=torch.float64)
    disc = ((r[:, None] ** 2 + r[None] ** 2) < 0.4).to(torch.float64)[None, None]
    op = CT((1, n, n), n_angles=90)
    rec = op.fbp(op(disc))
    inner = (r[:, None] ** 2 + r[None] ** 2) < 0.2
    assert abs(float(rec[0, 0][inner].mean()) - 1.0) < 0.1
    assert float(((rec - disc) ** 2).mean()) < 0.02


def test_mri_mask_is_conjugate_symmetric_and_keeps_the_centre() -> None:
    lines = kspace_lines(32, 4.0, 0.08, seed=5)
    assert lines[0] == 1 and int(lines.sum()) in (8, 9)
    torch.testing.assert_close(lines, lines.flip(0).roll(1))
    op = MRI((1, 8, 8), mask=torch.tensor([1.0, 1, 0, 0, 0, 0, 0, 0]))  # not symmetric
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(op(op.pinv(op(x))), op(x))


def test_least_squares_converges_to_the_pinv() -> None:
    op = make_operator("sr:2", (1, 8, 8))
    y = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(least_squares(op, y, iters=20), op.pinv(y))


def test_measure_uses_one_stream_per_sample() -> None:
    op = make_operator("sr:2", (1, 4, 4), noise_std=0.1)
    x = torch.zeros(3, 1, 4, 4)
    y3 = op.measure(x, seed=7)
    y1 = op.measure(x[1:2], seed=7, index=[1])
    torch.testing.assert_close(y3[1:2], y1)
    assert 0.03 < float(y3.std()) < 0.3
    assert not torch.equal(op.measure(x, seed=8), y3)
    # Without a seed the draw follows torch's global generator.
    torch.manual_seed(0)
    first = op.measure(x)
    torch.manual_seed(0)
    torch.testing.assert_close(op.measure(x), first)


def test_shape_and_spec_errors() -> None:
    op = make_operator("sr:2", (1, 8, 8))
    with pytest.raises(ValueError, match=r"\(1, 8, 8\).*\(2, 1, 6, 6\)"):
        op(torch.zeros(2, 1, 6, 6))
    with pytest.raises(ValueError, match=r"y must have shape"):
        op.adjoint(torch.zeros(2, 1, 3, 3))
    with pytest.raises(ValueError, match="unknown operator spec"):
        make_operator("warp:3", (1, 8, 8))
    with pytest.raises(ValueError, match="divide"):
        make_operator("sr:3", (1, 8, 8))
    with pytest.raises(ValueError, match=r"x_shape must be \(C, H, W\)"):
        make_operator("mri:4", (64,))
    with pytest.raises(TypeError, match="pseudo-inverse"):
        CT((1, 8, 8), 4).pinv(torch.zeros(1, 1, 4, 8))
    assert isinstance(make_operator("sr4", (1, 8, 8)), SuperResolution)
    assert isinstance(make_operator("inpaint-random:0.5", (64,)), Inpaint)
