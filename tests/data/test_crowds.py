"""SIMULATED crowds (pysocialforce): batching is exact, restarts reproduce, no side effects."""

import logging
import os

import numpy as np
import pytest

from iclr22.data import crowds as cr


def test_simulation_shapes_and_speeds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    level = logging.getLogger().level
    c = cr.simulate_crowds(6, seed=0, num_steps=20)
    assert c.simulated and c.positions.shape == (6, 10, 20, 2)
    assert ((c.num_agents >= 4) & (c.num_agents <= 10)).all()
    for s, n in enumerate(c.num_agents):
        assert np.isfinite(c.positions[s, :n]).all() and np.isnan(c.positions[s, n:]).all()
    speed = np.linalg.norm(np.diff(c.positions, axis=2), axis=-1) / cr.STEP_S
    assert 0.8 < np.nanmean(speed) < 1.8                              # walking pace, m/s
    assert not os.path.exists(tmp_path / "file.log")                  # no log file left here
    assert logging.getLogger().level == level


def test_batched_scenes_do_not_interact():
    rng = np.random.default_rng(0)
    a, b = (cr._initial_states(rng, 6, 12.0, 4.0, 2) for _ in range(2))
    together = cr.simulate_batch([a, b], 12)
    alone = cr.simulate_batch([a], 12)
    np.testing.assert_allclose(together[0], alone[0], atol=1e-8)


def test_factual_restart_reproduces_and_far_agents_do_not_matter():
    c = cr.simulate_crowds(4, seed=1, num_steps=20)
    n = int(c.num_agents[0])
    runs = cr.counterfactual_futures(c, 0, [None, 0], start_step=7, num_steps=12)
    np.testing.assert_allclose(runs[0], c.positions[0, :n, 8:20], atol=1e-4)
    assert np.isnan(runs[1, 0]).all() and np.isfinite(runs[1, 1:]).all()


def test_vectorised_normalize_matches_the_original():
    cr._pysocialforce()
    original = cr._STATE["original_normalize"]
    vecs = np.random.default_rng(0).normal(size=(50, 2))
    vecs[3] = 0.0
    with np.errstate(invalid="ignore"):                # the original divides 0 by 0
        reference = original(vecs)
    for ours, theirs in zip(cr._normalize(vecs), reference, strict=True):
        np.testing.assert_allclose(ours, theirs)


def test_bad_input():
    with pytest.raises(ValueError, match="min_agents"):
        cr.simulate_crowds(2, seed=0, min_agents=5, max_agents=3)
    with pytest.raises(ValueError, match="num_directions"):
        cr.simulate_crowds(2, seed=0, num_directions=3)
