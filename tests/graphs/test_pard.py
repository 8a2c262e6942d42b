"""PARD against exact answers: the partial order (invariance, star, path), the discrete
diffusion's closed forms (q(x_t | x_0) sampled frequencies, posteriors summing to 1, Bayes'
rule), the causal masks of the block examples, equivariance of the networks, and a tiny
train-and-sample run."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch

from interpolant.errors import UserError
from interpolant.graphs.pard import (
    alpha_bar,
    block_examples,
    block_ids,
    kl_loss,
    marginal,
    posterior,
    q_t0,
    reverse_probs,
)
from interpolant.graphs.pard_nets import BlockDenoiser, BlockSizePredictor
from interpolant.graphs.pard_train import sample_pard, train_pard
from interpolant.graphs.types import random_permutations
from interpolant.randomness import Streams, inverse_cdf

torch.set_num_threads(1)


def _adj(g: nx.Graph) -> torch.Tensor:
    return torch.as_tensor(nx.to_numpy_array(g, nodelist=sorted(g), weight=None), dtype=torch.long)


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_block_ids_are_invariant_under_random_permutations(hops):
    graphs = [nx.gnp_random_graph(11, 0.3, seed=s) for s in range(4)] + [nx.grid_2d_graph(3, 4)]
    for g in graphs:
        a = _adj(nx.convert_node_labels_to_integers(g))
        blocks = block_ids(a, hops)
        for perm in random_permutations(a.shape[0], 5, seed=hops):
            pa = a[perm][:, perm]
            assert torch.equal(block_ids(pa, hops), blocks[perm])


@pytest.mark.parametrize("leaves", [2, 3, 7])
def test_a_star_gives_two_blocks_centre_first(leaves):
    blocks = block_ids(_adj(nx.star_graph(leaves)), 1)
    assert int(blocks.max()) + 1 == 2
    assert int(blocks[0]) == 0 and bool((blocks[1:] == 1).all())


@pytest.mark.parametrize("hops", [1, 2])
@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 9])
def test_a_path_gives_ceil_n_over_two_blocks(n, hops):
    blocks = block_ids(_adj(nx.path_graph(n)), hops)
    assert int(blocks.max()) + 1 == math.ceil(n / 2)
    # Symmetric ends peel together: node i and node n - 1 - i share a block.
    assert torch.equal(blocks, blocks.flip(0))


def test_max_hops_zero_is_one_shot_and_bad_input_is_named():
    assert bool((block_ids(_adj(nx.cycle_graph(6)), 0) == 0).all())
    with pytest.raises(UserError, match="not symmetric"):
        block_ids(torch.tensor([[0, 1], [0, 0]]))
    with pytest.raises(UserError, match="self-loops"):
        block_ids(torch.tensor([[1, 0], [0, 0]]))


def test_cosine_schedule_is_pards():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    a = 0.008
    expected = torch.cos((t + a) / (1 + a) * math.pi / 2) / math.cos(a / (1 + a) * math.pi / 2)
    torch.testing.assert_close(alpha_bar(t), expected.clamp(1e-10, 1))
    assert float(alpha_bar(torch.tensor(0.0))) == pytest.approx(1.0)


def test_sampled_q_t0_matches_its_closed_form():
    m = torch.tensor([0.7, 0.3], dtype=torch.float64)
    x0 = torch.ones(20000, dtype=torch.long)
    t = torch.full((20000,), 0.6, dtype=torch.float64)
    probs = q_t0(x0, t, m)
    draws = inverse_cdf(probs, Streams(0, 20000, "test-q").uniform(()))
    ab = float(alpha_bar(torch.tensor(0.6)))
    assert float(draws.double().mean()) == pytest.approx(ab + (1 - ab) * 0.3, abs=0.01)


def test_posteriors_sum_to_one_and_follow_bayes_rule():
    m = torch.tensor([0.5, 0.2, 0.3], dtype=torch.float64)
    t, s = torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.4, dtype=torch.float64)
    for xt in range(3):
        post = posterior(torch.tensor(xt), t, s, m)
        torch.testing.assert_close(post.sum(-1), torch.ones(3, dtype=torch.float64))
        for x0 in range(3):
            # Bayes: q(s = j | t, 0) = q(t | s = j) q(s = j | 0) / q(t | 0).
            q_s0 = q_t0(torch.tensor(x0), s, m)
            a_ts = alpha_bar(t) / alpha_bar(s)
            q_ts = a_ts * torch.eye(3, dtype=torch.float64)[:, xt] + (1 - a_ts) * m[xt]
            expected = q_ts * q_s0 / q_t0(torch.tensor(x0), t, m)[xt]
            torch.testing.assert_close(post[x0], expected)
    p0 = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    rev = reverse_probs(p0, torch.tensor(1), t, s, m)
    assert float(rev.sum()) == pytest.approx(1.0)
    # A perfect x0-prediction has zero KL.
    one = torch.nn.functional.one_hot(torch.tensor(2), 3).double()
    assert float(kl_loss(one, torch.tensor(2), torch.tensor(1), t, s, m)) == pytest.approx(
        0, abs=1e-9
    )
    assert float(kl_loss(p0, torch.tensor(2), torch.tensor(1), t, s, m)) > 0


def test_marginal_counts_ordered_pairs():
    m = marginal([_adj(nx.path_graph(3))])  # 4 of 6 ordered pairs are edges
    torch.testing.assert_close(m, torch.tensor([2 / 6, 4 / 6], dtype=torch.float64))


def test_block_examples_have_causal_masks():
    g = nx.path_graph(5)  # blocks: centre {2}, then {1, 3}, then {0, 4}
    diff, size = block_examples([g], 1, 6)
    assert diff["adj"].shape == (3, 6, 6)
    assert diff["visible"].sum(-1).tolist() == [1, 3, 5]
    assert diff["new"].sum(-1).tolist() == [1, 2, 2]
    # Pairs touching the block, between visible nodes only: 0, then 2*1 + 2 (ordered), ...
    assert diff["target"].sum((1, 2)).tolist() == [0, 2 * (2 * 1) + 2, 2 * (2 * 3) + 2]
    assert size["size"].tolist() == [1, 2, 2, 0]
    assert size["visible"].sum(-1).tolist() == [0, 1, 3, 5]
    with pytest.raises(UserError, match="more than max_nodes"):
        block_examples([g], 1, 4)


def test_networks_are_permutation_equivariant():
    torch.manual_seed(0)
    net, sizes = BlockDenoiser(2, 8, 2), BlockSizePredictor(4, 8, 1)
    a = _adj(nx.gnp_random_graph(7, 0.4, seed=2))[None]
    visible = torch.tensor([[True] * 6 + [False]])
    new = torch.tensor([[False] * 4 + [True] * 2 + [False]])
    target = visible[:, :, None] & visible[:, None, :] & (new[:, :, None] | new[:, None, :])
    target &= ~torch.eye(7, dtype=torch.bool)
    a = a * (visible[:, :, None] & visible[:, None, :])
    t = torch.tensor([0.3])
    out = net(a, visible, new, target, t)
    torch.testing.assert_close(out, out.transpose(1, 2))
    perm = torch.tensor([3, 0, 6, 5, 1, 4, 2])
    out_p = net(
        a[:, perm][:, :, perm], visible[:, perm], new[:, perm], target[:, perm][:, :, perm], t
    )
    torch.testing.assert_close(out_p, out[:, perm][:, :, perm], atol=1e-5, rtol=1e-4)
    s = sizes(a, visible)
    torch.testing.assert_close(
        sizes(a[:, perm][:, :, perm], visible[:, perm]), s, atol=1e-5, rtol=1e-4
    )


def test_train_and_sample_run_and_sampling_is_batch_invariant():
    graphs = [nx.star_graph(k) for k in (2, 3, 4)] * 4
    model, losses = train_pard(
        graphs, max_hops=1, steps=3, epochs=3, batch_size=8, channels=8, layers=1, progress=False
    )
    assert all(math.isfinite(v) for v in losses)
    out = sample_pard(model, 4, seed=3)
    assert out.adj.shape == (4, 5, 5) and torch.equal(out.adj, out.adj.transpose(1, 2))
    assert out.adj.diagonal(dim1=1, dim2=2).abs().sum() == 0
    assert int(out.mask.sum(-1).max()) <= 5
    # Padded nodes have no edges.
    assert bool((out.adj * ~(out.mask[:, :, None] & out.mask[:, None, :])).eq(0).all())
    assert out.denoiser_nfe % 3 == 0 and out.size_nfe >= 1
    assert len(out.graphs()) == 4
    first_two = sample_pard(model, 2, seed=3)
    torch.testing.assert_close(first_two.adj, out.adj[:2])
