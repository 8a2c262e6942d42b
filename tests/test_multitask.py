"""MT-Diffusion (seed 14): the aggregated process against exact answers, the multi-head model,
the per-modality losses and the joint sampler."""

import math

import pytest
import torch
import torch.nn.functional as F

from interpolant.errors import UserError
from interpolant.losses.multitask import MultiTaskObjective
from interpolant.models import build_model, model_config
from interpolant.models.multihead import MLPTrunk, MultiHead
from interpolant.multitask import (
    AggregatedProcess,
    MTDiffusionObjective,
    joint_mlp,
    sample_joint,
)

torch.set_num_threads(1)


def _process(**kw):
    return AggregatedProcess(steps=50, **kw)


def test_offset_recursion_equals_its_closed_form_sum():
    for schedule in ("early", "spread"):
        p = _process(weights=schedule)
        torch.testing.assert_close(p.c, p.offset_closed_form(), rtol=0, atol=1e-13)
        assert p.c[0] == 0
    # "early" weights leave the prior at N(0, I) up to a small offset; "spread" does not.
    assert _process(weights="early").prior_offset < 0.02 < _process(weights="spread").prior_offset
    assert _process(weights="none").c.abs().max() == 0


@pytest.mark.parametrize("s", [1, 7, 25, 50])
def test_simulated_forward_chain_equals_closed_form_marginal(s):
    p = _process(weights="spread", weight_total=3.0)
    n, dim = 40_000, 3
    gen = torch.Generator().manual_seed(s)
    z0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    emb = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    z = z0.expand(n, dim).clone()
    for r in range(1, s + 1):
        step = torch.full((n,), r, dtype=torch.long)
        z = p.step(
            z, emb.expand(n, dim), step, torch.randn(n, dim, generator=gen, dtype=torch.float64)
        )
    mean, std = p.marginal(z0[None], emb[None], torch.tensor([s]))
    var = float(std.square())
    # Mean within 5 standard errors; covariance entries within 5 of their standard errors.
    se_mean = math.sqrt(var / n)
    torch.testing.assert_close(z.mean(0), mean[0], rtol=0, atol=5 * se_mean)
    cov = torch.cov(z.T)
    se_cov = var * math.sqrt(2.0 / n)
    torch.testing.assert_close(
        cov, var * torch.eye(dim, dtype=torch.float64), rtol=0, atol=5 * se_cov
    )
    # The offset genuinely moved the mean (the test would notice c_s E missing).
    assert float((mean[0] - math.sqrt(float(p.abar[s])) * z0).norm()) > 10 * se_mean


def _conditional(mean, cov, d, z_s):
    """N(z_{s-1}; ...) from the joint Gaussian of (z_{s-1}, z_s) by the Schur complement."""
    s11, s12, s22 = cov[:d, :d], cov[:d, d:], cov[d:, d:]
    gain = torch.linalg.solve(s22, s12.T).T
    return mean[:d] + gain @ (z_s - mean[d:]), s11 - gain @ s12.T


@pytest.mark.parametrize("s", [1, 2, 13, 50])
def test_posterior_equals_direct_gaussian_conditioning(s):
    p = _process(weights="spread", weight_total=2.0)
    gen = torch.Generator().manual_seed(s)
    d = 4
    z0, emb, z_s = (torch.randn(d, generator=gen, dtype=torch.float64) for _ in range(3))
    # Joint of (z_{s-1}, z_s | z0, E): the marginal at s - 1 pushed through one transition.
    a, w = float(p.alpha[s]), float(p.w[s])
    m_prev, sd_prev = p.marginal(z0[None], emb[None], torch.tensor([s - 1]))
    v_prev = float(sd_prev.square())
    eye = torch.eye(d, dtype=torch.float64)
    mean = torch.cat([m_prev[0], math.sqrt(a) * (m_prev[0] + w * emb)])
    cov = torch.cat(
        [
            torch.cat([v_prev * eye, math.sqrt(a) * v_prev * eye], 1),
            torch.cat([math.sqrt(a) * v_prev * eye, (a * v_prev + 1 - a) * eye], 1),
        ]
    )
    # The joint's z_s block is the closed-form marginal at s.
    m_s, sd_s = p.marginal(z0[None], emb[None], torch.tensor([s]))
    torch.testing.assert_close(mean[d:], m_s[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(cov[d:, d:], float(sd_s.square()) * eye, rtol=0, atol=1e-12)
    want_mean, want_cov = _conditional(mean, cov, d, z_s)
    got_mean, got_var = p.posterior(z_s[None], z0[None], emb[None], torch.tensor([s]))
    torch.testing.assert_close(got_mean[0], want_mean, rtol=0, atol=1e-10)
    torch.testing.assert_close(float(got_var) * eye, want_cov, rtol=0, atol=1e-10)


def test_without_offset_the_posterior_is_ddpm():
    p = _process(weights="none")
    gen = torch.Generator().manual_seed(0)
    z0, z_s = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64)
    s = torch.arange(1, 6)
    mean, var = p.posterior(z_s, z0, torch.randn(5, 3, dtype=torch.float64), s)
    ab, ab_prev, a = p.abar[s, None], p.abar[s - 1, None], p.alpha[s, None]
    ddpm = (ab_prev.sqrt() * (1 - a) * z0 + a.sqrt() * (1 - ab_prev) * z_s) / (1 - ab)  # Ho Eq. 7
    torch.testing.assert_close(mean, ddpm, rtol=0, atol=1e-12)
    torch.testing.assert_close(var, (1 - ab_prev) * (1 - a) / (1 - ab), rtol=0, atol=1e-15)


def test_z0_from_eps_inverts_the_marginal_and_bad_steps_are_refused():
    p = _process()
    gen = torch.Generator().manual_seed(1)
    z0, emb, eps = torch.randn(3, 6, 2, generator=gen, dtype=torch.float64)
    s = torch.tensor([1, 5, 10, 20, 40, 50])
    z_s = p.sample(z0, emb, s, eps)
    torch.testing.assert_close(p.z0_from_eps(z_s, emb, eps, s), z0, rtol=0, atol=1e-9)
    with pytest.raises(UserError, match=r"steps must lie in 0\.\.50"):
        p.marginal(z0, emb, torch.full((6,), 51))
    with pytest.raises(UserError, match="s >= 1"):
        p.posterior(z_s, z0, emb, torch.zeros(6, dtype=torch.long))
    with pytest.raises(UserError, match="offset schedule"):
        AggregatedProcess(steps=10, weights="late")
    rebuilt = AggregatedProcess.from_config(p.config())
    torch.testing.assert_close(rebuilt.c, p.c, rtol=0, atol=1e-15)


def test_multihead_shares_one_trunk_and_reshapes_like_input_heads():
    net = build_model("multihead-mlp", dim=4, heads={"eps": "x", "label": 3}, width=8, depth=1)
    assert build_model(**model_config(net)).state_dict().keys() == net.state_dict().keys()
    x = torch.randn(5, 1, 2, 2)
    out = net(x, torch.rand(5))
    assert out["eps"].shape == x.shape and out["label"].shape == (5, 3)
    assert out["eps"].abs().max() == 0  # zero-initialised output layer, as the single-head MLP
    trunk = MLPTrunk(4, width=8, depth=1)
    heads = MultiHead(trunk, {"a": torch.nn.Linear(8, 2), "b": torch.nn.Linear(8, 4)}, ("b",))
    calls = []
    trunk.register_forward_hook(lambda *args: calls.append(1))
    got = heads(x, torch.rand(5))
    assert len(calls) == 1 and got["b"].shape == x.shape and got["a"].shape == (5, 2)
    with pytest.raises(UserError, match="like_input names"):
        MultiHead(trunk, {"a": torch.nn.Linear(8, 2)}, ("eps",))
    with pytest.raises(UserError, match="head 'label'"):
        build_model("multihead-mlp", dim=4, heads={"label": 0})


def test_multitask_objective_sums_weighted_modality_losses():
    gen = torch.Generator().manual_seed(0)
    outputs = {"eps": torch.randn(6, 4, generator=gen), "label": torch.randn(6, 3, generator=gen)}
    targets = {"eps": torch.randn(6, 4, generator=gen), "label": torch.tensor([0, 1, 2, 0, 1, 2])}
    objective = MultiTaskObjective({"eps": "mse", "label": "ce"}, {"label": 0.3})
    per = objective.per_modality(outputs, targets)
    torch.testing.assert_close(per["eps"], (outputs["eps"] - targets["eps"]).square().mean(1))
    nll = -outputs["label"].log_softmax(1).gather(1, targets["label"][:, None])[:, 0]
    torch.testing.assert_close(per["label"], nll)
    torch.testing.assert_close(objective.per_sample(outputs, targets), per["eps"] + 0.3 * nll)
    with pytest.raises(UserError, match="unknown loss"):
        MultiTaskObjective({"eps": "l1"})
    with pytest.raises(UserError, match="lack an output"):
        objective.per_modality({"eps": outputs["eps"]}, targets)
    with pytest.raises(UserError, match="weights name"):
        MultiTaskObjective({"eps": "mse"}, {"depth": 1.0})


def test_mt_objective_is_the_multitask_elbo_and_trains_the_encoders():
    p = _process()
    model = joint_mlp((1, 2, 2), 3, width=16, depth=1)
    x0 = torch.randn(8, 1, 2, 2)
    y = torch.arange(8) % 3
    objective = MTDiffusionObjective(p, {"class_labels": 0.5})
    loss = objective.loss(model, x0, torch.Generator().manual_seed(3), {"class_labels": y})
    # The same draws by hand: s, then eps, from the generator.
    gen = torch.Generator().manual_seed(3)
    s = torch.randint(1, p.steps + 1, (8,), generator=gen)
    eps = torch.randn(x0.shape, generator=gen)
    z_s = p.sample(x0, model.embed({"class_labels": y}), s, eps)
    out = model.net(z_s, p.time(s).float())
    want = (out["eps"] - eps).square().flatten(1).mean(1) + 0.5 * F.cross_entropy(
        out["label"], y, reduction="none"
    )
    torch.testing.assert_close(loss, want.mean(), rtol=1e-5, atol=1e-6)
    loss.backward()
    grad = model.encoders["class_labels"].weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0
    with pytest.raises(UserError, match="missing \\['class_labels'\\]"):
        objective.loss(model, x0, None, {})


def test_joint_samples_do_not_depend_on_batch_size_and_count_nfe():
    p = AggregatedProcess(steps=8)
    torch.manual_seed(0)
    model = joint_mlp((1, 2, 2), 3, width=16, depth=1)
    for param in model.parameters():  # a non-trivial network (the eps head starts at 0)
        torch.nn.init.normal_(param, std=0.3)
    whole = sample_joint(model, p, 6, seed=4)
    parts = sample_joint(model, p, 6, seed=4, batch_size=4)
    torch.testing.assert_close(whole.x, parts.x, rtol=1e-5, atol=1e-6)
    assert torch.equal(whole.labels["class_labels"], parts.labels["class_labels"])
    assert whole.nfe == 8 * 6 and whole.x.shape == (6, 1, 2, 2)
    torch.testing.assert_close(whole.probs["class_labels"].sum(1), torch.ones(6))
    assert whole.x.abs().max() <= 1.0 + 1e-6  # z0_hat clipped, last step noiseless
    other = sample_joint(model, p, 6, seed=5)
    assert not torch.allclose(other.x, whole.x)
