"""Sheaf Laplacians against exact answers: PSD, dim ker = d for flat sheaves, the signed 1-D
sheaf's heat limit on a bipartite graph, the GCN identity, equivariance of the backbone."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

from interpolant.errors import UserError
from interpolant.graphs.sheaf import (
    dirichlet_energy,
    edge_index,
    gauge_maps,
    heat_flow,
    kernel_dimension,
    orthogonal_maps,
    restriction_maps,
    sheaf_laplacian,
    trivial_maps,
)
from interpolant.graphs.sheaf_nets import (
    GCN,
    NeuralSheafDiffusion,
    SheafBackbone,
    SheafLearner,
    gcn_laplacian,
)

torch.set_num_threads(1)


def _index(graph: nx.Graph) -> torch.Tensor:
    adj = torch.as_tensor(nx.to_numpy_array(graph, nodelist=sorted(graph)), dtype=torch.float64)
    return edge_index(adj)


def _random_maps(index: torch.Tensor, kind: str, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    from interpolant.graphs.sheaf import num_map_parameters

    p = torch.randn(index.shape[1], num_map_parameters(kind, d), generator=g, dtype=torch.float64)
    return restriction_maps(p, kind, d)


@pytest.mark.parametrize("kind", ["diagonal", "orthogonal", "general"])
@pytest.mark.parametrize("normalisation", ["augmented", "symmetric", "none"])
def test_laplacian_is_symmetric_psd_and_matches_the_coboundary(kind, normalisation):
    graph = nx.gnp_random_graph(9, 0.4, seed=3)
    graph.remove_nodes_from(list(nx.isolates(graph)))
    graph = nx.convert_node_labels_to_integers(graph)
    index, d = _index(graph), 3
    maps = _random_maps(index, kind, d)
    lap = sheaf_laplacian(
        index, maps, graph.number_of_nodes(), normalisation=normalisation, kind=kind, jitter=0.0
    )
    dense = lap.dense()
    torch.testing.assert_close(dense, dense.T)
    assert float(torch.linalg.eigvalsh(dense).min()) > -1e-10
    if normalisation == "none":
        # L = delta^T delta with (delta x)_e = F_{v<|e} x_v - F_{u<|e} x_u, one row block per edge.
        n = graph.number_of_nodes()
        key = {(int(v), int(u)): e for e, (v, u) in enumerate(index.T.tolist())}
        delta = torch.zeros(graph.number_of_edges() * d, n * d, dtype=torch.float64)
        for row, (v, u) in enumerate(graph.edges()):
            delta[row * d : (row + 1) * d, v * d : (v + 1) * d] = maps[key[(v, u)]]
            delta[row * d : (row + 1) * d, u * d : (u + 1) * d] = -maps[key[(u, v)]]
        torch.testing.assert_close(dense, delta.T @ delta)
    x = torch.randn(graph.number_of_nodes(), d, 4, dtype=torch.float64)
    torch.testing.assert_close(lap.apply(x).reshape(-1, 4), dense @ x.reshape(-1, 4))


@pytest.mark.parametrize("normalisation", ["augmented", "symmetric", "none"])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_trivial_and_flat_sheaves_have_d_global_sections(normalisation, d):
    graph = nx.cycle_graph(7)
    graph.add_edges_from([(0, 3), (2, 5)])
    index = _index(graph)
    trivial = sheaf_laplacian(
        index, trivial_maps(index.shape[1], d, torch.float64), 7, normalisation=normalisation
    )
    assert kernel_dimension(trivial) == d
    if d >= 2:
        frames = orthogonal_maps(torch.randn(7, d * (d - 1) // 2, dtype=torch.float64), d)
        flat = sheaf_laplacian(
            index, gauge_maps(index, frames), 7, normalisation=normalisation, kind="orthogonal"
        )
        assert kernel_dimension(flat) == d
        # A random O(d) bundle has non-trivial holonomy around the cycles: fewer sections.
        twisted = sheaf_laplacian(
            index,
            _random_maps(index, "orthogonal", d, seed=5),
            7,
            normalisation=normalisation,
            kind="orthogonal",
        )
        assert kernel_dimension(twisted) < d


def test_two_components_double_the_kernel():
    graph = nx.disjoint_union(nx.path_graph(4), nx.cycle_graph(5))
    index = _index(graph)
    lap = sheaf_laplacian(index, trivial_maps(index.shape[1], 2, torch.float64), 9)
    assert kernel_dimension(lap) == 4


def test_signed_sheaf_separates_a_bipartite_two_class_graph_in_the_heat_limit():
    graph = nx.complete_bipartite_graph(4, 5)
    graph.remove_edges_from([(0, 4), (1, 6), (3, 8)])  # irregular, still connected
    index = _index(graph)
    side = torch.tensor([1.0] * 4 + [-1.0] * 5, dtype=torch.float64)  # the class sign
    signed = side[index[0]].reshape(-1, 1, 1)  # F_{v<|e} = +1 on side A, -1 on side B
    x0 = torch.randn(9, 1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for normalisation in ("augmented", "none"):
        lap = sheaf_laplacian(index, signed, 9, normalisation=normalisation, kind="diagonal")
        assert kernel_dimension(lap) == 1
        limit = heat_flow(lap, x0, 1e6)[:, 0, :]
        # Every channel tends to c * w_v * side_v (w > 0: the kernel's weights), so its sign
        # separates the classes exactly.
        for ch in range(3):
            signs = torch.sign(limit[:, ch]) * torch.sign(limit[0, ch])
            torch.testing.assert_close(signs, side)
        torch.testing.assert_close(heat_flow(lap, limit[:, None, :], 50.0)[:, 0, :], limit)
    trivial = sheaf_laplacian(
        index, trivial_maps(index.shape[1], 1, torch.float64), 9, normalisation="none"
    )
    const = heat_flow(trivial, x0, 1e6)[:, 0, :]
    torch.testing.assert_close(const, const[:1].expand_as(const))  # constant: no separation
    torch.testing.assert_close(const[0], x0[:, 0, :].mean(0))


def test_gcn_propagation_is_identity_minus_the_trivial_augmented_laplacian():
    graph = nx.karate_club_graph()
    adj = torch.as_tensor(nx.to_numpy_array(graph, weight=None), dtype=torch.float64)
    lap = gcn_laplacian(edge_index(adj), 34, torch.float64)
    a_hat = adj + torch.eye(34, dtype=torch.float64)
    dinv = a_hat.sum(1).rsqrt()
    torch.testing.assert_close(
        torch.eye(34, dtype=torch.float64) - lap.dense(), dinv[:, None] * a_hat * dinv[None]
    )


def test_dirichlet_energy_is_zero_on_sections_and_one_quadratic_form():
    graph = nx.path_graph(5)
    index = _index(graph)
    lap = sheaf_laplacian(
        index, trivial_maps(index.shape[1], 1, torch.float64), 5, normalisation="none"
    )
    const = torch.ones(5, 1, 2, dtype=torch.float64)
    assert float(dirichlet_energy(lap, const)) == pytest.approx(0.0, abs=1e-12)
    alt = torch.tensor([1.0, -1, 1, -1, 1], dtype=torch.float64).reshape(5, 1, 1)
    # sum over the 4 edges of (x_v - x_u)^2 = 16, over ||x||^2 = 5.
    assert float(dirichlet_energy(lap, alt)) == pytest.approx(16 / 5)


@pytest.mark.parametrize("method", ["householder", "matrix_exp"])
def test_orthogonal_maps_are_orthogonal_and_differentiable(method):
    p = torch.randn(6, 6, dtype=torch.float64, requires_grad=True)
    q = orthogonal_maps(p, 4, method)
    torch.testing.assert_close(
        q.transpose(-1, -2) @ q, torch.eye(4, dtype=torch.float64).expand(6, 4, 4)
    )
    q.sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()


def test_bad_inputs_are_clear_errors():
    index = _index(nx.path_graph(3))
    with pytest.raises(UserError, match="need 1 parameters"):
        orthogonal_maps(torch.zeros(4, 3), 2)
    with pytest.raises(UserError, match="unknown sheaf kind"):
        SheafLearner(4, 2, "sheafy")
    with pytest.raises(UserError, match="d >= 2"):
        SheafLearner(4, 1, "orthogonal")
    with pytest.raises(UserError, match="unknown normalisation"):
        sheaf_laplacian(index, trivial_maps(4, 1), 3, normalisation="row")
    with pytest.raises(UserError, match="not symmetric"):
        edge_index(torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(UserError, match="both orientations"):
        sheaf_laplacian(index[:, :1], trivial_maps(1, 1), 3)


def test_backbone_is_permutation_equivariant_and_ignores_padding():
    torch.manual_seed(0)
    net = SheafBackbone(3, 5, d=2, kind="orthogonal", layers=2).double()
    graph = nx.gnp_random_graph(6, 0.5, seed=1)
    adj = torch.zeros(1, 8, 8, dtype=torch.float64)
    adj[0, :6, :6] = torch.as_tensor(nx.to_numpy_array(graph))
    mask = torch.zeros(1, 8, dtype=torch.bool)
    mask[0, :6] = True
    x = torch.randn(1, 8, 3, dtype=torch.float64) * mask[..., None]
    out = net(x, adj, mask)
    assert out[0, 6:].abs().max() == 0
    perm = torch.tensor([5, 2, 0, 4, 1, 3, 6, 7])
    out_p = net(x[:, perm], adj[:, perm][:, :, perm], mask[:, perm])
    torch.testing.assert_close(out_p, out[:, perm])


@pytest.mark.parametrize("model", ["nsd-diagonal", "nsd-orthogonal", "nsd-general", "gcn"])
def test_node_classifiers_are_equivariant_and_train(model):
    torch.manual_seed(0)
    graph = nx.karate_club_graph()
    adj = torch.as_tensor(nx.to_numpy_array(graph, weight=None), dtype=torch.float32)
    index = edge_index(adj)
    x = torch.randn(34, 5)
    if model == "gcn":
        net = GCN(5, 2)
    else:
        net = NeuralSheafDiffusion(5, 2, d=2, kind=model.split("-")[1], layers=2)
    perm = torch.randperm(34)
    inv = torch.argsort(perm)
    out = net(x, index)
    out_p = net(x[perm], inv[index])
    torch.testing.assert_close(out_p, out[perm], atol=1e-5, rtol=1e-4)
    labels = torch.tensor([int(graph.nodes[v]["club"] != "Mr. Hi") for v in graph])
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    first = None
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(net(x, index), labels)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first
