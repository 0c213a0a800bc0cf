"""The trajectory predictor and its data plumbing: shapes, neighbours, splits, training."""

import numpy as np
import pytest
import torch

from iclr22.limitations import trajectories as tj


def scene_array():
    """One scene, 4 agents, 20 steps: agent 3 is unseen at step 2, agent 2 is the ball."""
    t = np.arange(20, dtype=np.float32)
    pos = np.zeros((1, 4, 20, 2), np.float32)
    for a, (x0, y0) in enumerate([(0, 0), (1, 0), (10, 0), (3, 0)]):
        pos[0, a, :, 0], pos[0, a, :, 1] = x0 + 0.5 * t, y0 + 0.1 * a * t
    pos[0, 3, 2] = np.nan
    kinds = np.array([[0, 1, 2, 0]])
    return pos, kinds


def test_build_samples_picks_seen_targets_and_nearest_neighbours():
    pos, kinds = scene_array()
    s = tj.build_samples(pos, kinds, num_obs=8, num_pred=12, max_neighbours=2)
    assert len(s) == 2                                   # agents 0 and 1; 2 is the ball, 3 unseen
    assert s.past.shape == (2, 8, 2) and s.future.shape == (2, 12, 2)
    assert s.neighbours.shape == (2, 2, 8, 2) and s.neighbour_mask.all()
    # agent 0's nearest two among {1, 2}: 1 (1 m) then the ball (10 m); agent 3 is unusable
    assert s.neighbour_agent[0].tolist() == [1, 2]
    assert s.neighbour_kind[0].tolist() == [tj.OTHER, tj.BALL]
    np.testing.assert_allclose(s.future[0, 0].numpy(), pos[0, 0, 8])


def test_build_samples_pads_and_checks():
    pos, kinds = scene_array()
    s = tj.build_samples(pos, kinds, num_obs=8, num_pred=12, max_neighbours=5, team_based=False)
    assert s.neighbour_mask[0].tolist() == [True, True, False, False, False]
    assert (s.neighbour_agent[0, 2:] == -1).all() and (s.neighbour_kind == tj.SAME).all()
    with pytest.raises(ValueError, match="steps"):
        tj.build_samples(pos, kinds, num_obs=8, num_pred=10, max_neighbours=2)
    with pytest.raises(ValueError, match="kinds"):
        tj.build_samples(pos, kinds[:, :2], num_obs=8, num_pred=12, max_neighbours=2)
    with pytest.raises(ValueError, match="no agent"):
        tj.build_samples(np.full_like(pos, np.nan), kinds, num_obs=8, num_pred=12,
                         max_neighbours=2)


def test_windows_never_cross_a_period():
    pos = np.random.default_rng(0).normal(size=(60, 3, 2)).astype(np.float32)
    period = np.array([1] * 30 + [2] * 30)
    w, k, starts = tj.windows(pos, period, np.array([0, 1, 2]), length=20, stride=5,
                              max_agents=4)
    assert w.shape == (len(starts), 4, 20, 2) and (k[:, 3] == -1).all()
    assert all(period[s] == period[s + 19] for s in starts)
    assert starts.tolist() == [0, 5, 10, 30, 35, 40]


def test_time_split_is_disjoint_in_time():
    starts = np.arange(0, 400, 4)
    train, val, test = tj.time_split(starts, 20)
    assert starts[train].max() + 20 <= starts[val].min()
    assert starts[val].max() + 20 <= starts[test].min()
    with pytest.raises(ValueError):
        tj.time_split(starts, 20, (0.9, 0.2))


def toy(num=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    past = torch.cumsum(torch.randn(num, 8, 2, generator=g) * 0.1 + 0.5, 1)
    vel = past[:, -1:] - past[:, -2:-1]
    future = past[:, -1:] + vel * torch.arange(1, 13)[None, :, None]
    nb = past[:, None] + torch.randn(num, 3, 1, 2, generator=g)
    return tj.Samples(past, future, nb, torch.ones(num, 3, dtype=torch.bool),
                      torch.zeros(num, 3, dtype=torch.long), torch.arange(num),
                      torch.zeros(num, dtype=torch.long), torch.arange(1, 4).repeat(num, 1))


def test_model_shapes_and_constant_velocity_start():
    s = toy()
    model = tj.InteractionPredictor(8, 12, 0.5, tj.PredictorConfig()).eval()
    mean, log_sigma = model(s.past, s.neighbours, s.neighbour_mask, s.neighbour_kind)
    assert mean.shape == (64, 12, 2) and log_sigma.shape == (64, 12)
    # zero-initialised last layer: the untrained model is the constant-velocity extrapolation
    torch.testing.assert_close(mean, s.future, atol=1e-5, rtol=1e-5)
    assert tj.ade(mean, s.future).max() < 1e-4


def test_decode_of_all_coalitions_matches_forward():
    s = toy(8)
    model = tj.InteractionPredictor(8, 12, 0.5, tj.PredictorConfig()).eval()
    torch.nn.init.normal_(model.decoder[-1].weight, std=0.3)
    enc = model.encode(s.past, s.neighbours, s.neighbour_mask, s.neighbour_kind)
    with_past = torch.tensor([[True, False]]).expand(8, -1)
    on = torch.tensor([[[True, False, True]] * 2]).expand(8, -1, -1)
    mean, _ = model.decode(enc, with_past, on)
    mask = s.neighbour_mask & torch.tensor([True, False, True])
    full, _ = model(s.past, s.neighbours, mask, s.neighbour_kind)
    static, _ = model(s.past[:, -1:].expand_as(s.past), s.neighbours, mask, s.neighbour_kind)
    torch.testing.assert_close(s.past[:, -1:] + mean[:, 0] * 0.5, full)
    torch.testing.assert_close(s.past[:, -1:] + mean[:, 1] * 0.5, static)


def test_no_neighbour_model_ignores_neighbours():
    s = toy(8)
    model = tj.InteractionPredictor(8, 12, 0.5, tj.PredictorConfig(use_neighbours=False)).eval()
    torch.nn.init.normal_(model.decoder[-1].weight, std=0.3)
    a, _ = model(s.past, s.neighbours, s.neighbour_mask, s.neighbour_kind)
    b, _ = model(s.past, s.neighbours * 5, s.neighbour_mask, s.neighbour_kind)
    torch.testing.assert_close(a, b)


def test_training_is_deterministic_and_learns():
    train, val = toy(128, 0), toy(32, 1)
    train.future = train.future + 0.3                    # an offset the model must learn
    val.future = val.future + 0.3
    cfg = tj.PredictorConfig(epochs=5, hidden=16, edge_hidden=8, batch_size=32)
    a = tj.train_predictor(train, val, cfg, seed=0)
    b = tj.train_predictor(train, val, cfg, seed=0)
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert min(a.val_ade) < a.val_ade[0] and a.best_epoch == int(np.argmin(a.val_ade))


def test_metrics_by_hand():
    pred = torch.zeros(1, 2, 2)
    true = torch.tensor([[[3.0, 4.0], [0.0, 1.0]]])
    assert float(tj.ade(pred, true)) == pytest.approx(3.0)
    assert float(tj.fde(pred, true)) == pytest.approx(1.0)
    nll = tj.gaussian_nll(pred, torch.zeros(1, 2), true)
    assert float(nll) == pytest.approx(np.log(2 * np.pi) + 0.25 * (25 + 1))


def test_bad_samples():
    s = toy(4)
    s.past[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        tj.train_predictor(s, toy(4), tj.PredictorConfig(epochs=1), seed=0)
    with pytest.raises(TypeError):
        tj.train_predictor({"past": 1}, toy(4), tj.PredictorConfig(epochs=1), seed=0)
