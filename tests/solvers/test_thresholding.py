"""Clipping and dynamic thresholding of x0_hat: the rule itself, diffusers' DDIM with
``clip_sample`` / ``thresholding`` (and ``use_clipped_model_output=True``) step for step, and that
every solver kind (data, noise and velocity based) moves with the thresholded x0."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture
from interpolant.errors import UserError
from interpolant.solvers import Thresholding, sample


def _oracle() -> GaussianMixture:
    # Modes outside [-1, 1], so x0_hat needs thresholding at every noise level.
    means = torch.tensor([[-1.6, 0.4, 1.1], [1.4, -1.2, 0.2]], dtype=torch.float64)
    covs = torch.stack([torch.eye(3, dtype=torch.float64) * 0.3**2] * 2)
    return GaussianMixture(means, covs)


def _noise(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_dynamic_thresholding_rule():
    x0 = torch.tensor([[0.2, -0.5, 0.9], [3.0, -1.5, 0.5], [-2.0, 0.1, 0.1]], dtype=torch.float64)
    hook = Thresholding("dynamic", ratio=1.0, max_value=2.5)
    out = hook.threshold(x0)
    # Row 0 is inside [-1, 1]: s = 1, unchanged. Row 1: s = min(3, 2.5); row 2: s = 2.
    torch.testing.assert_close(out[0], x0[0])
    torch.testing.assert_close(out[1], x0[1].clamp(-2.5, 2.5) / 2.5)
    torch.testing.assert_close(out[2], x0[2] / 2.0)
    # Per sample: a row's result does not depend on the others.
    torch.testing.assert_close(hook.threshold(x0[1:2]), out[1:2], rtol=0, atol=0)
    clip = Thresholding("clip", clip_range=1.2).threshold(x0)
    torch.testing.assert_close(clip, x0.clamp(-1.2, 1.2))


@pytest.mark.peers
@pytest.mark.parametrize(
    ("options", "peer"),
    [
        ({"mode": "dynamic", "ratio": 0.9, "max_value": 1.5}, {"thresholding": True,
         "dynamic_thresholding_ratio": 0.9, "sample_max_value": 1.5}),
        ({"mode": "clip", "clip_range": 1.2}, {"clip_sample": True, "clip_sample_range": 1.2}),
    ],
)  # fmt: skip
def test_ddim_matches_diffusers(options, peer):
    diffusers = pytest.importorskip("diffusers")
    gm, path, noise = _oracle(), paths.DiscreteVP(), _noise()
    n = 10
    scheduler = diffusers.DDIMScheduler(set_alpha_to_one=True, **{"clip_sample": False, **peer})
    scheduler.set_timesteps(n)
    alphas = scheduler.alphas_cumprod.to(torch.float64)
    starts = torch.arange(n - 1, -1, -1, dtype=torch.float64) * (1000 // n)
    grid = torch.cat([(starts + 1.0) / 1000.0, torch.zeros(1, dtype=torch.float64)])
    x = noise * float(path.sigma(grid[:1])[0])
    for timestep in scheduler.timesteps:
        a_bar = float(alphas[int(timestep)])
        t = torch.full((x.shape[0],), (int(timestep) + 1) / 1000.0, dtype=torch.float64)
        eps_hat = (x - math.sqrt(a_bar) * gm.denoiser(x, t, path)) / math.sqrt(1 - a_bar)
        x = scheduler.step(
            eps_hat[:, None], timestep, x[:, None], use_clipped_model_output=True
        ).prev_sample[:, 0]
    hook = Thresholding(**options)
    ours = sample(gm.model(path), noise, solver="ddim", grid=grid, hooks=[hook]).x
    torch.testing.assert_close(ours, x, rtol=0, atol=1e-7)
    plain = sample(gm.model(path), noise, solver="ddim", grid=grid).x
    assert float((plain - ours).abs().max()) > 0.1  # the thresholding did something


@pytest.mark.parametrize(
    ("path", "solver"),
    [(paths.VP(), "ddim"), (paths.VP(), "dpmpp_2m"), (paths.Linear(), "euler"),
     (paths.EDM(), "heun"), (paths.VP(), "ipndm")],
)  # fmt: skip
def test_every_solver_kind_ends_inside_the_range(path, solver):
    # The final step to t = 0 returns the thresholded x0 for data-, noise- and velocity-based
    # solvers alike, so the samples lie inside [-1, 1]; without the hook they
    # do not (the modes are outside).
    gm, noise = _oracle(), _noise(64, 1)
    hook = Thresholding("dynamic", ratio=0.995)
    x = sample(gm.model(path), noise, solver=solver, nfe=12, hooks=[hook]).x
    assert float(x.abs().max()) <= 1.0 + 1e-9
    plain = sample(gm.model(path), noise, solver=solver, nfe=12).x
    assert float(plain.abs().max()) > 1.2


def test_bad_options_are_refused():
    for kwargs, match in (
        ({"mode": "hard"}, "mode must be one of"),
        ({"ratio": 1.5}, "quantile in"),
        ({"max_value": 0.5}, "max_value must be >= 1"),
        ({"mode": "clip", "clip_range": 0.0}, "clip_range must be > 0"),
    ):
        with pytest.raises(UserError, match=match):
            Thresholding(**kwargs)
