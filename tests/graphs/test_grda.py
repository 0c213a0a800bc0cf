"""GRDA: networks, the graph discriminator's loss (eq. 3), the minimax gradients (eq. 1), the
equilibrium theory (Lemma 4.1, Theorem 4.1, Corollaries 4.1-4.3), lockstep runs = separate runs,
determinism, bad input, and the DG-15 claims at quick size over three data draws."""

import dataclasses
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from iclr22 import claims
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
    graph_loss,
    graph_reconstruction_loss,
    sample_subgraph,
    train,
    train_many,
)

CHAIN3 = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]])
CLIQUE4 = np.ones((4, 4), dtype=int) - np.eye(4, dtype=int)
STAR4 = np.array([[0, 1, 1, 1], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]])
CPU = torch.device("cpu")


def tiny_data(num_domains=4, per_domain=8, regression=False, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_domains * per_domain, 2)).astype(np.float32)
    y = (rng.standard_normal((len(x), 3)).astype(np.float32) if regression
         else rng.integers(0, 2, len(x)).astype(np.int64))
    chain = np.eye(num_domains, k=1, dtype=np.int64)
    return DomainGraphData("tiny", x, y, np.repeat(np.arange(num_domains), per_domain),
                           chain + chain.T, np.array([0, 1]), tuple(map(str, range(num_domains))))


def tiny_model(method="grda", num_runs=1, hidden=16):
    config = GRDAConfig(method=method, hidden=hidden, init_std=None)
    embedding = torch.randn(num_runs, 4, 2, generator=torch.Generator().manual_seed(0))
    return DomainAdaptationModel(config, 2, 2, embedding, seeds=range(num_runs)), config


def tiny_batch(data, num_runs=1):
    x, y, dom = grda.by_domain(data, CPU)
    stack = lambda t: t[None].expand(num_runs, *t.shape)  # noqa: E731
    model, _ = tiny_model(num_runs=num_runs)
    domain = stack(dom)
    nodes = torch.arange(4)[None].expand(num_runs, 4)
    return Batch(stack(x), stack(y), domain, grda.domain_embeddings(model.embedding, domain),
                 stack(torch.tensor([0, 1])), stack(torch.tensor([2, 3])),
                 stack(torch.as_tensor(data.adjacency)), nodes)


@pytest.mark.parametrize("method", grda.METHODS)
def test_shapes(method):
    model, _ = tiny_model(method, num_runs=2)
    x, dom = torch.randn(2, 4, 5, 2), torch.arange(4)[None, :, None].expand(2, 4, 5)
    e = model.encode(x, dom)
    assert e.shape == (2, 4, 5, 16) and e.dtype == torch.float32
    assert model(x, dom).shape == (2, 4, 5, 2)
    if method == "grda":
        assert model.adversary(e).shape == (2, 4, 5, 2)   # graph embedding z = D(e), nd_out = 2
    if method == "so":
        assert model.adversary is None


def test_stacked_runs_do_not_mix():
    """Run 1's outputs depend on run 1's weights and inputs only."""
    model, _ = tiny_model("grda", num_runs=2)
    x, dom = torch.randn(2, 4, 5, 2), torch.arange(4)[None, :, None].expand(2, 4, 5)
    before = model(x, dom)[1]
    x2 = x.clone()
    x2[0] = 100.0
    torch.testing.assert_close(model(x2, dom)[1], before)
    one = model.run(1)
    torch.testing.assert_close(one(x[1:], dom[1:])[0], before)


def test_initialisation_follows_each_seed_and_pytorch_default():
    config = GRDAConfig(hidden=64, init_std=None)
    u = torch.zeros(3, 4, 2)
    a = DomainAdaptationModel(config, 2, 2, u, seeds=[7, 8, 9])
    b = DomainAdaptationModel(config, 2, 2, u[:1], seeds=[8])
    layer_a, layer_b = a.encoder.joint[0], b.encoder.joint[0]
    torch.testing.assert_close(layer_a.weight[1], layer_b.weight[0], rtol=0, atol=0)
    bound = 1 / math.sqrt(128)                   # nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert layer_a.weight.abs().max() <= bound and layer_a.weight.std() > 0.5 * bound
    official = DomainAdaptationModel(GRDAConfig(hidden=64), 2, 2, u[:1], seeds=[0])
    w = official.encoder.joint[0].weight
    assert abs(w.std().item() - 0.01) < 1e-3 and official.encoder.joint[0].bias.abs().max() == 0


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


def test_graph_loss_of_stacked_runs_is_each_runs_own():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(3, 6, 4, 2, generator=gen)
    adjacency = torch.as_tensor(np.stack([make_dg("DG-15", seed=s).adjacency[:6, :6]
                                          for s in range(3)]))
    nodes = torch.stack([torch.randperm(6, generator=gen)[:5] for _ in range(3)])
    batched = graph_loss(z, adjacency, nodes)
    single = torch.stack([graph_reconstruction_loss(z[m], adjacency[m], nodes[m])
                          for m in range(3)])
    torch.testing.assert_close(batched, single)


def test_graph_loss_is_perfect_for_a_reconstructing_discriminator():
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
    # Lemma 4.1: each domain has its own encoding value, so E[A | e_i, e_j] = A_ij
    cond = conditional_adjacency(torch.eye(3), torch.as_tensor(CHAIN3))
    torch.testing.assert_close(cond, torch.as_tensor(CHAIN3).float())
    assert equilibrium_gap(torch.eye(3), torch.as_tensor(CHAIN3)) > 0.3


def test_equilibrium_maths_follows_the_encodings_dtype():
    p = torch.eye(3, dtype=torch.float64)
    cond = conditional_adjacency(p, torch.as_tensor(CHAIN3))
    assert cond.dtype == torch.float64
    torch.testing.assert_close(cond, torch.as_tensor(CHAIN3, dtype=torch.float64))
    assert equilibrium_gap(p, torch.as_tensor(CHAIN3)).dtype == torch.float64


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_corollaries_hold_at_every_solved_equilibrium(seed):
    """Theorem 4.1's gap reaches 0; Cor. 4.1 clique aligns all; 4.2 star hub and 4.3 chain
    middle are their neighbours' mixture, while the ends/leaves stay apart."""
    checks = grda.equilibrium_checks({"clique": (CLIQUE4, 0), "star": (STAR4, 0),
                                      "chain": (CHAIN3, 1)}, steps=500, seed=seed)
    clique, star, chain = checks
    assert max(c.gap for c in checks) < 1e-4
    assert clique.tv.max() < 0.05                                 # DANN's uniform alignment
    assert star.mixture_error < 1e-3 and chain.mixture_error < 1e-3
    assert chain.tv[0, 2] > 0.1 and star.tv[1:, 1:].max() > 0.1   # not an alignment
    table = grda.equilibrium_table(checks)
    assert list(table.index) == ["clique", "star", "chain"]


def test_encoder_receives_the_reversed_gradient():
    data = tiny_data()
    model, config = tiny_model("grda")
    batch = tiny_batch(data)
    params = list(model.encoder.parameters())

    def grads(loss):
        found = torch.autograd.grad(loss.sum(), params, retain_graph=True)
        return torch.cat([g.reshape(-1) for g in found])

    e = model.encode(batch.x, batch.domain)
    out = model.predictor(e)
    total, pred = encoder_loss("grda", model.adversary, e, out, batch, config, regression=False)
    l_d = adversary_loss("grda", model.adversary, e, out, batch, config)
    g_total, g_pred, g_d = grads(total), grads(pred), grads(l_d)
    assert g_d.norm() > 0
    torch.testing.assert_close(g_total, g_pred - config.lambda_adv * g_d)   # eq. (1)
    g_adv = torch.autograd.grad(l_d.sum(), list(model.adversary.parameters()))
    assert sum(g.norm() for g in g_adv) > 0


def test_adversary_step_lowers_and_encoder_step_raises_the_graph_loss():
    data = tiny_data()
    model, config = tiny_model("grda")
    config.lambda_adv = 100.0          # let the adversarial term dominate L_f in the E step
    model = model.double()             # the first-order changes are small: float64 shows them
    batch = tiny_batch(data)
    batch = dataclasses.replace(batch, x=batch.x.double(), u=batch.u.double())

    def l_d():
        e = model.encode(batch.x, batch.domain)
        return adversary_loss("grda", model.adversary, e, model.predictor(e), batch,
                              config).sum()

    before = l_d()
    opt_d = torch.optim.SGD(model.adversary.parameters(), lr=1e-2)
    opt_d.zero_grad()
    before.backward()
    opt_d.step()
    after_d = l_d().item()
    assert after_d < before.item()                       # D descends L_d
    opt_e = torch.optim.SGD(model.encoder.parameters(), lr=1e-2)
    e = model.encode(batch.x, batch.domain)
    total, _ = encoder_loss("grda", model.adversary, e, model.predictor(e), batch, config,
                            regression=False)
    opt_e.zero_grad()
    total.sum().backward()
    opt_e.step()
    assert l_d().item() > after_d                        # E ascends L_d


@pytest.mark.parametrize("method", ["grda", "adda", "mdd"])
def test_lockstep_runs_equal_separate_runs(method):
    draws = [make_dg("DG-15", seed=s) for s in (0, 1)]
    config = grda.cpu_config(method, "DG-15", epochs=2, hidden=16)
    together = train_many(draws, config, [3, 4], device=CPU)
    for data, seed, run in zip(draws, (3, 4), together, strict=True):
        alone = train(data, grda.cpu_config(method, "DG-15", epochs=2, hidden=16, seed=seed),
                      device=CPU)
        np.testing.assert_allclose(run.loss_f, alone.loss_f, rtol=1e-4)
        for p, q in zip(run.model.parameters(), alone.model.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-5)


def test_deterministic_and_snapshots():
    data = make_dg("DG-15")
    config = grda.with_snapshots(grda.cpu_config("grda", "DG-15", epochs=2, hidden=16),
                                 [1, 5], grid_domains=(0, 1))
    r1, r2 = train(data, config, device=CPU), train(data, config, device=CPU)
    assert r1.loss_f == r2.loss_f and r1.loss_adv == r2.loss_adv
    for p, q in zip(r1.model.parameters(), r2.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert list(r1.snapshots) == [1]
    shot = r1.snapshots[1]
    assert shot.metric.shape == (15,) and shot.encoding.shape == (15, 10, 16)
    assert shot.grid.shape == (2, 41 * 41)
    np.testing.assert_allclose(evaluate(r1.model, data), r1.per_domain)


def test_regression_task_runs_and_is_scored_by_mse():
    data = tiny_data(regression=True)
    config = GRDAConfig(method="grda", hidden=8, epochs=1, batch_size=4, sample_v=4)
    result = train(data, config, device=CPU)
    assert result.per_domain.shape == (4,) and (result.per_domain >= 0).all()


def test_nearest_source_distance_wraps_around_the_circle():
    data = make_dg("DG-60")
    dist = grda.nearest_source_distance(data)
    assert (dist[data.source] == 0).all() and dist.max() <= np.pi
    gap = np.abs(data.angle[:, None] - data.angle[data.source][None])
    np.testing.assert_allclose(dist, np.minimum(gap, 2 * np.pi - gap).min(1))
    far = grda.far_targets(make_dg("DG-15"))
    assert len(far) == 3 and set(far) <= set(make_dg("DG-15").target.tolist())


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
    with pytest.raises(TypeError):
        train(data, {"method": "grda"}, device=CPU)
    lopsided = DomainGraphData("bad", data.x[:-1], data.y[:-1], data.domain[:-1],
                               data.adjacency, data.source, data.names)
    with pytest.raises(ValueError, match="same number"):
        train(lopsided, GRDAConfig(), device=CPU)
    with pytest.raises(ValueError, match="symmetric"):
        graph_embedding(np.triu(CLIQUE4))
    with pytest.raises(ValueError, match="embedding"):
        train(data, GRDAConfig(epochs=1), embedding=torch.zeros(3, 2), device=CPU)
    with pytest.raises(ValueError, match="one seed per dataset"):
        train_many([data, data], GRDAConfig(epochs=1), [0], device=CPU)
    with pytest.raises(ValueError, match="one shape"):
        train_many([data, tiny_data(per_domain=6)], GRDAConfig(epochs=1), [0, 1], device=CPU)
    with pytest.raises(ValueError, match="distinct"):
        graph_reconstruction_loss(torch.zeros(3, 1, 2), torch.zeros(3, 3), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="(D, B, k)"):
        graph_reconstruction_loss(torch.zeros(3, 2), torch.zeros(3, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="benchmark"):
        grda.cpu_config("grda", "DG-30", epochs=5)


def test_claims_need_paired_runs():
    scores = {m: grda.MethodScores(m, "DG-15", seeds, np.zeros((2, 15)), np.array(v), 1.0, [], [])
              for m, seeds, v in (("grda", [0, 1], [90.0, 95.0]), ("so", [0, 2], [50.0, 55.0]))}
    with pytest.raises(ValueError, match="paired"):
        grda.beats_claims(scores, ["so"], paper_prefix="DG-15", setting="test")


def test_cached_runs_equal_trained_runs_and_are_read_back():
    """run_cached trains each run once, stores it keyed by data and config, reads it back."""
    draws = [tiny_data(seed=s) for s in (0, 1)]
    small = dict(hidden=8, batch_size=4, sample_v=4)
    trained = grda.run_methods(draws, [0, 1], ["so", "grda"], "DG-15", epochs=2, device=CPU,
                               **small)
    first = grda.run_cached(draws, [0, 1], ["so", "grda"], "DG-15", epochs=2, device=CPU,
                            **small)
    again = grda.run_cached(draws, [0, 1], ["so", "grda"], "DG-15", epochs=2, device=CPU,
                            **small)
    for method in ("so", "grda"):
        np.testing.assert_array_equal(first[method].per_domain, trained[method].per_domain)
        np.testing.assert_array_equal(again[method].target, trained[method].target)
        assert (first[method].from_cache, again[method].from_cache) == (0, 2)
        assert again[method].seconds == first[method].seconds > 0
    assert "4 read back" in grda.cache_summary(again, 2)
    # another config, another draw or another seed is another key: trained, not read back
    other = grda.run_cached(draws[:1], [0], ["so"], "DG-15", epochs=3, device=CPU, **small)
    moved = grda.run_cached(draws[::-1], [0, 1], ["so"], "DG-15", epochs=2, device=CPU,
                            **small)
    assert other["so"].from_cache == moved["so"].from_cache == 0


def test_cache_key_covers_data_and_config():
    data, config = make_dg("DG-15"), grda.cpu_config("grda", "DG-15", epochs=2)
    key = grda.cached_run_key(data, config, CPU)
    assert key == grda.cached_run_key(make_dg("DG-15"), config, CPU)
    assert key != grda.cached_run_key(make_dg("DG-15", seed=1), config, CPU)
    assert key != grda.cached_run_key(data, dataclasses.replace(config, lr=0.5), CPU)
    assert key != grda.cached_run_key(data, dataclasses.replace(config, seed=1), CPU)
    assert key["version"] == grda.CACHE_VERSION


def test_run_plan_runs_each_method_on_its_first_draws():
    draws = [tiny_data(seed=s) for s in (0, 1, 2)]
    small = dict(hidden=8, batch_size=4, sample_v=4)
    plan = grda.run_plan(draws, [0, 1, 2], {"grda": 2, "so": 2, "dann": 1}, "DG-15", epochs=1,
                         device=CPU, **small)
    assert {m: len(s.target) for m, s in plan.items()} == {"grda": 2, "so": 2, "dann": 1}
    assert plan["dann"].datasets == draws[:1] and plan["grda"].seeds == [0, 1]
    found = grda.beats_claims(plan, paper_prefix="DG-15", setting="test")
    assert [list(c.values) for c in found] == [["grda", "so"]]   # only paired runs: claims
    with pytest.raises(ValueError, match="plan"):
        grda.run_plan(draws, [0, 1, 2], {"grda": 4}, "DG-15", epochs=1)
    with pytest.raises(ValueError, match="plan"):
        grda.run_plan(draws, [0, 1, 2], {"grda": 0}, "DG-15", epochs=1)


def _scores_on(draws, method, level):
    """A MethodScores with made-up per-domain accuracies (%): ``level`` minus 10 per domain."""
    per_domain = np.stack([np.clip(level - 10.0 * np.arange(d.num_domains), 0, 100)
                           for d in draws])
    target = np.array([p[d.target].mean() for p, d in zip(per_domain, draws, strict=True)])
    return grda.MethodScores(method, "DG-15", list(range(len(draws))), per_domain, target, 1.0,
                             [], list(draws))


def test_figures_fit_the_column_and_alt_text_states_the_numbers():
    import warnings

    from iclr22 import viz

    draws = [make_dg("DG-15", seed=s) for s in (0, 1)]
    scores = {"so": _scores_on(draws, "so", 60.0), "grda": _scores_on(draws, "grda", 100.0)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")     # a figure wider than the column warns
        for height, draw in ((6.5, lambda f: grda.draw_datasets(f, {"DG-15": draws[0]})),
                             (8, lambda f: grda.draw_distance_figure(
                                 f, [(scores, np.linspace(0, 2, 9), "DG-15")])),
                             (5.5, lambda f: grda.draw_accuracy_on_graphs(
                                 f, {"DG-15": scores}, {"DG-15": draws[0]}, ["so", "grda"]))):
            fig = viz.figure(height_in=height)
            draw(fig)
            assert fig.get_figwidth() <= viz.style.MAX_WIDTH_IN
            viz.style.figure_png(fig)
            plt.close(fig)
    alt = grda.distance_alt({"DG-15": scores})
    dist, acc, _ = grda.accuracy_by_distance(scores["grda"], np.array([0.0, 1.0, np.inf]))
    assert f"GRDA {acc[dist <= 1].mean():.0f} % within, {acc[dist > 1].mean():.0f} %" in alt
    assert f"GRDA {scores['grda'].target[0]:.1f} %" in grda.graphs_alt({"DG-15": scores},
                                                                       ["so", "grda"])


def test_claim_grda_beats_source_only_and_dann_on_dg15_over_three_draws():
    """The full run's DG-15 verdicts at quick size (50 epochs, three draws): GRDA beats
    source-only and DANN, reproduced, each by a mean margin of >= 10 points."""
    draws = [make_dg("DG-15", seed=s) for s in range(3)]
    scores = grda.run_methods(draws, [0, 1, 2], ["so", "dann", "grda"], "DG-15", epochs=50,
                              device=CPU)
    found = grda.beats_claims(scores, ["so", "dann"], paper_prefix="DG-15",
                              setting="DG-15, 3 draws, 50 epochs")
    assert [c.verdict for c in found] == ["reproduced", "reproduced"], claims.table(found)
    assert all(c.ours.mean >= 10 for c in found), claims.table(found)
