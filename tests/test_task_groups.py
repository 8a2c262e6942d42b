"""ANT's SNR grouping of diffusion times: exact 1-D k-means (checked against brute force),
groups contiguous in t, well separated log-SNR clusters recovered, and ANT-UW using them."""

import itertools

import pytest
import torch

from interpolant import paths
from interpolant.errors import UserError
from interpolant.losses import Objective
from interpolant.losses.task_groups import kmeans_1d, snr_task_edges
from interpolant.losses.weights import UncertaintyWeight, get_weighting


def _sse(x, labels, k):
    return sum(float(((x[labels == g] - x[labels == g].mean()) ** 2).sum()) for g in range(k))


@pytest.mark.parametrize("seed", range(4))
def test_kmeans_1d_is_the_global_optimum_of_every_labelling(seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(8, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 3.0]).repeat(4)
    k = 3
    labels, centres, cost = kmeans_1d(x, k)
    best = min(
        _sse(x, torch.tensor(lab), k)
        for lab in itertools.product(range(k), repeat=x.numel())
        if len(set(lab)) == k
    )
    assert abs(cost - best) < 1e-10 and abs(_sse(x, labels, k) - best) < 1e-10
    # Clusters numbered by increasing value, each a run of the sorted values.
    assert torch.equal(labels[torch.argsort(x)], labels[torch.argsort(x)].sort().values)
    assert torch.all(centres.diff() > 0)


class Plateaus:
    """A stand-in path whose log-SNR has three well separated plateaus in t (with a slight
    slope, so it is strictly decreasing): 8 on [0, 0.3), 0 on [0.3, 0.75), -8 on [0.75, 1]."""

    def logsnr(self, t):
        level = torch.where(t < 0.3, 8.0, torch.where(t < 0.75, 0.0, -8.0))
        return level.double() - 0.1 * t.double()


def test_well_separated_log_snr_clusters_are_found():
    edges = snr_task_edges(Plateaus(), 3, grid=200)
    torch.testing.assert_close(edges, torch.tensor([0.3, 0.75], dtype=torch.float64))
    weight = UncertaintyWeight(groups=3, grouping="snr")
    t = torch.tensor([0.0, 0.29, 0.31, 0.74, 0.76, 1.0])
    assert weight.task_of(t, Plateaus()).tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("path", [paths.VP(), paths.Linear(), paths.from_config({"name": "edm"})])
def test_snr_groups_are_contiguous_intervals_of_t(path):
    weight = UncertaintyWeight(groups=5, grouping="snr")
    t = torch.linspace(0, 1, 4001, dtype=torch.float64)
    tasks = weight.task_of(t, path)
    assert torch.all(tasks.diff() >= 0) and tasks.unique().tolist() == list(range(5))
    # Not the equal intervals: k-means on log-SNR follows the path's noise levels.
    assert not torch.allclose(weight.edges(path), UncertaintyWeight(5).edges(None))


def test_ant_uw_with_snr_groups_trains_and_round_trips():
    objective = Objective(paths.VP(), target="eps", weight={"name": "ant-uw", "grouping": "snr"})
    assert objective.weight.grouping == "snr"
    rebuilt = Objective.from_config(objective.config())
    assert rebuilt.weight == objective.weight
    x0 = torch.randn(16, 3)
    loss = objective.loss(lambda x, t: torch.zeros_like(x), x0, torch.Generator().manual_seed(0))
    loss.backward()
    assert objective.weight.log_variance.grad is not None
    assert int((objective.weight.log_variance.grad != 0).sum()) >= 2  # several tasks drawn
    with pytest.raises(UserError, match="needs the path"):
        UncertaintyWeight(3, grouping="snr").task_of(torch.zeros(2))
    with pytest.raises(UserError, match="grouping"):
        get_weighting({"name": "ant-uw", "grouping": "kmeans"})
