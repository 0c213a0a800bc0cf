"""GIANT-XRT: node feature extraction by self-supervised multi-scale neighbourhood prediction.

Eli Chien, Wei-Cheng Chang, Cho-Jui Hsieh, Hsiang-Fu Yu, Jiong Zhang, Olgica Milenkovic,
Inderjit S. Dhillon. ICLR 2022. https://openreview.net/forum?id=KJggliHbs8 (arXiv 2111.00064;
bib key ``chien2022giant``). Official code: https://github.com/amzn/pecos, folder
``examples/giant-xrt`` with ``pecos.xmc.xtransformer`` (read, not copied; libpecos is not a
dependency: it pins numpy<2 and its XR-Transformer fails with transformers 5).

Idea. A GNN is only as good as the numerical node features it is given, and those are
usually made without the graph (bag of words, TF-IDF, a pretrained language model). GIANT
fine-tunes the text encoder on a *self-supervised* task that reads the graph: from a node's
text, predict the set of its neighbours. With one label per node this is extreme multi-label
classification (XMC), which XR-Transformer solves coarse to fine over a hierarchical label
tree; the clusters of the tree are neighbourhoods at several scales. The fine-tuned encoder's
embeddings, ``X_GIANT``, replace the raw features of any downstream GNN or MLP.

Equations (our numbering; the paper's notation)
-----------------------------------------------
* (1) XMC labels: ``Y = A`` (N x L, L = N): node ``i``'s positive labels are its neighbours.
* (2) PIFA label embeddings: ``v_l = sum_{i: Y_il = 1} phi_tfidf(t_i)``,
  ``z_l = v_l / ||v_l||`` (positive-instance feature aggregation).
* (3) Label tree: recursive balanced spherical 2-means on ``{z_l}``; a binary tree of depth
  ``D`` whose every ``log2(B)``-th level is kept gives cluster matrices ``C^(t)``
  (K_t x K_{t-1}), ``K_t = B^t``, and the label-to-cluster indicators ``Y^(t) = bin(Y C)``
  (a node is positive for cluster ``c`` of level ``t`` when a neighbour lies in ``c``).
* (4) Matcher at level ``t``: ``s_t(i, c) = w_c^(t) . phi(t_i) + b_c^(t)`` with ``phi`` the
  encoder's pooled, L2-normalised embedding; loss (squared hinge, pecos' default)
  ``L_t = mean_{(i, c) in S_t} max(0, 1 - y_ic s_t(i, c))^2``, ``y_ic = +-1`` from
  ``Y^(t)``, over the shortlist ``S_t(i)`` = children of (the positive parents of ``i``:
  teacher-forced negatives, "tfn") and of (the top-``k`` parents predicted by level
  ``t-1``: matcher-aware negatives, "man"); all ``K_1`` clusters at the first level.
* (5) Coarse to fine: level ``t`` starts from level ``t-1``'s encoder; its head starts
  from a ridge regression of the ``+-1`` targets of level ``t`` on the embeddings (pecos'
  default "linear" bootstrap).
* (6) Prediction by beam search: keep the ``b`` best clusters of level ``t``; score only
  their children at level ``t+1``; ``b B`` scores per level instead of ``L`` for a flat
  one-vs-all scorer.
* (7) ``X_GIANT = phi_finetuned(t_i)`` for every node; downstream classifiers read it.

Which nodes each fitted piece sees
----------------------------------
=================================  =====================================================
TF-IDF for PIFA (eq. 2)             all nodes' text (no label): transductive, like the
                                    official ``proc_data_xrt.py``
label tree (eq. 3)                  PIFA of all nodes: all edges and texts, no class label
encoder fine-tuning (eq. 4-5)       all nodes with at least one edge, their text and their
                                    neighbours; never a class label. This is the paper's
                                    transductive ogbn setting (the whole graph is
                                    available for self-supervision)
downstream TF-IDF baseline          vocabulary and idf fitted on the training nodes
feature standardisation             mean and sd of the training nodes
MLP, GraphSAGE                      cross-entropy on training nodes; epoch chosen on
                                    validation accuracy; test accuracy reported
=================================  =====================================================

Deviations from the paper and from the official code
----------------------------------------------------
* Data: WordNet 3.0 verbs (13,767 synsets, 15 lexicographer classes), not ogbn-*; the
  encoder is all-MiniLM-L6-v2 (6 layers, 384 wide), not BERT-base. No ogbn dataset ships
  offline.
* Fine-tuning budget: tens of steps per level on a CPU, with the embeddings and the lower
  ``6 - num_trainable_layers`` transformer layers frozen (pecos fine-tunes every layer for
  epochs). The frozen layers' outputs are computed once for all nodes (in eval mode, so
  their dropout is off) and reused, which is what freezing them means, at a fraction of the
  cost. ``XRConfig.paper_scale()`` trains every layer (a GPU config).
* One fine-tuning per run: the self-supervised step does not depend on the downstream
  split, so it is done once (its seed fixed) and the seeds of the claims vary the split and
  the classifiers. The claims' intervals therefore exclude the fine-tuning's own variance.
* Matcher-aware negatives come from the previous level's head applied online to the
  current batch's embeddings; pecos predicts them once for all nodes with the finished
  previous-level model. One level's head (no multi-level beam) proposes them.
* The linear bootstrap of every level's head is a ridge regression of the +-1 targets on the
  *pretrained* embeddings (computed once); pecos fits it on the embeddings of the finished
  previous level (one more pass over all nodes per level, which our budget lacks). The
  heads get a larger learning rate than the encoder (``lr_head``).
* Pooling: the sentence encoder's own mean pooling and L2 normalisation; pecos takes BERT's
  pooler output ([CLS]).
* Tree: recursive balanced 2-means on PIFA with every ``log2(B)``-th level kept (as pecos
  builds its chains), ``B = 16``; the depth stops where a cluster would hold fewer than
  ``min_leaf_size`` labels. The label level itself is fine-tuned too when it is at most
  ``max_match_clusters`` (pecos' rule).
* XMC training instances: the nodes with at least one edge (an isolated node has no
  positive); pecos keeps nodes of degree < 1000, isolated ones included.
* TF-IDF for PIFA: scikit-learn word unigrams and bigrams, not pecos' unigram + bigram +
  character-trigram vectoriser.
* ``X_GIANT`` is the encoder embedding alone, as the official ``xrt_get_emb.sh``
  (``XTransformer.encode`` returns the ``text_encoder``'s embeddings only). XR-Transformer's
  own final ranker (XR-Linear) reads TF-IDF concatenated with the embedding; that
  concatenation is not a GIANT node feature in the official pipeline, and on our CPU a
  GraphSAGE on the 10k-wide sparse + 384 dense concatenation costs minutes per seed, so it
  is left to an exercise.
* Downstream: a 2-layer MLP and a 2-layer GraphSAGE (mean) from :mod:`iclr22.nn`,
  full-batch Adam with the best validation epoch; a random 60/20/20 split per seed instead
  of the ogbn splits. Dense features are standardised with the training nodes' statistics
  (the official OGB MLP uses batch normalisation instead).
* The paper's Table 2 could not be read here (only its abstract and the official README):
  ``PAPER`` holds the abstract's ogbn-papers100M numbers and the README's GIANT-XRT
  re-runs; no paper number for the un-fine-tuned encoder is stored.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import cache, checks, claims, runtime
from ..data.sentence_encoders import minilm_path
from ..data.wordnet import DEBIAN_PACKAGES, load_wordnet_verbs, tfidf_features
from ..nn import MLP, GraphSAGE, SparseMatrix, mean_propagation, undirected_edge_index
from ..train import TrainConfig, accuracy, fit_classifier, fit_nodewise

__all__ = [
    "DEBIAN_PACKAGES", "FEATURE_SETS", "MODELS", "PAPER", "ClassifierConfig", "EncodedCorpus",
    "GiantFeatures", "LabelTree", "TextGraph", "TreeCost", "XRConfig", "XRModel",
    "balanced_2means", "beam_search", "build_tree", "cluster_matrices", "encode_corpus",
    "fit_giant", "fit_xr_transformer", "giant_claims", "linear_bootstrap", "matcher_recall",
    "neighbour_matrix", "neighbour_recall", "pifa", "run_seed", "run_seeds", "shortlist",
    "squared_hinge", "tree_cost", "tree_costs", "verb_graph",
]

FEATURE_SETS = ("tfidf", "minilm", "giant")
FEATURE_NAMES = {"tfidf": "TF-IDF", "minilm": "MiniLM (off the shelf)",
                 "giant": "GIANT (fine-tuned MiniLM)"}
MODELS = ("mlp", "graphsage")
MODEL_NAMES = {"mlp": "MLP", "graphsage": "GraphSAGE"}

# --- the paper's numbers, as data --------------------------------------------------------------

#: Test accuracy (%). The abstract's ogbn-papers100M numbers (raw features -> GIANT-XRT);
#: the official README's re-runs of GIANT-XRT (examples/giant-xrt/README.md, mean of 10 runs
#: on arxiv/products, 5 on papers100M). Table 2 itself could not be read here.
PAPER: dict[str, claims.PaperValue] = {
    "test_acc/mlp/tfidf": claims.PaperValue(47.24, "abstract (MLP, raw features)",
                                            "ogbn-papers100M"),
    "test_acc/mlp/giant": claims.PaperValue(61.10, "abstract (MLP, GIANT-XRT)",
                                            "ogbn-papers100M"),
    "test_acc/sgc/plain": claims.PaperValue(63.29, "abstract (SGC, raw features)",
                                            "ogbn-papers100M"),
    "test_acc/sgc/giant": claims.PaperValue(66.10, "abstract (SGC, GIANT-XRT)",
                                            "ogbn-papers100M"),
    "readme/arxiv/mlp/giant": claims.PaperValue(73.06, "official README (MLP, GIANT-XRT)",
                                                "ogbn-arxiv"),
    "readme/arxiv/graphsage/giant": claims.PaperValue(
        74.35, "official README (GraphSAGE, GIANT-XRT)", "ogbn-arxiv"),
    "readme/products/mlp/giant": claims.PaperValue(80.49, "official README (MLP, GIANT-XRT)",
                                                   "ogbn-products"),
    "readme/products/graphsaint/giant": claims.PaperValue(
        84.15, "official README (GraphSAINT, GIANT-XRT)", "ogbn-products"),
    "readme/papers100M/mlp/giant": claims.PaperValue(
        61.06, "official README (MLP, GIANT-XRT)", "ogbn-papers100M"),
    "readme/papers100M/sgc/giant": claims.PaperValue(
        66.19, "official README (SGC, GIANT-XRT)", "ogbn-papers100M"),
}


# --- the graph ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextGraph:
    """A graph whose nodes carry text.

    texts: N strings; labels: (N,) int64 classes (downstream only); edge_index: (2, E) int64,
    both directions; class_names: names of the classes.
    """

    texts: list[str]
    labels: np.ndarray
    edge_index: Tensor
    class_names: list[str]

    @property
    def num_nodes(self) -> int:
        return len(self.texts)

    @property
    def num_edges(self) -> int:
        """Undirected edges."""
        return int(self.edge_index.shape[1] // 2)


def _check_size(num_nodes, total: int) -> int:
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, np.integer)) \
            or not 2 <= num_nodes <= total:
        raise ValueError(f"num_nodes must be an int in 2..{total}, got {num_nodes!r}")
    return int(num_nodes)


def snowball_nodes(edge_index, num_nodes: int, size: int, seed: int = 0) -> np.ndarray:
    """``size`` node ids (sorted) taken component by component in breadth-first order from
    random roots, so an induced subgraph keeps (almost) all of its nodes' edges."""
    from scipy.sparse.csgraph import breadth_first_order

    size = _check_size(size, num_nodes)
    ei = undirected_edge_index(edge_index, num_nodes).numpy()
    adj = sp.csr_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(num_nodes, num_nodes))
    taken = np.zeros(num_nodes, dtype=bool)
    order: list[np.ndarray] = []
    count = 0
    for root in np.random.default_rng(seed).permutation(num_nodes):
        if taken[root]:
            continue
        component = breadth_first_order(adj, int(root), directed=False,
                                        return_predecessors=False)
        taken[component] = True
        order.append(component)
        count += len(component)
        if count >= size:
            break
    return np.sort(np.concatenate(order)[:size])


def verb_graph(num_nodes: int | None = None, seed: int = 0) -> TextGraph:
    """The WordNet 3.0 verb graph (13,767 nodes), or an induced snowball subgraph of
    ``num_nodes`` nodes (:func:`snowball_nodes`) for the quick profile."""
    graph = load_wordnet_verbs()
    edge_index = torch.as_tensor(graph.edge_index)
    if num_nodes is None or num_nodes == graph.num_nodes:
        return TextGraph(graph.texts, graph.labels, edge_index, graph.class_names)
    keep = snowball_nodes(edge_index, graph.num_nodes, num_nodes, seed)
    new_id = np.full(graph.num_nodes, -1)
    new_id[keep] = np.arange(len(keep))
    edges = new_id[graph.edges]
    edges = edges[(edges >= 0).all(axis=1)]
    both = np.concatenate([edges.T, edges[:, ::-1].T], axis=1)
    return TextGraph([graph.texts[i] for i in keep], graph.labels[keep],
                     torch.as_tensor(both, dtype=torch.long), graph.class_names)


# --- XMC labels and PIFA (eq. 1-2) ---------------------------------------------------------------


def neighbour_matrix(edge_index, num_nodes: int) -> sp.csr_matrix:
    """Eq. 1: the XMC label matrix ``Y = A`` (N x N, binary float32 CSR): row ``i`` holds the
    neighbours of node ``i``. Shapes: edge_index (2, E) -> (N, N)."""
    ei = undirected_edge_index(edge_index, num_nodes).numpy()
    return sp.csr_matrix((np.ones(ei.shape[1], dtype=np.float32), (ei[0], ei[1])),
                         shape=(num_nodes, num_nodes))


def _check_pifa_inputs(y, x) -> None:
    if not sp.issparse(y) or not (sp.issparse(x) or isinstance(x, np.ndarray)):
        raise TypeError("y must be a scipy sparse matrix and x a scipy sparse or numpy array")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y (N, L) and x (N, V) must share N, got {y.shape} and {x.shape}")


def pifa(y, x) -> sp.csr_matrix | np.ndarray:
    """Eq. 2: PIFA label embeddings ``z_l = v_l / ||v_l||``, ``v_l = sum_{i: Y_il=1} x_i``.

    Shapes: y (N, L) binary, x (N, V) instance features -> (L, V), rows of unit norm (a
    label without positive instance keeps a zero row). Sparse x gives sparse output.
    """
    _check_pifa_inputs(y, x)
    v = (sp.csr_matrix(y, dtype=np.float32).T @ x)                     # (L, V) sums
    if sp.issparse(v):
        v = sp.csr_matrix(v)
        norms = np.sqrt(np.asarray(v.multiply(v).sum(axis=1))).ravel()
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        return sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ v)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0).astype(np.float32)


# --- the label tree (eq. 3) ---------------------------------------------------------------------


def _group_ranks(groups: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank of every item inside its group when sorted by ``keys`` (ascending), and the
    size of its group. Shapes: (n,), (n,) -> (n,), (n,)."""
    order = np.lexsort((keys, groups))
    sizes = np.bincount(groups)
    starts = np.cumsum(sizes) - sizes
    ranks = np.empty(len(groups), dtype=np.int64)
    ranks[order] = np.arange(len(groups)) - starts[groups[order]]
    return ranks, sizes[groups]


def _centroids(z: Tensor, members: np.ndarray, num_clusters: int) -> Tensor:
    """Unit-norm sums of the rows of ``z`` (L, V), sparse COO or dense, per cluster id in
    ``members`` (L,). Shapes -> (num_clusters, V) dense."""
    out = torch.zeros(num_clusters, z.shape[1])
    members = torch.as_tensor(members)
    if z.is_sparse:
        row, col = z.indices()
        out.index_put_((members[row], col), z.values(), accumulate=True)
    else:
        out.index_add_(0, members, z)
    return F.normalize(out, dim=1)


def balanced_2means(z, groups: np.ndarray, seed: int = 0, max_iter: int = 20) -> np.ndarray:
    """Split every group of rows of ``z`` in two halves by spherical 2-means (eq. 3).

    All groups are split at once. Each group's two centroids start at two of its rows drawn
    at random; each iteration ranks the group's rows by ``z_i . (c_0 - c_1)`` and gives the
    top ``ceil(n/2)`` to side 0 and the rest to side 1 (exact balance), then re-centres
    (unit-norm sums). Stops when no side changes or after ``max_iter`` iterations.
    Shapes: z (L, V) scipy sparse or dense (numpy / torch), groups (L,) int -> side (L,)
    in {0, 1}.
    """
    groups = np.asarray(groups, dtype=np.int64)
    if groups.ndim != 1 or groups.shape[0] != z.shape[0]:
        raise ValueError(f"groups must have shape ({z.shape[0]},), got {groups.shape}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    num_groups = int(groups.max()) + 1
    zt = _as_coo(z) if sp.issparse(z) else torch.as_tensor(np.asarray(z), dtype=torch.float32)
    rng = np.random.default_rng(seed)
    ranks, _ = _group_ranks(groups, rng.random(len(groups)))
    side = np.where(ranks == 0, 0, 1)                      # the random first row seeds side 0
    seeds = np.flatnonzero(ranks <= 1)                     # ... and the second row side 1
    centres = _centroids(_select_rows(zt, seeds), 2 * groups[seeds] + side[seeds],
                         2 * num_groups)
    group_t = torch.as_tensor(groups)
    for _ in range(max_iter):
        diff = centres[0::2] - centres[1::2]                           # (G, V) c_0 - c_1
        score = _row_dots(zt, diff, group_t).numpy()                   # z_i . diff[g_i]
        ranks, sizes = _group_ranks(groups, -score)                    # best first
        new_side = (ranks >= (sizes + 1) // 2).astype(np.int64)        # top ceil(n/2) -> 0
        if np.array_equal(new_side, side):
            break
        side = new_side
        centres = _centroids(zt, 2 * groups + side, 2 * num_groups)
    return side


def _as_coo(z) -> Tensor:
    coo = sp.coo_matrix(z)
    index = torch.as_tensor(np.stack([coo.row, coo.col]), dtype=torch.long)
    return torch.sparse_coo_tensor(index, torch.as_tensor(coo.data, dtype=torch.float32),
                                   coo.shape, check_invariants=False).coalesce()


def _row_dots(z: Tensor, diff: Tensor, groups: Tensor) -> Tensor:
    """``z_i . diff[groups_i]`` for every row: (L,). z sparse COO or dense (L, V)."""
    if not z.is_sparse:
        return (z * diff[groups]).sum(1)
    row, col = z.indices()
    return torch.zeros(z.shape[0]).index_add_(0, row, z.values() * diff[groups[row], col])


def _select_rows(z: Tensor, index: np.ndarray) -> Tensor:
    """Rows ``index`` of a sparse COO or dense tensor, renumbered 0..len(index)-1."""
    return torch.index_select(z, 0, torch.as_tensor(index)).coalesce() if z.is_sparse \
        else z[torch.as_tensor(index)]


@dataclass(frozen=True)
class LabelTree:
    """A hierarchical label tree, coarse to fine.

    assign[t]: (L,) the cluster of every label at level ``t`` (``t = 0`` is the coarsest,
    ``K_0 = B`` clusters); the finest level, ``len(assign)``, is the labels themselves.
    sizes: ``K_t`` per level, the label count last. ``children(t)``: CSR arrays
    ``(ptr, ids)`` of the members of level ``t+1`` under each cluster of level ``t``.
    """

    assign: list[np.ndarray]
    sizes: list[int]
    branching: int

    @property
    def num_labels(self) -> int:
        return self.sizes[-1]

    @property
    def num_levels(self) -> int:
        """Levels with a matcher: the cluster levels and the label level."""
        return len(self.sizes)

    def level_assign(self, level: int) -> np.ndarray:
        """(L,) cluster id of every label at ``level`` (the identity at the label level)."""
        return self.assign[level] if level < len(self.assign) else np.arange(self.num_labels)

    def parent(self, level: int) -> np.ndarray:
        """(K_level,) the parent cluster at ``level - 1`` of every cluster of ``level``."""
        if level < 1:
            raise ValueError("the coarsest level has no parent")
        out = np.zeros(self.sizes[level], dtype=np.int64)
        out[self.level_assign(level)] = self.assign[level - 1]
        return out

    def children(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """CSR ``(ptr (K_level + 1,), ids)`` of the clusters of ``level + 1`` below each
        cluster of ``level`` (computed once per tree)."""
        return self._children[level]

    @functools.cached_property
    def _children(self) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for level in range(self.num_levels - 1):
            parent = self.parent(level + 1)
            counts = np.bincount(parent, minlength=self.sizes[level])
            out.append((np.concatenate([[0], np.cumsum(counts)]),
                        np.argsort(parent, kind="stable")))
        return out


def build_tree(z, branching: int = 16, min_leaf_size: int = 2, seed: int = 0,
               max_iter: int = 20) -> LabelTree:
    """Eq. 3: recursive balanced 2-means on the label embeddings ``z`` (L, V), keeping every
    ``log2(branching)``-th binary level, as deep as every kept cluster holds at least
    ``min_leaf_size`` labels (at least one cluster level)."""
    num_labels = z.shape[0]
    step = int(round(math.log2(branching))) if branching >= 2 else 0
    if branching < 2 or 2 ** step != branching:
        raise ValueError(f"branching must be a power of 2 >= 2, got {branching}")
    if min_leaf_size < 1 or branching * min_leaf_size > num_labels:
        raise ValueError(f"need 1 <= min_leaf_size and branching * min_leaf_size <= "
                         f"{num_labels} labels, got {min_leaf_size}")
    depth = step
    while 2 ** (depth + step) * min_leaf_size <= num_labels:
        depth += step
    groups = np.zeros(num_labels, dtype=np.int64)
    assign = []
    for d in range(1, depth + 1):
        groups = 2 * groups + balanced_2means(z, groups, seed=seed + d, max_iter=max_iter)
        if d % step == 0:
            assign.append(groups.copy())
    return LabelTree(assign=assign, sizes=[2 ** (step * (t + 1)) for t in range(len(assign))]
                     + [num_labels], branching=branching)


def cluster_matrices(y: sp.csr_matrix, tree: LabelTree) -> list[sp.csr_matrix]:
    """Eq. 3: ``Y^(t) = bin(Y C^(t))`` per level (N x K_t binary CSR), the label level last:
    node ``i`` is positive for a cluster when one of its neighbours lies in it."""
    out = []
    for level in range(tree.num_levels):
        member = tree.level_assign(level)
        c = sp.csr_matrix((np.ones(tree.num_labels, dtype=np.float32),
                           (np.arange(tree.num_labels), member)),
                          shape=(tree.num_labels, tree.sizes[level]))
        yc = sp.csr_matrix(y @ c)
        yc.data[:] = 1.0
        out.append(yc)
    return out


# --- the text encoder ---------------------------------------------------------------------------


def load_minilm(device=None):
    """all-MiniLM-L6-v2 from its wheel as a ``SentenceTransformer`` (offline, quiet)."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    device = runtime.device() if device is None else torch.device(device)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    try:
        return SentenceTransformer(str(minilm_path()), device=str(device)).eval()
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _additive_mask(mask: Tensor) -> Tensor:
    """(B, T) 0/1 -> (B, 1, 1, T) additive attention mask (0 kept, very negative padded)."""
    return (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """The sentence encoder's pooling: mean over real tokens, then L2 normalisation.
    Shapes: hidden (B, T, D), mask (B, T) -> (B, D)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)                            # (B, T, 1)
    return F.normalize((hidden * m).sum(1) / m.sum(1).clamp_min(1.0), dim=1)


class TopLayers(nn.Module):
    """The trainable upper transformer layers of the encoder, with its pooling.

    Shapes: forward(hidden (B, T, D) after the frozen layers, mask (B, T)) -> (B, D) unit
    norm: ``phi(t_i)`` of eq. 4.
    """

    def __init__(self, layers: Sequence[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for layer in layers)

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        additive = _additive_mask(mask)
        for layer in self.layers:
            hidden = layer(hidden, attention_mask=additive)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        return mean_pool(hidden, mask)


@dataclass
class EncodedCorpus:
    """One pass of the pretrained encoder over every text.

    hidden: (T, D) float32 hidden states after the frozen layers, every text's tokens in a
    row (T tokens in all); offsets: (N + 1,) where each text's tokens start; embeddings:
    (N, D) the off-the-shelf sentence embeddings (all layers, pooled, unit norm).
    """

    hidden: Tensor
    offsets: Tensor
    embeddings: Tensor

    def batch(self, nodes: Tensor) -> tuple[Tensor, Tensor]:
        """Padded hidden states and mask of ``nodes`` (B,): (B, T_max, D), (B, T_max)."""
        start, length = self.offsets[nodes], self.offsets[nodes + 1] - self.offsets[nodes]
        steps = torch.arange(int(length.max()))
        mask = steps[None, :] < length[:, None]                       # (B, T_max)
        index = torch.where(mask, start[:, None] + steps[None, :], 0)  # (B, T_max)
        return self.hidden[index] * mask.unsqueeze(-1), mask.long()


def _length_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    order = np.argsort(lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def encode_corpus(encoder, texts: Sequence[str], num_frozen: int, max_length: int = 64,
                  batch_size: int = 64) -> EncodedCorpus:
    """Run the pretrained encoder once over ``texts`` (batches of similar length): keep the
    hidden states after its first ``num_frozen`` layers and the full sentence embeddings.
    Shapes: N texts -> :class:`EncodedCorpus` (T, D), (N + 1,), (N, D)."""
    bert, tok = encoder[0].auto_model.eval(), encoder.tokenizer
    if not 0 <= num_frozen <= len(bert.encoder.layer):
        raise ValueError(f"num_frozen must be in 0..{len(bert.encoder.layer)}, got {num_frozen}")
    lengths = np.array([len(ids) for ids in tok(list(texts), truncation=True,
                                                max_length=max_length)["input_ids"]])
    offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.long)
    hidden = torch.zeros(int(offsets[-1]), bert.config.hidden_size)
    embeddings = torch.zeros(len(texts), bert.config.hidden_size)
    device = next(bert.parameters()).device
    for batch in runtime.progress(_length_batches(lengths, batch_size), desc="MiniLM"):
        f = tok([texts[i] for i in batch], padding=True, truncation=True,
                max_length=max_length, return_tensors="pt").to(device)
        h = bert.embeddings(input_ids=f["input_ids"], token_type_ids=f["token_type_ids"])
        additive = _additive_mask(f["attention_mask"])
        for index, layer in enumerate(bert.encoder.layer):
            if index == num_frozen:
                _store_tokens(hidden, offsets, batch, h.cpu(), f["attention_mask"].cpu())
            h = layer(h, attention_mask=additive)
            h = h[0] if isinstance(h, tuple) else h
        if num_frozen == len(bert.encoder.layer):
            _store_tokens(hidden, offsets, batch, h.cpu(), f["attention_mask"].cpu())
        embeddings[torch.as_tensor(batch)] = mean_pool(h, f["attention_mask"]).cpu()
    return EncodedCorpus(hidden, offsets, embeddings)


def _store_tokens(hidden: Tensor, offsets: Tensor, batch: np.ndarray, h: Tensor,
                  mask: Tensor) -> None:
    """Write the real tokens of a padded batch h (B, T, D) into the flat ``hidden``."""
    rows, cols = torch.nonzero(mask, as_tuple=True)                    # real tokens
    hidden[offsets[torch.as_tensor(batch)][rows] + cols] = h[rows, cols]


@torch.no_grad()
def embed_with(top: TopLayers, corpus: EncodedCorpus, batch_size: int = 128) -> Tensor:
    """``phi`` of every node with the (fine-tuned) top layers. Shapes -> (N, D)."""
    top.eval()
    lengths = (corpus.offsets[1:] - corpus.offsets[:-1]).numpy()
    out = torch.zeros(len(lengths), corpus.hidden.shape[1])
    for batch in runtime.progress(_length_batches(lengths, batch_size), desc="GIANT"):
        nodes = torch.as_tensor(batch)
        out[nodes] = top(*corpus.batch(nodes))
    return out


# --- XR-Transformer fine-tuning (eq. 4-5) --------------------------------------------------------


@dataclass(frozen=True)
class XRConfig:
    """Settings of the tree and of the coarse-to-fine fine-tuning.

    branching ``B`` and ``min_leaf_size`` shape the tree (eq. 3); ``kmeans_iter`` as pecos'
    ``kmeans_max_iter`` (20). ``num_trainable_layers``: upper transformer layers fine-tuned
    (the rest and the embeddings frozen); ``steps_per_level`` Adam steps at each level with
    ``batch_size`` nodes, the learning rate decaying linearly to 0 within a level (pecos'
    ``lr_schedule="linear"``, no warm-up); ``lr_encoder`` as pecos' default 1e-4;
    ``top_k`` matcher-aware parents per node (eq. 4); ``max_match_clusters`` as pecos;
    ``ridge``: the L2 penalty of every head's linear bootstrap (eq. 5).
    """

    branching: int = 16
    min_leaf_size: int = 2
    kmeans_iter: int = 20
    num_trainable_layers: int = 1
    max_length: int = 64
    steps_per_level: int = 60
    batch_size: int = 32
    lr_encoder: float = 1e-4
    lr_head: float = 1e-3
    top_k: int = 10
    max_match_clusters: int = 32768
    ridge: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        checks.positive_ints(self, ("num_trainable_layers", "steps_per_level", "batch_size",
                                    "top_k", "max_length"))
        if not (self.lr_encoder > 0 and self.lr_head > 0):
            raise ValueError("learning rates must be positive")

    @classmethod
    def paper_scale(cls) -> XRConfig:
        """Every layer fine-tuned, several hundred steps a level (a GPU config)."""
        return cls(num_trainable_layers=6, steps_per_level=500, batch_size=64)


def squared_hinge(scores: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Eq. 4's loss: mean of ``max(0, 1 - y s)^2`` over the shortlisted pairs.

    Shapes: scores (B, S), targets (B, S) in {-1, +1}, mask (B, S) bool -> scalar.
    """
    if scores.shape != targets.shape or scores.shape != mask.shape:
        raise ValueError(f"scores {tuple(scores.shape)}, targets {tuple(targets.shape)} and "
                         f"mask {tuple(mask.shape)} must have one shape (B, S)")
    loss = F.relu(1.0 - targets * scores).pow(2) * mask
    return loss.sum() / mask.sum().clamp_min(1)


def _ragged_children(parents: Tensor, valid: Tensor, ptr: Tensor, ids: Tensor):
    """Children of the (valid, distinct) ``parents`` (B, P) of each row, padded.
    Shapes -> (B, S) child ids and (B, S) bool mask."""
    start = ptr[parents]
    count = (ptr[parents + 1] - start) * valid                          # (B, P)
    flat = count.flatten()
    owner = torch.repeat_interleave(torch.arange(flat.numel()), flat)  # (pair) per child
    first = torch.cumsum(flat, 0) - flat
    within = torch.arange(owner.numel()) - first[owner]
    child = ids[start.flatten()[owner] + within]
    row = owner // parents.shape[1]
    total = count.sum(1)
    position = torch.arange(owner.numel()) - (torch.cumsum(total, 0) - total)[row]
    width = int(total.max()) if total.numel() else 0
    out = torch.zeros(parents.shape[0], max(width, 1), dtype=torch.long)
    mask = torch.zeros_like(out, dtype=torch.bool)
    out[row, position] = child
    mask[row, position] = True
    return out, mask


def _distinct(parents: Tensor, valid: Tensor) -> Tensor:
    """Mask out repeated ids within each row (keeps the first of each). Shapes (B, P)."""
    key = torch.where(valid, parents, -1)
    ordered, order = key.sort(dim=1)
    repeat = torch.zeros_like(valid)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    keep = torch.zeros_like(valid)
    keep.scatter_(1, order, ~repeat)
    return keep & valid


def _positives(y: sp.csr_matrix, nodes: np.ndarray) -> tuple[Tensor, Tensor]:
    """Positive clusters of each node of a batch, padded: (B, P) ids and (B, P) mask."""
    rows = y[nodes]
    counts = np.diff(rows.indptr)
    width = max(int(counts.max()), 1)
    ids = torch.zeros(len(nodes), width, dtype=torch.long)
    mask = torch.zeros(len(nodes), width, dtype=torch.bool)
    r = np.repeat(np.arange(len(nodes)), counts)
    c = np.arange(len(r)) - np.repeat(rows.indptr[:-1], counts)
    ids[r, c] = torch.as_tensor(rows.indices, dtype=torch.long)
    mask[r, c] = True
    return ids, mask


def shortlist(level: int, tree: LabelTree, y_levels: list[sp.csr_matrix], nodes: np.ndarray,
              predicted: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. 4's shortlist ``S_t`` for a batch: every cluster at level 0; below, the children
    of the positive parents (teacher forcing) and of the ``predicted`` parents (B, k)
    (matcher-aware). Returns ids (B, S), mask (B, S) and targets (B, S) in {-1, +1}."""
    num = len(nodes)
    if level == 0:
        ids = torch.arange(tree.sizes[0]).expand(num, -1)
        mask = torch.ones_like(ids, dtype=torch.bool)
    else:
        pos, pos_mask = _positives(y_levels[level - 1], nodes)
        if predicted is not None:
            pos = torch.cat([pos, predicted], dim=1)
            pos_mask = torch.cat([pos_mask, torch.ones_like(predicted, dtype=torch.bool)], 1)
        ptr, child = (torch.as_tensor(a, dtype=torch.long) for a in tree.children(level - 1))
        ids, mask = _ragged_children(pos, _distinct(pos, pos_mask), ptr, child)
    dense = torch.as_tensor(y_levels[level][nodes].toarray() > 0)        # (B, K_t)
    targets = torch.where(dense.gather(1, ids), 1.0, -1.0)
    return ids, mask, targets


class XRModel(nn.Module):
    """The fine-tuned matcher: the top encoder layers and one linear head per level.

    Shapes: ``scores(level, e (B, D), ids (B, S))`` -> (B, S) ``w_c . e + b_c`` (eq. 4).
    """

    def __init__(self, top: TopLayers, sizes: Sequence[int], dim: int):
        super().__init__()
        self.top = top
        self.weights = nn.ParameterList(nn.Parameter(torch.zeros(k, dim)) for k in sizes)
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(k)) for k in sizes)

    def scores(self, level: int, e: Tensor, ids: Tensor) -> Tensor:
        w = self.weights[level][ids]                                   # (B, S, D)
        return torch.einsum("bd,bsd->bs", e, w) + self.biases[level][ids]

    def all_scores(self, level: int, e: Tensor) -> Tensor:
        """Scores of every cluster of ``level``: (B, K_level)."""
        return e @ self.weights[level].t() + self.biases[level]


def _level_steps(model: XRModel, level: int, corpus: EncodedCorpus, tree: LabelTree,
                 y_levels, train_nodes: np.ndarray, config: XRConfig,
                 gen: torch.Generator) -> list[float]:
    """Fine-tune at one level (eq. 4): AdamW on the top layers and this level's head, the
    learning rates decaying linearly to 0. Returns the loss of every step."""
    heads = [model.weights[level], model.biases[level]]
    opt = torch.optim.AdamW([{"params": list(model.top.parameters()), "lr": config.lr_encoder},
                             {"params": heads, "lr": config.lr_head}], weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: max(0.0, 1.0 - step / config.steps_per_level))
    losses = []
    model.top.train()
    for _ in runtime.progress(range(config.steps_per_level), desc=f"level {level}",
                              leave=False):
        pick = torch.randint(len(train_nodes), (config.batch_size,), generator=gen)
        nodes = train_nodes[pick.numpy()]
        e = model.top(*corpus.batch(torch.as_tensor(nodes)))                   # (B, D)
        predicted = None
        if level > 0:
            with torch.no_grad():                                     # "man" negatives
                k = min(config.top_k, tree.sizes[level - 1])
                predicted = model.all_scores(level - 1, e.detach()).topk(k, dim=1).indices
        ids, mask, targets = shortlist(level, tree, y_levels, nodes, predicted)
        loss = squared_hinge(model.scores(level, e, ids), targets, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.top.eval()
    return losses


@torch.no_grad()
def linear_bootstrap(e: Tensor, y: sp.csr_matrix, ridge: float = 1.0) -> tuple[Tensor, Tensor]:
    """Ridge regression of the ``+-1`` targets ``2 Y - 1`` on the embeddings (a bias
    column added): the initial head of a level (pecos' "linear" bootstrap).

    ``[W; b] = (E_a^T E_a + ridge I)^-1 E_a^T (2 Y - 1)``, with ``E_a = [E, 1]``; the dense
    ``2 Y - 1`` is never formed (``E_a^T (2Y - 1) = 2 E_a^T Y - (E_a^T 1) 1^T``).
    Shapes: e (n, D), y (n, K) binary -> W (K, D), b (K,).
    """
    if e.shape[0] != y.shape[0]:
        raise ValueError(f"e (n, D) and y (n, K) must share n, got {tuple(e.shape)}, {y.shape}")
    ea = torch.cat([e.double(), torch.ones(e.shape[0], 1, dtype=torch.float64)], dim=1)
    gram = ea.t() @ ea + ridge * torch.eye(ea.shape[1], dtype=torch.float64)   # (D+1, D+1)
    ey = torch.as_tensor(sp.csr_matrix(y).T @ ea.numpy()).t()                  # E_a^T Y
    rhs = 2.0 * ey - ea.sum(0, keepdim=True).t()                                # (D+1, K)
    wa = torch.linalg.solve(gram, rhs).float()                                  # (D+1, K)
    return wa[:-1].t().contiguous(), wa[-1].contiguous()


def fit_xr_transformer(corpus: EncodedCorpus, encoder, tree: LabelTree, y: sp.csr_matrix,
                       config: XRConfig) -> tuple[XRModel, list[list[float]]]:
    """Eq. 4-5: fine-tune coarse to fine, every level of ``tree`` up to
    ``max_match_clusters`` (the label level included). Each level's head starts from a
    ridge fit on the pretrained embeddings (:func:`linear_bootstrap`), then the head and
    the top layers train together. ``y`` (N, L): the neighbour matrix; instances: nodes
    with an edge. Returns the model and the per-step losses of each level."""
    runtime.seed_everything(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    layers = encoder[0].auto_model.encoder.layer
    top = TopLayers(layers[len(layers) - config.num_trainable_layers:])
    levels = [k for k in tree.sizes if k <= config.max_match_clusters]
    model = XRModel(top, levels, corpus.hidden.shape[1])
    y_levels = cluster_matrices(y, tree)
    train_nodes = np.flatnonzero(np.diff(y.indptr) > 0)
    e0 = corpus.embeddings[torch.as_tensor(train_nodes)]                   # (n, D)
    losses = []
    for level in range(len(levels)):
        with torch.no_grad():                                              # eq. 5: bootstrap
            w, b = linear_bootstrap(e0, y_levels[level][train_nodes], config.ridge)
            model.weights[level].copy_(w)
            model.biases[level].copy_(b)
        losses.append(_level_steps(model, level, corpus, tree, y_levels, train_nodes,
                                   config, gen))
    return model, losses


@torch.no_grad()
def beam_search(model: XRModel, tree: LabelTree, e: Tensor, beam: int = 10) -> list[Tensor]:
    """Eq. 6 with the heads of ``model``: the ``beam`` best clusters of every level, coarse
    to fine, scoring only the children of the previous level's beam (log-sigmoid scores
    summed down the path, i.e. sigmoid scores multiplied, as XR-Linear).
    Shapes: e (B, D) -> one (B, beam) tensor of cluster ids per level."""
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    ids = torch.arange(tree.sizes[0]).expand(e.shape[0], -1)              # (B, K_0)
    mask = torch.ones_like(ids, dtype=torch.bool)
    path = torch.zeros(ids.shape)
    out = []
    for level in range(len(model.weights)):
        score = (F.logsigmoid(model.scores(level, e, ids)) + path).masked_fill(~mask,
                                                                            -math.inf)
        top = score.topk(min(beam, ids.shape[1]), dim=1)
        out.append(ids.gather(1, top.indices))                            # (B, beam)
        if level + 1 == len(model.weights):
            break
        ptr, child = (torch.as_tensor(a) for a in tree.children(level))
        parents = out[-1]
        counts = (ptr[parents + 1] - ptr[parents]).flatten()
        ids, mask = _ragged_children(parents, torch.ones_like(parents, dtype=torch.bool),
                                     ptr, child)                          # (B, S)
        owner = torch.repeat_interleave(torch.arange(parents.numel()), counts)
        path = torch.zeros(ids.shape)
        path[mask] = top.values.flatten()[owner]                          # parent's score
    return out


@torch.no_grad()
def matcher_recall(model: XRModel, tree: LabelTree, embeddings: Tensor, y: sp.csr_matrix,
                   nodes, level: int, k: int = 10) -> float:
    """How well the fine-tuned matcher predicts neighbourhoods: for each of ``nodes`` (with
    an edge), the share of the level-``level`` clusters holding a true neighbour that beam
    search (beam ``k``) returns among its ``k`` best, the share capped at ``k`` positives.
    Shapes: embeddings (N, D) of the fine-tuned encoder, y (N, L) -> a fraction."""
    nodes = np.asarray(nodes)
    nodes = nodes[np.diff(y.indptr)[nodes] > 0]
    found = beam_search(model, tree, embeddings[torch.as_tensor(nodes)], beam=k)[level]
    truth = torch.as_tensor(cluster_matrices(y, tree)[level][nodes].toarray() > 0)
    hits = truth.gather(1, found).sum(1).float()
    return float((hits / truth.sum(1).clamp(max=k)).mean())


# --- GIANT features in one call -------------------------------------------------------------


@dataclass
class GiantFeatures:
    """The self-supervised step's output for one graph.

    minilm / giant: (N, D) off-the-shelf and fine-tuned embeddings; tree: the label tree;
    losses: per level, per step; seconds: wall time of each step when it was computed
    (``encode``, ``tree``, ``finetune``, ``embed``); heads: the fine-tuned per-level
    weights and biases (for the widget's predictions); cached: whether this came from
    the cache.
    """

    minilm: Tensor
    giant: Tensor
    tree: LabelTree
    losses: list[list[float]]
    seconds: dict[str, float]
    heads: list[tuple[Tensor, Tensor]]
    cached: bool = False

    def matcher(self) -> XRModel:
        """An :class:`XRModel` with the fine-tuned heads (its top layers are not needed to
        score embeddings that are already computed)."""
        model = XRModel(TopLayers([]), [w.shape[0] for w, _ in self.heads],
                        self.giant.shape[1])
        with torch.no_grad():
            for level, (w, b) in enumerate(self.heads):
                model.weights[level].copy_(w)
                model.biases[level].copy_(b)
        return model


def pifa_tfidf(graph: TextGraph) -> sp.csr_matrix:
    """Eq. 2 on TF-IDF of every node's text (no label; the 10,000 most frequent word 1-2
    grams with min_df 2)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    x = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=10000, sublinear_tf=True,
                        dtype=np.float32).fit_transform(graph.texts)
    return pifa(neighbour_matrix(graph.edge_index, graph.num_nodes), x)


def _graph_key(graph: TextGraph) -> dict:
    import hashlib

    digest = hashlib.sha256()
    digest.update("\n".join(graph.texts).encode())
    digest.update(graph.edge_index.numpy().tobytes())
    return {"num_nodes": graph.num_nodes, "sha256": digest.hexdigest()}


def fit_giant(graph: TextGraph, config: XRConfig | None = None, device=None,
              use_cache: bool = True) -> GiantFeatures:
    """The self-supervised step: PIFA and the tree, one pass of MiniLM over all texts,
    coarse-to-fine fine-tuning, then ``X_GIANT`` for every node. The embeddings and the
    heads are cached with :func:`iclr22.cache.load_or_compute` (keyed by the graph and
    the config); the tree is rebuilt (deterministic, seconds)."""
    config = config or XRConfig()
    start = time.perf_counter()
    tree = build_tree(pifa_tfidf(graph), config.branching, config.min_leaf_size, config.seed,
                      config.kmeans_iter)
    tree_seconds = time.perf_counter() - start

    def compute() -> dict:
        timer = time.perf_counter()
        encoder = load_minilm(device)
        num_layers = len(encoder[0].auto_model.encoder.layer)
        corpus = encode_corpus(encoder, graph.texts, num_layers - config.num_trainable_layers,
                               config.max_length)
        seconds = {"encode": time.perf_counter() - timer}
        timer = time.perf_counter()
        model, losses = fit_xr_transformer(
            corpus, encoder, tree, neighbour_matrix(graph.edge_index, graph.num_nodes), config)
        seconds["finetune"] = time.perf_counter() - timer
        timer = time.perf_counter()
        giant = embed_with(model.top, corpus)
        seconds["embed"] = time.perf_counter() - timer
        return {"minilm": corpus.embeddings, "giant": giant, "losses": losses,
                "seconds": seconds,
                "weights": [w.detach().clone() for w in model.weights],
                "biases": [b.detach().clone() for b in model.biases]}

    key = {"graph": _graph_key(graph), "config": asdict(config), "version": 1}
    hit = use_cache and cache.artifact_path("giant_xrt", key).exists()
    art = cache.load_or_compute("giant_xrt", key, compute) if use_cache else compute()
    seconds = dict(art["seconds"]) | {"tree": tree_seconds}
    return GiantFeatures(minilm=art["minilm"], giant=art["giant"], tree=tree,
                         losses=art["losses"], seconds=seconds,
                         heads=list(zip(art["weights"], art["biases"], strict=True)),
                         cached=bool(hit))


@torch.no_grad()
def neighbour_recall(embeddings: Tensor, edge_index, k: int = 10, chunk: int = 2048) -> float:
    """How much of the graph an embedding holds: the share of a node's neighbours among the
    ``k`` nodes most cosine-similar to it (itself excluded), averaged over nodes with an
    edge. Shapes: embeddings (N, D), edge_index (2, E) -> a fraction in [0, 1]."""
    num_nodes = embeddings.shape[0]
    y = neighbour_matrix(edge_index, num_nodes)
    e = F.normalize(embeddings.float(), dim=1)
    nodes = np.flatnonzero(np.diff(y.indptr) > 0)
    found = []
    for start in range(0, len(nodes), chunk):
        batch = torch.as_tensor(nodes[start:start + chunk])
        sims = e[batch] @ e.t()                                        # (b, N) cosines
        sims[torch.arange(len(batch)), batch] = -math.inf              # not itself
        top = sims.topk(min(k, num_nodes - 1), dim=1).indices          # (b, k)
        hits = torch.as_tensor(y[batch.numpy()][:, :].toarray() > 0).gather(1, top)
        degree = torch.as_tensor(np.diff(y.indptr)[batch.numpy()], dtype=torch.float32)
        found.append(hits.sum(1) / degree.clamp(max=k))
    return float(torch.cat(found).mean())


# --- downstream node classification ----------------------------------------------------------


@dataclass(frozen=True)
class ClassifierConfig:
    """The downstream MLP and GraphSAGE: 2 layers, ``hidden`` units, dropout, full-batch
    Adam with the best validation epoch (CPU-scale: the official OGB scripts train 256
    hidden units for hundreds of epochs)."""

    hidden: int = 64
    dropout: float = 0.5
    train: TrainConfig = TrainConfig(epochs=40, lr=0.01, weight_decay=0.0, patience=10)


def random_split(num_nodes: int, seed: int, fractions=(0.6, 0.2)) -> tuple[Tensor, Tensor,
                                                                           Tensor]:
    """Train / validation / test node ids (sorted int64 tensors), a seeded permutation cut at
    ``fractions`` (train, validation) of the nodes; the rest is test."""
    if not (0 < fractions[0] < 1 and 0 < fractions[1] < 1 and sum(fractions) < 1):
        raise ValueError(f"fractions must be in (0, 1) and sum below 1, got {fractions}")
    perm = torch.randperm(num_nodes, generator=torch.Generator().manual_seed(seed))
    cut = np.cumsum([round(f * num_nodes) for f in fractions])
    return tuple(part.sort().values for part in (perm[:cut[0]], perm[cut[0]:cut[1]],
                                                  perm[cut[1]:]))


def _standardise(x: Tensor, train_idx: Tensor) -> Tensor:
    mean, sd = x[train_idx].mean(0), x[train_idx].std(0).clamp_min(1e-6)
    return (x - mean) / sd


def feature_sets(graph: TextGraph, features: GiantFeatures, train_idx: Tensor,
                 names: Sequence[str] = FEATURE_SETS) -> dict[str, object]:
    """Node features of each set for one split: TF-IDF fitted on the training nodes
    (sparse), and the MiniLM and GIANT embeddings standardised with the training nodes'
    mean and sd. Shapes: each (N, F)."""
    unknown = set(names) - set(FEATURE_SETS)
    if unknown:
        raise ValueError(f"unknown feature sets {sorted(unknown)}; choose from {FEATURE_SETS}")
    out: dict[str, object] = {}
    for name in names:
        if name == "tfidf":
            out[name] = SparseMatrix(tfidf_features(graph.texts, train_idx.numpy()))
        else:
            out[name] = _standardise(getattr(features, name), train_idx)
    return out


def _fit_one(model_name: str, x, labels: Tensor, prop, splits, config: ClassifierConfig,
             num_classes: int, seed: int) -> tuple[float, float]:
    """Validation and test accuracy (%) of one classifier on one feature set."""
    runtime.seed_everything(seed)
    train_idx, val_idx, test_idx = splits
    if model_name == "mlp":
        model = MLP(x.shape[1], config.hidden, num_classes, 1, config.dropout)
        fit_nodewise(model, x, labels, train_idx, val_idx, config.train, desc="MLP")
        with torch.no_grad():
            logits = torch.zeros(len(labels), num_classes)
            idx = torch.cat([val_idx, test_idx])
            logits[idx] = model(x.rows(idx) if isinstance(x, SparseMatrix) else x[idx])
    else:
        model = GraphSAGE(x.shape[1], config.hidden, num_classes, 2, config.dropout)
        fit_classifier(model, lambda: model(x, prop), labels, train_idx, val_idx,
                       config.train, desc="GraphSAGE")
        with torch.no_grad():
            logits = model(x, prop)
    return 100 * accuracy(logits, labels, val_idx), 100 * accuracy(logits, labels, test_idx)


def run_seed(graph: TextGraph, features: GiantFeatures, seed: int,
             config: ClassifierConfig | None = None,
             names: Sequence[str] = FEATURE_SETS) -> dict[str, float]:
    """One seed of the downstream comparison: a random 60/20/20 split, every feature set,
    MLP and GraphSAGE. Returns ``{"test_acc/<model>/<features>": %, "val_acc/...": %}``."""
    config = config or ClassifierConfig()
    labels = torch.as_tensor(graph.labels, dtype=torch.long)
    splits = random_split(graph.num_nodes, seed)
    prop = mean_propagation(graph.edge_index, graph.num_nodes)
    out = {}
    for name, x in feature_sets(graph, features, splits[0], names).items():
        for model_name in MODELS:
            val, test = _fit_one(model_name, x, labels, prop, splits, config,
                                 len(graph.class_names), seed)
            out[f"test_acc/{model_name}/{name}"] = test
            out[f"val_acc/{model_name}/{name}"] = val
    return out


@dataclass
class SeedRuns:
    """Per-seed metrics (``{metric: [value per seed]}``) and the seconds per seed."""

    seeds: list[int]
    metrics: dict[str, list[float]]
    seconds: list[float] = field(default_factory=list)


def run_seeds(graph: TextGraph, features: GiantFeatures, seeds: Sequence[int],
              config: ClassifierConfig | None = None,
              names: Sequence[str] = FEATURE_SETS) -> SeedRuns:
    """:func:`run_seed` for every seed (paired: a seed fixes the split and every
    classifier's initialisation for all feature sets)."""
    seconds = []

    def one(seed: int) -> dict[str, float]:
        start = time.perf_counter()
        metrics = run_seed(graph, features, seed, config, names)
        seconds.append(time.perf_counter() - start)
        return metrics

    seeds = [int(s) for s in seeds]
    metrics = claims.over_seeds(one, runtime.progress(seeds, desc="seeds"))
    return SeedRuns(seeds, metrics, seconds)


def giant_claims(runs: SeedRuns, setting: str) -> list[claims.Claim]:
    """The paper's comparison on our data, paired over seeds: GIANT features beat TF-IDF and
    the un-fine-tuned encoder, for the MLP and for GraphSAGE (test accuracy, points)."""
    m, seeds = runs.metrics, runs.seeds
    paper = {"mlp": (PAPER["test_acc/mlp/giant"], PAPER["test_acc/mlp/tfidf"]),
             "graphsage": (PAPER["test_acc/sgc/giant"], PAPER["test_acc/sgc/plain"])}
    out = []
    for model in MODELS:
        for base in ("tfidf", "minilm"):
            p, pb = paper[model] if base == "tfidf" else (None, None)
            out.append(claims.compare(
                f"{MODEL_NAMES[model]}: GIANT features beat {FEATURE_NAMES[base]}",
                m[f"test_acc/{model}/giant"], m[f"test_acc/{model}/{base}"], seeds=seeds,
                names=(f"{model}/giant", f"{model}/{base}"), paper=p, paper_baseline=pb,
                setting=setting, unit="points",
                notes="paper: GraphSAGE's row holds the abstract's SGC numbers"
                if model == "graphsage" and p is not None else ""))
    return out


def accuracy_table(runs: SeedRuns):
    """Test accuracy (%) per model and feature set: mean and sd over seeds (rows) beside
    the paper's numbers where it has one."""
    import pandas as pd

    rows = []
    paper = {("mlp", "tfidf"): PAPER["test_acc/mlp/tfidf"],
             ("mlp", "giant"): PAPER["test_acc/mlp/giant"]}
    for model in MODELS:
        for name in FEATURE_SETS:
            values = np.asarray(runs.metrics.get(f"test_acc/{model}/{name}", []))
            if not values.size:
                continue
            p = paper.get((model, name))
            rows.append({"model": MODEL_NAMES[model], "features": FEATURE_NAMES[name],
                         "ours, mean (%)": round(float(values.mean()), 2),
                         "ours, sd": round(float(values.std(ddof=1)), 2),
                         "seeds": int(values.size),
                         "paper (%)": p.value if p else float("nan"),
                         "paper's setting": f"{p.dataset}, {p.source}" if p else ""})
    return pd.DataFrame(rows).set_index(["model", "features"])


# --- tree versus flat prediction cost (eq. 6) ---------------------------------------------------


@dataclass(frozen=True)
class TreeCost:
    """Cost of predicting the top ``k`` labels among ``num_labels`` (eq. 6).

    batch_*_ms: median wall time (ms) for a batch of ``num_query`` nodes; query_*_ms: mean
    time (ms) per single query (the online case XMC serves); flat: one-vs-all over every
    label, tree: beam search; *_dots: inner products per query; recall: share of the flat
    top-``k`` that the beam finds; levels: cluster counts of the tree.
    """

    num_labels: int
    num_query: int
    levels: tuple[int, ...]
    batch_flat_ms: float
    batch_tree_ms: float
    query_flat_ms: float
    query_tree_ms: float
    flat_dots: int
    tree_dots: float
    recall: float

    @property
    def batch_ratio(self) -> float:
        """tree / flat wall time for a batch."""
        return self.batch_tree_ms / self.batch_flat_ms

    @property
    def query_ratio(self) -> float:
        """tree / flat wall time per single query."""
        return self.query_tree_ms / self.query_flat_ms


def _cluster_rankers(label_w: Tensor, tree: LabelTree) -> list[Tensor]:
    """Unit-norm mean label ranker of each cluster, per level; the labels' own last."""
    out = []
    for level in range(len(tree.assign)):
        w = torch.zeros(tree.sizes[level], label_w.shape[1])
        w.index_add_(0, torch.as_tensor(tree.assign[level]), label_w)
        out.append(F.normalize(w, dim=1))
    return out + [label_w]


def tree_cost(features: Tensor, y: sp.csr_matrix, num_labels: int, config: XRConfig,
              num_query: int = 1000, num_single: int = 30, beam: int = 10, k: int = 10,
              seed: int = 0, repeats: int = 3) -> TreeCost:
    """Measure :class:`TreeCost` on the first ``num_labels`` labels of a random order.

    Label rankers are PIFA of ``features`` (eq. 2 in the embedding space: a zero-shot XMC
    scorer, untrained: the cost does not depend on the weights), the tree is built on them
    (eq. 3) and cluster rankers are its unit-norm centroids. The flat scorer computes all
    ``num_labels`` inner products; the beam scores ``B`` clusters, then the children of the
    ``beam`` best at every level (eq. 6).
    """
    rng = np.random.default_rng(seed)
    labels = np.sort(rng.permutation(y.shape[1])[:num_labels])
    label_w = torch.as_tensor(pifa(y[:, labels], features.numpy()))           # (L, D)
    tree = build_tree(label_w, config.branching, config.min_leaf_size, seed,
                      config.kmeans_iter)
    model = XRModel(TopLayers([]), tree.sizes, features.shape[1])
    with torch.no_grad():
        for level, w in enumerate(_cluster_rankers(label_w, tree)):
            model.weights[level].copy_(w)
    q = features[torch.as_tensor(np.sort(rng.permutation(len(features))[:num_query]))]
    width = max(beam, k)

    def flat(e):
        return (e @ label_w.t()).topk(k, dim=1).indices

    def tree_search(e):
        return beam_search(model, tree, e, beam=width)[-1][:, :k]

    singles = [q[i:i + 1] for i in range(min(num_single, len(q)))]
    times = {name: 1e3 * runtime.median_seconds(lambda f=f: f(q), repeats)
             for name, f in (("flat", flat), ("tree", tree_search))}
    per_query = {name: 1e3 * runtime.median_seconds(lambda f=f: [f(e) for e in singles],
                                                    repeats) / len(singles)
                 for name, f in (("flat", flat), ("tree", tree_search))}
    exact, found = flat(q), tree_search(q)
    recall = (exact.unsqueeze(2) == found.unsqueeze(1)).any(2).float().mean().item()
    children = [np.diff(tree.children(t)[0]).mean() for t in range(tree.num_levels - 1)]
    return TreeCost(num_labels=num_labels, num_query=len(q), levels=tuple(tree.sizes[:-1]),
                    batch_flat_ms=times["flat"], batch_tree_ms=times["tree"],
                    query_flat_ms=per_query["flat"], query_tree_ms=per_query["tree"],
                    flat_dots=num_labels,
                    tree_dots=float(tree.sizes[0] + sum(width * c for c in children)),
                    recall=recall)


def tree_costs(graph: TextGraph, features: GiantFeatures, label_counts: Sequence[int],
               config: XRConfig | None = None, num_query: int = 1000) -> list[TreeCost]:
    """:func:`tree_cost` at each label count, with the GIANT embeddings (one run)."""
    config = config or XRConfig()
    y = neighbour_matrix(graph.edge_index, graph.num_nodes)
    return [tree_cost(features.giant, y, n, config, num_query=num_query)
            for n in runtime.progress(label_counts, desc="label counts")]


def cost_table(costs: Sequence[TreeCost]):
    """One row per label count: the tree's levels, inner products and times, the ratios."""
    import pandas as pd

    return pd.DataFrame([{
        "labels": c.num_labels, "tree levels (clusters)": " / ".join(map(str, c.levels)),
        "inner products / query, flat": c.flat_dots,
        "inner products / query, tree": round(c.tree_dots, 1),
        f"flat, batch of {c.num_query:,} (ms)": round(c.batch_flat_ms, 1),
        f"tree, batch of {c.num_query:,} (ms)": round(c.batch_tree_ms, 1),
        "flat, one query (ms)": round(c.query_flat_ms, 3),
        "tree, one query (ms)": round(c.query_tree_ms, 3),
        "time ratio tree / flat, batch": round(c.batch_ratio, 3),
        "time ratio tree / flat, one query": round(c.query_ratio, 3),
        "recall of the flat top-10": round(c.recall, 3)} for c in costs]).set_index("labels")


# --- what the chapter records and shows ----------------------------------------------------------


def headline_metrics(runs: SeedRuns, features: GiantFeatures,
                     costs: Sequence[TreeCost]) -> dict[str, float]:
    """Mean test accuracies (%), the tree-vs-flat ratios and the self-supervised step's
    final loss per level."""
    out = {k: round(float(np.mean(v)), 2) for k, v in runs.metrics.items()
           if k.startswith("test_acc/")}
    for c in costs:
        out[f"tree_flat_time_ratio/{c.num_labels}_labels"] = round(c.query_ratio, 4)
        out[f"tree_flat_batch_time_ratio/{c.num_labels}_labels"] = round(c.batch_ratio, 4)
        out[f"tree_flat_dot_ratio/{c.num_labels}_labels"] = round(c.tree_dots / c.flat_dots, 4)
        out[f"tree_recall_at_10/{c.num_labels}_labels"] = round(c.recall, 4)
    for level, losses in enumerate(features.losses):
        out[f"xmc_final_loss/level_{level}"] = round(float(np.mean(losses[-10:])), 4)
    return out


METRIC_LABELS = {
    "test_acc": ("% test accuracy", "higher"),
    "tree_flat_time_ratio": ("x (beam search / flat one-vs-all, time per single query)",
                             "lower"),
    "tree_flat_batch_time_ratio": ("x (beam search / flat one-vs-all, time per batch)",
                                   "lower"),
    "tree_flat_dot_ratio": ("x (inner products, tree / flat)", "lower"),
    "tree_recall_at_10": ("share of the flat top-10 found by the beam", "higher"),
    "xmc_final_loss": ("squared hinge (eq. 4), mean of the last 10 steps", "lower"),
}


def metric_labels(metrics: dict[str, float]) -> tuple[dict[str, str], dict[str, str]]:
    """``units`` and ``better`` for ``results.record``, by metric family."""
    fam = {k: METRIC_LABELS[k.split("/")[0]] for k in metrics if k.split("/")[0] in METRIC_LABELS}
    return {k: u for k, (u, _) in fam.items()}, {k: b for k, (_, b) in fam.items()}


def paper_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The paper's value of each recorded metric it reports (abstract, ogbn-papers100M)."""
    return {k: PAPER[k].value for k in metrics if k in PAPER}


def verdict_markdown(claim_list: Sequence[claims.Claim]) -> str:
    """One bullet per claim: verdict, our mean difference and interval, the paper's."""
    return "\n".join(f"* {c['text']}: **{c['verdict']}**; ours {claims.describe_ours(c)} "
                     f"(paper: {claims.describe_paper(c)})." for c in claims.as_dicts(claim_list))


def plot_losses(ax, features: GiantFeatures) -> None:
    """The squared-hinge loss (eq. 4) of every fine-tuning step, one colour per level."""
    start = 0
    for level, losses in enumerate(features.losses):
        steps = np.arange(start, start + len(losses))
        kind = "labels" if level == len(features.tree.assign) else "clusters"
        ax.plot(steps, losses, lw=1, label=f"level {level}: {features.tree.sizes[level]:,} {kind}")
        start += len(losses)
    ax.set_xlabel("fine-tuning step (coarse to fine)")
    ax.set_ylabel("squared hinge loss on the shortlist")


def plot_accuracy(ax, runs: SeedRuns) -> None:
    """Bars: test accuracy (%) per model and feature set (mean over seeds), seeds as dots."""
    width = 0.8 / len(FEATURE_SETS)
    for j, name in enumerate(FEATURE_SETS):
        for i, model in enumerate(MODELS):
            values = runs.metrics[f"test_acc/{model}/{name}"]
            pos = i + (j - (len(FEATURE_SETS) - 1) / 2) * width
            ax.bar(pos, np.mean(values), width, color=f"C{j}",
                   label=FEATURE_NAMES[name] if i == 0 else None)
            ax.plot([pos] * len(values), values, "k.", ms=3)
    ax.set_xticks(range(len(MODELS)), [MODEL_NAMES[m] for m in MODELS])
    ax.set_ylabel("test accuracy (%)")


# --- widget: what the matcher predicts for one node, coarse to fine ---------------------------


def cluster_names(graph: TextGraph, tree: LabelTree, level: int, num_words: int = 2):
    """A short name for every cluster of ``level``: the first lemma of its ``num_words``
    members with the most neighbours (labels are nodes)."""
    member = tree.level_assign(level)
    degree = np.bincount(graph.edge_index[0].numpy(), minlength=graph.num_nodes)
    order = np.lexsort((-degree, member))                          # by cluster, hubs first
    counts = np.bincount(member, minlength=tree.sizes[level])
    starts = np.cumsum(counts) - counts
    lemma = [t.split(" | ")[0].split(", ")[0] for t in graph.texts]
    return [", ".join(lemma[i] for i in order[s:s + min(c, num_words)])
            + (" ..." if c > num_words else "") for s, c in zip(starts, counts, strict=True)]


@torch.no_grad()
def node_frames(graph: TextGraph, features: GiantFeatures, nodes: Sequence[int],
                beam: int = 5) -> dict:
    """The widget's data: for each node, its text, its true neighbours, and per level the
    ``beam`` clusters beam search predicts (eq. 6) with their scores and whether a true
    neighbour lies in each."""
    model, tree = features.matcher(), features.tree
    y = neighbour_matrix(graph.edge_index, graph.num_nodes)
    nodes = [int(n) for n in nodes]
    e = features.giant[torch.as_tensor(nodes)]
    paths = beam_search(model, tree, e, beam=beam)
    names = [cluster_names(graph, tree, level) for level in range(len(paths))]
    frames = {}
    for row, node in enumerate(nodes):
        neighbours = y[node].indices
        levels = []
        for level, ids in enumerate(paths):
            hit = set(tree.level_assign(level)[neighbours].tolist())
            chosen = ids[row].tolist()
            score = torch.sigmoid(model.scores(level, e[row:row + 1],
                                               ids[row:row + 1]))[0].tolist()
            levels.append({"ids": chosen, "names": [names[level][c] for c in chosen],
                           "scores": score, "hit": [c in hit for c in chosen],
                           "size": tree.sizes[level]})
        frames[node] = {"text": graph.texts[node], "levels": levels,
                        "neighbours": [graph.texts[j].split(" | ")[0] for j in neighbours]}
    return frames


def draw_node(fig, node: int, frames: dict) -> None:
    """Widget draw function: one panel per tree level (coarse to fine) with the clusters
    beam search keeps for ``node`` and their scores; green bars hold a true neighbour."""
    import textwrap

    frame = frames[int(node)]
    levels = frame["levels"]
    axes = fig.subplots(1, len(levels), sharex=True)
    for level, (ax, lv) in enumerate(zip(np.atleast_1d(axes), levels, strict=True)):
        colours = ["tab:green" if h else "tab:grey" for h in lv["hit"]]
        pos = np.arange(len(lv["ids"]))[::-1]
        ax.barh(pos, lv["scores"], color=colours)
        ax.set_yticks(pos, [textwrap.shorten(n, 22) for n in lv["names"]], fontsize=6)
        ax.set_xlim(0, 1)
        ax.set_title(f"level {level}\n{lv['size']:,} "
                     f"{'nodes' if level == len(levels) - 1 else 'clusters'}", fontsize=8)
        ax.set_xlabel(r"$\sigma(w_c \cdot \phi(t_i))$", fontsize=7)
    title = textwrap.shorten(frame["text"], 95)
    neighbours = textwrap.shorten("; ".join(frame["neighbours"]) or "none", 95)
    fig.suptitle(f"{title}\ntrue neighbours: {neighbours}  (green: holds one)", fontsize=8)
    fig.tight_layout()


def widget_nodes(graph: TextGraph, num: int = 6, seed: int = 0) -> list[int]:
    """``num`` nodes with 2-6 neighbours, drawn at random (the widget's choices)."""
    degree = np.bincount(graph.edge_index[0].numpy(), minlength=graph.num_nodes)
    pool = np.flatnonzero((degree >= 2) & (degree <= 6))
    return sorted(np.random.default_rng(seed).choice(pool, size=min(num, len(pool)),
                                                     replace=False).tolist())
