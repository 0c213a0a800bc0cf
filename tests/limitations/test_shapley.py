"""Shapley values: known games, the axioms, the estimators, the trajectory game and claims."""

import itertools
import math
import time

import numpy as np
import pytest
import torch

from iclr22 import claims
from iclr22.limitations import shapley as sh
from iclr22.limitations import trajectories as tj


def game(table):
    """A value function over (C, P) coalitions from a dict frozenset -> value."""
    def value_fn(coalitions):
        return torch.tensor([table[frozenset(np.nonzero(c.numpy())[0].tolist())]
                             for c in coalitions], dtype=torch.float64)
    return value_fn


def tabulate(num_players, value_of):
    return {frozenset(s): float(value_of(frozenset(s)))
            for r in range(num_players + 1) for s in itertools.combinations(range(num_players), r)}


# --- known games ------------------------------------------------------------------------------


def test_glove_game_known_values():
    # player 0 holds a left glove, players 1 and 2 right gloves; a pair is worth 1
    table = tabulate(3, lambda s: float(0 in s and bool(s & {1, 2})))
    phi = sh.exact_shapley(game(table), 3)
    np.testing.assert_allclose(phi.numpy(), [2 / 3, 1 / 6, 1 / 6], atol=1e-12)


def test_unanimity_game_known_values():
    # u_T(S) = 1 iff T ⊆ S: every member of T gets 1/|T|, everyone else 0
    members = {1, 3, 4}
    table = tabulate(5, lambda s: float(members <= s))
    phi = sh.exact_shapley(game(table), 5)
    np.testing.assert_allclose(phi.numpy(), [0, 1 / 3, 0, 1 / 3, 1 / 3], atol=1e-12)


def test_additive_game_gives_the_weights():
    w = np.array([0.5, -1.0, 2.0, 0.0])
    table = tabulate(4, lambda s: sum(w[i] for i in s) + 7.0)
    np.testing.assert_allclose(sh.exact_shapley(game(table), 4).numpy(), w, atol=1e-12)


# --- the axioms on a random game ---------------------------------------------------------------


@pytest.fixture
def random_table():
    rng = np.random.default_rng(0)
    return tabulate(5, lambda s: rng.normal() + 3.0 * (0 in s))


def test_efficiency(random_table):
    phi = sh.exact_shapley(game(random_table), 5)
    full, empty = random_table[frozenset(range(5))], random_table[frozenset()]
    assert float(phi.sum()) == pytest.approx(full - empty, abs=1e-12)


def test_symmetry_and_null_player():
    rng = np.random.default_rng(1)
    base = tabulate(3, lambda s: rng.normal())
    # players 3 and 4 are interchangeable; player 5 never changes anything

    def value(s):
        core = frozenset(i for i in s if i < 3)
        return base[core] + 0.7 * len(s & {3, 4}) + 0.4 * (3 in s and 4 in s) * (0 in s)
    table = tabulate(6, value)
    phi = sh.exact_shapley(game(table), 6).numpy()
    assert phi[3] == pytest.approx(phi[4], abs=1e-12)
    assert phi[5] == pytest.approx(0.0, abs=1e-12)


def test_linearity(random_table):
    other = {s: v ** 2 - len(s) for s, v in random_table.items()}
    mix = {s: 2.0 * random_table[s] - 0.5 * other[s] for s in random_table}
    phi = [sh.exact_shapley(game(t), 5) for t in (random_table, other, mix)]
    np.testing.assert_allclose(phi[2].numpy(), (2.0 * phi[0] - 0.5 * phi[1]).numpy(), atol=1e-12)


def test_batched_exact_matches_term_by_term(random_table):
    exact = sh.exact_shapley(game(random_table), 5).numpy()
    naive = sh.naive_shapley(lambda s: random_table[s], 5)
    np.testing.assert_allclose(exact, naive, atol=1e-12)


def test_sampled_is_efficient_and_converges(random_table):
    gen = torch.Generator().manual_seed(0)
    sampled = sh.sampled_shapley(game(random_table), 5, 3000, gen).numpy()
    exact = sh.exact_shapley(game(random_table), 5).numpy()
    full, empty = random_table[frozenset(range(5))], random_table[frozenset()]
    assert sampled.sum() == pytest.approx(full - empty, abs=1e-9)   # every permutation adds up
    np.testing.assert_allclose(sampled, exact, atol=0.08)
    few = sh.sampled_shapley(game(random_table), 5, 5, torch.Generator().manual_seed(0))
    assert np.abs(few.numpy() - exact).max() > np.abs(sampled - exact).max()


def test_sampled_is_deterministic_given_the_generator(random_table):
    a = sh.sampled_shapley(game(random_table), 5, 20, torch.Generator().manual_seed(3))
    b = sh.sampled_shapley(game(random_table), 5, 20, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_coalition_order_is_the_bitmask():
    c = sh.all_coalitions(3)
    assert c.shape == (8, 3) and c[5].tolist() == [True, False, True]


def test_bad_input():
    with pytest.raises(ValueError, match="positive int"):
        sh.all_coalitions(0)
    with pytest.raises(ValueError, match="too many"):
        sh.all_coalitions(25)
    with pytest.raises(ValueError, match="coalition values"):
        sh.exact_shapley_from_values(torch.zeros(7), 3)
    with pytest.raises(ValueError, match="num_permutations"):
        sh.permutation_coalitions(3, 0, torch.Generator())


# --- the trajectory game ------------------------------------------------------------------------


def toy_samples(num=12, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    past = torch.cumsum(torch.randn(num, 8, 2, generator=g) * 0.3 + 0.5, 1)
    future = past[:, -1:] + torch.cumsum(torch.randn(num, 12, 2, generator=g) * 0.3 + 0.5, 1)
    neighbours = past[:, None] + torch.randn(num, k, 1, 2, generator=g) * 3
    return tj.Samples(past, future, neighbours, torch.ones(num, k, dtype=torch.bool),
                      torch.randint(0, 3, (num, k), generator=g), torch.arange(num),
                      torch.zeros(num, dtype=torch.long), torch.arange(1, k + 1).repeat(num, 1))


def toy_model(use_neighbours=True, seed=0):
    torch.manual_seed(seed)
    model = tj.InteractionPredictor(8, 12, 1.0, tj.PredictorConfig(use_neighbours=use_neighbours))
    torch.nn.init.normal_(model.decoder[-1].weight, std=0.3)   # not the zero init: use inputs
    return model.eval()


@pytest.mark.parametrize("metric", ["ade", "nll"])
def test_batched_values_match_the_naive_loop(metric):
    s, m = toy_samples(), toy_model()
    coalitions = sh.all_coalitions(5)
    batched = sh.coalition_values(m, s, coalitions, metric=metric, max_rows=50)   # chunked
    naive = sh.naive_coalition_values(m, s, coalitions, metric=metric)
    torch.testing.assert_close(batched, naive, atol=1e-5, rtol=1e-5)


def test_batched_is_at_least_ten_times_faster_than_the_naive_loop():
    s, m = toy_samples(num=8, k=7), toy_model()
    coalitions = sh.all_coalitions(8)                                   # 256 coalitions
    start = time.perf_counter()
    sh.coalition_values(m, s, coalitions)
    batched = time.perf_counter() - start
    start = time.perf_counter()
    sh.naive_coalition_values(m, s, coalitions)
    naive = time.perf_counter() - start
    assert naive / batched >= 10, (naive, batched)


def test_attribution_is_efficient_and_handles_padding():
    s = toy_samples(num=20, k=5)
    s.neighbour_mask[:7, 3:] = False                   # some targets have 3 neighbours only
    s.neighbour_mask[7:10] = False                     # some have none
    probe = sh.with_random_agent(s, toy_samples(num=30, seed=1), seed=0)
    a = sh.attribute(toy_model(), probe)
    total = a.past + np.nansum(a.neighbours, 1) + a.random
    np.testing.assert_allclose(total, a.full - a.empty, atol=1e-5)
    assert np.isnan(a.neighbours[:7, 3:]).all() and np.isfinite(a.neighbours[10:]).all()
    assert np.isnan(a.max_neighbour[7:10]).all() and a.exact.all()


def test_sampled_attribution_is_efficient_too():
    s = toy_samples(num=6, k=5)
    a = sh.attribute(toy_model(), s, random_slot=False, max_exact_players=4, num_permutations=16)
    assert not a.exact.any()
    np.testing.assert_allclose(a.past + a.neighbours.sum(1), a.full - a.empty, atol=1e-5)


def test_model_without_neighbours_gives_them_exactly_zero():
    a = sh.attribute(toy_model(use_neighbours=False), toy_samples(), random_slot=False)
    assert np.abs(a.neighbours).max() == 0.0                            # null players
    np.testing.assert_allclose(a.past, a.full - a.empty, atol=1e-6)


def test_attribution_is_deterministic():
    s = sh.with_random_agent(toy_samples(), toy_samples(seed=1), seed=4)
    a, b = (sh.attribute(toy_model(), s) for _ in range(2))
    np.testing.assert_array_equal(a.neighbours, b.neighbours)
    np.testing.assert_array_equal(a.past, b.past)


def test_random_agent_comes_from_another_scene():
    s, pool = toy_samples(num=10), toy_samples(num=10, seed=2)
    probe = sh.with_random_agent(s, pool, seed=0)
    assert probe.neighbours.shape[1] == 5 and (probe.neighbour_agent[:, -1] == -2).all()
    rows = [int(torch.nonzero((pool.past == p).all(-1).all(-1))[0])
            for p in probe.neighbours[:, -1]]
    assert all(pool.scene[r] != s.scene[i] for i, r in enumerate(rows))


def test_trajectory_game_bad_input():
    s, m = toy_samples(), toy_model()
    with pytest.raises(ValueError, match="metric"):
        sh.coalition_values(m, s, sh.all_coalitions(5), metric="mse")
    with pytest.raises(ValueError, match="bool"):
        sh.coalition_values(m, s, sh.all_coalitions(5).float())
    s.neighbour_mask[0, 0] = False
    with pytest.raises(ValueError, match="compact_players"):
        sh.coalition_values(m, s, sh.all_coalitions(5))


# --- aggregation (section 3.2) and the ground-truth check ------------------------------------


def hand_attribution():
    nan = np.nan
    return sh.Attribution(
        past=np.array([1.0, 2.0, 3.0]), neighbours=np.array([[0.5, -0.1], [0.2, nan],
                                                             [nan, nan]]),
        random=np.array([0.0, 0.1, -0.1]), full=np.zeros(3), empty=np.zeros(3),
        exact=np.ones(3, bool), kind=np.array([[0, 2], [1, 0], [0, 0]]),
        agent=np.zeros((3, 2), int), scene=np.arange(3), target=np.zeros(3, int), metric="ade")


def test_social_interaction_score_is_the_mean_of_maxima():
    a = hand_attribution()
    assert sh.social_interaction_score(a) == pytest.approx((0.5 + 0.2) / 2)   # eq. 4
    s = sh.summarize(a)
    assert s.past == pytest.approx(2.0) and s.ball == pytest.approx(-0.1)
    nb = (0.4 + 0.2 + 0.0) / 3
    assert s.neighbour_share == pytest.approx(nb / (2.0 + nb))


def test_ground_truth_check_by_hand():
    a = hand_attribution()
    influence = np.array([[0.3, 0.01], [0.5, np.nan], [np.nan, np.nan]])
    check = sh.ground_truth_check(a, influence, threshold_m=0.1)
    assert check.num_interacting == 1 and check.top1 == 1.0 and check.chance == 0.5
    assert check.phi_influential == 0.5 and check.phi_other == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="no target"):
        sh.ground_truth_check(a, influence, threshold_m=1.0)


# --- claims at quick size, over 3 seeds -------------------------------------------------------


def leader_scenes(num, follow, seed):
    """Synthetic scenes whose paths turn at random after step 10. With ``follow`` the target
    walks 6 steps behind neighbour 0, whose observed past already shows the turn (a strong,
    known interaction); without, the neighbours are unrelated (the target walks alone)."""
    g = torch.Generator().manual_seed(seed)
    n, k = num, 3
    heading = torch.rand(n, 1, generator=g) * 6.28
    turn = torch.randn(n, 1, generator=g) * 0.3
    t = torch.arange(26).float()
    angle = heading + turn * (t - 10).clamp_min(0)                        # (n, 26)
    lead = torch.cumsum(torch.stack([angle.cos(), angle.sin()], -1), 1)   # (n, 26, 2)
    target = lead[:, :20]
    nb = lead[:, None, :8] + 2 + torch.randn(n, k, 1, 2, generator=g) * 4
    if follow:
        nb[:, 0] = lead[:, 6:14]                            # the leader, 6 steps ahead
    return tj.Samples(target[:, :8].contiguous(), target[:, 8:].contiguous(), nb.contiguous(),
                      torch.ones(n, k, dtype=torch.bool), torch.zeros(n, k, dtype=torch.long),
                      torch.arange(n), torch.zeros(n, dtype=torch.long),
                      torch.arange(1, k + 1).repeat(n, 1))


def claim_run(seed):
    cfg = tj.PredictorConfig(epochs=6, hidden=32, edge_hidden=16)
    out = {}
    for name, follow in (("alone", False), ("follow", True)):
        train, val, test = (leader_scenes(n, follow, seed * 10 + i)
                            for i, n in enumerate((500, 100, 60)))
        model = tj.train_predictor(train, val, cfg, seed=seed).model
        s = sh.summarize(sh.attribute(model, sh.with_random_agent(test, val, seed=seed)))
        out[f"{name}/share"] = s.neighbour_share
        out[f"{name}/past_share"] = 1 - s.neighbour_share
    return out


def test_claims_over_three_seeds():
    seeds = [0, 1, 2]
    v = claims.over_seeds(claim_run, seeds)
    larger = claims.compare("followers' neighbours carry a larger share than walkers'",
                            v["follow/share"], v["alone/share"], seeds=seeds, setting="toy")
    alone = claims.at_least("walkers' past carries >= 90 %", v["alone/past_share"], 0.9,
                            seeds=seeds, setting="toy")
    assert larger.verdict == "reproduced", larger.values
    assert alone.verdict == "reproduced", alone.values
    assert math.isfinite(larger.ours.mean)


@pytest.mark.slow
def test_real_data_claims_at_quick_size_over_three_seeds(monkeypatch):
    """The chapter's pipeline at quick size (4 epochs, 80 targets) over 3 seeds: the weaker
    forms that already hold there (the full run's shares need more training)."""
    monkeypatch.setenv("ICLR22_PROFILE", "quick")
    config = sh.ExperimentConfig.for_profile()
    data = sh.prepare_data(config)
    runs = [sh.run_seed(data, config, seed) for seed in (0, 1, 2)]
    verdicts = {c.text: c.verdict for c in sh.paper_claims(runs, setting="quick")}
    assert verdicts["Football: the social interaction score (eq. 4) exceeds a random agent's "
                    "value"] == "reproduced"
    assert verdicts["Pedestrian-style scenes: the target's own past carries nearly all the "
                    "attribution (>= 90 % of the gain)"] == "reproduced"
