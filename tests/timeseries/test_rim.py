"""Tests of iclr22.timeseries.rim: split, Hawkes maths, GRU, metrics, dual matching, claims."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.optimize import linprog

from iclr22.data.movielens import Interactions
from iclr22.timeseries import rim

H = rim.DAY


#: Single-threaded (tests/conftest.py): exact repeat checks, and no spinning threads.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _toy(times_by_user, items_by_user, num_items=5):
    user = np.concatenate([[u] * len(t) for u, t in enumerate(times_by_user)])
    time = np.concatenate(times_by_user).astype(np.int64)
    item = np.concatenate(items_by_user).astype(np.int64)
    order = np.argsort(time, kind="stable")
    return Interactions(user[order], item[order], np.ones(user.size, np.float32), time[order],
                        len(times_by_user), num_items, [f"m{i}" for i in range(num_items)],
                        np.arange(1, num_items + 1))


TOY = _toy([[0, 100, 200, 10 * H + 5], [50, 11 * H], [10 * H + 1]],
           [[0, 1, 2, 3], [1, 4], [0]])


# ---- the split ------------------------------------------------------------------------------


def test_split_by_hand():
    split = rim.temporal_split(TOY, 10 * H, 2 * H)
    assert split.users.tolist() == [0, 1]                  # user 2 has no past: not a test user
    assert split.items.tolist() == [0, 1, 2]               # items seen before T
    assert [h.tolist() for h in split.history_items] == [[0, 1, 2], [1]]
    assert split.target.toarray().tolist() == [[0, 0, 0], [0, 0, 0]]
    assert split.num_dropped_targets == 3                  # items 3, 4 unseen; user 2 new
    assert split.item_popularity.tolist() == [1, 2, 1]
    assert split.history.toarray().tolist() == [[1, 1, 1], [0, 1, 0]]
    later = rim.temporal_split(TOY, 10 * H + 2, 2 * H, items=np.arange(5))
    assert later.target.toarray()[0].tolist() == [0, 0, 0, 1, 0]
    assert later.target.toarray()[1].tolist() == [0, 0, 0, 0, 1]


def test_split_bad_input():
    with pytest.raises(ValueError, match="horizon"):
        rim.temporal_split(TOY, 10 * H, 0)
    with pytest.raises(TypeError, match="unix seconds"):
        rim.temporal_split(TOY, 10.5, H)
    with pytest.raises(ValueError, match="no event before"):
        rim.temporal_split(TOY, -1, H)
    with pytest.raises(ValueError, match="every item"):
        rim.temporal_split(TOY, 10 * H, H, items=np.array([0]))
    with pytest.raises(ValueError, match="one split per date"):
        rim.prepare_splits(TOY, len(rim.TEST_STARTS))


# ---- Hawkes intensity -----------------------------------------------------------------------


def _toy_model(num_scales=3):
    config = rim.HawkesConfig(num_scales=num_scales, min_scale=0.05, max_scale=2.0)
    decays = config.decays()
    return rim.Hawkes(0.3, np.array([0.2, 0.1, 0.05])[:num_scales],
                      np.array([0.4, 0.0, 0.1])[:num_scales], decays, 0.0)


def test_event_features_match_brute_force():
    split = rim.temporal_split(TOY, 10 * H, 2 * H)
    model = _toy_model()
    rel, end, valid = rim._padded_times(split)
    x = rim._event_features(rel, valid, model.decays)
    theta = rim._theta(model)
    # lambda at each event (RIM-3) by brute force from the curve function
    for row, (u, i) in enumerate(zip(*np.nonzero(valid), strict=True)):
        times = split.history_times[u]
        t_event = times[i + 1]
        expected = rim.hawkes_intensity_curve(model, times, np.array([t_event]), split.horizon)
        assert x[row] @ theta == pytest.approx(expected[0], rel=1e-10)
    assert x.shape == (valid.sum(), 1 + 2 * model.decays.size)


def test_window_count_is_the_integral_of_the_intensity():
    split = rim.temporal_split(TOY, 10 * H, 2 * H)
    model = _toy_model()
    counts = rim.hawkes_window_count(model, split)
    for u, times in enumerate(split.history_times):
        grid = np.linspace(split.test_start, split.test_start + split.horizon, 20001)
        lam = rim.hawkes_intensity_curve(model, times, grid, split.horizon)
        integral = np.trapezoid(lam, grid) / split.horizon          # events per window
        assert counts[u] == pytest.approx(integral, rel=1e-6)


def test_compensator_closed_form():
    split = rim.temporal_split(TOY, 10 * H, 2 * H)
    model = _toy_model()
    rel, end, _ = rim._padded_times(split)
    comp = rim._compensator(rel, end, model.decays) @ rim._theta(model)
    times = split.history_times[0]
    grid = np.linspace(times[0], split.test_start, 400001)
    lam = rim.hawkes_intensity_curve(model, times, grid, split.horizon)
    assert comp[0] == pytest.approx(np.trapezoid(lam, grid) / split.horizon, rel=1e-3)


def _poisson_users(rate, num_users=150, length=10.0, seed=0):
    """Homogeneous Poisson events (``rate`` per horizon) over ``length`` horizons."""
    rng = np.random.default_rng(seed)
    times, items = [], []
    for _ in range(num_users):
        n = rng.poisson(rate * length) + 1
        times.append(np.sort(rng.uniform(0, length, n)) * H)
        items.append(rng.integers(0, 5, n))
    return _toy([t.astype(np.int64) for t in times], items)


def test_hawkes_fit_recovers_a_poisson_rate():
    data = _poisson_users(rate=3.0)
    split = rim.temporal_split(data, int(10 * H), H, items=np.arange(5))
    model = rim.fit_hawkes(split, rim.HawkesConfig(num_scales=6, min_scale=1e-3, l2=0.0))
    assert model.mu == pytest.approx(3.0, rel=0.1)
    assert (model.a >= 0).all() and (model.b >= 0).all()
    # without excitation the expected count over a window is about mu
    assert np.median(rim.hawkes_window_count(model, split)) == pytest.approx(model.mu, rel=0.1)


def test_hawkes_fit_finds_self_excitation_in_bursts():
    rng = np.random.default_rng(1)
    times = [np.sort(np.concatenate([s * H + rng.uniform(0, 0.01 * H, 5)
                                     for s in rng.uniform(0, 10, 4)])).astype(np.int64)
             for _ in range(100)]
    data = _toy(times, [np.zeros(t.size, dtype=np.int64) for t in times], num_items=1)
    split = rim.temporal_split(data, int(10 * H), H)
    model = rim.fit_hawkes(split, rim.HawkesConfig(num_scales=6, min_scale=1e-3))
    short = model.decays > 100                                   # scales under 0.01 horizon
    assert model.a[short].sum() > 0.5                            # bursts excite
    assert model.mu < 4 * 20 / 10                                # less than the raw rate


def test_ema_by_hand():
    split = rim.temporal_split(TOY, 10 * H, 2 * H)
    expected = np.exp(-(10 * H - np.array([0, 100, 200])) / (2 * H)).sum()
    assert rim.ema_intensity(split)[0] == pytest.approx(expected)


# ---- GRU relevance --------------------------------------------------------------------------


TINY_GRU = rim.GRUConfig(hidden=8, max_len=5, epochs=2, batch_size=2, patience=1)


def test_gru_relevance_is_a_distribution_and_deterministic():
    data = _poisson_users(rate=2.0, num_users=30)
    split = rim.temporal_split(data, int(10 * H), H, items=np.arange(5))
    model_a, _ = rim.fit_gru(split, TINY_GRU, seed=3, device="cpu")
    model_b, _ = rim.fit_gru(split, TINY_GRU, seed=3, device="cpu")
    rel_a = rim.gru_relevance(model_a, split, TINY_GRU.max_len)
    rel_b = rim.gru_relevance(model_b, split, TINY_GRU.max_len)
    assert rel_a.shape == (split.num_users, split.num_items)
    np.testing.assert_allclose(rel_a.sum(1), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(rel_a, rel_b)
    logits = model_a(torch.zeros(2, 4, dtype=torch.long))
    assert logits.shape == (2, 4, split.num_items)


def test_token_batches_shift_targets():
    (inputs, targets), = rim._token_batches([np.array([4, 2, 7])], batch_size=8)
    assert inputs.tolist() == [[0, 5, 3]] and targets.tolist() == [[4, 2, 7]]


# ---- metrics and the RIM identity -----------------------------------------------------------


def test_topk_and_metrics_by_hand():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.2, 0.1]])
    assert rim.assign_topk(scores, 1).toarray().tolist() == [[1, 0, 0], [1, 0, 0]]  # tie: id
    target = sp.csr_matrix(np.array([[1.0, 0, 1], [0, 1, 0]]))
    m = rim.item_rec(target, scores, 2)                 # recs {0, 2} and {0, 1}
    assert m.precision == pytest.approx(3 / 4)
    assert m.recall == pytest.approx((2 / 2 + 1 / 1) / 2)
    assert m.item_coverage == pytest.approx(1.0)
    u = rim.user_rec(target, scores, 1)                 # item 0 -> user 0, 1 -> 1, 2 -> 0
    assert u.precision == pytest.approx(3 / 3)
    assert rim.perplexity(np.ones(7)) == pytest.approx(7.0)
    with pytest.raises(ValueError, match="k must be"):
        rim.assign_topk(scores, 4)


def test_rim_keeps_item_rec_and_changes_user_rec():
    rng = np.random.default_rng(0)
    relevance = rng.dirichlet(np.ones(30), size=20)
    intensity = rng.exponential(size=20)
    target = sp.csr_matrix((rng.random((20, 30)) < 0.1).astype(float))
    a = rim.item_rec(target, relevance, 3)
    b = rim.item_rec(target, intensity[:, None] * relevance, 3)
    assert a == b                                        # RIM-1: per-row constant
    top_a = rim.assign_topk(relevance.T, 2).toarray()
    top_b = rim.assign_topk((intensity[:, None] * relevance).T, 2).toarray()
    assert not np.array_equal(top_a, top_b)              # UserRec ranks columns: it changes


def test_scores_bad_input():
    split = rim.temporal_split(TOY, 10 * H, 2 * H)
    with pytest.raises(ValueError, match="num_users, num_items"):
        rim._check_scores(np.ones((3, 3)), split)
    with pytest.raises(ValueError, match="non-negative"):
        rim._check_scores(-np.ones((2, 3)), split)


# ---- the dual matching ----------------------------------------------------------------------


def _lp_optimum(s, k, c):
    num_users, num_items = s.shape
    a_user = np.kron(np.eye(num_users), np.ones(num_items))          # sum_y pi <= k
    a_item = -np.kron(np.ones(num_users), np.eye(num_items))          # -sum_x pi <= -c
    res = linprog(-s.ravel(), A_ub=np.vstack([a_user, a_item]),
                  b_ub=np.concatenate([np.full(num_users, k), np.full(num_items, -c)]),
                  bounds=(0, 1), method="highs")
    return -res.fun


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dual_meets_budgets_and_matches_the_lp(seed):
    rng = np.random.default_rng(seed)
    s = rng.random((30, 12)) ** 3                      # skewed: top-k would starve items
    k, c = 2, 4.0
    config = rim.DualConfig(num_iters=30, hold_iters=30, bisect_steps=30, eps_end=1e-3)
    dual = rim.solve_dual(s, k, c, config)
    pi = rim.dual_assignment(s, dual, k, config)
    assert (dual.u >= 0).all() and (dual.v <= 0).all()
    assert pi.sum(1).max() <= k + 1e-3                 # each user at most k items
    assert pi.sum(0).min() >= c - 0.05                 # each item at least c users
    topk = rim.assign_topk(s, k).toarray()
    assert topk.sum(0).min() < c                       # the budget binds
    assert (s * pi).sum() == pytest.approx(_lp_optimum(s, k, c), rel=0.01)


def test_dual_without_item_budget_is_top_k():
    rng = np.random.default_rng(5)
    s = np.stack([rng.permutation(10) / 10 for _ in range(15)])   # gaps 0.1 >> eps
    dual = rim.solve_dual(s, 3, 0.0)
    pi = rim.dual_assignment(s, dual, 3)
    np.testing.assert_allclose(pi, rim.assign_topk(s, 3).toarray(), atol=1e-3)


def test_dual_bad_input():
    s = np.ones((5, 4))
    with pytest.raises(ValueError, match="infeasible"):
        rim.solve_dual(s, 1, 3.0)                        # 4 items x 3 > 5 users x 1
    with pytest.raises(ValueError, match="items_per_user"):
        rim.solve_dual(s, 0, 0.0)


# ---- claims at quick size over three seeds --------------------------------------------------


@pytest.fixture(scope="module")
def quick_runs():
    return rim.run_seeds(rim.load_data(), [0, 1, 2], rim.QUICK_CONFIG, device="cpu")


def test_claims_at_quick_size(quick_runs):
    """Three split dates at quick size: t intervals over 3 seeds are wide (t = 4.3), so the
    RIM-vs-GRU claim is asserted in its weaker form: RIM wins on every seed, by a margin.
    An implementation that drops the intensity (RIM = GRU) fails it (difference 0)."""
    found = {c.text: c for c in rim.headline_claims(quick_runs, "ML-100K quick")}
    rim_vs_gru = found["UserRec: RIM (GRU x Hawkes) beats the relevance-only GRU"]
    diffs = np.subtract(*rim_vs_gru.values.values())
    assert (diffs > 0.02).all() and rim_vs_gru.verdict != "not reproduced"
    assert found["Dual matching spreads exposure over more items than top-k (perplexity)"] \
        .verdict == "reproduced"
    budget = found["Online Dual delivers >= 90 % of the items' minimum exposure"]
    assert min(budget.values["budget delivered"]) > 0.8
    topk = [r.matching["top-k"].budget_delivered for r in quick_runs]
    assert max(topk) < 0.6                           # without the dual the budgets are missed


def test_run_is_leak_free_and_consistent(quick_runs):
    run = quick_runs[0]
    for times in run.split.history_times:
        assert times.max() < run.split.test_start       # every fitted piece sees the past only
    assert run.item_rec[rim.RIM] == run.item_rec[rim.RELEVANCE]
    for scores in run.scores.values():
        assert (scores[run.split.history.toarray() > 0] == 0).all()
