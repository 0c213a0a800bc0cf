"""DG-15 / DG-60 generator: sizes, determinism, graph structure, the recipe's invariants."""

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components

from iclr22.data.dg_domains import (
    RECIPES,
    angle_graph,
    bayes_accuracy,
    make_dg,
    summary_table,
)


@pytest.mark.parametrize("name,n", [("DG-15", 15), ("DG-60", 60)])
def test_sizes_and_dtypes(name, n):
    data = make_dg(name)
    assert data.x.shape == (100 * n, 2) and data.x.dtype == np.float32
    assert data.y.dtype == np.int64 and set(np.unique(data.y)) == {0, 1}
    assert np.all(np.bincount(data.domain) == 100)
    for d in range(n):  # 50 points per class in every domain
        assert np.sum(data.y[data.domain == d]) == 50
    assert data.num_domains == n
    assert data.adjacency.shape == (n, n) and len(data.source) == 6
    assert len(data.target) == n - 6
    np.testing.assert_allclose(data.x.mean(0), 0, atol=1e-5)  # standardised over all domains
    np.testing.assert_allclose(data.x.std(0), 1, atol=1e-5)


@pytest.mark.parametrize("name", ["DG-15", "DG-60"])
def test_graph_structure(name):
    data = make_dg(name)
    a = data.adjacency
    assert (a == a.T).all() and (np.diag(a) == 0).all() and np.isin(a, (0, 1)).all()
    assert connected_components(a)[0] == 1
    p = np.cos(data.angle[:, None] - data.angle[None, :])
    assert (p[a == 1] >= RECIPES[name]["threshold"]).all()   # no edge below the threshold
    # sources: the 6 smallest angles (the rule that reproduces the official configs)
    np.testing.assert_array_equal(data.source, np.sort(np.argsort(data.angle)[:6]))
    assert data.angle.min() >= 0 and data.angle.max() < RECIPES[name]["theta_max"]


def test_rotating_boundaries_are_each_perfect():
    data = make_dg("DG-15")
    assert bayes_accuracy(data).min() == 1.0
    # class 0 sits on the side of the domain's own angle: the boundary rotates with theta
    for d in (0, 7, 14):
        x0 = data.x[(data.domain == d) & (data.y == 0)].mean(0)
        x1 = data.x[(data.domain == d) & (data.y == 1)].mean(0)
        direction = np.array([np.cos(data.angle[d]), np.sin(data.angle[d])])
        assert (x0 - x1) @ direction > 0


def test_deterministic_and_seed_dependent():
    a, b, c = make_dg("DG-15"), make_dg("DG-15"), make_dg("DG-15", seed=1)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.adjacency, b.adjacency)
    assert not np.array_equal(a.x, c.x)


def test_angle_graph_edge_rule():
    rng = np.random.default_rng(0)
    angle = np.array([0.0, 0.0, np.pi / 2, np.pi])
    a = angle_graph(angle, 0.2, rng)
    assert a[0, 1] == 1                          # cos 0 = 1: always joined
    assert a[0, 2] == 0 and a[0, 3] == 0 and a[2, 3] == 0   # cos <= 0 < 0.2: never


@pytest.mark.parametrize("kwargs", [{"name": "DG-30"}, {"seed": -1}, {"seed": 1.5}, {"seed": True}])
def test_bad_input(kwargs):
    with pytest.raises(ValueError):
        make_dg(**kwargs)


def test_summary_table():
    table = summary_table({"DG-15": make_dg("DG-15"), "DG-60": make_dg("DG-60")})
    assert list(table.columns) == ["DG-15", "DG-60"]
    assert table.loc["domains", "DG-60"] == 60 and table.loc["target domains", "DG-15"] == 9
    assert table.loc["own-boundary accuracy (min over domains)", "DG-15"] == 1.0


def test_draws_differ_in_how_far_targets_lie_from_the_sources():
    """The reason the chapter averages over draws: the farthest target's distance varies."""
    farthest = []
    for seed in (233, 1, 2, 3, 4):
        d = make_dg("DG-15", seed=seed)
        gap = np.abs(d.angle[:, None] - d.angle[None, d.source]).min(1)
        farthest.append(gap[d.target].max())
    assert max(farthest) - min(farthest) > 0.2
