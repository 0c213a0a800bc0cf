"""Tests of iclr22.nn: closed forms, parity with torch-geometric, sparse kernel, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch_geometric.nn import GCNConv, SAGEConv

from iclr22 import nn as inn

PATH3 = np.array([[0, 1], [1, 2]]).T                    # (2, E): the path 0 - 1 - 2


def _random_graph(num_nodes: int = 40, num_edges: int = 90, seed: int = 0):
    rng = np.random.default_rng(seed)
    edge_index = rng.integers(0, num_nodes, size=(2, num_edges))
    return torch.as_tensor(edge_index)


def _closed_form_gcn(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """``D^-1/2 (A + I) D^-1/2`` built densely from the definition."""
    a = torch.zeros(num_nodes, num_nodes)
    a[edge_index[0], edge_index[1]] = 1.0
    a = ((a + a.t()) > 0).float()
    a.fill_diagonal_(0.0)
    a = a + torch.eye(num_nodes)
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


def test_gcn_propagation_closed_form_on_a_path():
    prop = inn.gcn_propagation(PATH3, 3).to_dense()
    # A + I has degrees (2, 3, 2): A_hat_ij = 1 / sqrt(d_i d_j) on every edge and loop.
    r6 = 1 / math.sqrt(6)
    expected = torch.tensor([[1 / 2, r6, 0.0], [r6, 1 / 3, r6], [0.0, r6, 1 / 2]])
    torch.testing.assert_close(prop, expected)


def test_gcn_propagation_isolated_node_keeps_itself_and_duplicates_merge():
    prop = inn.gcn_propagation(np.array([[0, 1, 0], [1, 0, 1]]), 3).to_dense()
    torch.testing.assert_close(prop[2], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(prop[0], torch.tensor([0.5, 0.5, 0.0]))


def test_gcn_propagation_matches_the_closed_form_and_pyg_propagate():
    edge_index = _random_graph()
    prop = inn.gcn_propagation(edge_index, 40)
    torch.testing.assert_close(prop.to_dense(), _closed_form_gcn(edge_index, 40))
    h = torch.randn(40, 5, requires_grad=True)
    ours = prop @ h
    pyg = inn.PygPropagate()(h, prop.edge_index, prop.edge_weight)
    torch.testing.assert_close(ours, pyg)
    g1, = torch.autograd.grad(ours.pow(2).sum(), h)
    g2, = torch.autograd.grad(pyg.pow(2).sum(), h)
    torch.testing.assert_close(g1, g2)


def test_mean_propagation_rows_average_neighbours():
    prop = inn.mean_propagation(PATH3, 4).to_dense()
    expected = torch.tensor([[0, 1, 0, 0], [0.5, 0, 0.5, 0], [0, 1, 0, 0], [0, 0, 0, 0.0]])
    torch.testing.assert_close(prop, expected)


def test_gcn_layer_matches_pyg_gcnconv_on_sparse_features():
    """Parity: our layer (sparse kernel) = GCNConv (PyG normalisation) = the closed form.
    Measured: max abs error ~1e-7, relative ~1e-7 (float32)."""
    torch.manual_seed(0)
    edge_index = _random_graph()
    x = torch.rand(40, 30) * (torch.rand(40, 30) > 0.7)
    layer = inn.GCNLayer(30, 8)
    with torch.no_grad():
        layer.bias.normal_()
    conv = GCNConv(30, 8)
    conv.lin.weight.data.copy_(layer.lin.weight)
    conv.bias.data.copy_(layer.bias)
    prop = inn.gcn_propagation(edge_index, 40)
    ours = layer(inn.as_features(x.to_sparse()), prop)
    pyg = conv(x, inn.undirected_edge_index(edge_index, 40))
    closed = _closed_form_gcn(edge_index, 40) @ (x @ layer.lin.weight.t()) + layer.bias
    assert (ours - pyg).abs().max() < 1e-5
    assert ((ours - closed).abs().max() / closed.abs().max()) < 1e-5
    torch.testing.assert_close(ours, pyg)


def test_gcn_forward_on_a_k_hop_subgraph_needs_nodes_only_for_extras():
    torch.manual_seed(0)
    model = inn.GCN(6, 8, 3, num_layers=2, dropout=0.0).eval()
    x = torch.randn(10, 6)
    out, layers = model(x, inn.gcn_propagation(PATH3, 10), return_layers=True)
    assert out.shape == (10, 3) and [t.shape[1] for t in layers] == [8, 3]


def test_graphsage_matches_pyg_sageconv():
    """Our GraphSAGE (map, then average) = PyG SAGEConv (average, then map), layer by layer."""
    torch.manual_seed(0)
    edge_index = _random_graph()
    x = torch.randn(40, 12)
    sage = inn.GraphSAGE(12, 16, 4, num_layers=2, dropout=0.0).eval()
    convs = [SAGEConv(12, 16, aggr="mean"), SAGEConv(16, 4, aggr="mean")]
    for conv, ws, wn in zip(convs, sage.self_layers, sage.neigh_layers, strict=True):
        conv.lin_l.weight.data.copy_(wn.weight)            # neighbour mean
        conv.lin_l.bias.data.copy_(ws.bias)
        conv.lin_r.weight.data.copy_(ws.weight)            # root
    directed = inn.undirected_edge_index(edge_index, 40)
    expected = convs[1](torch.relu(convs[0](x, directed)), directed)
    ours = sage(inn.as_features(x.to_sparse()), inn.mean_propagation(edge_index, 40))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_sparse_matrix_product_and_gradient_match_dense():
    torch.manual_seed(0)
    dense = torch.rand(5, 4) * (torch.rand(5, 4) > 0.5)
    sparse = inn.SparseMatrix(dense.to_sparse())
    w1 = torch.randn(4, 3, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_(True)
    (sparse @ w1).pow(2).sum().backward()
    (dense @ w2).pow(2).sum().backward()
    torch.testing.assert_close(sparse @ w1, dense @ w1)
    torch.testing.assert_close(w1.grad, w2.grad)
    torch.testing.assert_close(sparse.rows(torch.tensor([3, 1])).to_dense(), dense[[3, 1]])
    with pytest.raises(ValueError, match="cannot multiply"):
        sparse @ torch.ones(3, 2)


def test_mlp_sparse_and_dense_agree_and_extra_is_checked():
    torch.manual_seed(0)
    x = torch.randn(7, 8)
    mlp = inn.MLP(8, 16, 3, num_hidden=2, extra_dim=5).eval()
    torch.testing.assert_close(mlp(inn.as_features(x.to_sparse()), torch.ones(7, 5)),
                               mlp(x, torch.ones(7, 5)))
    with pytest.raises(ValueError, match="extra"):
        mlp(x)
    with pytest.raises(ValueError, match="num_hidden"):
        inn.MLP(8, 16, 3, num_hidden=0)


def test_node_degrees_and_undirected_edge_index():
    edge_index = np.array([[0, 1, 1, 2, 2], [1, 0, 2, 2, 1]])         # duplicates, a loop
    assert inn.undirected_edge_index(edge_index, 4).tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    assert inn.node_degrees(edge_index, 4).tolist() == [1, 2, 1, 0]


def test_bad_graph_input_is_rejected():
    with pytest.raises(ValueError, match=r"\(2, E\)"):
        inn.gcn_propagation(np.zeros((3, 3), dtype=int), 3)
    with pytest.raises(ValueError, match="outside"):
        inn.gcn_propagation(np.array([[0], [5]]), 3)
    with pytest.raises(ValueError, match="num_nodes"):
        inn.gcn_propagation(PATH3, 0)
    with pytest.raises(ValueError, match=r"\(2, E\)"):
        inn.gcn_propagation(np.zeros((2, 2)), 3)                 # float ids
    with pytest.raises(TypeError, match="SparseMatrix"):
        inn.SparseMatrix([[1.0]])
    with pytest.raises(ValueError, match="propagate"):
        inn.gcn_propagation(PATH3, 3) @ torch.ones(4, 2)
    with pytest.raises(TypeError):
        inn.as_features([1, 2, 3])
