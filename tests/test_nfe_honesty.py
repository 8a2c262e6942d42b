"""Honest NFE across the library: for every solver and for every method that adds model
evaluations (guidance, inverse problems, steering, search, teleportation), the NFE it reports
equals the network evaluations it made, counted by the network itself (rows seen / batch).

"Equal NFE" comparisons in the reproductions and benchmarks rest on this: a hook that evaluates
the model again must be charged, and every network call goes through ``Model.at``."""

from __future__ import annotations

import pytest
import torch

import interpolant as ip
from interpolant.data.oracles import ring2d
from interpolant.guidance import CFG, AutoGuidance, ClassifierGuidance
from interpolant.guidance.energy import ObservationGuidance, ReconstructionGuidance
from interpolant.inverse import Inpaint
from interpolant.inverse.flowchef import flowchef
from interpolant.inverse.solvers import dps, red_diff
from interpolant.scaling import FKSteering, LinearReward, best_of_n, fk_steer, rbf_sample
from interpolant.solvers import SOLVERS, Sampler, teleport_sample

MIX = ring2d()
B = 4
NOISE = torch.randn(B, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


class Counting:
    """The exact ring denoiser on ``path``, counting the rows it is called on (conditioning is
    accepted and ignored, so CFG's null label costs a call like any other)."""

    def __init__(self, path: ip.paths.GaussianPath) -> None:
        self.path, self.rows = path, 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **cond: object) -> torch.Tensor:
        self.rows += x.shape[0]
        return MIX.denoiser(x, t.to(torch.float64), self.path).to(x.dtype)


def counted(path: ip.paths.GaussianPath | None = None) -> tuple[ip.Model, Counting]:
    path = path or ip.paths.EDM()
    net = Counting(path)
    return ip.Model(net, path, "x0"), net


@pytest.mark.parametrize("name", sorted(set(SOLVERS.values()), key=lambda c: c.name))
def test_every_solver_reports_the_evaluations_it_made(name):
    model, net = counted()
    budget = getattr(name, "budget_option", None)
    if budget is not None:
        # A solver that picks its own steps (dpm_adaptive) within a budget: at most 12.
        spec = Sampler({"name": name.name, budget: 12}, steps=1, seed=0)
        result = ip.sample(model, NOISE, spec)
        assert result.nfe == net.rows // B <= spec.nfe_used() == 12
        return
    spec = Sampler(name.name, nfe=12, seed=0)
    if getattr(name, "needs_reference_guidance", False):
        # The CFG++ samplers run under CFG: two evaluations for each of the solver's.
        cfg = CFG(2.0, null_cond={"class_labels": 3})
        labels = {"class_labels": torch.zeros(B, dtype=torch.long)}
        result = ip.sample(model, NOISE, spec, hooks=[cfg], cond=labels)
        assert result.nfe == net.rows // B == 2 * spec.nfe_used() <= 24
        return
    result = ip.sample(model, NOISE, spec)
    assert result.nfe == net.rows // B == spec.nfe_used() <= 12


def test_guidance_hooks_count_their_extra_evaluations():
    labels = {"class_labels": torch.zeros(B, dtype=torch.long)}
    spec = Sampler("dpmpp_2m", steps=6, seed=0)
    for batched in (False, True):
        model, net = counted()
        cfg = CFG(2.0, null_cond={"class_labels": 3}, batched=batched)
        result = ip.sample(model, NOISE, spec, hooks=[cfg], cond=labels)
        assert result.nfe == net.rows // B == 2 * 6
    model, net = counted()
    reference, ref_net = counted()
    result = ip.sample(model, NOISE, spec, hooks=[AutoGuidance(reference, 1.5)])
    assert result.nfe == (net.rows + ref_net.rows) // B == 2 * 6

    def classifier(x, t):  # logits of a two-class split of the plane (not a model evaluation)
        return torch.stack([x[:, 0], -x[:, 0]], dim=1)

    model, net = counted()
    guided = ClassifierGuidance(classifier, 1.0, 2, labels=torch.zeros(B, dtype=torch.long))
    result = ip.sample(model, NOISE, spec, hooks=[guided])
    assert result.nfe == net.rows // B == 6 and result.state(guided).classifier_calls == 6


def test_reconstruction_and_self_guidance_count_the_network_calls():
    spec = Sampler("ddim", steps=5, grid="uniform", seed=0)
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    y = MIX.sample(B, torch.Generator().manual_seed(1)) * mask
    for hook in (
        ReconstructionGuidance(Inpaint(mask), y, 1.0),
        ObservationGuidance(y, mask.expand(B, 2), 1.0),
    ):
        model, net = counted()
        result = ip.sample(model, NOISE, spec, hooks=[hook])
        assert result.nfe == net.rows // B >= 5


def test_inverse_solvers_report_the_evaluations_they_made():
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    op = Inpaint(mask)
    y = op(MIX.sample(B, torch.Generator().manual_seed(2)))
    model, net = counted(ip.paths.VPLinear())
    assert dps(model, op, y, steps=10, seed=0).nfe == net.rows // B == 10
    model, net = counted(ip.paths.VPLinear())
    assert red_diff(model, op, y, steps=7).nfe == net.rows // B == 7
    for backprop in (False, True):
        model, net = counted(ip.paths.Linear())
        out = flowchef(model, op, y, steps=8, backprop=backprop, seed=0)
        assert out.nfe == net.rows // B == 8


def test_steering_search_and_rbf_charge_every_network_row():
    reward = LinearReward([1.0, 0.5])
    ancestral = Sampler({"name": "ddim", "eta": 1.0}, steps=5, grid="uniform", seed=0)
    model, net = counted()
    out = fk_steer(model, FKSteering(reward, 3), ancestral, n=2, shape=(2,))
    assert out.nfe * 2 == net.rows == 2 * 3 * 5
    model, net = counted()
    found = best_of_n(model, reward, 3, Sampler("heun", steps=3, seed=0), n=2, shape=(2,))
    assert found.nfe * 2 == net.rows == found.ledger.model_evals
    model, net = counted(ip.paths.Linear())
    particles = rbf_sample(model, reward, 30, (2,), n=2, n_init=2, steps=6, seed=0)
    assert particles.ledger.model_evals == net.rows and particles.nfe * 2 == net.rows


def test_teleport_counts_only_the_steps_it_runs():
    model, net = counted()
    gaussian = ip.data.as_gaussian(MIX.sample(500, torch.Generator().manual_seed(3)))
    result = teleport_sample(model, NOISE, gaussian, skip=3, solver="euler", steps=8, seed=0)
    assert result.nfe == net.rows // B == 8 - 3


def test_smc_posterior_samplers_charge_every_particle():
    from interpolant.inverse.smc import smc_posterior
    from interpolant.inverse.solvers import repaint

    op = Inpaint(torch.tensor([1.0, 0.0], dtype=torch.float64), noise_std=0.1)
    y = op.measure(MIX.sample(2, torch.Generator().manual_seed(4)), seed=0)
    for method in ("tds", "tds_prior", "mcgdiff"):
        model, net = counted(ip.paths.VPLinear())
        out = smc_posterior(model, op, y, method=method, particles=3, n=2, steps=6, seed=0)
        # 2 measurements x 2 draws, 3 particles each: nfe is per draw.
        assert out.nfe * 4 == net.rows == 4 * 3 * 6
    model, net = counted(ip.paths.VPLinear())
    assert repaint(model, op, y, nfe=30, jump_length=2, resamples=2, seed=0).nfe * 2 == net.rows
