"""Minibatch couplings: exact OT recovers known assignments, never costs more than the
independent pairing, only re-pairs the draws, and serialises with the objective and run config."""

import itertools
import json

import pytest
import torch

from interpolant import paths
from interpolant.api.config import RunConfig, resolve_config
from interpolant.losses import Coupling, LogitNormal, Objective, get_coupling, sinkhorn_plan
from interpolant.train import TrainConfig, Trainer
from interpolant.train.build import build_objective

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def total_cost(x0: torch.Tensor, eps: torch.Tensor) -> float:
    return float((x0 - eps).flatten(1).double().square().sum())


def velocity_net(x, t):
    # A fixed smooth field, so losses differ when the pairing differs.
    return torch.sin(3.0 * x) + t[:, None].to(x.dtype) * x


class TimeMLP(torch.nn.Module):
    """A tiny velocity net v(x_t, t)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([x, t[:, None].to(x.dtype)], dim=1))


def test_ot_recovers_a_hidden_permutation():
    # eps is x0 shuffled by perm plus a little jitter: the optimal partner of x0_i is the eps
    # that came from it, i.e. index perm^-1(i).
    x0 = 10.0 * torch.randn(64, 3, generator=gen(0), dtype=F64)
    perm = torch.randperm(64, generator=gen(1))
    eps = x0[perm] + 0.01 * torch.randn(64, 3, generator=gen(2), dtype=F64)
    partners = Coupling("ot").partners(x0, eps)
    assert torch.equal(partners, torch.argsort(perm))
    torch.testing.assert_close(Coupling("ot").pair(x0, eps), eps[torch.argsort(perm)])


def test_ot_is_the_exact_optimum_over_all_permutations():
    # Brute force over the 6! assignments of a small batch: the exact minimum, no approximation.
    x0 = torch.randn(6, 2, generator=gen(3), dtype=F64)
    eps = torch.randn(6, 2, generator=gen(4), dtype=F64)
    best = min(total_cost(x0, eps[list(p)]) for p in itertools.permutations(range(6)))
    assert total_cost(x0, Coupling("ot").pair(x0, eps)) == pytest.approx(best, rel=1e-12)


def test_ot_in_one_dimension_is_the_monotone_matching():
    # In 1-D the optimal transport map is monotone: the k-th smallest x0 gets the k-th smallest
    # eps.
    x0 = torch.randn(50, 1, generator=gen(5), dtype=F64)
    eps = torch.randn(50, 1, generator=gen(6), dtype=F64)
    paired = Coupling("ot").pair(x0, eps)
    order = torch.argsort(x0[:, 0])
    torch.testing.assert_close(paired[order, 0], torch.sort(eps[:, 0]).values)


@pytest.mark.parametrize("seed", range(5))
def test_coupled_cost_never_exceeds_the_independent_pairing(seed):
    x0 = torch.randn(32, 4, 4, generator=gen(seed), dtype=torch.float32) + 2.0
    eps = torch.randn(32, 4, 4, generator=gen(100 + seed), dtype=torch.float32)
    independent = total_cost(x0, eps)
    assert total_cost(x0, Coupling("ot").pair(x0, eps)) <= independent + 1e-6
    # The entropic plan's draws are on average cheaper too (weak reg: near the OT plan).
    sinkhorn = Coupling("sinkhorn", reg=0.01).pair(x0, eps, gen(seed))
    assert total_cost(x0, sinkhorn) <= independent + 1e-6


def test_ot_pairing_is_a_permutation_of_the_same_draws():
    x0 = torch.randn(40, 2, generator=gen(7))
    eps = torch.randn(40, 2, generator=gen(8))
    partners = Coupling("ot").partners(x0, eps)
    assert torch.equal(torch.sort(partners).values, torch.arange(40))


def test_sinkhorn_plan_has_uniform_marginals_and_tends_to_ot():
    x0 = 5.0 * torch.randn(16, 2, generator=gen(9), dtype=F64)
    perm = torch.randperm(16, generator=gen(10))
    eps = x0[perm] + 0.01 * torch.randn(16, 2, generator=gen(11), dtype=F64)
    cost = Coupling().cost(x0, eps)
    plan = sinkhorn_plan(cost, 0.5, 300)
    # Columns are projected last (exact); rows converge with the iterations.
    torch.testing.assert_close(plan.sum(0), torch.full((16,), 1 / 16, dtype=F64))
    torch.testing.assert_close(plan.sum(1), torch.full((16,), 1 / 16, dtype=F64), rtol=1e-3, atol=0)
    # Small reg: the partners drawn from the plan are the OT partners.
    sinkhorn = Coupling("sinkhorn", reg=1e-3, iters=300)
    assert torch.equal(sinkhorn.partners(x0, eps, gen(0)), Coupling("ot").partners(x0, eps))
    # Its draws come from the generator: reproducible.
    loose = Coupling("sinkhorn", reg=10.0)
    assert torch.equal(loose.partners(x0, eps, gen(1)), loose.partners(x0, eps, gen(1)))


def test_objective_with_coupling_only_repairs_the_draws():
    # The coupled loss equals the plain loss evaluated on the re-paired eps (same t).
    path = paths.Linear()
    x0 = torch.randn(24, 2, generator=gen(12)) + 3.0
    t = torch.rand(24, generator=gen(13), dtype=F64)
    eps = torch.randn(24, 2, generator=gen(14))
    coupled = Objective(path, coupling="ot")
    plain = Objective(path)
    got = coupled.per_sample_loss(velocity_net, x0, t=t, eps=eps)
    want = plain.per_sample_loss(velocity_net, x0, t=t, eps=Coupling("ot").pair(x0, eps))
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, plain.per_sample_loss(velocity_net, x0, t=t, eps=eps))
    # Drawn draws: the same generator seed gives the same loss.
    a = coupled.loss(velocity_net, x0, gen(15))
    b = coupled.loss(velocity_net, x0, gen(15))
    assert float(a) == float(b)


@pytest.mark.parametrize("coupling", ["ot", {"name": "sinkhorn", "reg": 0.1}])
def test_batch_of_one_is_uncoupled(coupling):
    path = paths.Linear()
    x0 = torch.randn(1, 3, generator=gen(16))
    coupled = Objective(path, coupling=coupling).loss(velocity_net, x0, gen(17))
    plain = Objective(path).loss(velocity_net, x0, gen(17))
    assert float(coupled) == float(plain)


@pytest.mark.parametrize("coupling", ["ot", {"name": "sinkhorn", "reg": 0.2, "iters": 50}])
def test_objective_config_round_trips(coupling):
    objective = Objective(paths.Linear(), "velocity", LogitNormal(0.0, 1.0), coupling=coupling)
    config = json.loads(json.dumps(objective.config()))
    rebuilt = Objective.from_config(config)
    assert rebuilt.config() == objective.config()
    assert rebuilt.coupling.config() == get_coupling(coupling).config()
    x0 = torch.randn(16, 2, generator=gen(18))
    assert float(rebuilt.loss(velocity_net, x0, gen(19))) == float(
        objective.loss(velocity_net, x0, gen(19))
    )
    # A plain objective's config is unchanged (no coupling key).
    assert "coupling" not in Objective(paths.Linear()).config()


def test_run_config_override_builds_a_coupled_objective():
    config = resolve_config("toy2d-flow", overrides=["train.objective.coupling=ot"])
    again = RunConfig.from_dict(json.loads(config.to_json()))
    assert again.train.objective["coupling"] == "ot"
    objective = build_objective(again.train, paths.from_config(again.train.path))
    assert objective.coupling.name == "ot"


def test_coupling_is_within_noise_blocks_so_accumulation_does_not_change_it(tmp_path):
    # The trainer calls the loss once per noise_block: under DDP or accumulation each block is
    # coupled on its own, so batch_per_gpu does not change the update.
    x = torch.randn(32, 2, generator=gen(20)) + 1.0

    def trainer(name: str, batch_per_gpu: int) -> Trainer:
        torch.manual_seed(0)
        cfg = TrainConfig(
            run_dir=str(tmp_path / name),
            device="cpu",
            steps=1,
            batch_size=16,
            batch_per_gpu=batch_per_gpu,
            noise_block=8,
            resume=False,
            progress=False,
        )
        return Trainer(TimeMLP(), Objective(paths.Linear(), coupling="ot"), x, cfg)

    small, large = trainer("a", 8), trainer("b", 16)
    loss_small = small.train_step(0)[0]
    loss_large = large.train_step(0)[0]
    torch.testing.assert_close(loss_small, loss_large, rtol=1e-6, atol=0)


def test_bad_coupling_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="coupling must be one of"):
        Objective(paths.Linear(), coupling="emd")
    with pytest.raises(ValueError, match="reg"):
        Coupling("sinkhorn", reg=0.0)
    with pytest.raises(ValueError, match="coupling config"):
        get_coupling({"name": "ot", "lambda": 1})
    with pytest.raises(ValueError, match="shape of x0"):
        Coupling("ot").pair(torch.zeros(4, 2), torch.zeros(3, 2))
