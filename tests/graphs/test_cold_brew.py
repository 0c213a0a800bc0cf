"""Tests of iclr22.graphs.cold_brew: closed forms, hand examples, the leak, errors, claims."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from iclr22 import claims
from iclr22 import nn as inn
from iclr22.graphs import cold_brew as cb

CPU = torch.device("cpu")
PATH3 = np.array([[0, 1], [1, 2]])                       # (2, E): edges 0-1 and 1-2
TINY = cb.ColdBrewConfig(hidden=16, student_hidden=16, mlp_hidden=16).with_epochs(8)


def _toy_graph(num_nodes: int = 120, num_classes: int = 3, seed: int = 0):
    """A small homophilous graph with noisy class features (planted partition)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(num_nodes) % num_classes
    pairs = [(i, j) for i in range(num_nodes) for j in range(i + 1, num_nodes)
             if rng.random() < (0.08 if labels[i] == labels[j] else 0.005)]
    x = rng.normal(size=(num_nodes, 8)).astype(np.float32)
    x[np.arange(num_nodes), labels] += 0.8
    return torch.from_numpy(x), torch.from_numpy(labels).long(), np.array(pairs).T


# ---- splits ---------------------------------------------------------------------------------


def test_degree_split_partition():
    _, _, edge_index = _toy_graph(200)
    edge_index = np.concatenate([edge_index, [[0], [199]]], axis=1)
    num_nodes = 203                                             # three nodes with no edge
    split = cb.degree_split(edge_index, num_nodes, fraction=0.1, seed=3)
    head, tail, iso = map(set, (split.head, split.tail, split.isolation))
    assert not (head & tail) and not (head & iso) and not (tail & iso)
    size = round(0.1 * num_nodes)
    assert len(head) == size and len(tail) == size and len(iso) >= size
    assert {200, 201, 202} <= iso                                # every zero-degree node
    assert not (set(split.train_edge_index.ravel().tolist()) & iso)   # truly no edge left
    assert set(np.flatnonzero(split.train_degrees == 0)) == iso
    assert split.degrees[list(head)].min() >= split.degrees[list(tail | iso)].max()
    rest = set(range(num_nodes)) - head - iso - tail
    assert split.train_degrees[list(tail)].max() <= split.train_degrees[list(rest)].min()


def test_degree_split_is_seeded_and_node_split_covers_every_node_once():
    _, _, edge_index = _toy_graph(150)
    a, b = cb.degree_split(edge_index, 150, seed=1), cb.degree_split(edge_index, 150, seed=1)
    assert np.array_equal(a.isolation, b.isolation) and np.array_equal(a.tail, b.tail)
    tr, va, te = cb.node_split(100, 0.6, 0.2, seed=0)
    assert (len(tr), len(va), len(te)) == (60, 20, 20)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(100))


# ---- the teacher (eq. 2-3) ------------------------------------------------------------------


def test_structural_embedding_enters_before_aggregation():
    torch.manual_seed(0)
    x = torch.randn(3, 4)
    prop = inn.gcn_propagation(PATH3, 3)
    teacher = cb.SEGCN(4, 5, 2, 3, num_layers=1)
    plain = inn.GCN(4, 5, 2, num_layers=1)
    plain.load_state_dict({k: v for k, v in teacher.state_dict().items() if "se" not in k})
    torch.testing.assert_close(teacher(x, prop), plain(x, prop))    # E = 0: a plain GCN
    with torch.no_grad():
        teacher.se[0].copy_(torch.randn(3, 2))
    layer = teacher.layers[0]
    expected = prop.to_dense() @ (x @ layer.lin.weight.t() + teacher.se[0]) + layer.bias
    torch.testing.assert_close(teacher(x, prop), expected)                       # eq. 2
    assert torch.isclose(teacher.se_penalty(), teacher.se[0].pow(2).sum())       # eq. 3
    assert teacher.embeddings(x, prop).shape == (3, 2)


def test_structural_embedding_gets_gradient_only_through_the_graph():
    x, labels, edge_index = _toy_graph(30)
    edge_index = edge_index[:, (edge_index != 29).all(axis=0)]        # node 29 is isolated
    prop = inn.gcn_propagation(edge_index, 30)
    teacher = cb.SEGCN(8, 6, 3, 30, num_layers=2, dropout=0.0)
    train = torch.arange(10)
    torch.nn.functional.cross_entropy(teacher(x, prop)[train], labels[train]).backward()
    grads = teacher.se[0].grad.abs().sum(1)
    assert grads[:10].sum() > 0 and grads[29] == 0


def test_teacher_on_a_k_hop_neighbourhood_equals_the_full_graph_pass():
    x, _, edge_index = _toy_graph(80)
    torch.manual_seed(0)
    teacher = cb.SEGCN(8, 6, 3, 80, num_layers=2).eval()
    with torch.no_grad():
        for e in teacher.se:
            e.normal_()
    prop = inn.gcn_propagation(edge_index, 80)
    query = torch.tensor([3, 17, 42])
    logits, fetched, _ = cb.teacher_khop_logits(teacher, x, prop, query)
    torch.testing.assert_close(logits, teacher(x, prop)[query])
    assert 3 <= fetched < 80


# ---- the student (eq. 4) --------------------------------------------------------------------


def test_distillation_loss_hand_value_and_no_teacher_gradient():
    student = torch.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, 2.0], [0.0, 2.0]], requires_grad=True)
    loss = cb.distillation_loss(student, teacher)
    assert loss.item() == pytest.approx((1 + 0 + 0 + 4) / 4)
    loss.backward()
    assert teacher.grad is None and student.grad is not None
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        cb.distillation_loss(student, teacher[:1])
    with pytest.raises(TypeError):
        cb.distillation_loss(student, [[0.0, 0.0]])


def test_virtual_neighbours_hand_example():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    query = torch.tensor([[2.0, 0.0]])
    # dot: scores (2, 0, 2); top-2 = rows 0 and 2, softmax weights 1/2 each
    e, idx, w = cb.virtual_neighbours(query, bank, 2, similarity="dot")
    assert sorted(idx[0].tolist()) == [0, 2]
    torch.testing.assert_close(w, torch.tensor([[0.5, 0.5]]))
    torch.testing.assert_close(e, torch.tensor([[1.0, 0.5]]))
    # cosine: scores (1, 0, 1/sqrt 2); top-2 = rows 0, 2 with softmax(1, 0.7071)
    e, idx, _ = cb.virtual_neighbours(query, bank, 2, similarity="cosine")
    a = 1 / (1 + math.exp(1 / math.sqrt(2) - 1))
    assert idx[0].tolist() == [0, 2]
    torch.testing.assert_close(e, torch.tensor([[1.0, 1 - a]]))
    # k = 1 and the query may not pick bank row 0 (itself): row 2 is left
    e, idx, _ = cb.virtual_neighbours(query, bank, 1, exclude=torch.tensor([0]))
    assert idx.tolist() == [[2]]


def test_virtual_neighbours_bad_input_and_ivf_search_agrees_with_exact():
    bank = torch.ones(4, 3)
    with pytest.raises(ValueError, match="share D"):
        cb.virtual_neighbours(torch.ones(2, 2), bank, 1)
    with pytest.raises(ValueError, match="k must"):
        cb.virtual_neighbours(torch.ones(2, 3), bank, 5)
    with pytest.raises(ValueError, match="similarity"):
        cb.virtual_neighbours(torch.ones(2, 3), bank, 1, similarity="l2")
    torch.manual_seed(0)
    bank, query = torch.randn(400, 6), torch.randn(20, 6)
    search = cb.ivf_search(bank, num_lists=4, num_probe=4)             # probes every list
    exact = cb.virtual_neighbours(query, bank, 3)
    approx = cb.virtual_neighbours(query, bank, 3, search=search)
    torch.testing.assert_close(approx[0], exact[0], atol=1e-5, rtol=1e-5)


def test_student_is_node_wise_and_gates_follow_the_config():
    x, _, _ = _toy_graph(20)
    student = cb.StudentMLP(8, 4, 3, hidden=8, top_k=2, gate_init=1e-4).eval()
    student.set_bank(torch.randn(10, 4), torch.arange(10))
    rows = torch.tensor([5, 17])
    torch.testing.assert_close(student(x[rows]), student(x)[rows])      # no graph needed
    assert student.gates.tolist() == pytest.approx([1e-4, 1e-4])
    assert cb.StudentMLP(8, 4, 3).gates is None


# ---- the leak: no fitted piece sees a validation or test node -------------------------------


def test_distillation_never_reads_a_row_outside_fit_idx():
    x, _, _ = _toy_graph(60)
    target = torch.randn(60, 5)
    fit_idx = torch.arange(0, 36)
    fitted = []
    for poison in (False, True):
        x_, t_ = x.clone(), target.clone()
        if poison:                                     # change every non-training row
            x_[36:] = 100.0
            t_[36:] = -100.0
        torch.manual_seed(0)
        xi1 = inn.MLP(8, 16, 5, num_hidden=1)
        cb.fit_distillation(xi1, x_, t_, fit_idx, replace(TINY.distill, epochs=5))
        fitted.append(torch.cat([p.detach().ravel() for p in xi1.parameters()]))
    torch.testing.assert_close(fitted[0], fitted[1], rtol=0, atol=0)


def test_every_fitted_piece_is_fitted_on_training_nodes_only():
    x, labels, edge_index = _toy_graph(150)
    run = cb.run_cold_brew(x, labels, edge_index, TINY, seed=2, device=CPU, keep=True)
    train = set(run.models.problem.train_idx.tolist())
    assert set(run.fitted_on) == {"GCN", "GraphSAGE", "MLP", "GCN+SE (teacher)", "xi_1", "xi_2"}
    for piece, nodes in run.fitted_on.items():
        assert set(nodes.tolist()) <= train, piece
    assert set(run.fitted_on["xi_1"].tolist()) == train                  # all of them


def test_test_labels_change_nothing_that_was_fitted():
    x, labels, edge_index = _toy_graph(150)
    _, _, test = cb.node_split(150, 0.6, 0.2, seed=1)
    flipped = labels.clone()
    flipped[test] = (flipped[test] + 1) % 3
    runs = [cb.run_cold_brew(x, y, edge_index, TINY, seed=1, device=CPU, keep=True)
            for y in (labels, flipped)]
    assert runs[0].val_accuracy == runs[1].val_accuracy
    for attr in ("student", "teacher"):
        sa = getattr(runs[0].models, attr).state_dict()
        sb = getattr(runs[1].models, attr).state_dict()
        for key in sa:
            torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=f"{attr}.{key}")


# ---- FCR (eq. 5) and label propagation ------------------------------------------------------


def test_feature_contribution_ratio_matches_the_papers_table():
    cora = cb.PAPER_FCR["Cora"]
    fcr = cb.feature_contribution_ratio(cora["GNN"], cora["MLP"], cora["label propagation"])
    assert fcr == pytest.approx(cora["FCR"], abs=0.01)
    assert cb.feature_contribution_ratio(80.0, 50.0, 70.0) == pytest.approx(25.0)
    with pytest.raises(ValueError, match="z_lp < z_gnn"):
        cb.feature_contribution_ratio(70.0, 50.0, 80.0)
    with pytest.raises(TypeError):
        cb.feature_contribution_ratio(70.0, float("nan"), 50.0)


def test_label_propagation_hand_example():
    prop = inn.gcn_propagation(PATH3, 3)
    labels = torch.tensor([0, 0, 1])
    scores = cb.label_propagation(prop, labels, torch.tensor([0]), 2, alpha=0.5, num_iters=30)
    assert scores[:, 1].abs().max() == 0                     # class 1 is never seen
    assert scores[0, 0] > scores[1, 0] > scores[2, 0] > 0    # decays along the path
    with pytest.raises(ValueError, match="alpha"):
        cb.label_propagation(prop, labels, torch.tensor([0]), 2, alpha=1.0)


def test_paper_values_are_data():
    assert cb.PAPER["isolation_acc/student"] == claims.PaperValue(69.62, "Table 10", "Cora")
    assert cb.PAPER_TABLE10["PubMed"]["GCN"]["head"] == 85.79


# ---- runs: bad input, determinism, timing, widget -------------------------------------------


def test_bad_input_is_rejected_before_work():
    x, labels, edge_index = _toy_graph(30)
    with pytest.raises(ValueError, match="num_nodes"):
        cb.degree_split(PATH3, 0)
    with pytest.raises(ValueError, match="fraction"):
        cb.degree_split(PATH3, 3, fraction=0.5)
    with pytest.raises(TypeError, match="labels"):
        cb.run_cold_brew(x, labels.float(), edge_index, device=CPU)
    with pytest.raises(ValueError, match="rows"):
        cb.run_cold_brew(x[:10], labels, edge_index, device=CPU)
    with pytest.raises(ValueError, match="baselines"):
        cb.run_cold_brew(x, labels, edge_index, baselines=("GAT",), device=CPU)
    with pytest.raises(ValueError, match="student_train_groups"):
        cb.run_cold_brew(x, labels, edge_index, replace(TINY, student_train_groups=("hub",)),
                         baselines=(), device=CPU)
    with pytest.raises(ValueError, match="epochs"):
        cb.ColdBrewConfig().with_epochs(0)


def test_run_is_deterministic_and_complete():
    x, labels, edge_index = _toy_graph(150)
    a = cb.run_cold_brew(x, labels, edge_index, TINY, seed=2, device=CPU)
    b = cb.run_cold_brew(x, labels, edge_index, TINY, seed=2, device=CPU)
    assert a.accuracy == b.accuracy and a.fcr == b.fcr
    assert set(a.accuracy) == {"GCN", "GraphSAGE", "MLP", "GCN+SE (teacher)",
                               "Cold Brew student", "Label propagation"}
    assert all(set(per) == set(cb.GROUPS) for per in a.accuracy.values())
    assert "isolation_acc/student" in a.metrics() and "overall_acc/lp" in a.metrics()


def test_inference_cost_runs_and_reports_units():
    x, labels, edge_index = _toy_graph(100)
    cost = cb.inference_cost("toy", x, labels, edge_index, TINY, num_query=20, repeats=1,
                             device=CPU)
    assert cost.num_nodes == 100 and cost.num_query == 20 and cost.num_hops == 2
    assert cost.teacher_khop_ms > 0 and cost.student_ivf_ms > 0 and 0 <= cost.ivf_recall <= 1
    assert 20 <= cost.fetched_nodes <= 100


def test_trained_ivf_check_probing_every_list_is_exact():
    x, labels, edge_index = _toy_graph(120)
    run = cb.run_cold_brew(x, labels, edge_index, TINY, baselines=(), device=CPU, keep=True)
    full = cb.trained_ivf_check(run.models, num_lists=2, num_probe=2)   # every list probed
    assert full.recall == pytest.approx(1.0) and full.agreement == pytest.approx(1.0)
    assert full.num_query == len(run.models.problem.test_idx)
    assert run.models.student.search is None                            # restored
    runs = cb.SeedRuns(seeds=[0], metrics={"overall_acc/gcn": [50.0]}, first=run,
                       seconds=[1.0])
    metrics = cb.headline_metrics(runs, [], full)
    assert metrics["inference/ivf_recall_trained@verbs"] == pytest.approx(1.0)
    assert metrics["ivf_agreement/trained@verbs"] == pytest.approx(1.0)
    units, better = cb.metric_labels(metrics)
    assert set(units) == set(metrics) and better["ivf_agreement/trained@verbs"] == "higher"


def test_widget_frames_and_draw_headless():
    from functools import partial

    from iclr22.viz import live_view

    x, labels, edge_index = _toy_graph(120)
    run = cb.run_cold_brew(x, labels, edge_index, TINY, baselines=(), device=CPU, keep=True)
    data = cb.edge_removal_frames(run.models, (0.0, 1.0), max_points=50)
    assert data["student_xy"].shape == (len(data["labels"]), 2)
    assert data["frames"][1.0]["isolated"].all()               # every edge gone
    problem = run.models.problem
    isolated_test = np.isin(problem.test_idx.numpy(), problem.split.isolation)
    assert data["frames"][0.0]["num_isolated_test"] == int(isolated_test.sum())
    view = live_view(partial(cb.draw_embedding_frame, data=data), [0.0, 1.0], label="f")
    view.slider.value = 1.0                                       # redraws without error
    with pytest.raises(ValueError, match="fractions"):
        cb.edge_removal_frames(run.models, (1.5,))


# ---- the paper's claims on real data, over seeds --------------------------------------------


@pytest.fixture(scope="module")
def wordnet_quick_runs():
    """Quick size on the WordNet 3.0 verb graph: seeds 0-2, 30 epochs, the claims' models."""
    from iclr22.data.wordnet import load_wordnet_verbs

    graph = load_wordnet_verbs()
    seeds = [0, 1, 2]
    runs = cb.run_seeds(graph, seeds, cb.ColdBrewConfig().with_epochs(30),
                        baselines=("GCN", "MLP"), device=CPU)
    return {c.text: c for c in cb.cold_brew_claims(runs.metrics, seeds, "quick test")}


def test_claim_student_vs_gcn_on_isolated_nodes_is_not_refuted(wordnet_quick_runs):
    """The full run (5 seeds, 80 epochs) finds this claim inconclusive (+0.6 points
    [-4.3, 5.5]); what holds, and what we assert at quick size, is that the student is not
    significantly worse than the GCN (quick size measured: +2.8, +6.6, +5.6 points)."""
    claim = wordnet_quick_runs["Cold Brew student beats GCN on isolated nodes"]
    assert claim.verdict != "not reproduced", claim.ours
    assert claim.ours.high > 0


def test_claim_student_beats_mlp_on_isolated_nodes(wordnet_quick_runs):
    """Reproduced in the full run (+5.4 points [2.0, 8.9], every seed positive). Weaker form
    at quick size (3 seeds, where a t interval is wide): every seed's paired difference is
    positive and the mean exceeds 2 points (measured: +3.5, +6.9, +4.1)."""
    claim = wordnet_quick_runs["Cold Brew student beats MLP on isolated nodes"]
    diffs = np.subtract(*claim.values.values())
    assert (diffs > 0).all() and claim.ours.mean > 2.0, diffs
    assert claim.verdict != "not reproduced"


def test_claim_teacher_at_least_gcn_on_head_and_tail(wordnet_quick_runs):
    """Reproduced in the full run (head +1.3 [0.1, 2.6], tail +2.6 [1.8, 3.4] points) and
    over the 3 quick seeds (measured: head +9.4, +7.0, +5.4; tail +9.4, +8.3, +5.9)."""
    for group in ("head", "tail"):
        claim = wordnet_quick_runs[f"Teacher (GCN+SE) >= GCN on {group} nodes"]
        assert claim.verdict == "reproduced", (group, claim.ours)
