"""RBF (Kim et al. 2025): marginal-preserving SDEs of a flow, the linear-to-VP interpolant
conversion, particle sampling and rollover budget forcing on exact Gaussian-mixture models."""

import math

import pytest
import torch

from interpolant.adapters import convert_path
from interpolant.data import ring2d
from interpolant.paths import Linear, VPLinear
from interpolant.predictions import Model
from interpolant.scaling import LinearReward
from interpolant.scaling.rbf import diffusion_coefficient, particle_sample, rbf_sample
from interpolant.solvers import FunctionHook, Sampler, Trajectory, sample
from interpolant.solvers.sde import SDEEuler

MIX = ring2d()
LINEAR = Linear()


def _velocity_model() -> Model:
    """The exact rectified-flow velocity of the ring (a flow model, as RBF assumes)."""
    return Model(
        lambda x, t: MIX.velocity(x, t.to(torch.float64), LINEAR).to(x.dtype), LINEAR, "velocity"
    )


REWARD = LinearReward(torch.tensor([1.0, 0.4]))


def test_diffusion_coefficient_families() -> None:
    t = 0.6
    assert diffusion_coefficient("square", 3.0)(t) == pytest.approx(3 * t**2)
    assert diffusion_coefficient("linear", 2.0)(t) == pytest.approx(2 * t)
    assert diffusion_coefficient("constant", 0.5)(t) == 0.5
    assert diffusion_coefficient("sin", 1.0)(t) == pytest.approx(math.sin(math.pi * t / 2))
    assert diffusion_coefficient("clipping", 1.0)(t) == pytest.approx(0.2)
    assert diffusion_coefficient("sigma", 2.0, VPLinear())(t) == pytest.approx(
        2 * float(VPLinear().sigma(torch.tensor(t, dtype=torch.float64)))
    )
    with pytest.raises(ValueError, match="needs path"):
        diffusion_coefficient("sigma")
    with pytest.raises(ValueError, match="g kind"):
        diffusion_coefficient("cubic")


def test_sde_with_any_g_keeps_the_flow_marginals() -> None:
    # Stochastic generation: drift u - (g^2 / 2) s with the score from the velocity.
    # Measured by the exact data log-density (sensitive to the within-mode spread, std 0.05) and
    # a chi-square of the mode counts (8 modes, 7 degrees of freedom).
    model, n = _velocity_model(), 500
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grid = torch.linspace(1.0, 0.0, 51, dtype=torch.float64)

    def stats(x: torch.Tensor) -> tuple[float, float]:
        counts = torch.bincount(MIX.posterior_weights(x, 0.0, LINEAR).argmax(1), minlength=8)
        chi2 = float(((counts - n / 8) ** 2).sum() / (n / 8))
        return float(MIX.log_prob(x).mean()), chi2

    ode_logp, _ = stats(sample(model, noise, solver="euler", grid=grid).x)
    assert abs(ode_logp - float(MIX.log_prob(MIX.sample(n)).mean())) < 0.5
    for g in ("square", "linear", "sigma"):
        g_fn = diffusion_coefficient(g, 1.0, LINEAR)
        logp, chi2 = stats(sample(model, noise, solver=SDEEuler(g=g_fn), grid=grid, seed=0).x)
        assert abs(logp - ode_logp) < 0.3 and chi2 < 25.0, (g, logp, ode_logp, chi2)
    # Negative controls: without the score correction, or with twice it, the marginals are off.
    for factor in (0.0, 2.0):
        hooks = [
            FunctionHook(
                on_prediction=lambda pred, node, run, f=factor: pred.override(score=f * pred.score)
            )
        ]
        bad = sample(model, noise, solver=SDEEuler(g=1.0), grid=grid, seed=0, hooks=hooks)
        assert stats(bad.x)[0] < ode_logp - 5.0, factor


def test_vp_conversion_matches_exact_vp_model_and_the_papers_formula() -> None:
    vp = VPLinear()
    converted = convert_path(_velocity_model(), vp)
    exact = MIX.model(vp)
    x = torch.randn(7, 2, dtype=torch.float64)
    for r in (0.95, 0.6, 0.3, 0.05):
        ours = converted(x, r).velocity
        assert torch.allclose(ours, exact(x, r).velocity, atol=1e-10, rtol=1e-10)

        # The paper's converted velocity: t(r) = SNR_lin^{-1}(SNR_vp(r)),
        # s(r) = sigma_vp(r) / sigma_lin(t(r)), u_bar(x) = (s'/s) x + s t' u(x / s, t).
        def t_of(rr: torch.Tensor) -> torch.Tensor:
            return LINEAR.t_of_logsnr(vp.logsnr(rr))

        def s_of(rr: torch.Tensor) -> torch.Tensor:
            return vp.sigma(rr) / LINEAR.sigma(t_of(rr))

        rr = torch.tensor(r, dtype=torch.float64)
        t = t_of(rr)
        dt = torch.autograd.functional.jacobian(t_of, rr)
        s, ds = s_of(rr), torch.autograd.functional.jacobian(s_of, rr)
        u = MIX.velocity(x / s, t, LINEAR)
        paper = (ds / s) * x + s * dt * u
        assert torch.allclose(ours, paper, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("path", ["vp", None])
def test_particle_sampling_with_one_particle_is_plain_sde_sampling(path: str | None) -> None:
    model = _velocity_model()
    noise = torch.randn(5, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    spec = Sampler(
        SDEEuler(g=diffusion_coefficient("square", 3.0)), steps=8, grid="uniform", seed=3
    )
    res = particle_sample(model, REWARD, noise, spec, n_particles=1, path=path)
    sampled = model if path is None else convert_path(model, VPLinear())
    traj = Trajectory()
    plain = sample(sampled, noise, spec, hooks=[traj])
    assert torch.equal(res.x, plain.state(traj).x0[-1])  # the last step is Tweedie's x0_hat
    if path is None:  # on the linear path that is the Euler step to t = 0
        assert torch.allclose(res.x, plain.x, atol=1e-12)
    assert res.ledger.model_evals == 5 * 8 and res.nfe == plain.nfe == 8
    assert torch.allclose(res.rewards, REWARD(res.x))


def test_particle_sampling_raises_the_reward() -> None:
    model = _velocity_model()
    noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    one = particle_sample(model, REWARD, noise, n_particles=1, steps=6, path=None)
    many = particle_sample(model, REWARD, noise, n_particles=8, steps=6, path=None)
    assert many.nfe == 1 + 5 * 8
    assert float(many.rewards.mean()) > float(one.rewards.mean()) + 0.3
    assert many.ledger.model_evals == 64 * (1 + 5 * 8)


@pytest.mark.parametrize("parallel", [1, 3])
def test_rollover_budget_accounting(parallel: int) -> None:
    n, budget, n_init, steps = 4, 60, 5, 6
    res = rbf_sample(
        _velocity_model(),
        REWARD,
        budget,
        (2,),
        n=n,
        steps=steps,
        n_init=n_init,
        parallel=parallel,
    )
    quota = (budget - n_init) // (steps - 1)
    assert res.quota == quota
    assert len(res.allotted) == steps - 1
    assert torch.all(res.allotted[0] == quota)
    for k in range(steps - 2):
        allot, used = res.allotted[k], res.used[k]
        assert torch.all(used <= allot) and torch.all(used % parallel == 0)
        # A step that did not accept early spent all it could in whole rounds.
        full = ~res.rolled_over[k]
        assert torch.all(allot[full] - used[full] < parallel)
        # Exactly the unused NFE rolls over to the next step.
        if k < steps - 3:
            assert torch.equal(res.allotted[k + 1], quota + allot - used)
    spent_before_last = n_init + sum(res.used[:-1])
    assert torch.equal(res.allotted[-1], budget - spent_before_last)
    assert not bool(res.rolled_over[-1].any())
    total = n * n_init + int(sum(u.sum() for u in res.used))
    assert res.ledger.model_evals == total <= n * budget and res.nfe == total / n
    assert budget * n - total < n * parallel  # at most one round's worth left unspent
    assert bool(torch.stack(res.rolled_over[:-1]).any())  # rollover happened at least once
    assert torch.allclose(res.rewards, REWARD(res.x))


def test_rbf_samples_do_not_depend_on_the_batch() -> None:
    # Sample i's noise is row i of its streams, its draws numbered by (step, round): the other
    # samples (how many, how many rounds they need) do not change it.
    kwargs = {"steps": 5, "n_init": 4, "seed": 7}
    alone = rbf_sample(_velocity_model(), REWARD, 40, (2,), n=1, **kwargs)
    few = rbf_sample(_velocity_model(), REWARD, 40, (2,), n=3, **kwargs)
    many = rbf_sample(_velocity_model(), REWARD, 40, (2,), n=6, **kwargs)
    assert torch.equal(alone.x[0], few.x[0])
    assert torch.equal(few.x, many.x[:3])
    assert torch.equal(torch.stack(few.used), torch.stack(many.used)[:, :3])


def test_rbf_rejects_a_budget_below_one_round_per_step() -> None:
    with pytest.raises(ValueError, match="budget=20 is too small"):
        rbf_sample(_velocity_model(), REWARD, 20, (2,), steps=10, n_init=15)
    with pytest.raises(ValueError, match="parallel must be"):
        rbf_sample(_velocity_model(), REWARD, 100, (2,), parallel=0)
