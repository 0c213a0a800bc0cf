"""Tests of Deep AutoAugment: policies, the gradient-matching estimator, the search, claims."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from iclr22 import claims
from iclr22.augmentation import deep_autoaugment as da
from iclr22.augmentation import ops

TINY = da.ExperimentConfig(
    train_per_class=20, search_per_class=20, val_per_class=16, num_test=500,
    search=da.SearchConfig(max_layers=2, steps_per_layer=8, num_points=4, val_batch=8,
                           policy_lr=0.2, pretrain_epochs=15, model_width=4),
    train=da.FinalTrainConfig(epochs=2, model_width=4), seeds=(0, 1, 2))


@pytest.fixture(scope="module")
def splits():
    return da.make_splits(TINY, seed=0)


def test_splits_are_balanced_disjoint_and_sized(splits):
    assert splits.sizes() == {"train": 200, "search": 200, "validation": 160, "test": 500}
    assert torch.bincount(splits.y_train).tolist() == [20] * 10
    assert torch.bincount(splits.y_val).tolist() == [16] * 10
    assert splits.x_train.shape == (200, 1, 28, 28) and splits.x_train.dtype == torch.float32
    keys = [{bytes(x.numpy().tobytes()) for x in part}
            for part in (splits.x_train, splits.x_search, splits.x_val)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])


def test_model_shapes_and_sizes():
    model = da.SmallCNN(width=8)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert sum(p.numel() for p in model.parameters()) == 208 + 1168 + 7850


def test_policies_validate_and_baselines_have_the_stated_structure():
    with pytest.raises(ValueError, match="policy probs"):
        da.Policy("x", torch.ones(2, 5))
    with pytest.raises(ValueError, match="probability"):
        da.Policy("x", torch.ones(1, ops.NUM_CANDIDATES))
    base = da.baseline_policies(3)
    assert base["none"].depth == 0 and base["uniform"].depth == 3
    assert torch.allclose(da.op_mass(base["trivialaugment"]), torch.full((1, 17), 1 / 17))
    hand = da.op_mass(base["hand"])
    assert hand[0, ops.OP_INDEX["RandCrop"]] == 1 and hand[1, ops.OP_INDEX["RandFlip"]] == 1


def test_augment_identity_policy_is_a_no_op_and_draws_are_seeded(splits):
    x = splits.x_train[:32]
    identity = torch.zeros(2, ops.NUM_CANDIDATES)
    identity[:, ops.IDENTITY] = 1
    assert torch.equal(da.augment(x, da.Policy("id", identity)), x)
    uniform = da.baseline_policies(2)["uniform"]
    a = da.augment(x, uniform, torch.Generator().manual_seed(5))
    b = da.augment(x, uniform, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, x)


def test_policy_gradient_of_eq4_equals_autograd_through_g_t():
    # closed form: the JVP estimator is the exact derivative of the cosine (float64)
    assert da.check_policy_gradient(0) < 1e-9
    assert da.check_policy_gradient(1) < 1e-9


def test_importance_is_orthogonal_to_g_t_and_cosine_is_bounded(splits):
    model = da.SmallCNN(width=4)
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    x_aug = da._dense_augmented(splits.x_search[:3], da.Policy("e", torch.zeros(
        0, ops.NUM_CANDIDATES)), 1, gen)
    y_aug = splits.y_search[:3, None].expand(-1, ops.NUM_CANDIDATES)
    w = torch.softmax(torch.randn(3, ops.NUM_CANDIDATES, generator=gen), 1)
    importance, cos = da.candidate_importance(model, x_aug, y_aug, w,
                                              splits.x_val[:24].reshape(3, 8, 1, 28, 28),
                                              splits.y_search[:3, None].expand(-1, 8))
    assert importance.shape == (3, ops.NUM_CANDIDATES) and cos.shape == (3,)
    assert bool((cos.abs() <= 1 + 1e-5).all())
    # sum_i w_i I_i = g_T . t / (...) = 0: the tangent of eq. (4) is orthogonal to g_T
    scale = importance.abs().max()
    assert torch.allclose((w * importance).sum(1) / scale, torch.zeros(3), atol=1e-4)


def test_stopping_rule_and_layer_cap(splits):
    stop_now = da.SearchConfig(**{**vars(TINY.search), "stop_identity": 1e-6,
                                  "steps_per_layer": 2})
    result = da.search_policy(splits, stop_now, seed=0, device=torch.device("cpu"))
    assert result.stopped_by_identity and result.policy.depth == 1
    never = da.SearchConfig(**{**vars(TINY.search), "stop_identity": 1.0,
                               "steps_per_layer": 2})
    result = da.search_policy(splits, never, seed=0, device=torch.device("cpu"))
    assert not result.stopped_by_identity and result.policy.depth == never.max_layers
    assert [len(t.cosine) for t in result.layers] == [2, 2]


def test_config_errors():
    with pytest.raises(ValueError, match="num_points"):
        da.SearchConfig(num_points=1)
    with pytest.raises(ValueError, match="stop_identity"):
        da.SearchConfig(stop_identity=0.0)
    with pytest.raises(ValueError, match="positive int"):
        da.SearchConfig(steps_per_layer=0)
    with pytest.raises(ValueError, match="per-class"):
        da.ExperimentConfig(train_per_class=5000, search_per_class=1000)
    with pytest.raises(ValueError):
        da.FinalTrainConfig(epochs=0)


def test_final_training_is_paired_and_deterministic(splits):
    policy = da.baseline_policies(1)["trivialaugment"]
    a = da.train_with_policy(policy, splits, TINY.train, seed=3, device=torch.device("cpu"))
    b = da.train_with_policy(policy, splits, TINY.train, seed=3, device=torch.device("cpu"))
    assert a == b and 0 <= a <= 100


def test_paper_claims_and_metrics_from_runs():
    runs = {name: [70.0 + i + 0.1 * s for s in range(5)]
            for i, name in enumerate(da.POLICY_NAMES[::-1])}
    built = da.paper_claims(runs, seeds=range(5), setting="test")
    assert [c.verdict for c in built] == ["reproduced"] * 4
    assert all(not claims.check_claim(c.to_dict()) for c in built)
    metrics, paper, units, better = da.headline_metrics(runs)
    assert set(paper) <= set(metrics) and metrics["test_acc/deepaa"] == pytest.approx(74.2)
    assert set(units) == set(metrics) and set(better.values()) == {"higher"}
    assert da.accuracy_table(runs).shape == (5, 4)


def test_searched_layer_matches_gradients_better_than_uniform_over_seeds(splits):
    """Claim test: the layer found by eq. (6) scores a higher eq. (3) cosine than the uniform
    layer on fresh search points, paired over 3 seeds. A sign error in eq. (4)-(6) fails."""
    one_layer = da.SearchConfig(**{**vars(TINY.search), "max_layers": 1, "steps_per_layer": 10})
    ours, uniform = [], []
    for seed in TINY.seeds:
        result = da.search_policy(splits, one_layer, seed=seed, device=torch.device("cpu"))
        flat = da.Policy("uniform", torch.full((1, ops.NUM_CANDIDATES),
                                               1 / ops.NUM_CANDIDATES))
        ours.append(da.matching_score(result.model, splits, result.policy, one_layer,
                                      seed=100 + seed, num_steps=4))
        uniform.append(da.matching_score(result.model, splits, flat, one_layer,
                                         seed=100 + seed, num_steps=4))
    claim = claims.compare("searched layer matches better than uniform", ours, uniform,
                           seeds=TINY.seeds, setting="tiny")
    assert claim.verdict == "reproduced", (ours, uniform)


def test_search_per_seed_feeds_run_seed_its_own_policy(splits):
    """Each seed trains with the policy searched with that seed (not seed 0's for all)."""
    config = da.scaled(TINY, seeds=(0, 1),
                       search=da.SearchConfig(**{**vars(TINY.search), "max_layers": 1,
                                                 "steps_per_layer": 2}),
                       train=da.FinalTrainConfig(**{**vars(TINY.train), "epochs": 1}))
    searches = da.search_per_seed(splits, config, device=torch.device("cpu"))
    assert sorted(searches) == [0, 1]
    assert not torch.equal(searches[0].policy.probs, searches[1].policy.probs)
    again = da.search_policy(splits, config.search, seed=1, device=torch.device("cpu"))
    assert torch.equal(again.policy.probs, searches[1].policy.probs)   # deterministic
    by_dict = da.run_seed(1, splits, searches, config, device=torch.device("cpu"))
    by_policy = da.run_seed(1, splits, searches[1].policy, config, device=torch.device("cpu"))
    assert by_dict == by_policy and set(by_dict) == set(da.POLICY_NAMES)
    with pytest.raises(ValueError, match="no search for seed 2"):
        da.run_seed(2, splits, searches, config, device=torch.device("cpu"))
    table = da.search_table(searches)
    assert list(table.index) == [0, 1] and (table["layers"] == 1).all()
    metrics, paper, _, _ = da.headline_metrics({n: [70.0, 71.0] for n in da.POLICY_NAMES},
                                               searches)
    assert metrics["search/num_layers"] == 1.0 and "search/num_layers" in paper


def test_widget_draw_and_tables(splits):
    result = da.search_policy(splits, da.SearchConfig(**{**vars(TINY.search),
                                                          "steps_per_layer": 2}),
                              seed=1, device=torch.device("cpu"))
    fig = plt.figure(figsize=(7, 4))
    da.draw_policy(fig, result.policy.depth, search=result, image=splits.x_test[0],
                   num_samples=4)
    assert len(fig.axes) >= 5
    plt.close(fig)
    fig, ax = plt.subplots()
    da.plot_search(ax, result)
    assert len(ax.lines) == result.policy.depth
    plt.close(fig)
    table = da.policy_summary(result.policy)
    assert list(table.index) == list(range(1, result.policy.depth + 1))
    assert np.isfinite(table["identity"]).all()
