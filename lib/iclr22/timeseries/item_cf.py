"""Item-to-item collaborative filtering (Linden, Smith and York, 2003), on sparse matrices.

Paper: G. Linden, B. Smith and J. York, "Amazon.com recommendations: item-to-item
collaborative filtering", IEEE Internet Computing 7(1):76-80, 2003. Bib key
``linden2003amazon``. The recurrent-intensity chapter uses it as the classic reference
recommender (it is not an ICLR 2022 paper).

Idea
----
Instead of matching a user to similar *users*, match each of the user's items to similar
*items*. The expensive part is offline: a similar-items table built from which customers
bought which items; the online part is a lookup that costs only as much as the user's own
history, independent of the number of customers and items.

Equations
---------
Let ``X`` be the binary (num_users, num_items) purchase matrix, column ``x_j`` item ``j``'s
vector over customers ("each dimension corresponds to a customer who has bought it").

* Similarity of two items: the cosine of their customer vectors,
  ``sim(i, j) = x_i . x_j / (||x_i|| ||x_j||)``; only pairs bought together by at least one
  customer are non-zero, so the table is ``C = X^T X`` (co-occurrence counts) scaled by the
  column norms: ``S = D^-1/2 C D^-1/2`` with ``D = diag(C)``, diagonal removed.       (CF-1)
* The similar-items table keeps, for each item, its ``num_neighbours`` most similar items
  (the paper's offline table).                                                         (CF-2)
* Online: a user's score for item ``i`` aggregates the table rows of the items ``H(u)`` she
  bought, ``score(u, i) = sum_{j in H(u)} S_top[j, i]``, items already bought excluded;
  recommend the highest scores.                                                        (CF-3)

Deviations
----------
The paper does not state the aggregation of the similar-items lists ("the algorithm finds
items similar to each of the user's purchases and ratings, aggregates those items, and
then recommends the most popular or correlated items"); we sum the similarities (the usual
reading). A MovieLens rating counts as a purchase (binary ``X``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .. import checks

__all__ = ["SimilarItems", "interaction_matrix", "item_cosine_similarity", "recommend_scores",
           "similar_items_table"]


def _check_matrix(name: str, x) -> sp.csr_matrix:
    if not sp.issparse(x) or x.ndim != 2:
        raise TypeError(f"{name} must be a 2-D scipy.sparse matrix (num_users, num_items), "
                        f"got {type(x).__name__}")
    x = sp.csr_matrix(x, dtype=np.float64)
    if x.nnz and (x.data.min() < 0 or not np.all(np.isfinite(x.data))):
        raise ValueError(f"{name} must hold finite non-negative counts")
    return x


def _check_ids(name: str, ids, size: int) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D integer array, got {ids.dtype} {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= size):
        raise ValueError(f"{name} holds ids outside 0..{size - 1}")
    return ids.astype(np.int64)


def interaction_matrix(user, item, num_users: int, num_items: int) -> sp.csr_matrix:
    """Binary (num_users, num_items) CSR matrix: 1 where the user bought (rated) the item.

    Shapes: user, item (N,) int ids.
    """
    user, item = _check_ids("user", user, num_users), _check_ids("item", item, num_items)
    if user.shape != item.shape:
        raise ValueError(f"user {user.shape} and item {item.shape} must have the same length")
    x = sp.csr_matrix((np.ones(user.size), (user, item)), shape=(num_users, num_items))
    x.data[:] = 1.0                                     # duplicates summed, then binarised
    return x


def item_cosine_similarity(x) -> sp.csr_matrix:
    """(num_items, num_items) sparse cosine similarity of item columns, zero diagonal (CF-1).

    Shapes: x (num_users, num_items) sparse, binary or counts.
    """
    x = _check_matrix("x", x)
    co = (x.T @ x).tocsr()                              # C = X^T X       (items, items)
    norms = np.sqrt(co.diagonal())                      # ||x_j||
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    sim = sp.diags(inv) @ co @ sp.diags(inv)            # D^-1/2 C D^-1/2  (CF-1)
    sim = sim.tocsr()
    sim.setdiag(0.0)
    sim.eliminate_zeros()
    return sim


@dataclass(frozen=True)
class SimilarItems:
    """The offline similar-items table (CF-2): row ``j`` holds item ``j``'s top neighbours.

    Shapes: table (num_items, num_items) sparse with at most ``num_neighbours`` entries a row.
    """

    table: sp.csr_matrix
    num_neighbours: int


def similar_items_table(x, num_neighbours: int = 50) -> SimilarItems:
    """Build the table of each item's ``num_neighbours`` most similar items (CF-1, CF-2).

    Ties at the cut are broken by the smaller item id, so the table is deterministic.
    Shapes: x (num_users, num_items) sparse -> table (num_items, num_items).
    """
    checks.positive_int("num_neighbours", num_neighbours)
    sim = item_cosine_similarity(x).tocoo()
    order = np.lexsort((sim.col, -sim.data, sim.row))  # by row, similarity desc, then id asc
    row, col, val = sim.row[order], sim.col[order], sim.data[order]
    starts = np.searchsorted(row, np.arange(sim.shape[0]))            # first entry of each row
    rank = np.arange(row.size) - starts[row]                          # 0 = most similar
    keep = rank < num_neighbours
    table = sp.csr_matrix((val[keep], (row[keep], col[keep])), shape=sim.shape)
    return SimilarItems(table, int(num_neighbours))


def recommend_scores(similar: SimilarItems, history, exclude_history: bool = True) -> np.ndarray:
    """Online lookup (CF-3): ``score = H S_top`` for a batch of users, bought items zeroed.

    Shapes: history (num_users, num_items) sparse binary -> (num_users, num_items) dense.
    """
    history = _check_matrix("history", history)
    if history.shape[1] != similar.table.shape[0]:
        raise ValueError(f"history has {history.shape[1]} items, the table "
                         f"{similar.table.shape[0]}")
    scores = np.asarray((history @ similar.table).todense())   # sum_j in H(u) S_top[j, :]
    if exclude_history:
        scores[history.nonzero()] = 0.0
    return scores
