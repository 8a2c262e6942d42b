"""Issue 13's defects, each pinned: inpainting noise only where observed, nfe= meaning model
evaluations for RePaint and COW, every solver reachable from solve(), DiffusionMBIR refusing
operators it cannot use, reconstruction guidance's default scale."""

from __future__ import annotations

import pytest
import torch

import interpolant as ip
from interpolant.data.oracles import lowrank64
from interpolant.guidance.energy import ReconstructionGuidance
from interpolant.inverse import Inpaint, SliceOperator, diffusion_mbir
from interpolant.inverse.cow import cow_cost, cow_solve
from interpolant.inverse.operators import RandomProjection
from interpolant.inverse.solvers import (
    METHODS,
    repaint,
    repaint_cost,
    repaint_steps_for_nfe,
    solve,
)

torch.set_num_threads(1)


class Counting:
    def __init__(self, prior, path) -> None:
        self.prior, self.path, self.rows = prior, path, 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.prior.denoiser(x, t.to(torch.float64), self.path).to(x.dtype)


def _setup(path=None):
    prior = lowrank64(dim=8)
    path = path or ip.paths.VPLinear()
    net = Counting(prior, path)
    mask = torch.zeros(8, dtype=torch.float64)
    mask[:4] = 1
    x = prior.sample(2, torch.Generator().manual_seed(0))
    return ip.Model(net, path, "x0"), net, Inpaint(mask, noise_std=0.1), x


def test_inpaint_measure_adds_noise_only_where_observed() -> None:
    _, _, op, x = _setup()
    y = op.measure(x, seed=1)
    assert bool((y[:, 4:] == 0).all())  # was noise_std * n there before the fix
    assert float((y[:, :4] - x[:, :4]).abs().max()) > 0
    # The observed entries keep the noise the base class draws.
    base = ip.inverse.base.Operator.measure(op, x, seed=1)
    torch.testing.assert_close(y[:, :4], base[:, :4])


def test_repaint_nfe_is_model_evaluations() -> None:
    model, net, op, x = _setup()
    y = op.measure(x, seed=1)
    out = repaint(model, op, y, nfe=100, jump_length=5, resamples=3, seed=0)
    assert out.nfe == net.rows // 2 <= 100
    steps = repaint_steps_for_nfe(100, 5, 3)  # the most steps that fit
    assert out.nfe == repaint_cost(steps, 5, 3) and repaint_cost(steps + 1, 5, 3) > 100
    assert repaint_cost(50) == 410  # the default: 50 steps, jumps 10, 10 resamples
    with pytest.raises(ValueError, match="not both"):
        repaint(model, op, y, nfe=100, steps=10)


def test_cow_nfe_is_model_evaluations() -> None:
    model, net, op, x = _setup(ip.paths.VP())
    y = op.measure(x, seed=1)
    out = cow_solve(model, op, y, nfe=35, seed=0)
    assert out.nfe == net.rows // 2 == cow_cost(10) == 35  # was 10 grid steps = 35 NFE
    net.rows = 0
    out = cow_solve(model, op, y, nfe=60, seed=0)
    assert out.nfe == net.rows // 2 <= 60


@pytest.mark.parametrize("method", ["flowchef", "cow"])
def test_solve_reaches_every_solver(method: str) -> None:
    assert {"flowchef", "cow", "mbir"} <= set(METHODS)
    model, net, op, x = _setup(ip.paths.Linear() if method == "flowchef" else ip.paths.VP())
    y = op.measure(x, seed=1)
    out = solve(model, op, y, method, nfe=40, seed=0)
    assert out.x.shape == x.shape and out.nfe == net.rows // 2 <= 40


def test_mbir_refuses_operators_it_cannot_use() -> None:
    model, _, _, _ = _setup(ip.paths.VE())
    dense = SliceOperator(RandomProjection((1, 2, 4), 6, noise_std=0.0, seed=0), 1)
    y = torch.zeros(1, 1, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="depth 1"):
        diffusion_mbir(model, dense, y, nfe=4)
    with pytest.raises(ValueError, match="nonnegative"):
        diffusion_mbir(model, dense, y, nfe=4, couple=False)
    deep = SliceOperator(RandomProjection((1, 2, 4), 6, seed=0), 2)
    with pytest.raises(ValueError, match="nonnegative"):
        solve(model, deep, torch.zeros(1, 2, 6, dtype=torch.float64), "mbir", nfe=4)


def test_reconstruction_guidance_has_a_default_scale() -> None:
    _, _, op, x = _setup()
    hook = ReconstructionGuidance(op, op(x), mode="gaussian")
    assert hook.weight(0.5) == 1.0
