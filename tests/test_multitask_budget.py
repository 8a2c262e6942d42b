"""The multitask sampler honours its budget: nfe = T is the full ancestral chain (bitwise the
one-step DDPM-style sampler), nfe < T a strided subsequence spending exactly nfe evaluations;
the strided posterior is the Gaussian conditioning of the unrolled chain."""

import pytest
import torch

from interpolant.errors import UserError
from interpolant.multitask import AggregatedProcess, joint_mlp, sample_joint
from interpolant.multitask.process import strided_steps
from interpolant.randomness import Streams
from interpolant.solvers import Sampler
from interpolant.train.structures import MultiTaskModel

torch.set_num_threads(1)


def _model(seed=0):
    torch.manual_seed(seed)
    model = joint_mlp((1, 2, 2), 3, width=16, depth=1)
    for param in model.parameters():  # a non-trivial network (the eps head starts at 0)
        torch.nn.init.normal_(param, std=0.3)
    return model


@torch.no_grad()
def _one_step_reference(model, p, n, seed):
    """The full-chain sampler written out with DDPM's one-step tables (alpha_s, w_s)."""
    streams = Streams(seed, torch.arange(n).numpy(), "mt-diffusion")
    model.eval()
    z = streams.normal(model.shape, dtype=torch.float32)
    for s_int in range(p.steps, 0, -1):
        s = torch.full((n,), s_int)
        out = model(z, p.time(s).float())
        e_hat = model.expected_embedding(out).to(z.dtype)
        z0 = p.z0_from_eps(z, e_hat, out["eps"], s).clamp(-1, 1)
        f32 = torch.float32
        a, w = p.alpha[s_int].to(f32), p.w[s_int].to(f32)
        ab, ab_prev, c_prev = (p.abar[s_int].to(f32), p.abar[s_int - 1].to(f32),
                               p.c[s_int - 1].to(f32))  # fmt: skip
        prior = ab_prev.sqrt() * z0 + c_prev * e_hat
        mean = ((1 - a) * prior + a.sqrt() * (1 - ab_prev) * (z - a.sqrt() * w * e_hat)) / (1 - ab)
        var = (1 - ab_prev) * (1 - a) / (1 - ab)
        z = mean + var.sqrt() * streams.normal(model.shape, dtype=z.dtype)
    return z


def test_full_budget_is_the_one_step_chain_bitwise():
    p = AggregatedProcess(steps=12, weights="spread")
    model = _model()
    full = sample_joint(model, p, 5, seed=3)
    explicit = sample_joint(model, p, 5, seed=3, nfe=12)
    assert torch.equal(full.x, explicit.x) and full.nfe == explicit.nfe == 12 * 5
    assert torch.equal(full.x, _one_step_reference(model, p, 5, seed=3))


@pytest.mark.parametrize("budget", [1, 3, 7])
def test_a_smaller_budget_spends_exactly_nfe_evaluations(budget):
    p = AggregatedProcess(steps=12)
    model = _model(1)
    rows = []
    handle = model.net.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[0]))
    out = sample_joint(model, p, 7, seed=0, batch_size=3, nfe=budget)
    handle.remove()
    # 3 batches (3 + 3 + 1 rows), each evaluated once per visited step.
    assert len(rows) == 3 * budget and sum(rows) == budget * 7
    assert out.nfe == budget * 7 and torch.isfinite(out.x).all()
    assert out.x.abs().max() <= 1.0 + 1e-6  # the last step lands on z0_hat, noiselessly
    steps = strided_steps(12, budget)
    assert steps[0] == 12 and steps[-1] == 0 and len(set(steps)) == budget + 1


def test_strided_posterior_is_the_gaussian_conditioning_of_the_unrolled_chain():
    p = AggregatedProcess(steps=20, weights="early", weight_fraction=0.5)
    s, prev = torch.tensor([9, 20, 5]), torch.tensor([2, 11, 4])
    a, w = p.jump(s, prev)
    # One step: DDPM's alpha_s and the offset weight w_s, exactly.
    a1, w1 = p.jump(s, s - 1)
    assert torch.equal(a1, p.alpha[s]) and torch.equal(w1, p.w[s])
    # The jump carries the marginal at prev to the marginal at s (mean and variance).
    torch.testing.assert_close(a.sqrt() * (p.c[prev] + w), p.c[s], rtol=0, atol=1e-12)
    torch.testing.assert_close(a * (1 - p.abar[prev]) + 1 - a, 1 - p.abar[s], rtol=0, atol=1e-12)
    # Direct conditioning of the jointly Gaussian (z_prev, z_s) given z0 and E, per coordinate.
    gen = torch.Generator().manual_seed(0)
    z0, e, zs = (torch.randn(3, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    mean, var = p.posterior(zs, z0, e, s, prev)
    m_prev = p.abar[prev].sqrt()[:, None] * z0 + p.c[prev][:, None] * e
    m_s = p.abar[s].sqrt()[:, None] * z0 + p.c[s][:, None] * e
    v_prev, v_s = 1 - p.abar[prev], 1 - p.abar[s]
    cov = a.sqrt() * v_prev  # Cov(z_prev, z_s)
    want = m_prev + (cov / v_s)[:, None] * (zs - m_s)
    torch.testing.assert_close(mean, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(var.flatten(), v_prev - cov**2 / v_s, rtol=0, atol=1e-12)


def test_the_run_model_reports_its_evaluations_and_refuses_what_it_cannot_follow():
    p = AggregatedProcess(steps=10)
    run_model = MultiTaskModel(_model(2), p)
    drawn = run_model.draw(6, seed=0, batch_size=4, sampler=Sampler(nfe=4, grid="auto"))
    assert drawn.nfe == 4 and drawn.x.shape == (6, 1, 2, 2) and drawn.labels.shape == (6,)
    assert run_model.draw(2, 0, 2, sampler=None).nfe == 10
    with pytest.raises(UserError, match=r"sample\.solver=auto"):
        run_model.draw(2, 0, 2, sampler=Sampler("heun", nfe=4))
    with pytest.raises(UserError, match="at most 10"):
        run_model.draw(2, 0, 2, sampler=Sampler(nfe=11, grid="auto"))
