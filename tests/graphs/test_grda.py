"""GRDA: networks, the graph discriminator's loss, the minimax gradients, the equilibrium
theory on a clique and a chain, determinism, bad input, and the DG-15 claim at quick size."""

import math

import numpy as np
import pytest
import torch

from iclr22.data.dg_domains import DomainGraphData, make_dg
from iclr22.graphs import grda
from iclr22.graphs.grda import (
    Batch,
    DomainAdaptationModel,
    GRDAConfig,
    adversary_loss,
    conditional_adjacency,
    encoder_loss,
    equilibrium_gap,
    evaluate,
    graph_embedding,
    graph_reconstruction_loss,
    sample_subgraph,
    solve_equilibrium,
    target_score,
    total_variation,
    train,
)

CHAIN3 = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]])
CLIQUE4 = np.ones((4, 4), dtype=int) - np.eye(4, dtype=int)
CPU = torch.device("cpu")


def tiny_data(n_domains=4, per_domain=8, regression=False, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_domains * per_domain, 2)).astype(np.float32)
    y = (rng.standard_normal((len(x), 3)).astype(np.float32) if regression
         else rng.integers(0, 2, len(x)).astype(np.int64))
    chain = np.eye(n_domains, k=1, dtype=np.int64)
    return DomainGraphData("tiny", x, y, np.repeat(np.arange(n_domains), per_domain),
                           chain + chain.T, np.array([0, 1]), tuple(map(str, range(n_domains))))


def tiny_model(method="grda", n_domains=4, hidden=8):
    torch.manual_seed(0)
    config = GRDAConfig(method=method, hidden=hidden, init_std=None)
    return DomainAdaptationModel(config, 2, 2, torch.randn(n_domains, 2)), config


@pytest.mark.parametrize("method", grda.METHODS)
def test_shapes(method):
    model, _ = tiny_model(method)
    x, dom = torch.randn(4, 5, 2), torch.arange(4)[:, None].expand(4, 5)
    e = model.encode(x, dom)
    assert e.shape == (4, 5, 8) and e.dtype == torch.float32
    assert model(x, dom).shape == (4, 5, 2)
    if method == "grda":
        assert model.adversary(e).shape == (4, 5, 2)     # graph embedding z = D(e), nd_out = 2
    if method == "so":
        assert model.adversary is None


def test_graph_loss_hand_example():
    # 3 domains, 1 point each, 1-d graph embeddings z = (1, 2, -1); A: 0-1 adjacent only
    z = torch.tensor([[[1.0]], [[2.0]], [[-1.0]]])
    a = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 0]])
    loss = graph_reconstruction_loss(z, a, torch.tensor([0, 1, 2]))
    # pairs: (0,1) logit 2, A=1; (0,2) logit -1, A=0; (1,2) logit -2, A=0
    adjacent = math.log1p(math.exp(-2))                       # -log sigmoid(2)
    non_adjacent = (math.log1p(math.exp(-1)) + math.log1p(math.exp(-2))) / 2  # -log(1 - sigmoid)
    assert loss.item() == pytest.approx(3 * (adjacent + non_adjacent) / 2, rel=1e-6)
    # only non-adjacent pairs sampled: that side alone, still halved and scaled by D = 3
    loss_02 = graph_reconstruction_loss(z, a, torch.tensor([0, 2]))
    assert loss_02.item() == pytest.approx(3 * math.log1p(math.exp(-1)) / 2, rel=1e-6)


def test_graph_loss_is_perfect_for_a_reconstructing_discriminator():
    # z far along +/- directions reconstructs A exactly when A is a bipartite-like pattern
    z = torch.tensor([[[10.0]], [[10.0]], [[-10.0]]])
    a = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 0]])
    assert graph_reconstruction_loss(z, a, torch.tensor([0, 1, 2])).item() < 1e-3


def test_sample_subgraph():
    rng = np.random.default_rng(0)
    a = make_dg("DG-15").adjacency
    for _ in range(50):
        nodes = sample_subgraph(a, 10, rng)
        assert len(nodes) == 10 and len(set(nodes.tolist())) == 10
        assert nodes.min() >= 0 and nodes.max() < 15
    path = np.eye(6, k=1, dtype=int)
    path = path + path.T
    walks = [sample_subgraph(path, 6, np.random.default_rng(s)) for s in range(20)]
    chains = [all(path[u, v] for u, v in zip(w[:-1], w[1:], strict=True)) for w in walks]
    assert any(chains)  # some draws are random-walk chains along the edges
    with pytest.raises(ValueError):
        sample_subgraph(a, 1, rng)


def test_graph_embedding_reconstructs_the_graph():
    u = graph_embedding(CHAIN3, 2, steps=500)
    logits = u @ u.T
    assert logits[0, 1] > 0 and logits[1, 2] > 0 and logits[0, 2] < 0


def test_bayes_discriminator_on_separated_encodings_returns_the_graph():
    # each domain has its own encoding value: E[A | e_i, e_j] = A_ij
    cond = conditional_adjacency(torch.eye(3), torch.as_tensor(CHAIN3))
    torch.testing.assert_close(cond, torch.as_tensor(CHAIN3).float())
    assert equilibrium_gap(torch.eye(3), torch.as_tensor(CHAIN3)) > 0.3


def test_equilibrium_maths_follows_the_encodings_dtype():
    """float64 encodings with an integer adjacency: no silent cast to float32."""
    p = torch.eye(3, dtype=torch.float64)
    cond = conditional_adjacency(p, torch.as_tensor(CHAIN3))
    assert cond.dtype == torch.float64
    torch.testing.assert_close(cond, torch.as_tensor(CHAIN3, dtype=torch.float64))
    assert equilibrium_gap(p, torch.as_tensor(CHAIN3)).dtype == torch.float64


def test_equilibrium_clique_aligns_everything():
    p = solve_equilibrium(CLIQUE4, n_values=6, steps=500)
    assert equilibrium_gap(p, torch.as_tensor(CLIQUE4)).item() < 1e-4
    assert total_variation(p).max().item() < 0.05        # p(e|i) = p(e|j): DANN's alignment


def test_equilibrium_chain_is_a_mixture_not_an_alignment():
    p = solve_equilibrium(CHAIN3, n_values=6, steps=500)
    assert equilibrium_gap(p, torch.as_tensor(CHAIN3)).item() < 1e-4
    torch.testing.assert_close(p[1], (p[0] + p[2]) / 2, atol=1e-3, rtol=0)  # p2 = (p1 + p3) / 2
    assert total_variation(p)[0, 2].item() > 0.1          # the two ends need not align


def test_encoder_receives_the_reversed_gradient():
    data = tiny_data()
    model, config = tiny_model("grda")
    x, y, dom = grda.by_domain(data, CPU)
    source = torch.tensor([True, True, False, False])
    batch, adj, nodes = Batch(x, y, dom, source), torch.as_tensor(data.adjacency), torch.arange(4)
    params = list(model.encoder.parameters())

    def grads(loss):
        found = torch.autograd.grad(loss, params, retain_graph=True)
        return torch.cat([g.reshape(-1) for g in found])

    total, pred = encoder_loss(model, batch, adj, nodes, config, regression=False)
    e = model.encode(batch.x, batch.domain)
    l_d = adversary_loss(model, e, model.predictor(e), batch, adj, nodes, config)
    g_total, g_pred, g_d = grads(total), grads(pred), grads(l_d)
    assert g_d.norm() > 0
    torch.testing.assert_close(g_total, g_pred - config.lambda_adv * g_d)   # L_f - lambda L_d
    # the adversary's own step descends L_d: its gradient is that of +L_d
    d_params = list(model.adversary.parameters())
    g_adv = torch.autograd.grad(l_d, d_params)
    assert sum(g.norm() for g in g_adv) > 0


def test_adversary_step_lowers_and_encoder_step_raises_the_graph_loss():
    data = tiny_data()
    model, config = tiny_model("grda")
    config.lambda_adv = 100.0          # let the adversarial term dominate L_f in the E step
    x, y, dom = grda.by_domain(data, CPU)
    batch = Batch(x, y, dom, torch.tensor([True, True, False, False]))
    adj, nodes = torch.as_tensor(data.adjacency), torch.arange(4)

    def l_d():
        e = model.encode(batch.x, batch.domain)
        return adversary_loss(model, e, model.predictor(e), batch, adj, nodes, config)

    before = l_d()
    opt_d = torch.optim.SGD(model.adversary.parameters(), lr=1e-2)
    opt_d.zero_grad()
    before.backward()
    opt_d.step()
    after_d = l_d().item()
    assert after_d < before.item()                       # D descends L_d
    opt_e = torch.optim.SGD(model.encoder.parameters(), lr=1e-2)
    total, _ = encoder_loss(model, batch, adj, nodes, config, regression=False)
    opt_e.zero_grad()
    total.backward()
    opt_e.step()
    assert l_d().item() > after_d                        # E ascends L_d


def test_deterministic():
    data = make_dg("DG-15")
    config = GRDAConfig(method="grda", hidden=16, epochs=2, lr=1e-3, init_std=None,
                        snapshot_epochs=(1,), grid_domains=(0, 1))
    m1, h1 = train(data, config, device=CPU)
    m2, h2 = train(data, config, device=CPU)
    assert h1["loss_f"] == h2["loss_f"] and h1["loss_adv"] == h2["loss_adv"]
    for p, q in zip(m1.parameters(), m2.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    shot = h1["snapshots"][1]
    assert shot["metric"].shape == (15,) and shot["encoding"].shape == (15, 10, 16)
    assert shot["grid"].shape == (2, 41 * 41)


def test_regression_task_runs_and_is_scored_by_mse():
    data = tiny_data(regression=True)
    config = GRDAConfig(method="grda", hidden=8, epochs=1, batch_size=4, sample_v=4)
    model, _ = train(data, config, device=CPU)
    mse = evaluate(model, data)
    assert mse.shape == (4,) and (mse >= 0).all()


def test_bad_input():
    data = tiny_data()
    with pytest.raises(ValueError, match="method"):
        train(data, GRDAConfig(method="coral"), device=CPU)
    with pytest.raises(ValueError, match="hidden"):
        train(data, GRDAConfig(hidden=0), device=CPU)
    with pytest.raises(ValueError, match="snapshot"):
        train(data, GRDAConfig(epochs=2, snapshot_epochs=(5,)), device=CPU)
    with pytest.raises(ValueError, match="class labels"):
        train(tiny_data(regression=True), GRDAConfig(method="mdd"), device=CPU)
    with pytest.raises(TypeError):
        train({"x": 1}, GRDAConfig(), device=CPU)
    lopsided = DomainGraphData("bad", data.x[:-1], data.y[:-1], data.domain[:-1],
                               data.adjacency, data.source, data.names)
    with pytest.raises(ValueError, match="same number"):
        train(lopsided, GRDAConfig(), device=CPU)
    with pytest.raises(ValueError, match="symmetric"):
        graph_embedding(np.triu(CLIQUE4))
    with pytest.raises(ValueError, match="embedding"):
        train(data, GRDAConfig(epochs=1), embedding=torch.zeros(3, 2), device=CPU)
    with pytest.raises(ValueError, match="distinct"):
        graph_reconstruction_loss(torch.zeros(3, 1, 2), torch.zeros(3, 3), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="(D, B, k)"):
        graph_reconstruction_loss(torch.zeros(3, 2), torch.zeros(3, 3), torch.tensor([0, 1]))


def test_claim_grda_beats_source_only_and_dann_on_dg15():
    """Quick-size DG-15: GRDA's target accuracy beats source-only and DANN by >= 10 points."""
    data = make_dg("DG-15")
    embedding = graph_embedding(data.adjacency, 2)
    scores = {}
    for method in ("so", "dann", "grda"):
        config = GRDAConfig(method=method, hidden=64, epochs=50, lr=1e-3, halve_every=10,
                            init_std=None)
        model, _ = train(data, config, embedding, device=CPU)
        scores[method] = target_score(evaluate(model, data), data)
    assert scores["grda"] >= scores["so"] + 0.10, scores
    assert scores["grda"] >= scores["dann"] + 0.10, scores
