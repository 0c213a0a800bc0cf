"""Cold Brew: distilling graph node representations with incomplete or missing neighborhoods.

Wenqing Zheng, Edward W. Huang, Nikhil Rao, Sumeet Katariya, Zhangyang Wang, Karthik Subbian.
ICLR 2022. https://openreview.net/forum?id=1ugNpm7W6E  (bib key ``zheng2022coldbrew``).

Idea. A GNN needs a node's neighbourhood at inference; a *strict cold-start* node has none.
Cold Brew trains a **teacher** GCN whose every layer adds a learnable per-node *structural
embedding* (SE), ``X' = sigma(A_hat (X W + E))`` (eq. 2), with loss ``CE + eta ||E||^2``
(eq. 3). A **student** made of two MLPs then works from node features alone: the first,
``xi_1``, regresses the teacher's node embeddings ``E_bar`` (distillation, MSE); for any node
its output ``e_hat`` picks ``K`` *virtual neighbours* among the nodes the teacher was
trained on, ``e_tilde = softmax(Theta_K(e_hat E_bar^T)) E_bar`` (eq. 4); the second,
``xi_2``, classifies ``[x, e_tilde]``. No edge is used at inference. The *feature
contribution ratio* (FCR, eq. 5) compares an MLP (features only) and label propagation
(structure only) with the GNN to say how much a task leans on structure, i.e. how much
cold-start nodes stand to lose and a distilled student to gain.

Evaluation follows section 5.1: *head* = top 10 % of nodes by degree; *isolation* = bottom
10 % by degree, all their edges removed from the training graph, plus every zero-degree
node; *tail* = the 10 % of the remaining nodes with the lowest non-zero degree in the
training graph; *overall* = all test nodes.

Deviations (CPU scale, stated in the chapter too):

* One fixed architecture per model instead of the paper's FCR-guided grid search over depth,
  residual type and normalisation (its Cora optimum is a 2-layer GCN with SE, which we use,
  without PairNorm); label propagation's ``alpha`` is picked on validation from a small grid.
* Teacher embeddings ``E_bar`` are the concatenated outputs of every layer after aggregation
  (as the official code's ``collect_SE``); the paper writes the pre-aggregation terms.
* SE is initialised at zero (the paper does not say; the official code draws ``randn``), so a
  node that no training signal reaches keeps ``E = 0``.
* The virtual-neighbour bank is the set of nodes with at least one edge in the training
  graph, and a node never picks itself (otherwise a bank node would copy its own teacher
  embedding while ``xi_2`` trains).
* Eq. 4 ranks the bank by the raw inner product ``e_hat E_bar^T``; we rank by cosine
  similarity (``similarity="cosine"``, ``"dot"`` is available): with raw inner products the
  few bank rows of largest norm win nearly every query (the chapter measures this).
* ``xi_2`` reads ``[x, e_tilde, e_hat]``, as the official code's default
  (``SEMLP__include_part1out=1``); the paper writes ``[x, e_tilde]``.
* Models are selected on a validation split (the official code keeps the teacher with the
  best *test* accuracy); tens of epochs instead of the official 1,500; the MLPs train
  without weight decay.
* Node features are sparse TF-IDF vectors; the first layer of every model is a sparse
  matrix product.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import runtime
from ..viz.projection import pca_basis

__all__ = [
    "ColdBrewConfig", "DegreeSplit", "GCN", "GraphSAGE", "MLP", "StudentMLP", "TrainConfig",
    "accuracy", "degree_split", "distillation_loss", "feature_contribution_ratio",
    "label_propagation", "mean_adjacency", "node_split", "normalized_adjacency",
    "run_cold_brew", "train_classifier", "train_student", "virtual_neighbours",
]

# --------------------------------------------------------------------------------------
# Graph utilities
# --------------------------------------------------------------------------------------


def _check_edges(edges, num_nodes: int) -> np.ndarray:
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, np.integer)) \
            or num_nodes <= 0:
        raise ValueError(f"num_nodes must be a positive int, got {num_nodes!r}")
    edges = np.asarray(edges.cpu() if isinstance(edges, Tensor) else edges)
    if edges.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if edges.ndim != 2 or edges.shape[1] != 2 or not np.issubdtype(edges.dtype, np.integer):
        raise ValueError(f"edges must be an integer array of shape (E, 2), got "
                         f"{edges.dtype} {edges.shape}")
    if edges.min() < 0 or edges.max() >= num_nodes:
        raise ValueError(f"edges hold node ids outside 0..{num_nodes - 1}")
    return edges.astype(np.int64)


def _symmetric(edges: np.ndarray) -> np.ndarray:
    """Both directions of every undirected edge, self-loops dropped, duplicates merged."""
    both = np.concatenate([edges, edges[:, ::-1]])
    both = both[both[:, 0] != both[:, 1]]
    return np.unique(both, axis=0)


def node_degrees(edges, num_nodes: int) -> np.ndarray:
    """(N,) number of distinct neighbours of each node of an undirected edge list (E, 2)."""
    directed = _symmetric(_check_edges(edges, num_nodes))
    return np.bincount(directed[:, 0], minlength=num_nodes)


def _bag_product(cols: Tensor, offsets: Tensor, vals: Tensor, dense: Tensor) -> Tensor:
    """``S @ D`` for S in CSR arrays: ``F.embedding_bag`` in sum mode, values as weights."""
    return F.embedding_bag(cols, dense, offsets, mode="sum",
                           per_sample_weights=vals.to(dense.dtype))


class _SparseProduct(torch.autograd.Function):
    """``S @ D`` for a fixed sparse S, differentiable in D: the backward is ``S^T @ grad``
    with the stored CSR arrays of ``S^T`` (several times faster on CPU than autograd through
    ``embedding_bag`` or torch's sparse-CSR product)."""

    @staticmethod
    def forward(ctx, dense: Tensor, matrix: SparseMatrix) -> Tensor:
        ctx.matrix = matrix
        return _bag_product(matrix.cols, matrix.offsets, matrix.vals, dense)

    @staticmethod
    def backward(ctx, grad: Tensor):
        m = ctx.matrix
        return _bag_product(m.cols_t, m.offsets_t, m.vals_t, grad.contiguous()), None


def _csr_arrays(coo: Tensor):
    rows, cols = coo.indices()
    counts = torch.bincount(rows, minlength=coo.shape[0])
    return cols, torch.cumsum(counts, 0) - counts, coo.values()    # columns, row starts, values


class SparseMatrix:
    """A fixed sparse (R, C) matrix (features, adjacency) with a differentiable ``S @ D``.

    Keeps the CSR arrays of S and of its transpose; row ``r`` of ``S @ D`` is
    ``sum_k S[r, c_k] D[c_k]``.
    """

    def __init__(self, matrix: Tensor):
        if not isinstance(matrix, Tensor) or matrix.dim() != 2:
            raise TypeError("SparseMatrix needs a 2-D torch tensor")
        coo = (matrix if matrix.is_sparse else matrix.to_sparse()).coalesce().float()
        self.coo = coo
        self.cols, self.offsets, self.vals = _csr_arrays(coo)
        self.cols_t, self.offsets_t, self.vals_t = _csr_arrays(coo.t().coalesce())

    @property
    def shape(self) -> torch.Size:
        return self.coo.shape

    @property
    def device(self) -> torch.device:
        return self.coo.device

    def __matmul__(self, dense: Tensor) -> Tensor:
        if dense.dim() != 2 or dense.shape[0] != self.shape[1]:
            raise ValueError(f"cannot multiply {tuple(self.shape)} by {tuple(dense.shape)}")
        return _SparseProduct.apply(dense, self)

    def to(self, device) -> SparseMatrix:
        return SparseMatrix(self.coo.to(device))

    def rows(self, index: Tensor) -> SparseMatrix:
        """The sub-matrix of rows ``index``."""
        return SparseMatrix(torch.index_select(self.coo, 0, index.to(self.device)))

    def to_dense(self) -> Tensor:
        return self.coo.to_dense()


def normalized_adjacency(edges, num_nodes: int, device=None) -> SparseMatrix:
    """GCN propagation matrix ``A_hat = D^-1/2 (A + I) D^-1/2``, sparse (N, N).

    edges: (E, 2) undirected node pairs; self-loops are added once per node (Kipf and
    Welling's renormalisation), so an isolated node keeps its own features.
    """
    device = runtime.device() if device is None else torch.device(device)
    directed = _symmetric(_check_edges(edges, num_nodes))
    loops = np.arange(num_nodes)
    rows = np.concatenate([directed[:, 0], loops])
    cols = np.concatenate([directed[:, 1], loops])
    deg = np.bincount(rows, minlength=num_nodes).astype(np.float64)  # degree of A + I
    values = 1.0 / np.sqrt(deg[rows] * deg[cols])                   # D^-1/2 (A+I) D^-1/2
    index = torch.from_numpy(np.stack([rows, cols]))
    adj = torch.sparse_coo_tensor(index, torch.from_numpy(values).float(),
                                  (num_nodes, num_nodes), check_invariants=True)
    return SparseMatrix(adj.to(device))


def mean_adjacency(edges, num_nodes: int, device=None) -> SparseMatrix:
    """Row-normalised adjacency ``D^-1 A`` (no self-loops), the GraphSAGE mean aggregator.

    A node without neighbours gets an all-zero row (its neighbour mean is zero).
    """
    device = runtime.device() if device is None else torch.device(device)
    directed = _symmetric(_check_edges(edges, num_nodes))
    deg = np.bincount(directed[:, 0], minlength=num_nodes).astype(np.float64)
    values = 1.0 / deg[directed[:, 0]] if len(directed) else np.zeros(0)
    index = torch.from_numpy(directed.T.copy())
    adj = torch.sparse_coo_tensor(index, torch.from_numpy(values).float(),
                                  (num_nodes, num_nodes), check_invariants=True)
    return SparseMatrix(adj.to(device))


@dataclass(frozen=True)
class DegreeSplit:
    """The node groups of section 5.1 and the training graph.

    head, tail, isolation: sorted int64 node ids, pairwise disjoint.
    train_edges: (E', 2) the graph with every edge touching an isolation node removed.
    degrees: (N,) degree in the original graph; train_degrees: in the training graph.
    """

    head: np.ndarray
    tail: np.ndarray
    isolation: np.ndarray
    train_edges: np.ndarray
    degrees: np.ndarray
    train_degrees: np.ndarray


def degree_split(edges, num_nodes: int, fraction: float = 0.1, seed: int = 0) -> DegreeSplit:
    """Split nodes into head / tail / isolation by degree (paper, section 5.1).

    * isolation: the ``round(fraction * N)`` lowest-degree nodes (ties broken by a seeded
      random order) together with every zero-degree node; all their edges are removed.
      A node that is left without edges by that removal joins the isolation group too
      ("all the zero-degree nodes are in the isolation data").
    * head: the ``round(fraction * N)`` highest-degree nodes of the rest (original degree).
    * tail: the ``round(fraction * N)`` nodes of the rest with the lowest non-zero degree in
      the training graph.
    """
    edges = _check_edges(edges, num_nodes)
    if not 0.0 < fraction < 1.0 / 3.0:
        raise ValueError(f"fraction must be in (0, 1/3), got {fraction}")
    size = int(round(fraction * num_nodes))
    if size == 0:
        raise ValueError(f"fraction * num_nodes = {fraction * num_nodes:.2f} rounds to no node")
    rng = np.random.default_rng(seed)
    tiebreak = rng.permutation(num_nodes)
    degrees = node_degrees(edges, num_nodes)
    ascending = np.lexsort((tiebreak, degrees))            # by degree, ties at random
    isolated = np.zeros(num_nodes, dtype=bool)
    isolated[ascending[:size]] = True
    isolated[degrees == 0] = True
    keep = ~(isolated[edges[:, 0]] | isolated[edges[:, 1]]) if len(edges) else np.zeros(0, bool)
    train_edges = edges[keep]
    train_degrees = node_degrees(train_edges, num_nodes)
    isolated |= train_degrees == 0                         # orphans of the removal
    rest = np.flatnonzero(~isolated)
    head = rest[np.lexsort((tiebreak[rest], -degrees[rest]))[:size]]
    in_head = np.zeros(num_nodes, dtype=bool)
    in_head[head] = True
    candidates = np.flatnonzero(~isolated & ~in_head & (train_degrees > 0))
    tail = candidates[np.lexsort((tiebreak[candidates], train_degrees[candidates]))[:size]]
    return DegreeSplit(head=np.sort(head), tail=np.sort(tail),
                       isolation=np.flatnonzero(isolated), train_edges=train_edges,
                       degrees=degrees, train_degrees=train_degrees)


def node_split(num_nodes: int, train: float = 0.6, val: float = 0.2, seed: int = 0):
    """Random train / validation / test node ids (sorted int64 arrays), fractions of N."""
    if not (0 < train < 1 and 0 <= val < 1 and train + val < 1):
        raise ValueError(f"need 0 < train, 0 <= val and train + val < 1, got {train}, {val}")
    order = np.random.default_rng(seed).permutation(num_nodes)
    n_train, n_val = int(round(train * num_nodes)), int(round(val * num_nodes))
    return (np.sort(order[:n_train]), np.sort(order[n_train:n_train + n_val]),
            np.sort(order[n_train + n_val:]))


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------


def _first_layer(x, layer: nn.Linear) -> Tensor:
    """``x W^T + b`` for a dense (N, F) tensor or a :class:`SparseMatrix`."""
    if isinstance(x, SparseMatrix):
        out = x @ layer.weight.t()
        return out if layer.bias is None else out + layer.bias
    return layer(x)


class GCN(nn.Module):
    """GCN of Kipf and Welling, optionally with Cold Brew's structural embedding (eq. 2).

    Layer l: ``Z_l = A_hat (X_l W_l + E_l) + b_l``, ``X_{l+1} = ReLU(Z_l)`` (no ReLU after
    the last layer, whose ``Z`` are the logits). ``E_l``: (num_nodes, d_l) learnable, only
    when ``structural_embedding``.
    """

    def __init__(self, in_dim: int, hidden: int, num_classes: int, num_nodes: int,
                 num_layers: int = 2, dropout: float = 0.5,
                 structural_embedding: bool = True):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        dims = [in_dim] + [hidden] * (num_layers - 1) + [num_classes]
        pairs = zip(dims[:-1], dims[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.dropout = dropout
        self.num_nodes = num_nodes
        self.se = nn.ParameterList(
            nn.Parameter(torch.zeros(num_nodes, d)) for d in dims[1:]
        ) if structural_embedding else None

    def se_penalty(self) -> Tensor:
        """``||E||_2^2`` summed over layers (the regulariser of eq. 3); 0 without SE."""
        if self.se is None:
            return torch.zeros((), device=self.layers[0].weight.device)
        return sum(e.pow(2).sum() for e in self.se)

    def forward(self, x: Tensor, adj: Tensor, return_layers: bool = False):
        """x: (N, F) dense or sparse; adj: (N, N) sparse ``A_hat``. Returns logits (N, C)
        and, with ``return_layers``, the list of every layer's ``Z_l``."""
        outputs = []
        h = x
        for index, layer in enumerate(self.layers):
            if index > 0:
                h = F.dropout(h, self.dropout, self.training)
            xw = h @ layer.weight.t()                            # X W (h dense or sparse)
            if self.se is not None:
                xw = xw + self.se[index]                         # X W + E          (eq. 2)
            z = adj @ xw + layer.bias                            # A_hat (X W + E) + b
            outputs.append(z)
            h = F.relu(z) if index < len(self.layers) - 1 else z
        return (h, outputs) if return_layers else h

    @torch.no_grad()
    def embeddings(self, x: Tensor, adj: Tensor) -> Tensor:
        """Teacher embeddings ``E_bar``: (N, sum_l d_l), every layer's ``Z_l`` side by side
        (the last block is ``X^(L)``, the logits)."""
        was = self.training
        self.eval()
        _, outputs = self.forward(x, adj, return_layers=True)
        self.train(was)
        return torch.cat(outputs, dim=1)


class GraphSAGE(nn.Module):
    """GraphSAGE with the mean aggregator (Hamilton et al.).

    Layer: ``h'_i = W_self h_i + W_neigh mean_{j in N(i)} h_j``, ReLU between layers; the
    neighbour mean is ``D^-1 A h`` from :func:`mean_adjacency`.
    """

    def __init__(self, in_dim: int, hidden: int, num_classes: int, num_layers: int = 2,
                 dropout: float = 0.5):
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1) + [num_classes]
        pairs = list(zip(dims[:-1], dims[1:], strict=True))
        self.self_layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.neigh_layers = nn.ModuleList(nn.Linear(a, b, bias=False)
                                          for a, b in pairs)
        self.dropout = dropout

    def forward(self, x: Tensor, adj_mean: Tensor) -> Tensor:
        h = x
        for index, (ws, wn) in enumerate(zip(self.self_layers, self.neigh_layers, strict=True)):
            if index == 0:
                own = _first_layer(h, ws)
                neigh = adj_mean @ (_first_layer(h, wn) if isinstance(h, SparseMatrix)
                                    else wn(h))
            else:
                h = F.dropout(h, self.dropout, self.training)
                own, neigh = ws(h), adj_mean @ wn(h)
            h = own + neigh
            if index < len(self.self_layers) - 1:
                h = F.relu(h)
        return h


class MLP(nn.Module):
    """Node-wise MLP ``in -> hidden x num_hidden -> out`` with ReLU and dropout.

    The paper's "Simple MLP" is ``num_hidden=2, hidden=128``. Extra dense inputs
    (``extra_dim > 0``) are concatenated to the (possibly sparse) features; the first layer
    is then ``W [x, e] = W_x x + W_e e``.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_hidden: int = 2,
                 dropout: float = 0.5, extra_dim: int = 0):
        super().__init__()
        if num_hidden < 1:
            raise ValueError(f"num_hidden must be >= 1, got {num_hidden}")
        self.first = nn.Linear(in_dim, hidden)
        self.extra = nn.Linear(extra_dim, hidden, bias=False) if extra_dim else None
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(num_hidden - 1))
        self.out = nn.Linear(hidden, out_dim)
        self.dropout = dropout

    def forward(self, x: Tensor, extra: Tensor | None = None) -> Tensor:
        if (extra is None) != (self.extra is None):
            raise ValueError("pass `extra` exactly when the MLP was built with extra_dim > 0")
        h = _first_layer(x, self.first)
        if extra is not None:
            h = h + self.extra(extra)                            # W [x, e] = W_x x + W_e e
        for layer in self.hidden:
            h = layer(F.dropout(F.relu(h), self.dropout, self.training))
        return self.out(F.dropout(F.relu(h), self.dropout, self.training))


# --------------------------------------------------------------------------------------
# Cold Brew's pieces: distillation, virtual neighbours, FCR, label propagation
# --------------------------------------------------------------------------------------


def distillation_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean squared error between student and teacher node embeddings (``xi_1``'s loss).

    student, teacher: (N, D) float. Returns ``1/(N D) sum_i ||s_i - t_i||^2`` (scalar); the
    teacher is a fixed target (no gradient flows into it).
    """
    if not isinstance(student, Tensor) or not isinstance(teacher, Tensor):
        raise TypeError("student and teacher must be tensors")
    if student.dim() != 2 or student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher "
                         f"{tuple(teacher.shape)} must both be (N, D)")
    return (student - teacher.detach()).pow(2).mean()


def virtual_neighbours(query: Tensor, bank: Tensor, k: int, exclude: Tensor | None = None,
                       similarity: str = "cosine", chunk: int = 4096):
    """Cold Brew's virtual-neighbour aggregation (eq. 4).

    ``e_tilde_i = softmax(Theta_K(e_hat_i E_bar^T)) E_bar``: score every bank row by its inner
    product with the query, keep the top ``k`` (``Theta_K`` sets the others to -inf, i.e.
    weight 0), softmax the kept scores, and average those rows with these weights.

    query: (M, D) student embeddings ``e_hat``; bank: (B, D) teacher embeddings ``E_bar``;
    exclude: (M,) bank row that query ``i`` may not pick (itself), or -1 for none.
    similarity: ``"dot"`` scores with the raw inner product as eq. 4 writes it; ``"cosine"``
    (default) L2-normalises query and bank rows before scoring (the average still uses the
    raw bank rows). With raw inner products the few bank rows of largest norm win every
    query; see the chapter.
    Returns ``(e_tilde (M, D), index (M, k), weight (M, k))``.
    """
    if query.dim() != 2 or bank.dim() != 2 or query.shape[1] != bank.shape[1]:
        raise ValueError(f"query (M, D) and bank (B, D) must share D, got "
                         f"{tuple(query.shape)} and {tuple(bank.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= bank.shape[0]:
        raise ValueError(f"k must be an int in 1..{bank.shape[0]}, got {k!r}")
    if exclude is not None and exclude.shape != (query.shape[0],):
        raise ValueError(f"exclude must have shape ({query.shape[0]},), got "
                         f"{tuple(exclude.shape)}")
    if exclude is not None and k >= bank.shape[0]:
        raise ValueError("with `exclude`, k must be smaller than the bank size")
    if similarity not in ("dot", "cosine"):
        raise ValueError(f"similarity must be 'dot' or 'cosine', got {similarity!r}")
    q, b = (query, bank) if similarity == "dot" else (F.normalize(query, dim=1),
                                                      F.normalize(bank, dim=1))
    outs, indices, weights = [], [], []
    for start in range(0, query.shape[0], chunk):
        scores = q[start:start + chunk] @ b.t()                       # e_hat E_bar^T (M, B)
        if exclude is not None:
            rows = exclude[start:start + chunk]
            valid = rows >= 0
            scores[torch.nonzero(valid).squeeze(1), rows[valid]] = -math.inf
        top = scores.topk(k, dim=1)                                   # Theta_K
        weight = torch.softmax(top.values, dim=1)                     # softmax over the K
        outs.append(torch.einsum("mk,mkd->md", weight, bank[top.indices]))   # ... E_bar
        indices.append(top.indices)
        weights.append(weight)
    return torch.cat(outs), torch.cat(indices), torch.cat(weights)


def feature_contribution_ratio(z_gnn: float, z_mlp: float, z_lp: float) -> float:
    """Feature contribution ratio (eq. 5), in percent.

    ``d_MLP = z_GNN - z_MLP``, ``d_LP = z_GNN - z_LP``;
    FCR = ``d_LP / (d_MLP + d_LP)`` if ``z_MLP <= z_GNN``, else
    ``1 + |d_MLP| / (|d_MLP| + d_LP)``; times 100 %. Below 50 %: the structure carries
    most of the GNN's gain, so cold-start nodes lose most. Needs ``z_LP < z_GNN``.
    """
    for name, value in (("z_gnn", z_gnn), ("z_mlp", z_mlp), ("z_lp", z_lp)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise TypeError(f"{name} must be a finite number, got {value!r}")
    d_mlp, d_lp = z_gnn - z_mlp, z_gnn - z_lp                          # eq. 5a
    if d_lp <= 0:
        raise ValueError(f"FCR needs z_lp < z_gnn, got z_lp={z_lp}, z_gnn={z_gnn}")
    if z_mlp <= z_gnn:
        return 100.0 * d_lp / (d_mlp + d_lp)                          # eq. 5b, first case
    return 100.0 * (1.0 + abs(d_mlp) / (abs(d_mlp) + d_lp))           # eq. 5b, second case


def label_propagation(adj: Tensor, labels: Tensor, train_idx: Tensor, num_classes: int,
                      alpha: float = 0.9, num_iters: int = 50) -> Tensor:
    """Label propagation ``Y_{t+1} = (1 - alpha) G + alpha A Y_t`` from ``Y_0 = G``.

    adj: (N, N) sparse propagation matrix; G: one-hot labels of ``train_idx``, zeros
    elsewhere. Uses no node feature. Returns (N, C) scores.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    g = torch.zeros(adj.shape[0], num_classes, device=labels.device)
    g[train_idx, labels[train_idx]] = 1.0
    y = g
    for _ in range(num_iters):
        y = (1.0 - alpha) * g + alpha * (adj @ y)
    return y


def accuracy(logits: Tensor, labels: Tensor, index) -> float:
    """Fraction of ``index`` nodes whose arg-max class is the label (nan for no node)."""
    index = torch.as_tensor(index, dtype=torch.long, device=logits.device)
    if index.numel() == 0:
        return float("nan")
    return (logits[index].argmax(1) == labels[index]).float().mean().item()


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Full-batch Adam training with model selection on validation accuracy."""

    epochs: int = 200
    lr: float = 0.01
    weight_decay: float = 5e-4
    patience: int = 50


def train_classifier(model: nn.Module, forward, labels: Tensor, train_idx: Tensor,
                     val_idx: Tensor, config: TrainConfig, penalty=None) -> dict:
    """Train ``model`` with cross-entropy on ``train_idx`` (+ ``penalty()``), keep the state
    of the epoch with the best validation accuracy. ``forward()`` returns (N, C) logits.
    Returns ``{"best_epoch", "val_acc"}``; the model is left in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best, best_state, best_epoch = -1.0, None, 0
    for epoch in range(config.epochs):
        model.train()
        opt.zero_grad()
        loss = F.cross_entropy(forward()[train_idx], labels[train_idx])
        if penalty is not None:
            loss = loss + penalty()                               # eq. 3: CE + eta ||E||^2
        loss.backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            val = accuracy(forward(), labels, val_idx)
        if val > best:
            best, best_epoch = val, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return {"best_epoch": best_epoch, "val_acc": best}


@dataclass
class ColdBrewConfig:
    """Settings of one Cold Brew run; defaults follow the paper's Cora choices where given.

    teacher: 2-layer GCN + SE, hidden 64, dropout 0.6, weight decay 5e-4 (official Cora),
    ``se_eta`` the eta of eq. 3. Student: ``xi_1`` and ``xi_2`` are MLPs with 256 hidden
    units (official ``SEMLP``); ``top_k`` virtual neighbours (the official default is 2);
    ``xi_2`` reads ``[x, e_tilde, e_hat]`` (official ``include_part1out``) and is trained on
    the training nodes of ``student_train_groups`` (the paper: tail and isolation). Baseline
    MLP: 2 hidden layers of 128 (the paper's "Simple MLP"). The MLPs train without weight
    decay (on these sparse TF-IDF inputs 5e-4 underfits badly: validation 0.44 vs 0.49).
    Epoch counts are CPU-scale (the official code runs 1,500).
    """

    hidden: int = 64
    num_layers: int = 2
    dropout: float = 0.6
    se_eta: float = 1e-4
    teacher: TrainConfig = field(default_factory=lambda: TrainConfig(100, 0.02, 5e-4, 30))
    mlp_hidden: int = 128
    mlp_dropout: float = 0.5
    mlp: TrainConfig = field(default_factory=lambda: TrainConfig(100, 0.01, 0.0, 30))
    student_hidden: int = 256
    student_dropout: float = 0.2
    distill_epochs: int = 100
    distill_lr: float = 0.01
    distill_weight_decay: float = 5e-5
    top_k: int = 5
    similarity: str = "cosine"
    include_e_hat: bool = True
    student: TrainConfig = field(default_factory=lambda: TrainConfig(100, 0.01, 0.0, 30))
    student_train_groups: tuple[str, ...] = ("tail", "isolation")
    lp_alphas: tuple[float, ...] = (0.5, 0.9, 0.99)
    lp_iters: int = 50

    def with_epochs(self, epochs: int) -> ColdBrewConfig:
        """A copy with every training run set to ``epochs`` epochs (patience scaled too)."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive int, got {epochs!r}")
        patience = max(10, epochs * 3 // 10)
        runs = {name: replace(getattr(self, name), epochs=epochs, patience=patience)
                for name in ("teacher", "mlp", "student")}
        return replace(self, distill_epochs=epochs, **runs)


class StudentMLP(nn.Module):
    """Cold Brew's student: ``xi_1`` (features -> teacher embedding) and ``xi_2``
    (``[x, e_tilde]`` -> class). ``bank``: (B, D) teacher embeddings of the bank nodes."""

    def __init__(self, in_dim: int, emb_dim: int, num_classes: int, hidden: int = 256,
                 dropout: float = 0.2, top_k: int = 5, similarity: str = "cosine",
                 include_e_hat: bool = True):
        super().__init__()
        self.xi1 = MLP(in_dim, hidden, emb_dim, num_hidden=1, dropout=dropout)
        self.include_e_hat = include_e_hat
        self.xi2 = MLP(in_dim, hidden, num_classes, num_hidden=1, dropout=dropout,
                       extra_dim=emb_dim * (2 if include_e_hat else 1))
        self.top_k, self.similarity = top_k, similarity
        self.register_buffer("bank", torch.zeros(0, emb_dim))
        self.register_buffer("bank_nodes", torch.zeros(0, dtype=torch.long))

    def set_bank(self, bank: Tensor, bank_nodes: Tensor) -> None:
        self.bank, self.bank_nodes = bank.detach(), bank_nodes

    @torch.no_grad()
    def aggregate(self, x: Tensor, nodes: Tensor | None = None) -> Tensor:
        """``xi_2``'s extra input for the rows of ``x``: ``e_tilde`` (M, D) of eq. 4, or
        ``[e_tilde, e_hat]`` (M, 2D) with ``include_e_hat`` (as the official code).
        ``nodes`` (M,): their graph ids, so that a bank node never picks itself."""
        e_hat = self.xi1(x)
        exclude = None
        if nodes is not None:
            pos = torch.full((int(max(nodes.max(), self.bank_nodes.max())) + 1,), -1,
                             dtype=torch.long, device=x.device)
            pos[self.bank_nodes] = torch.arange(len(self.bank_nodes), device=x.device)
            exclude = pos[nodes]
        e_tilde = virtual_neighbours(e_hat, self.bank, self.top_k, exclude, self.similarity)[0]
        return torch.cat([e_tilde, e_hat], dim=1) if self.include_e_hat else e_tilde

    def forward(self, x: Tensor, e_tilde: Tensor | None = None) -> Tensor:
        """Class logits ``xi_2([x, e_tilde])`` from features alone (``e_tilde``: the output
        of :meth:`aggregate`, computed if not given)."""
        if e_tilde is None:
            e_tilde = self.aggregate(x)
        return self.xi2(x, e_tilde)


def train_student(student: StudentMLP, x, teacher_emb: Tensor, fit_nodes: Tensor,
                  labels: Tensor, train_idx: Tensor, val_idx: Tensor, config: ColdBrewConfig):
    """Train ``xi_1`` by distillation on ``fit_nodes`` (the non-isolated nodes), then ``xi_2``
    with cross-entropy on ``train_idx``. Returns ``xi_2``'s extra input for every node."""
    opt = torch.optim.Adam(student.xi1.parameters(), lr=config.distill_lr,
                           weight_decay=config.distill_weight_decay)
    x_fit, target = _rows(x, fit_nodes), teacher_emb[fit_nodes]
    for _ in range(config.distill_epochs):
        student.xi1.train()
        opt.zero_grad()
        distillation_loss(student.xi1(x_fit), target).backward()      # MSE to E_bar
        opt.step()
    student.xi1.eval()
    all_nodes = torch.arange(x.shape[0], device=labels.device)
    e_tilde = student.aggregate(x, all_nodes)                           # eq. 4
    fit_nodewise(student.xi2, x, labels, train_idx, val_idx, config.student, extra=e_tilde)
    return e_tilde


def fit_nodewise(model: nn.Module, x, labels: Tensor, train_idx: Tensor, val_idx: Tensor,
                 config: TrainConfig, extra: Tensor | None = None) -> dict:
    """:func:`train_classifier` for a node-wise model ``model(x_rows[, extra_rows])``: only the
    rows of ``train_idx`` and ``val_idx`` are ever computed."""
    rows = torch.cat([train_idx, val_idx])
    x_rows = _rows(x, rows)
    extra_rows = None if extra is None else extra[rows]
    local_train = torch.arange(len(train_idx), device=rows.device)
    local_val = torch.arange(len(train_idx), len(rows), device=rows.device)
    if extra_rows is None:
        def forward():
            return model(x_rows)
    else:
        def forward():
            return model(x_rows, extra_rows)
    return train_classifier(model, forward, labels[rows], local_train, local_val, config)


def _rows(x, index: Tensor):
    """Rows ``index`` of a dense (N, F) tensor or a :class:`SparseMatrix`."""
    return x.rows(index) if isinstance(x, SparseMatrix) else x[index]


# --------------------------------------------------------------------------------------
# The whole experiment
# --------------------------------------------------------------------------------------

GROUPS = ("head", "tail", "isolation", "overall")
MODELS = ("GCN", "GraphSAGE", "MLP", "GCN+SE (teacher)", "Cold Brew student")


BASELINES = ("GCN", "GraphSAGE", "MLP", "Label propagation")


def run_cold_brew(x, labels: Tensor, edges, config: ColdBrewConfig | None = None,
                  seed: int = 0, split_fraction: float = 0.1, train_frac: float = 0.6,
                  val_frac: float = 0.2, baselines: tuple[str, ...] = BASELINES,
                  device=None, keep: bool = False) -> dict:
    """One seed of the paper's experiment on one graph.

    x: (N, F) node features (dense tensor, sparse tensor or :class:`SparseMatrix`, fitted on
    training nodes only); labels: (N,) int64; edges: (E, 2) undirected. Trains the
    ``baselines``, the SE teacher and the student on the training graph (isolation edges
    removed) and returns ``{"acc": {model: {group: test accuracy}}, "fcr", "sizes",
    "test_sizes"}`` and ``"fcr"`` (with the teacher as the GNN; needs the MLP and label
    propagation, and is left out when label propagation beats the teacher, where eq. 5 is
    undefined); with ``keep=True`` also
    ``"models"``: the trained models and tensors (for timing and the widget).
    """
    config = config or ColdBrewConfig()
    unknown = set(baselines) - set(BASELINES)
    if unknown:
        raise ValueError(f"unknown baselines {sorted(unknown)}; choose from {BASELINES}")
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.dtype != torch.long:
        raise TypeError("labels must be a 1-D int64 tensor")
    n = labels.shape[0]
    if x.shape[0] != n:
        raise ValueError(f"x has {x.shape[0]} rows but labels has {n}")
    device = runtime.device() if device is None else torch.device(device)
    split = degree_split(edges, n, split_fraction, seed)
    train_idx, val_idx, test_idx = (torch.as_tensor(a, device=device)
                                    for a in node_split(n, train_frac, val_frac, seed))
    x = x.to(device)
    x = SparseMatrix(x) if isinstance(x, Tensor) and x.is_sparse else x
    labels = labels.to(device)
    num_classes = int(labels.max()) + 1
    adj = normalized_adjacency(split.train_edges, n, device)
    is_test = torch.zeros(n, dtype=torch.bool, device=device)
    is_test[test_idx] = True
    groups = {g: torch.as_tensor(getattr(split, g), device=device) for g in GROUPS[:3]}
    groups = {g: idx[is_test[idx]] for g, idx in groups.items()}
    groups["overall"] = test_idx
    models: dict = {}

    def evaluate(logits):
        return {g: accuracy(logits, labels, idx) for g, idx in groups.items()}

    def fit(name, model, forward, train_config, penalty=None):
        train_classifier(model, forward, labels, train_idx, val_idx, train_config, penalty)
        with torch.no_grad():
            acc[name] = evaluate(forward())
        models[name] = model

    acc: dict = {}
    dims = (x.shape[1], config.hidden, num_classes)
    if "GCN" in baselines:
        runtime.seed_everything(seed)
        gcn = GCN(*dims, n, config.num_layers, config.dropout, False).to(device)
        fit("GCN", gcn, lambda: gcn(x, adj), config.teacher)
    if "GraphSAGE" in baselines:
        runtime.seed_everything(seed)
        adj_mean = mean_adjacency(split.train_edges, n, device)
        sage = GraphSAGE(*dims, config.num_layers, config.dropout).to(device)
        fit("GraphSAGE", sage, lambda: sage(x, adj_mean), config.teacher)
    if "MLP" in baselines:
        runtime.seed_everything(seed)
        mlp = MLP(x.shape[1], config.mlp_hidden, num_classes, 2, config.mlp_dropout).to(device)
        fit_nodewise(mlp, x, labels, train_idx, val_idx, config.mlp)
        with torch.no_grad():
            acc["MLP"] = evaluate(mlp(x))
        models["MLP"] = mlp
    # --- Cold Brew's teacher: GCN + SE, loss CE + eta ||E||^2 (eq. 3) ---------------------
    runtime.seed_everything(seed)
    teacher = GCN(*dims, n, config.num_layers, config.dropout, True).to(device)
    fit("GCN+SE (teacher)", teacher, lambda: teacher(x, adj), config.teacher,
        penalty=lambda: config.se_eta * teacher.se_penalty())
    teacher_emb = teacher.embeddings(x, adj)
    # --- Cold Brew's student: xi_1 distilled on non-isolated nodes, xi_2 on tail+isolation -
    runtime.seed_everything(seed)
    bank_nodes = torch.as_tensor(np.flatnonzero(split.train_degrees > 0), device=device)
    student = StudentMLP(x.shape[1], teacher_emb.shape[1], num_classes,
                         config.student_hidden, config.student_dropout,
                         config.top_k, config.similarity, config.include_e_hat).to(device)
    student.set_bank(teacher_emb[bank_nodes], bank_nodes)
    student_train = _student_train_nodes(train_idx, split, config.student_train_groups, n)
    e_tilde = train_student(student, x, teacher_emb, bank_nodes, labels, student_train,
                            val_idx, config)
    with torch.no_grad():
        acc["Cold Brew student"] = evaluate(student(x, e_tilde))
    models["Cold Brew student"] = student
    result = {"acc": acc, "sizes": {g: int(len(getattr(split, g))) for g in GROUPS[:3]},
              "test_sizes": {g: int(len(idx)) for g, idx in groups.items()}}
    if "Label propagation" in baselines:
        acc["Label propagation"] = evaluate(_best_label_propagation(
            adj, labels, train_idx, val_idx, num_classes, config))
    if {"MLP", "Label propagation"} <= set(acc):
        # z_GNN: the full-fledged GNN, the SE teacher (the paper's Table 2 uses GCN + SE)
        z = {m: 100 * acc[m]["overall"] for m in ("GCN+SE (teacher)", "MLP", "Label propagation")}
        if z["Label propagation"] < z["GCN+SE (teacher)"]:    # FCR is defined (eq. 5)
            result["fcr"] = feature_contribution_ratio(z["GCN+SE (teacher)"], z["MLP"],
                                                       z["Label propagation"])
    if keep:
        result["models"] = dict(models, split=split, adj=adj, x=x, labels=labels,
                                teacher_emb=teacher_emb, e_tilde=e_tilde, groups=groups,
                                train_idx=train_idx, val_idx=val_idx, test_idx=test_idx)
    return result


def _best_label_propagation(adj, labels, train_idx, val_idx, num_classes, config) -> Tensor:
    """Label propagation with the ``alpha`` of ``config.lp_alphas`` best on validation."""
    best, best_scores = -1.0, None
    for alpha in config.lp_alphas:
        scores = label_propagation(adj, labels, train_idx, num_classes, alpha, config.lp_iters)
        val = accuracy(scores, labels, val_idx)
        if val > best:
            best, best_scores = val, scores
    return best_scores


def _student_train_nodes(train_idx: Tensor, split: DegreeSplit, groups_: tuple[str, ...],
                         n: int) -> Tensor:
    """Training nodes of the groups ``groups_`` (``("all",)``: every training node)."""
    if "all" in groups_:
        return train_idx
    mask = torch.zeros(n, dtype=torch.bool, device=train_idx.device)
    for g in groups_:
        mask[torch.as_tensor(getattr(split, g), device=train_idx.device)] = True
    return train_idx[mask[train_idx]]


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def inference_seconds(fn, repeats: int = 3) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up, in seconds."""
    with torch.no_grad():
        fn()
        _synchronize()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            _synchronize()
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def inference_cost(models: dict, num_query: int = 10_000, repeats: int = 3) -> dict:
    """Seconds to classify ``num_query`` nodes: the teacher (a full-graph forward, the cost
    of any query on a transductive GCN, scaled to ``num_query`` nodes) versus the student
    (``xi_1``, top-K search over the bank, ``xi_2`` on the queried rows only).

    models: the ``"models"`` entry of :func:`run_cold_brew` with ``keep=True``.
    """
    teacher, student = models["GCN+SE (teacher)"], models["Cold Brew student"]
    x, adj = models["x"], models["adj"]
    n = x.shape[0]
    query = torch.arange(min(num_query, n), device=x.device)
    xq = x.rows(query) if isinstance(x, SparseMatrix) else x[query]
    teacher_s = inference_seconds(lambda: teacher(x, adj), repeats) * num_query / n
    student_s = inference_seconds(lambda: student(xq), repeats) * num_query / len(query)
    e_tilde = student.aggregate(xq)
    mlps_s = inference_seconds(lambda: (student.xi1(xq), student.xi2(xq, e_tilde)),
                               repeats) * num_query / len(query)
    scale = 1e4 / num_query
    return {"teacher_s_per_10k": teacher_s * scale, "student_s_per_10k": student_s * scale,
            "student_mlps_s_per_10k": mlps_s * scale,
            "student_over_teacher": student_s / teacher_s}


# --------------------------------------------------------------------------------------
# Widget: teacher vs student embeddings as edges disappear
# --------------------------------------------------------------------------------------


@torch.no_grad()
def edge_removal_frames(models: dict, fractions=(0.0, 0.25, 0.5, 0.75, 1.0), seed: int = 0,
                        max_points: int = 1200) -> dict:
    """Precompute the widget's frames: for each fraction ``f`` of the training graph's edges
    removed at random (nested: the edges gone at 0.25 are gone at 0.5 too), the teacher's
    embeddings of a sample of test nodes projected on the first two principal axes of the
    teacher's embeddings on the whole training graph, which nodes have become isolated, and
    the teacher's and the student's accuracy on the test nodes isolated at ``f``. The
    student's embeddings ``e_hat`` (which need no edge) are projected on the same axes.

    models: the ``"models"`` of :func:`run_cold_brew` with ``keep=True``.
    """
    fractions = [float(f) for f in fractions]
    if not fractions or any(not 0.0 <= f <= 1.0 for f in fractions):
        raise ValueError(f"fractions must be in [0, 1], got {fractions}")
    teacher, student = models["GCN+SE (teacher)"], models["Cold Brew student"]
    x, labels, split = models["x"], models["labels"], models["split"]
    test_idx = models["test_idx"]
    n, device = labels.shape[0], labels.device
    rng = np.random.default_rng(seed)
    sample = test_idx[torch.as_tensor(np.sort(rng.permutation(len(test_idx))[:max_points]),
                                      device=device)]
    mean, basis = pca_basis(teacher.embeddings(x, models["adj"])[sample])
    student_logits = student(x, models["e_tilde"])
    student_xy = (student.xi1(x)[sample] - mean) @ basis
    edges = split.train_edges
    order = rng.permutation(len(edges))
    num_classes = int(labels.max()) + 1
    frames = {}
    for f in fractions:
        kept = edges[np.sort(order[int(round(f * len(edges))):])]
        adj = normalized_adjacency(kept, n, device)
        emb = teacher.embeddings(x, adj)
        isolated = torch.as_tensor(node_degrees(kept, n) == 0, device=device)
        iso_test = test_idx[isolated[test_idx]]
        frames[f] = {
            "teacher_xy": ((emb[sample] - mean) @ basis).cpu().numpy(),
            "isolated": isolated[sample].cpu().numpy(),
            "teacher_acc": accuracy(emb[:, -num_classes:], labels, iso_test),
            "student_acc": accuracy(student_logits, labels, iso_test),
            "num_isolated_test": int(len(iso_test)),
        }
    points = np.concatenate([frames[fractions[0]]["teacher_xy"], student_xy.cpu().numpy()])
    low, high = np.percentile(points, [1, 99], axis=0)
    pad = 0.15 * (high - low)
    return {"labels": labels[sample].cpu().numpy(), "student_xy": student_xy.cpu().numpy(),
            "frames": frames, "num_classes": num_classes,
            "limits": np.stack([low - pad, high + pad])}


def draw_embedding_frame(fig, fraction: float, data: dict) -> None:
    """Widget draw function: teacher (left) and student (right) embeddings, PCA, coloured
    by class; nodes without any edge at this ``fraction`` of edges removed drawn as crosses."""
    import matplotlib.pyplot as plt

    frame = data["frames"][float(fraction)]
    colours = plt.get_cmap("tab20")(data["labels"] % 20)
    iso = frame["isolated"]
    panels = (("Teacher GCN+SE (needs edges)", frame["teacher_xy"], frame["teacher_acc"]),
              ("Cold Brew student (features only)", data["student_xy"], frame["student_acc"]))
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    for ax, (title, xy, acc) in zip(axes, panels, strict=True):
        ax.scatter(xy[~iso, 0], xy[~iso, 1], c=colours[~iso], s=6, alpha=0.5, linewidths=0)
        ax.scatter(xy[iso, 0], xy[iso, 1], c=colours[iso], s=22, marker="x", linewidths=0.9)
        ax.set_title(f"{title}\nacc. on {frame['num_isolated_test']} isolated test nodes: "
                     f"{100 * acc:.1f} %", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlim(data["limits"][:, 0])                    # fixed axes: frames compare
        ax.set_ylim(data["limits"][:, 1])
    axes[0].set_xlabel("PC 1 of the teacher's embeddings (full graph)", fontsize=8)
    axes[0].set_ylabel("PC 2", fontsize=8)
    fig.suptitle(f"{100 * fraction:.0f} % of the training graph's edges removed "
                 "(x = node left without any edge)", fontsize=10)
    fig.tight_layout()
