"""Tests of iclr22.timeseries.item_cf: cosine table, top-N table, online lookup, parity."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from iclr22.timeseries import item_cf as cf


def _random_purchases(num_users=40, num_items=25, density=0.15, seed=0):
    rng = np.random.default_rng(seed)
    dense = (rng.random((num_users, num_items)) < density).astype(float)
    dense[:, -1] = 0.0                                     # an item nobody bought
    return sp.csr_matrix(dense), dense


def _brute_force_cosine(dense):
    num_items = dense.shape[1]
    sim = np.zeros((num_items, num_items))
    for i in range(num_items):
        for j in range(num_items):
            ni, nj = np.linalg.norm(dense[:, i]), np.linalg.norm(dense[:, j])
            if i != j and ni > 0 and nj > 0:
                sim[i, j] = dense[:, i] @ dense[:, j] / (ni * nj)
    return sim


def test_hand_example():
    # users: a buys items 0, 1; b buys 0, 1, 2; c buys 2
    x = cf.interaction_matrix([0, 0, 1, 1, 1, 2], [0, 1, 0, 1, 2, 2], 3, 3)
    sim = cf.item_cosine_similarity(x).toarray()
    assert sim[0, 1] == pytest.approx(1.0)                   # same two buyers
    assert sim[0, 2] == pytest.approx(1 / (np.sqrt(2) * np.sqrt(2)))
    assert np.all(np.diag(sim) == 0)
    table = cf.similar_items_table(x, num_neighbours=1)
    assert table.table.getnnz(axis=1).tolist() == [1, 1, 1]
    assert table.table[0].indices.tolist() == [1]
    # user c (item 2) gets items 0 and 1 with similarity 0.5 each, item 2 itself excluded
    scores = cf.recommend_scores(cf.similar_items_table(x, 2), x[2])
    np.testing.assert_allclose(scores, [[0.5, 0.5, 0.0]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cosine_parity_with_brute_force(seed):
    x, dense = _random_purchases(seed=seed)
    np.testing.assert_allclose(cf.item_cosine_similarity(x).toarray(),
                               _brute_force_cosine(dense), atol=1e-12)


@pytest.mark.parametrize("num_neighbours", [1, 3, 10])
def test_table_and_lookup_parity(num_neighbours):
    x, dense = _random_purchases(seed=4)
    sim = _brute_force_cosine(dense)
    top = np.zeros_like(sim)
    for j in range(sim.shape[0]):                          # brute force top-N, ties by id
        order = sorted((c for c in range(sim.shape[1]) if sim[j, c] > 0),
                       key=lambda c: (-sim[j, c], c))[:num_neighbours]
        top[j, order] = sim[j, order]
    table = cf.similar_items_table(x, num_neighbours)
    np.testing.assert_allclose(table.table.toarray(), top, atol=1e-12)
    expected = np.array([[0.0 if dense[u, i] else sum(top[j, i] for j in np.flatnonzero(dense[u]))
                          for i in range(dense.shape[1])] for u in range(dense.shape[0])])
    np.testing.assert_allclose(cf.recommend_scores(table, x), expected, atol=1e-12)


def test_unbought_item_and_counts_are_binarised():
    x = cf.interaction_matrix([0, 0, 0], [1, 1, 2], 2, 4)    # a repeated purchase
    assert x.toarray().tolist() == [[0, 1, 1, 0], [0, 0, 0, 0]]
    sim = cf.item_cosine_similarity(x).toarray()
    assert np.all(sim[[0, 3]] == 0) and sim[1, 2] == pytest.approx(1.0)


def test_deterministic():
    x, _ = _random_purchases(seed=7)
    a = cf.similar_items_table(x, 5).table.toarray()
    b = cf.similar_items_table(x, 5).table.toarray()
    assert np.array_equal(a, b)


def test_bad_input():
    x, dense = _random_purchases()
    with pytest.raises(TypeError, match="scipy.sparse"):
        cf.item_cosine_similarity(dense)
    with pytest.raises(ValueError, match="num_neighbours"):
        cf.similar_items_table(x, 0)
    with pytest.raises(ValueError, match="outside"):
        cf.interaction_matrix([0, 5], [0, 1], 3, 3)
    with pytest.raises(ValueError, match="same length"):
        cf.interaction_matrix([0, 1], [0], 3, 3)
    with pytest.raises(ValueError, match="non-negative"):
        cf.item_cosine_similarity(sp.csr_matrix(-dense))
    table = cf.similar_items_table(x, 3)
    with pytest.raises(ValueError, match="items"):
        cf.recommend_scores(table, sp.csr_matrix(np.ones((2, 3))))
