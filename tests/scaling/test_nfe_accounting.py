"""Honest NFE: every scaling method's ledger (and ``.nfe``) equals the rows its network was really
called on, including the evaluations that hooks make."""

from __future__ import annotations

import torch

from interpolant.data.oracles import ring2d
from interpolant.paths import Linear
from interpolant.predictions import Model
from interpolant.scaling import (
    FKSteering,
    LinearReward,
    best_of_n,
    fk_steer,
    particle_sample,
    rbf_sample,
    search_over_paths,
    zero_order_search,
)
from interpolant.solvers import FunctionHook, Sampler

MIX, PATH = ring2d(), Linear()
REWARD = LinearReward([1.0, 0.5])


class Counting:
    """The exact ring denoiser, counting the rows it is called on."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return MIX.denoiser(x, t.to(torch.float64), PATH).to(x.dtype)


def _counted() -> tuple[Model, Counting]:
    net = Counting()
    return Model(net, PATH, "x0"), net


def test_fk_counts_the_evaluations_of_its_hooks():
    model, net = _counted()

    def evaluate_twice(pred, node, run):
        # A hook that calls the model once more at every node (as guidance does), counted.
        again = run.model.at(pred.x, node, run)
        return pred.replace("x0", 0.5 * (pred.x0 + again.x0))

    spec = Sampler({"name": "ddim", "eta": 1.0}, steps=6, grid="uniform", seed=0)
    out = fk_steer(
        model,
        FKSteering(REWARD, 4),
        spec,
        n=3,
        shape=(2,),
        hooks=[FunctionHook(on_prediction=evaluate_twice)],
    )
    assert out.ledger.model_evals == net.rows == 3 * 4 * 2 * 6
    assert out.nfe == 4 * 2 * 6


def test_search_ledgers_are_the_network_rows():
    spec = Sampler("heun", steps=4, grid="uniform", seed=0)
    for run in (
        lambda m: best_of_n(m, REWARD, 3, spec, n=2, shape=(2,)),
        lambda m: zero_order_search(m, REWARD, 7 * 5, spec, n=2, shape=(2,)),
        lambda m: search_over_paths(m, REWARD, 100, spec, n=2, shape=(2,), width=2, start=1),
    ):
        model, net = _counted()
        out = run(model)
        assert out.ledger.model_evals == net.rows and out.nfe * 2 == net.rows


def test_particle_methods_ledgers_are_the_network_rows():
    model, net = _counted()
    noise = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = particle_sample(model, REWARD, noise, n_particles=3, path=None, steps=5)
    assert out.ledger.model_evals == net.rows == 3 * (1 + 4 * 3) and out.nfe == 1 + 4 * 3
    model, net = _counted()
    rbf = rbf_sample(model, REWARD, 30, (2,), n=3, n_init=5, path=None, steps=5)
    assert rbf.ledger.model_evals == net.rows == 3 * rbf.nfe <= 3 * 30
