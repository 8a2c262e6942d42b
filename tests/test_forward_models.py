"""Observation-space diffusion (seed 20) against exact answers: for a Gaussian signal and
linear views the closed-form E[S | O_t, O_c] minimises the loss (its value is the analytic
posterior error, a shift by delta adds exactly delta^T M delta), and sampling with it draws the
exact conditional p(S | O_c); non-differentiable forward models are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from interpolant import paths
from interpolant.errors import UserError
from interpolant.forward_models import (
    ForwardModel,
    GaussianSignalNet,
    MaskedViewNet,
    ObservationDiffusion,
    ViewBatch,
    digit_views,
    mask_views,
    sample_signal,
)
from interpolant.inverse.operators import GaussianBlur, Inpaint, RandomProjection, as_matrix
from interpolant.solvers import Sampler


def gaussian(d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return torch.randn(d, generator=g, dtype=torch.float64), a @ a.T / d + 0.2 * torch.eye(d)


def draw(mean, cov, n, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, mean.numel(), generator=g, dtype=torch.float64)
    return mean + z @ torch.linalg.cholesky(cov).T


def views(kind: str) -> ForwardModel:
    if kind == "masks":
        return mask_views(torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]]))
    if kind == "projections":
        return ForwardModel([RandomProjection((4,), 3, seed=s) for s in range(3)])
    # Context: the top half of a 4x4 image; target: a blur of the whole image.
    top = torch.zeros(1, 4, 4)
    top[:, :2] = 1
    return ForwardModel([Inpaint(top), GaussianBlur((1, 4, 4), 0.8, kernel_size=3)])


@pytest.mark.parametrize("kind", ["masks", "projections", "blur"])
def test_the_closed_form_denoiser_minimises_the_loss_by_the_analytic_margin(kind):
    forward = views(kind)
    shape = forward.signal_shape
    d = math.prod(shape)
    mean, cov = gaussian(d)
    path, n, lam = paths.VP(), 20000, 0.7
    objective = ObservationDiffusion(path, forward, context_weight=lam, weight="min-snr-5")
    oracle = GaussianSignalNet(mean, cov, forward, path)
    s = draw(mean, cov, n, 1).reshape(n, *shape)
    vg, vc = torch.full((n,), 1), torch.full((n,), 0)
    batch = ViewBatch(vg, forward(s, vc), vc, target=forward(s, vg))
    t = torch.full((n,), 0.4, dtype=torch.float64)
    eps = torch.randn(batch.target.shape, generator=torch.Generator().manual_seed(2)).double()
    best = objective.per_sample_loss(oracle, batch, t=t, eps=eps)
    # Analytic value: E |A (S* - S)|^2 / m = tr(A^T A Cov(S | y)) / m per view.
    a_g, a_c = as_matrix(forward.operators[1]), as_matrix(forward.operators[0])
    m = a_g.shape[0]
    w = float(objective.weight(path, t[:1], "x0"))
    post = oracle.posterior_cov(t[:1], vg[:1], vc[:1])[0]
    metric = (w * a_g.T @ a_g + lam * a_c.T @ a_c) / m
    expected = float(torch.trace(metric @ post))
    assert expected > 1e-3  # the two views leave S uncertain
    assert abs(float(best.mean()) - expected) < 4 * float(best.std()) / math.sqrt(n)
    delta = torch.linspace(-0.3, 0.4, d, dtype=torch.float64)

    def shifted(x, t, **cond):
        return oracle(x, t, **cond) + delta.reshape(shape)

    worse = objective.per_sample_loss(shifted, batch, t=t, eps=eps)
    gap = worse - best
    assert abs(float(gap.mean()) - float(delta @ metric @ delta)) < 4 * float(gap.std()) / n**0.5
    assert float(gap.mean()) > 0


@pytest.mark.parametrize("target_view", [1, 2])  # the complement of the context, the identity
def test_sampling_with_the_closed_form_denoiser_draws_the_exact_conditional(target_view):
    forward = views("masks")
    mean, cov = gaussian(4, seed=3)
    path, n = paths.Linear(), 4000
    objective = ObservationDiffusion(path, forward)
    oracle = GaussianSignalNet(mean, cov, forward, path)
    s0 = draw(mean, cov, 1, 4)
    context = forward(s0, torch.zeros(1)).expand(n, 4)
    batch = ViewBatch(torch.full((n,), target_view), context, torch.zeros(n, dtype=torch.long))
    noise = torch.randn(n, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out = sample_signal(objective, oracle, noise, batch, Sampler("heun", steps=40))
    assert out.nfe == out.result.nfe + 1
    # The exact conditional of S given its first two coordinates.
    c, u = slice(0, 2), slice(2, 4)
    gain = cov[u, c] @ torch.linalg.inv(cov[c, c])
    cond_mean = mean[u] + gain @ (s0[0, c] - mean[c])
    cond_cov = cov[u, u] - gain @ cov[c, u]
    sig = out.signal
    torch.testing.assert_close(sig[:, c], s0[:, c].expand(n, 2), atol=1e-6, rtol=0)
    se = (cond_cov.diagonal() / n).sqrt()
    assert bool(((sig[:, u].mean(0) - cond_mean).abs() < 4 * se + 2e-3).all())
    emp = torch.cov(sig[:, u].T)
    assert float((emp - cond_cov).norm() / cond_cov.norm()) < 0.08
    # The rendered target view is the sample of the observation diffusion itself.
    torch.testing.assert_close(forward(sig, batch.target_view), out.observation, atol=1e-6, rtol=0)


def test_a_forward_model_that_detaches_the_signal_is_refused():
    with pytest.raises(UserError, match="passes no gradient"):
        ForwardModel(lambda s, v: s.detach() * 2, signal_shape=(4,))
    with pytest.raises(UserError, match="passes no gradient"):
        ForwardModel(lambda s, v: torch.from_numpy(np.asarray(s.detach()) ** 2), signal_shape=(4,))
    with pytest.raises(UserError, match="passes no gradient"):
        mask_views(torch.zeros(2, 4))
    with pytest.raises(UserError, match="signal_shape"):
        ForwardModel(lambda s, v: s)
    ok = ForwardModel(lambda s, v: s * v[:, None], signal_shape=(3,), probe_views=torch.ones(2))
    assert ok(torch.ones(2, 3), torch.tensor([2.0, 3.0]))[:, 0].tolist() == [2.0, 3.0]


def test_bad_inputs_are_refused_with_clear_messages():
    forward = views("masks")
    with pytest.raises(UserError, match="same signal shape"):
        ForwardModel([Inpaint(torch.ones(4)), Inpaint(torch.ones(5))])
    with pytest.raises(UserError, match=r"indices in \[0, 3\)"):
        forward(torch.ones(2, 4), torch.tensor([0, 3]))
    objective = ObservationDiffusion(paths.VP(), forward)
    batch = ViewBatch(
        torch.ones(2).long(), torch.ones(2, 4), torch.zeros(2).long(), torch.ones(2, 4)
    )
    with pytest.raises(UserError, match="signal network returned"):
        objective.loss(lambda x, t, **c: x[:, :2], batch)
    with pytest.raises(UserError, match="context_weight"):
        ObservationDiffusion(paths.VP(), forward, context_weight=-1.0)


def test_digit_views_and_the_masked_view_net():
    masks = digit_views()
    assert masks.shape == (8, 64) and masks.sum(1).tolist() == [32.0] * 4 + [48.0] * 4
    top = masks[0].reshape(8, 8)
    assert top[:4].all() and not top[4:].any()
    torch.manual_seed(0)
    net = MaskedViewNet(masks, width=32, depth=2)
    objective = ObservationDiffusion(paths.VP(), mask_views(masks))
    s = torch.randn(5, 64)
    vg, vc = torch.tensor([1, 2, 3, 4, 5]), torch.zeros(5, dtype=torch.long)
    batch = ViewBatch(vg, objective.forward(s, vc), vc, objective.forward(s, vg))
    loss = objective.loss(net, batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert net.inp.weight.grad is not None and float(net.inp.weight.grad.abs().sum()) > 0
    # The network sees the noisy target only inside the target mask.
    x = torch.randn(5, 64)
    t = torch.rand(5)
    outside = x + 10 * (1 - masks[vg].float())
    torch.testing.assert_close(net(x, t, **batch.cond()), net(outside, t, **batch.cond()))
