"""The default rule (``solvers.defaults``, docs/decisions.md): what ``ip.sample(model, noise,
nfe=N)`` runs, its grid, its use of the model's sigma_data, and that it beats the old default
(DPM-Solver++ 2M on Karras sigmas down to 0.002) against the exact ODE solution."""

from __future__ import annotations

import math

import pytest
import torch

import interpolant as ip
from interpolant import paths
from interpolant.data.oracles import aniso16, ring2d
from interpolant.predictions import Preconditioned
from interpolant.solvers import Sampler, reference_sample, sample
from interpolant.solvers.defaults import Auto, model_sigma_data, rule_order, rule_step_size
from interpolant.solvers.grids import Auto as AutoGrid
from interpolant.solvers.grids import Karras


def _edm_sigmas(path, grid: torch.Tensor) -> torch.Tensor:
    return torch.stack([path.edm_sigma(t) if t > 0 else t.new_zeros(()) for t in grid])


def test_default_spec_is_the_rule():
    spec = Sampler(nfe=10)
    assert isinstance(spec.solver, Auto) and isinstance(spec.grid, AutoGrid)
    assert spec.config()["solver"] == {"name": "auto"}
    assert Sampler.from_config(spec.config()) == spec
    # A named solver keeps the Karras grid (the old default's), unless a grid is given.
    assert isinstance(Sampler("heun", steps=5).grid, Karras)
    assert isinstance(Sampler("heun", steps=5, grid="auto").grid, AutoGrid)


@pytest.mark.parametrize("path", [paths.EDM(), paths.VPLinear(), paths.Linear()])
def test_auto_grid_noise_levels(path):
    # sigma_min = 10 sigma_data / N^2 (0.05 for N = 10 at sigma_data 0.5), uniform in log-SNR
    # from min(sigma(t_max), 160 sigma_data) = 80, the first node at t_max, then 0.
    steps = 10
    t = Sampler(nfe=steps).times(path)
    assert t[0] == 1.0 and t[-1] == 0.0 and len(t) == steps + 1
    sigmas = _edm_sigmas(path, t)
    assert math.isclose(float(sigmas[-2]), 0.05, rel_tol=1e-9)
    log_s = torch.log(sigmas[1:-1])
    spacing = log_s[:-1] - log_s[1:]
    torch.testing.assert_close(spacing, torch.full_like(spacing, math.log(80 / 0.05) / 9))
    with_sd = Sampler(nfe=steps).times(path, sigma_data=1.0)
    assert math.isclose(float(_edm_sigmas(path, with_sd)[-2]), 0.1, rel_tol=1e-9)


def test_model_sigma_data_is_read_from_preconditioning():
    net = torch.nn.Linear(2, 2)
    model = ip.Model(Preconditioned(lambda x, t: x, paths.EDM(), sigma_data=0.8), paths.EDM())
    assert model_sigma_data(model) == 0.8
    assert model_sigma_data(ip.Model(lambda x, t: net(x), paths.EDM())) is None
    # sample() uses it: the grid ends at 10 * 0.8 / N^2.
    result = sample(model, torch.zeros(2, 2), nfe=8)
    assert math.isclose(float(paths.EDM().edm_sigma(result.grid[-2])), 8.0 / 64, rel_tol=1e-9)


def test_rule_order_and_delegation():
    assert [rule_order(n) for n in (1, 2, 10, 20, 41, 42, 100)] == [1, 2, 2, 2, 2, 3, 3]
    assert rule_step_size(42) <= 0.25 < rule_step_size(41)
    # The auto solver is UniPC of the rule's order, step for step.
    gm, path = aniso16(), paths.EDM()
    noise = torch.randn(16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for n in (3, 12, 45):
        auto = sample(gm.model(path), noise, nfe=n)
        grid = auto.grid
        unipc = sample(gm.model(path), noise, solver={"name": "unipc", "order": rule_order(n)},
                       grid=grid)  # fmt: skip
        assert auto.nfe == n
        torch.testing.assert_close(auto.x, unipc.x, rtol=0, atol=0)


def test_default_beats_the_old_default_on_ring2d():
    # The case: ring2d at NFE 10, where DPM-Solver++ 2M on Karras sigmas down to 0.002
    # (the old default) is several times worse than the best fixed configuration.
    gm, path = ring2d(), paths.EDM()
    noise = torch.randn(256, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    model = gm.model(path)
    ref = reference_sample(model, noise, rtol=1e-9, atol=1e-9)

    def rmse(x):
        return float((x - ref).square().mean().sqrt())

    new = rmse(sample(model, noise, nfe=10).x)
    old = rmse(sample(model, noise, solver="dpmpp_2m", grid="karras", nfe=10).x)
    assert new < 0.3 * old, (new, old)
