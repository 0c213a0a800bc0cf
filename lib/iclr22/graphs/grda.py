"""Graph-relational domain adaptation (GRDA) and the adversarial baselines it is compared with.

Paper: Zihao Xu, Hao He, Guang-He Lee, Yuyang Wang, Hao Wang, "Graph-Relational Domain
Adaptation", ICLR 2022, https://openreview.net/forum?id=kcwyXtt7yDJ (arXiv 2202.03628),
bib key ``xu2022grda``; official code github.com/Wang-ML-Lab/GRDA.

Idea. Classic adversarial domain adaptation (DANN) trains an encoder whose features fool a
discriminator that classifies the domain, which at equilibrium aligns *every* domain with every
other. GRDA is given a *domain graph* (adjacency ``A`` between domains, e.g. U.S. states that
share a border) and replaces the domain classifier with a *graph discriminator*: from two
encodings ``e_l`` (of a point of domain ``i``) and ``e_l'`` (domain ``j``) it predicts whether
``i`` and ``j`` are adjacent. At equilibrium the encodings carry no information about adjacency
beyond the graph's average: with a clique that is DANN's uniform alignment, with a chain the
middle domain's encodings are the mixture of its neighbours', and in general domains align
*according to the graph*.

The equations (numbering of the paper, Sections 3 and 4)::

    (1)  min_{E,F} max_D  L_f(E, F) - lambda_d L_d(D, E)
    (2)  L_f(E, F) = E^s[ h_p(F(E(x, u)), y) ]                 (source domains only)
    (3)  L_d(D, E) = E_{(l, l')}[ h(x_l, u_l, x_l', u_l') ],
         h = -A_ij log sigma(z_l^T z_l') - (1 - A_ij) log(1 - sigma(z_l^T z_l')),
         z_l = D(E(x_l, u_l))                                  (the graph discriminator)
    Lemma 4.1      the optimal D: sigma(D*(e)^T D*(e')) = E_{i~p(u|e), j~p(u|e')}[A_ij]
    Theorem 4.1    the game is at its optimum iff E_{i~p(u|e), j~p(u|e')}[A_ij] = alpha
                   = E_{i,j}[A_ij] for all (e, e'): encodings reveal nothing about adjacency
    Corollary 4.1  clique: p(e | u_i) = p(e | u_j) for all i, j (DANN's uniform alignment)
    Corollary 4.2  star: the hub's p(e | u) is the average of the leaves'
    Corollary 4.3  chain 1-2-3: p(e | u_2) = (p(e | u_1) + p(e | u_3)) / 2

(``u`` is the domain's node embedding; ``E`` the encoder, ``F`` the predictor, ``D`` the
discriminator, ``lambda_d`` = :attr:`GRDAConfig.lambda_adv`.)

Implemented: encoder, predictor, graph discriminator and the balanced graph-reconstruction loss
with the official code's sub-graph sampling (random node sets or random-walk chains), Adam with
the official betas and per-epoch exponential decay that halves the learning rate every
``halve_every`` epochs, the official weight initialisation (N(0, 0.01) weights, zero biases) as
the config default, and fixed 2-D domain embeddings obtained, as in the official code, by
fitting ``sigmoid(u_i^T u_j) ~ A_ij``. Baselines with the same encoder/predictor: source-only,
DANN :cite:p:`ganin2016dann`, CDANN (class-conditional DANN), ADDA :cite:p:`tzeng2017adda` (the
official one-stage variant), MDD :cite:p:`zhang2019mdd` and CIDA :cite:p:`wang2020cida` (its
discriminator regresses the domain's embedding, the graph's continuous stand-in for CIDA's
domain index; CIDA is not in the paper's tables).

Several runs of one method (data draws, seeds) train *in lockstep* (:func:`train_many`): the
same networks, one per run, evaluated with ``torch.func.vmap`` over stacked parameters. Adam
is element-wise, so this is mathematically ``M`` independent runs, computed in fewer, larger
kernels; the floating-point rounding differs from training each run alone, which DG-60's 500
adversarial epochs amplify (the chapter shows by how much), so :func:`run_cached` trains one run
at a time.

Deviations from the paper (for a 2-core CPU; the chapter says so):

* :func:`cpu_config`: width 64 instead of 512, learning rate 1e-3 instead of 1e-4 (DG-60: 1e-5),
  PyTorch's default initialisation (the official N(0, 0.01) weights do not train at width 64),
  and on DG-15 and the U.S. task fewer epochs than the official 500 (the decay still halves the
  learning rate every fifth of training); DG-60 uses the official 500 epochs;
* training runs on one CPU thread (:data:`CPU_THREADS`): the networks are tiny;
* DG-60 at the official 500 epochs costs about a CPU-minute a run, so the chapter runs GRDA
  and DANN on 3 draws and the other baselines on one (:func:`run_plan`), each through
  :func:`run_cached` (per-domain scores stored in :mod:`iclr22.cache`): the book's executor
  starts from an empty cache, so the committed run trains all ten, and a reader's later
  executions read them back;
* the predictor outputs logits with the plain cross-entropy (official: log(softmax + 1e-4)).

Deviation from the official code (``model/model.py``, read for this module): its ``__optimize__``
calls ``loss_D.backward()``, zeroes only the encoder/predictor optimiser, then back-propagates
``loss_E = loss_E_pred - lambda * loss_D`` through the *same* discriminator forward pass, so D
steps along ``(1 - lambda) * grad(loss_D)``: zero at ``lambda = 1`` (its DG-15 config) for GRDA
and DANN (CDANN and MDD likewise; ADDA's D gets ``grad loss_D + lambda * grad(-log D(e_tgt))``).
Here D and E/F are updated alternately within a step (D first, on detached encodings, with its
own optimiser; then E/F against the updated D), which is the game (1) the paper describes.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import cache, checks, claims, runtime
from ..claims import PaperValue
from ..data.dg_domains import DomainGraphData
from ..viz.projection import pca_2d
from ..viz.style import fit_title, legend

METHODS = ("so", "dann", "cdann", "adda", "mdd", "cida", "grda")
METHOD_NAMES = {"so": "Source-only", "dann": "DANN", "cdann": "CDANN", "adda": "ADDA",
                "mdd": "MDD", "cida": "CIDA", "grda": "GRDA"}
CLASSIFICATION_ONLY = ("cdann", "mdd")
#: torch threads while training on a CPU: the networks are tiny, so intra-op threads only add
#: overhead (measured on the 2-core book machine: 6 s with 1 thread, 139 s with 2 when busy).
CPU_THREADS = 1

#: The official configs' game settings per benchmark (``configs/config_random_{15,60}_new.py``);
#: the U.S. task uses DG-60's lambda (nothing tuned on target labels) and 24 sampled domains.
BENCHMARKS = {"DG-15": dict(lambda_adv=1.0, sample_v=10),
              "DG-60": dict(lambda_adv=0.5, sample_v=30),
              "US income": dict(lambda_adv=0.5, sample_v=24)}

_T1, _T2 = "Table 1", "Table 2"
_EW, _NS = "TPT-48 E(24)->W(24), MSE", "TPT-48 N(24)->S(24), MSE"
#: The paper's numbers: target-domain accuracy (%) on DG-15/DG-60 (Table 1) and the MSE over
#: all 24 target domains of TPT-48 (Table 2; our U.S. task is a stand-in, not TPT-48).
PAPER = {
    "DG-15/so": PaperValue(39.77, _T1, "DG-15"), "DG-15/dann": PaperValue(72.11, _T1, "DG-15"),
    "DG-15/adda": PaperValue(69.00, _T1, "DG-15"), "DG-15/cdann": PaperValue(72.44, _T1, "DG-15"),
    "DG-15/mdd": PaperValue(51.33, _T1, "DG-15"), "DG-15/grda": PaperValue(84.44, _T1, "DG-15"),
    "DG-60/so": PaperValue(38.39, _T1, "DG-60"), "DG-60/dann": PaperValue(61.98, _T1, "DG-60"),
    "DG-60/adda": PaperValue(32.17, _T1, "DG-60"), "DG-60/cdann": PaperValue(61.70, _T1, "DG-60"),
    "DG-60/mdd": PaperValue(66.24, _T1, "DG-60"), "DG-60/grda": PaperValue(96.76, _T1, "DG-60"),
    "E->W/so": PaperValue(1.926, _T2, _EW), "E->W/dann": PaperValue(2.679, _T2, _EW),
    "E->W/adda": PaperValue(2.254, _T2, _EW), "E->W/cdann": PaperValue(2.108, _T2, _EW),
    "E->W/mdd": PaperValue(1.335, _T2, _EW), "E->W/grda": PaperValue(1.297, _T2, _EW),
    "N->S/so": PaperValue(2.426, _T2, _NS), "N->S/dann": PaperValue(2.600, _T2, _NS),
    "N->S/adda": PaperValue(2.709, _T2, _NS), "N->S/cdann": PaperValue(2.621, _T2, _NS),
    "N->S/mdd": PaperValue(2.054, _T2, _NS), "N->S/grda": PaperValue(1.165, _T2, _NS),
}


@dataclass
class GRDAConfig:
    """Settings of one run; defaults are the official DG-15 config (``config_random_15_new``)."""

    method: str = "grda"
    hidden: int = 512          # nh: width of E, F and D
    embed_dim: int = 2         # nt: dimension of the domain (node) embedding u
    disc_dim: int = 2          # nd_out: dimension of D's graph embedding z = D(e)
    lambda_adv: float = 1.0    # lambda_d of eq. (1) (lambda_gan): 1 for DG-15, 0.5 for DG-60
    lr: float = 1e-4           # lr_e = lr_d
    beta1: float = 0.9
    epochs: int = 500
    halve_every: int = 100     # epochs over which the learning rate halves (gamma = 0.5**(1/100))
    batch_size: int = 10       # points per domain per step
    sample_v: int = 10         # domains sampled per step for the graph loss (DG-60: 30)
    lambda_src: float = 0.5    # MDD only
    lambda_tgt: float = 0.5    # MDD only
    snapshot_epochs: Sequence[int] = field(default_factory=tuple)
    grid_domains: Sequence[int] = field(default_factory=tuple)  # 2-D inputs: boundary snapshots
    init_std: float | None = 0.01  # official N(0, 0.01) init; None keeps PyTorch's default
    seed: int = 0


def cpu_config(method: str, benchmark: str, *, epochs: int, seed: int = 0,
               **overrides) -> GRDAConfig:
    """The chapter's CPU-scale setting of ``method`` on ``benchmark`` (a key of BENCHMARKS).

    Width 64, learning rate 1e-3, PyTorch's initialisation, the official game settings of the
    benchmark, and the learning rate halving every fifth of ``epochs`` (500 -> every 100, the
    official schedule).
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {sorted(BENCHMARKS)}, got {benchmark!r}")
    settings = dict(hidden=64, lr=1e-3, init_std=None, halve_every=max(1, epochs // 5),
                    **BENCHMARKS[benchmark])
    settings.update(overrides)
    return GRDAConfig(method=method, epochs=epochs, seed=seed, **settings)


def _check_config(config: GRDAConfig) -> None:
    if not isinstance(config, GRDAConfig):
        raise TypeError(f"config must be a GRDAConfig, got {type(config).__name__}")
    if config.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {config.method!r}")
    checks.positive_ints(config, ("hidden", "embed_dim", "disc_dim", "epochs", "halve_every",
                                  "batch_size"))
    checks.positive_int("sample_v", config.sample_v, minimum=2)
    if not (config.lr > 0 and config.lambda_adv >= 0):
        raise ValueError(f"lr must be > 0 and lambda_adv >= 0, got {config.lr}, "
                         f"{config.lambda_adv}")
    if any(not 0 <= e < config.epochs for e in config.snapshot_epochs):
        raise ValueError(f"snapshot_epochs must lie in [0, {config.epochs}), "
                         f"got {config.snapshot_epochs}")


# ----------------------------------------------------------------------------- networks
#
# Every network holds ``M`` independent runs (data draws, seeds) of one method: its weights
# carry a leading run axis and every tensor a leading (M, ...) axis. Runs never mix: run m's
# outputs depend on run m's weights and inputs only, and Adam is element-wise, so training the
# stack is exactly M separate trainings, in fewer and larger kernels (``torch.baddbmm``).

class StackedLinear(nn.Module):
    """M independent ``nn.Linear`` layers. Shapes: x (M, ..., num_in) -> (M, ..., num_out)."""

    def __init__(self, num_runs: int, num_in: int, num_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_runs, num_in, num_out))
        self.bias = nn.Parameter(torch.empty(num_runs, 1, num_out))

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1, x.shape[-1])               # (M, N, num_in)
        out = torch.baddbmm(self.bias, flat, self.weight)           # (M, N, num_out)
        return out.reshape(*x.shape[:-1], out.shape[-1])            # (M, ..., num_out)


def mlp(num_runs: int, sizes: Sequence[int], *, last_relu: bool = False) -> nn.Sequential:
    """Stacked linear layers with ReLU between them (and after the last if ``last_relu``)."""
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(StackedLinear(num_runs, a, b))
        if k < len(sizes) - 2 or last_relu:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """e = E(x, u): the official FeatureNet.

    Shapes: x (M, ..., num_features), u (M, ..., embed_dim) -> e (M, ..., hidden).
    """

    def __init__(self, num_runs: int, num_features: int, embed_dim: int, hidden: int):
        super().__init__()
        self.x_net = mlp(num_runs, [num_features, hidden], last_relu=True)
        self.u_net = mlp(num_runs, [embed_dim, hidden, hidden], last_relu=True)
        self.joint = mlp(num_runs, [2 * hidden, 2 * hidden, 2 * hidden, 2 * hidden, hidden])

    def forward(self, x: Tensor, u: Tensor) -> Tensor:
        return self.joint(torch.cat([self.x_net(x), self.u_net(u)], dim=-1))


def predictor(num_runs: int, hidden: int, num_outputs: int) -> nn.Sequential:
    """y_hat = F(e): the official PredNet (two hidden layers). Shapes: (M, ..., hidden) ->
    (M, ..., num_outputs)."""
    return mlp(num_runs, [hidden, hidden, hidden, num_outputs])


def discriminator(method: str, num_runs: int, hidden: int, *, num_domains: int,
                  num_classes: int, embed_dim: int, disc_dim: int) -> nn.Module | None:
    """The adversary of each method (five hidden layers as in the official code).

    Shapes: (M, ..., hidden [+ num_classes for CDANN]) -> GRDA (M, ..., disc_dim) graph
    embedding z, DANN/CDANN (M, ..., num_domains) domain logits, ADDA (M, ..., 1), CIDA
    (M, ..., embed_dim), MDD (M, ..., num_classes).
    """
    if method == "so":
        return None
    if method == "mdd":  # auxiliary classifier F', same shape as F
        return predictor(num_runs, hidden, num_classes)
    num_inputs = hidden + (num_classes if method == "cdann" else 0)
    num_out = {"grda": disc_dim, "dann": num_domains, "cdann": num_domains, "adda": 1,
               "cida": embed_dim}[method]
    return mlp(num_runs, [num_inputs] + [hidden] * 5 + [num_out])


class DomainAdaptationModel(nn.Module):
    """Encoder, predictor and adversary of M runs, and their fixed domain embeddings ``u``
    (a buffer, (M, D, k)). Run m is initialised from ``seeds[m]`` alone."""

    def __init__(self, config: GRDAConfig, num_features: int, num_outputs: int,
                 embedding: Tensor, seeds: Sequence[int] | None = None):
        super().__init__()
        embedding = embedding[None] if embedding.dim() == 2 else embedding   # (M, D, k)
        num_runs, num_domains = embedding.shape[:2]
        seeds = [config.seed] * num_runs if seeds is None else list(seeds)
        if len(seeds) != num_runs:
            raise ValueError(f"{len(seeds)} seeds for {num_runs} embeddings")
        self.method, self.seeds = config.method, seeds
        self.register_buffer("embedding", embedding.float())
        self.encoder = Encoder(num_runs, num_features, config.embed_dim, config.hidden)
        self.predictor = predictor(num_runs, config.hidden, num_outputs)
        self.adversary = discriminator(config.method, num_runs, config.hidden,
                                       num_domains=num_domains, num_classes=num_outputs,
                                       embed_dim=config.embed_dim, disc_dim=config.disc_dim)
        self._initialise(config.init_std)

    @property
    def num_runs(self) -> int:
        return self.embedding.shape[0]

    @torch.no_grad()
    def _initialise(self, init_std: float | None) -> None:
        """Run m's layers, in order, from a generator seeded with ``seeds[m]``: N(0, init_std)
        weights and zero biases (official ``__init_weight__``), or with ``init_std=None``
        PyTorch's nn.Linear default U(-1/sqrt(num_in), 1/sqrt(num_in)) for both."""
        layers = [m for m in self.modules() if isinstance(m, StackedLinear)]
        for run, seed in enumerate(self.seeds):
            generator = torch.Generator().manual_seed(int(seed))
            for layer in layers:
                weight, bias = layer.weight[run], layer.bias[run]
                if init_std is None:
                    bound = 1 / math.sqrt(weight.shape[0])
                    weight.uniform_(-bound, bound, generator=generator)
                    bias.uniform_(-bound, bound, generator=generator)
                else:
                    weight.normal_(0.0, init_std, generator=generator)
                    bias.zero_()

    def encode(self, x: Tensor, domain: Tensor) -> Tensor:
        """Shapes: x (M, ..., F) and domain (M, ...) int -> e (M, ..., hidden)."""
        return self.encoder(x, domain_embeddings(self.embedding, domain))

    def forward(self, x: Tensor, domain: Tensor) -> Tensor:
        """Predictions (logits or regression outputs). Shapes: (M, ..., F), (M, ...) ->
        (M, ..., C)."""
        return self.predictor(self.encode(x, domain))

    def run(self, index: int) -> DomainAdaptationModel:
        """A copy holding run ``index`` alone (M = 1)."""
        one = copy.deepcopy(self)
        for module in one.modules():
            if isinstance(module, StackedLinear):
                module.weight = nn.Parameter(module.weight.data[index:index + 1].clone())
                module.bias = nn.Parameter(module.bias.data[index:index + 1].clone())
        one.embedding = self.embedding[index:index + 1].clone()
        one.seeds = [self.seeds[index]]
        return one


def domain_embeddings(embedding: Tensor, domain: Tensor) -> Tensor:
    """u of every point. Shapes: embedding (M, D, k), domain (M, ...) -> (M, ..., k)."""
    m, k = embedding.shape[0], embedding.shape[-1]
    u = torch.take_along_dim(embedding, domain.reshape(m, -1, 1), dim=1)   # (M, N, k)
    return u.reshape(*domain.shape, k)                                      # (M, ..., k)


def take_domains(t: Tensor, ids: Tensor) -> Tensor:
    """Rows ``ids`` of every run. Shapes: t (M, D, ...), ids (M, S) -> (M, S, ...)."""
    return t[torch.arange(t.shape[0], device=t.device)[:, None], ids]


# ----------------------------------------------------------------------------- domain embedding

def check_adjacency(adjacency: np.ndarray | Tensor) -> np.ndarray:
    """``adjacency`` as int64 after checking it is a 0/1 symmetric (D, D) with D >= 2."""
    a = np.asarray(adjacency.cpu() if isinstance(adjacency, Tensor) else adjacency)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
        raise ValueError(f"adjacency must be a square (D, D) matrix with D >= 2, got {a.shape}")
    if not np.isin(a, (0, 1)).all() or not (a == a.T).all():
        raise ValueError("adjacency must be symmetric with entries 0 or 1")
    return a.astype(np.int64)


def graph_embedding(adjacency: np.ndarray, dim: int = 2, steps: int = 1000, seed: int = 0,
                    device: torch.device | None = None) -> Tensor:
    """Node embeddings u with sigmoid(u_i^T u_j) ~ A_ij (the official GNet's loss_G).

    Shapes: adjacency (D, D) 0/1 symmetric -> u (D, dim). Fitted by full-batch Adam on the
    mean binary cross-entropy over pairs i < j; deterministic given ``seed``.
    """
    a = check_adjacency(adjacency)
    key = (a.tobytes(), a.shape[0], dim, steps, seed, str(device or "cpu"))
    if key not in _EMBEDDINGS:   # deterministic: fitted once per graph and setting
        _EMBEDDINGS[key] = _fit_graph_embedding(a, dim, steps, seed, device)
    return _EMBEDDINGS[key].clone()


#: Fitted embeddings by (graph, dim, steps, seed, device): the chapter fits each graph once.
_EMBEDDINGS: dict[tuple, Tensor] = {}


def _fit_graph_embedding(a: np.ndarray, dim: int, steps: int, seed: int,
                         device: torch.device | None) -> Tensor:
    """The fit behind :func:`graph_embedding` (uncached). Shapes: a (D, D) -> (D, dim)."""
    generator = torch.Generator().manual_seed(seed)
    u = (0.1 * torch.randn(len(a), dim, generator=generator)).to(device or "cpu").requires_grad_()
    target = torch.as_tensor(a, dtype=torch.float32, device=u.device)
    i, j = torch.triu_indices(len(a), len(a), offset=1, device=u.device)
    optimizer = torch.optim.Adam([u], lr=0.05)
    with cpu_threads(u.device):
        for _ in range(steps):
            logits = (u[i] * u[j]).sum(-1)  # u_i^T u_j
            loss = F.binary_cross_entropy_with_logits(logits, target[i, j])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return u.detach().cpu()


# ----------------------------------------------------------------------------- GRDA's loss

def sample_subgraph(adjacency: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct domains: with prob. 1/2 uniformly, else random-walk chains (official code).

    A chain starts at a random unvisited node and moves to a random unvisited neighbour until
    it is stuck; then a new chain starts, until k nodes are chosen. Shapes: -> (k,) int64.
    """
    n = len(adjacency)
    if not 2 <= k <= n:
        raise ValueError(f"k must be in [2, {n}], got {k}")
    if rng.integers(2) == 0:
        return rng.choice(n, size=k, replace=False)
    visited = np.zeros(n, dtype=bool)
    chosen: list[int] = []
    while len(chosen) < k:
        node = int(rng.choice(np.flatnonzero(~visited)))
        while True:
            visited[node] = True
            chosen.append(node)
            options = np.flatnonzero(adjacency[node].astype(bool) & ~visited)
            if len(chosen) == k or len(options) == 0:
                break
            node = int(rng.choice(options))
    return np.array(chosen, dtype=np.int64)


def _check_graph_loss_inputs(z: Tensor, adjacency: Tensor, nodes: Tensor) -> None:
    if z.dim() != 3 or adjacency.shape != (z.shape[0], z.shape[0]):
        raise ValueError(f"z must be (D, B, k) and adjacency (D, D); got {tuple(z.shape)} and "
                         f"{tuple(adjacency.shape)}")
    if nodes.dim() != 1 or len(nodes) < 2 or len(torch.unique(nodes)) != len(nodes):
        raise ValueError(f"nodes must be >= 2 distinct domain ids, got {nodes.tolist()}")


def graph_reconstruction_loss(z: Tensor, adjacency: Tensor, nodes: Tensor) -> Tensor:
    """GRDA's discriminator loss L_d of eq. (3) on the domains ``nodes`` of one run, balanced
    as in the official code.

    Shapes: z (D, B, k) graph embeddings z = D(e) of B points of every domain, adjacency (D, D)
    0/1, nodes (S,) distinct domain ids -> a scalar. For every pair a < b of ``nodes`` and every
    batch position n the logit is z[a, n]^T z[b, n]; the loss h of eq. (3) is averaged
    separately over adjacent and non-adjacent pairs, then
    L_d = D * (mean_adjacent + mean_non_adjacent) / 2 (a side with no pair contributes 0).
    """
    _check_graph_loss_inputs(z, adjacency, nodes)
    return graph_loss(z[None], adjacency[None], nodes[None])[0]


def graph_loss(z: Tensor, adjacency: Tensor, nodes: Tensor) -> Tensor:
    """:func:`graph_reconstruction_loss` of M runs at once (no checks).

    Shapes: z (M, D, B, k), adjacency (M, D, D), nodes (M, S) -> (M,).
    """
    zs = take_domains(z, nodes)                            # (M, S, B, k)
    logits = torch.einsum("manc,mbnc->mabn", zs, zs)       # z_a^T z_b per batch position n
    a, b = torch.triu_indices(nodes.shape[1], nodes.shape[1], offset=1, device=z.device)
    rows = torch.arange(z.shape[0], device=z.device)[:, None]
    labels = adjacency[rows, nodes[:, a], nodes[:, b]].to(z.dtype)   # A_ab, (M, P)
    logits = logits[:, a, b]                               # (M, P, B)
    # eq. (3): h = -A log sigmoid(z_a^T z_b) - (1 - A) log(1 - sigmoid(z_a^T z_b))
    h = F.binary_cross_entropy_with_logits(
        logits, labels[..., None].expand_as(logits), reduction="none").mean(2)   # (M, P)
    adjacent, apart = labels, 1 - labels
    mean_adjacent = (h * adjacent).sum(1) / adjacent.sum(1).clamp_min(1)
    mean_apart = (h * apart).sum(1) / apart.sum(1).clamp_min(1)
    return z.shape[1] * (mean_adjacent + mean_apart) / 2


# ----------------------------------------------------------------------------- the game

@dataclass
class Batch:
    """One step's data of M runs, laid out by domain.

    Shapes: x (M, D, B, F); y (M, D, B) int or (M, D, B, T) float; domain (M, D, B); u
    (M, D, B, k) the domains' embeddings; source (M, S), target (M, D - S) domain ids;
    adjacency (M, D, D); nodes (M, sample_v) the sampled sub-graphs.
    """

    x: Tensor
    y: Tensor
    domain: Tensor
    u: Tensor
    source: Tensor
    target: Tensor
    adjacency: Tensor
    nodes: Tensor


def _per_run_mean(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).mean(1)                 # (M, ...) -> (M,)


def _cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-run mean cross-entropy. Shapes: logits (M, ..., C), labels (M, ...) -> (M,)."""
    flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                           reduction="none")                 # (M * N,)
    return flat.reshape(labels.shape[0], -1).mean(1)


def prediction_loss(out: Tensor, y: Tensor, regression: bool) -> Tensor:
    """L_f of eq. (2) on labelled points: cross-entropy (classes) or mean squared error.

    Shapes: out (M, S, B, C), y (M, S, B) or (M, S, B, C) -> (M,).
    """
    if regression:
        return _per_run_mean((out - y) ** 2)
    return _cross_entropy(out, y)


def _bce(logits: Tensor, label: float) -> Tensor:
    return _per_run_mean(F.binary_cross_entropy_with_logits(
        logits, torch.full_like(logits, label), reduction="none"))


def adversary_loss(method: str, adversary: nn.Module, e: Tensor, out: Tensor, batch: Batch,
                   config: GRDAConfig) -> Tensor:
    """The loss the adversary minimises and the encoder maximises (ADDA: see ``encoder_loss``).

    Shapes: e (M, D, B, h) encodings, out (M, D, B, C) predictions (both detached for the
    adversary's own step) -> (M,).
    """
    if method == "grda":
        return graph_loss(adversary(e), batch.adjacency, batch.nodes)      # L_d, eq. (3)
    if method in ("dann", "cdann"):
        inputs = e if method == "dann" else torch.cat([e, out.softmax(-1).detach()], -1)
        return _cross_entropy(adversary(inputs), batch.domain)             # -log p(domain | e)
    if method == "cida":  # regress the domain's (continuous) embedding from e
        return _per_run_mean((adversary(e) - batch.u) ** 2)
    if method == "adda":  # D(e) = p(source | e): -log D(e_source) - log(1 - D(e_target))
        return (_bce(adversary(take_domains(e, batch.source)), 1.0)
                + _bce(adversary(take_domains(e, batch.target)), 0.0))
    if method == "mdd":  # F' agrees with F on source, disagrees on target
        guess = out.argmax(-1).detach()                                     # (M, D, B)
        p = adversary(e).softmax(-1)
        agree = _nll(torch.log(take_domains(p, batch.source) + 1e-10),
                     take_domains(guess, batch.source))
        disagree = _nll(torch.log(1 - take_domains(p, batch.target) + 1e-10),
                        take_domains(guess, batch.target))
        weights = config.lambda_src + config.lambda_tgt
        return (config.lambda_src * agree + config.lambda_tgt * disagree) / weights
    raise ValueError(f"method {method!r} has no adversary")


def _nll(log_p: Tensor, labels: Tensor) -> Tensor:
    """Per-run mean of -log_p[label]. Shapes: (M, ..., C), (M, ...) -> (M,)."""
    picked = torch.take_along_dim(log_p, labels[..., None], dim=-1)[..., 0]
    return -_per_run_mean(picked)


def encoder_loss(method: str, adversary: nn.Module | None, e: Tensor, out: Tensor,
                 batch: Batch, config: GRDAConfig, regression: bool) -> tuple[Tensor, Tensor]:
    """(total, L_f): the E/F objective of eq. (1), L_f - lambda_d L_adv (ADDA: L_f + lambda *
    its GAN loss). Shapes: e (M, D, B, h), out (M, D, B, C) with gradients -> two (M,)."""
    pred = prediction_loss(take_domains(out, batch.source), take_domains(batch.y, batch.source),
                           regression)                                       # eq. (2)
    if method == "so" or config.lambda_adv == 0:
        return pred, pred
    if method == "adda":  # target encodings should look like source: -log D(e_target)
        fool = _bce(adversary(take_domains(e, batch.target)), 1.0)
        return pred + config.lambda_adv * fool, pred
    # eq. (1): min_{E,F} max_D  L_f(E, F) - lambda_d L_d(D, E)
    adversarial = adversary_loss(method, adversary, e, out, batch, config)
    return pred - config.lambda_adv * adversarial, pred


def check_data(data: DomainGraphData) -> None:
    """Shapes and ranges of a :class:`DomainGraphData` (raises before any training)."""
    if not isinstance(data, DomainGraphData):
        raise TypeError(f"data must be a DomainGraphData, got {type(data).__name__}")
    check_adjacency(data.adjacency)
    n = data.adjacency.shape[0]
    if data.x.ndim != 2 or len(data.y) != len(data.x) or data.domain.shape != (len(data.x),):
        raise ValueError(f"x must be (N, F) with y and domain of length N; got {data.x.shape}, "
                         f"{data.y.shape}, {data.domain.shape}")
    counts = np.bincount(data.domain, minlength=n)
    if data.domain.min() < 0 or len(counts) != n or len(set(counts)) != 1:
        raise ValueError(f"every domain 0..{n - 1} must hold the same number of points; "
                         f"got {counts}")
    source = np.asarray(data.source)
    if len(source) == 0 or len(source) == n or not np.isin(source, np.arange(n)).all():
        raise ValueError(f"source must be a non-empty proper subset of 0..{n - 1}, got {source}")


def _check_runs(datasets: Sequence[DomainGraphData], seeds: Sequence[int],
                embeddings: Sequence[Tensor] | None, config: GRDAConfig) -> None:
    _check_config(config)
    if len(datasets) == 0 or len(datasets) != len(seeds):
        raise ValueError(f"need one seed per dataset, got {len(datasets)} datasets and "
                         f"{len(seeds)} seeds")
    for data in datasets:
        check_data(data)
    first = datasets[0]
    for data in datasets[1:]:
        if (data.x.shape, data.y.shape, len(data.source)) != (first.x.shape, first.y.shape,
                                                                len(first.source)):
            raise ValueError("runs trained together need datasets of one shape (x, y, number "
                             f"of sources); got {data.name} and {first.name}")
    for seed in seeds:
        checks.positive_int("seed", seed, minimum=0)
    if first.y.dtype.kind == "f" and config.method in CLASSIFICATION_ONLY:
        raise ValueError(f"method {config.method!r} needs class labels; data has float targets")
    if embeddings is not None:
        if len(embeddings) != len(datasets):
            raise ValueError(f"need one embedding per dataset, got {len(embeddings)}")
        for u in embeddings:
            if tuple(u.shape) != (first.num_domains, config.embed_dim):
                raise ValueError(f"embedding must be ({first.num_domains}, {config.embed_dim}),"
                                 f" got {tuple(u.shape)}")


def by_domain(data: DomainGraphData, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """The data grouped by domain. Shapes: x (D, N, F), y (D, N[, T]), domain (D, N)."""
    order = np.argsort(data.domain, kind="stable")
    n, m = data.num_domains, len(data.x) // data.num_domains
    x = torch.as_tensor(data.x[order], device=device).reshape(n, m, -1)       # (D, N, F)
    y = torch.as_tensor(data.y[order], device=device).reshape(n, m, *data.y.shape[1:])
    domain = torch.as_tensor(data.domain[order], device=device).reshape(n, m)  # (D, N)
    return x, y, domain


@dataclass
class Snapshot:
    """One run during training. Shapes: metric (D,); encoding (D, 10, hidden) of the first
    10 points of each domain; grid (G, steps^2) p(class 1) over :func:`boundary_grid` for the
    config's ``grid_domains`` (None when there are none)."""

    epoch: int
    metric: np.ndarray
    encoding: np.ndarray
    grid: np.ndarray | None


@dataclass
class RunResult:
    """One trained run. Shapes: per_domain (D,) accuracy (classes) or MSE (regression);
    loss_f, loss_adv (epochs,) per-epoch means; ``seconds`` is the wall time of the lockstep
    batch this run trained in, divided by the batch's size; ``model`` holds this run alone."""

    method: str
    dataset: str
    seed: int
    per_domain: np.ndarray
    target: float
    loss_f: list[float]
    loss_adv: list[float]
    snapshots: dict[int, Snapshot]
    seconds: float
    model: DomainAdaptationModel


@contextmanager
def cpu_threads(device: torch.device, n: int = CPU_THREADS) -> Iterator[None]:
    """Use ``n`` torch threads inside the block when ``device`` is a CPU; restore after."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Lockstep:
    """The data of M runs of one method, stacked by run: the state of :func:`train_many`."""

    def __init__(self, datasets: Sequence[DomainGraphData], config: GRDAConfig,
                 seeds: Sequence[int], embeddings: Sequence[Tensor], device: torch.device):
        first = datasets[0]
        self.config, self.device, self.datasets = config, device, list(datasets)
        self.regression = first.y.dtype.kind == "f"
        num_outputs = first.y.shape[1] if self.regression else int(
            max(int(d.y.max()) for d in datasets)) + 1
        self.model = DomainAdaptationModel(config, first.x.shape[1], num_outputs,
                                           torch.stack(list(embeddings)), seeds).to(device)
        self.rngs = [np.random.default_rng(seed) for seed in seeds]
        grouped = [by_domain(d, device) for d in datasets]
        self.x = torch.stack([g[0] for g in grouped])             # (M, D, N, F)
        self.y = torch.stack([g[1] for g in grouped])             # (M, D, N[, T])
        self.domain = torch.stack([g[2] for g in grouped])        # (M, D, N)
        self.source = torch.stack([torch.as_tensor(d.source, device=device) for d in datasets])
        self.target = torch.stack([torch.as_tensor(d.target, device=device) for d in datasets])
        self.adjacency = torch.stack([torch.as_tensor(d.adjacency, device=device)
                                      for d in datasets])         # (M, D, D)
        self.sample_v = min(config.sample_v, first.num_domains)

    def draw_batches(self) -> Iterator[Batch]:
        """One epoch of steps: every run shuffles its points and samples its sub-graphs."""
        m, d, n = self.domain.shape
        orders = torch.as_tensor(np.stack([rng.permutation(n) for rng in self.rngs]),
                                 device=self.device)              # (M, N)
        for start in range(0, n, self.config.batch_size):
            idx = orders[:, None, start:start + self.config.batch_size].expand(m, d, -1)
            x = torch.take_along_dim(self.x, idx[..., None], dim=2)          # (M, D, B, F)
            y = torch.take_along_dim(self.y, idx[..., None] if self.regression else idx, dim=2)
            domain = torch.take_along_dim(self.domain, idx, dim=2)          # (M, D, B)
            nodes = torch.as_tensor(np.stack([
                sample_subgraph(self.datasets[k].adjacency, self.sample_v, rng)
                for k, rng in enumerate(self.rngs)]), device=self.device)   # (M, sample_v)
            yield Batch(x, y, domain, domain_embeddings(self.model.embedding, domain),
                        self.source, self.target, self.adjacency, nodes)


def _adversary_step(state: _Lockstep, opt_d: torch.optim.Optimizer, batch: Batch, e: Tensor,
                    out: Tensor) -> Tensor:
    """D descends its loss on detached encodings (its max in eq. (1)). Returns (M,) losses."""
    model = state.model
    loss_d = adversary_loss(model.method, model.adversary, e.detach(), out.detach(), batch,
                            state.config)
    opt_d.zero_grad()
    loss_d.sum().backward()   # runs are independent: the sum's gradient is each run's own
    opt_d.step()
    return loss_d.detach()


def _encoder_step(state: _Lockstep, opt_ef: torch.optim.Optimizer, batch: Batch, e: Tensor,
                  out: Tensor) -> Tensor:
    """E/F descend L_f - lambda_d L_adv against the updated D (D is not stepped here; its
    gradient from this pass is cleared before D's next step). Returns (M,) L_f."""
    model = state.model
    total, pred = encoder_loss(model.method, model.adversary, e, out, batch, state.config,
                               state.regression)
    opt_ef.zero_grad()
    total.sum().backward()
    opt_ef.step()
    return pred.detach()


def boundary_grid(limit: float = 2.5, steps: int = 41) -> Tensor:
    """A grid over [-limit, limit]^2 for drawing decision boundaries. Shapes: (steps^2, 2)."""
    axis = torch.linspace(-limit, limit, steps)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)


@torch.no_grad()
def _scores(model: DomainAdaptationModel, x: Tensor, y: Tensor, domain: Tensor,
            regression: bool) -> np.ndarray:
    """Per-domain accuracy or MSE of every run. Shapes: x (M, D, N, F) -> (M, D)."""
    model.eval()
    out = model(x, domain)
    model.train()
    if regression:
        return ((out - y) ** 2).mean(dim=(2, 3)).cpu().numpy()
    return (out.argmax(-1) == y).float().mean(2).cpu().numpy()


@torch.no_grad()
def _snapshots(state: _Lockstep, epoch: int) -> list[Snapshot]:
    """Every run's :class:`Snapshot` at ``epoch``."""
    model = state.model
    metric = _scores(model, state.x, state.y, state.domain, state.regression)
    encoding = model.encode(state.x[:, :, :10], state.domain[:, :, :10]).cpu().numpy()
    grid = None
    if state.config.grid_domains:
        m = model.num_runs
        points = boundary_grid().to(state.device)                        # (P, 2)
        ids = torch.as_tensor(list(state.config.grid_domains), device=state.device)
        x = points[None, None].expand(m, len(ids), -1, -1)               # (M, G, P, 2)
        domain = ids[None, :, None].expand(m, -1, len(points))           # (M, G, P)
        grid = model(x, domain).softmax(-1)[..., 1].cpu().numpy()        # (M, G, P)
    return [Snapshot(epoch, metric[k], encoding[k], None if grid is None else grid[k])
            for k in range(model.num_runs)]


def train_many(datasets: Sequence[DomainGraphData], config: GRDAConfig, seeds: Sequence[int],
               embeddings: Sequence[Tensor] | None = None,
               device: torch.device | None = None) -> list[RunResult]:
    """Train ``config.method`` once per (dataset, seed) pair, in lockstep; one result each.

    datasets: draws of one benchmark (same shapes). seeds: (M,) training seeds (initialisation,
    batch order and sub-graph samples of each run). embeddings: (M,) domain embeddings (D, k),
    default :func:`graph_embedding` of each graph. ``config.seed`` is not used here.
    """
    _check_runs(datasets, seeds, embeddings, config)
    device = torch.device(device) if device is not None else runtime.device()
    if embeddings is None:
        embeddings = [graph_embedding(d.adjacency, config.embed_dim) for d in datasets]
    start = time.perf_counter()
    with cpu_threads(device):
        state = _Lockstep(datasets, config, seeds, embeddings, device)
        loss_f, loss_adv, shots = _play(state)
        scores = _scores(state.model, state.x, state.y, state.domain, state.regression)
    seconds = (time.perf_counter() - start) / len(datasets)
    return [RunResult(config.method, d.name, int(seed), scores[k], target_score(scores[k], d),
                      loss_f[:, k].tolist(), loss_adv[:, k].tolist(),
                      {e: s[k] for e, s in shots.items()}, seconds, state.model.run(k))
            for k, (d, seed) in enumerate(zip(datasets, seeds, strict=True))]


def _optimisers(state: _Lockstep) -> tuple[torch.optim.Adam, torch.optim.Adam | None, list]:
    """Adam for E/F and for D (official betas), and the per-epoch exponential decay."""
    config, model = state.config, state.model
    betas = (config.beta1, 0.999)
    opt_ef = torch.optim.Adam([*model.encoder.parameters(), *model.predictor.parameters()],
                              lr=config.lr, betas=betas)
    opt_d = None
    if model.adversary is not None and config.lambda_adv > 0:
        opt_d = torch.optim.Adam(model.adversary.parameters(), lr=config.lr, betas=betas)
    gamma = 0.5 ** (1 / config.halve_every)  # lr halves every `halve_every` epochs
    schedulers = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=gamma)
                  for o in (opt_ef, opt_d) if o is not None]
    return opt_ef, opt_d, schedulers


def _play(state: _Lockstep) -> tuple[np.ndarray, np.ndarray, dict[int, list[Snapshot]]]:
    """The two-player loop of eq. (1): per step, D's step then E/F's step, for every run.

    Returns per-epoch mean L_f and adversary loss, each (epochs, M), and the snapshots.
    """
    config, model = state.config, state.model
    opt_ef, opt_d, schedulers = _optimisers(state)
    loss_f, loss_adv = np.zeros((config.epochs, model.num_runs)), np.zeros((config.epochs,
                                                                            model.num_runs))
    shots: dict[int, list[Snapshot]] = {}
    for epoch in runtime.progress(range(config.epochs), desc=f"{config.method} epochs"):
        sums, steps = torch.zeros(2, model.num_runs, device=state.device), 0
        for batch in state.draw_batches():
            e = model.encode(batch.x, batch.domain)   # one forward pass serves both players
            out = model.predictor(e)
            if opt_d is not None:
                sums[1] += _adversary_step(state, opt_d, batch, e, out)
            sums[0] += _encoder_step(state, opt_ef, batch, e, out)
            steps += 1
        for scheduler in schedulers:
            scheduler.step()
        loss_f[epoch], loss_adv[epoch] = (sums / steps).cpu().numpy()
        if epoch in config.snapshot_epochs:
            shots[epoch] = _snapshots(state, epoch)
    return loss_f, loss_adv, shots


def train(data: DomainGraphData, config: GRDAConfig, embedding: Tensor | None = None,
          device: torch.device | None = None) -> RunResult:
    """Train ``config.method`` on ``data`` with ``config.seed``: one :func:`train_many` run.

    embedding: (D, embed_dim) domain embeddings; default :func:`graph_embedding` of the graph.
    """
    _check_config(config)
    return train_many([data], config, [config.seed],
                      None if embedding is None else [embedding], device)[0]


def evaluate(model: DomainAdaptationModel, data: DomainGraphData,
             device: torch.device | None = None) -> np.ndarray:
    """Per-domain accuracy (classification) or mean squared error (regression) of a one-run
    model. Shapes: -> (D,)."""
    check_data(data)
    if model.num_runs != 1:
        raise ValueError(f"evaluate takes a one-run model (model.run(k)), got {model.num_runs}")
    device = device or next(model.parameters()).device
    x, y, domain = by_domain(data, device)
    return _scores(model, x[None], y[None], domain[None], data.y.dtype.kind == "f")[0]


def target_score(per_domain: np.ndarray, data: DomainGraphData) -> float:
    """Mean of a per-domain metric over the target domains."""
    return float(np.mean(np.asarray(per_domain)[data.target]))


# ----------------------------------------------------------------------------- experiments

@dataclass
class MethodScores:
    """One method over paired runs (the same draws and seeds for every method).

    Shapes: per_domain (R, D); target (R,) mean over target domains, in % for accuracy.
    ``datasets`` are the R draws the runs trained on.
    """

    method: str
    benchmark: str
    seeds: list[int]
    per_domain: np.ndarray
    target: np.ndarray
    seconds: float
    runs: list[RunResult]
    datasets: list[DomainGraphData]
    from_cache: int = 0   # runs read back from iclr22.cache (run_cached), not trained now

    def interval(self) -> tuple[float, float, float]:
        """Mean and 95 % Student-t interval of ``target`` over the runs (nan with one run)."""
        if len(self.target) < 2:
            return float(self.target[0]), float("nan"), float("nan")
        return claims.t_interval(self.target)


def run_methods(datasets: Sequence[DomainGraphData], seeds: Sequence[int],
                methods: Sequence[str], benchmark: str, *, epochs: int,
                device: torch.device | None = None,
                per_method: Mapping[str, Mapping] | None = None,
                **overrides) -> dict[str, MethodScores]:
    """Every method on the same (dataset, seed) pairs; one lockstep batch per method.

    Accuracy is reported in %, MSE as is. Embeddings are fitted once per graph and shared by
    every method (paired comparisons). per_method: extra config fields for some methods
    (e.g. snapshots for GRDA); overrides: config fields for all.
    """
    embeddings = _shared_embeddings(datasets)
    out = {}
    for method in methods:
        extra = {**overrides, **(per_method or {}).get(method, {})}
        config = cpu_config(method, benchmark, epochs=epochs, **extra)
        runs = train_many(datasets, config, seeds, embeddings, device)
        out[method] = _method_scores(method, benchmark, seeds, datasets,
                                     [r.per_domain for r in runs], [r.seconds for r in runs],
                                     runs)
    return out


def _shared_embeddings(datasets: Sequence[DomainGraphData]) -> list[Tensor]:
    """One fitted domain embedding per distinct graph, shared by every run on that graph."""
    fitted: dict[bytes, Tensor] = {}
    for d in datasets:
        key = d.adjacency.tobytes()
        if key not in fitted:
            fitted[key] = graph_embedding(d.adjacency, 2)
    return [fitted[d.adjacency.tobytes()] for d in datasets]


def _method_scores(method: str, benchmark: str, seeds: Sequence[int],
                   datasets: Sequence[DomainGraphData], per_domain: Sequence[np.ndarray],
                   seconds: Sequence[float], runs: list[RunResult]) -> MethodScores:
    """Stack R runs' per-domain metrics (D,) into a :class:`MethodScores` (accuracy in %)."""
    scale = 1.0 if datasets[0].y.dtype.kind == "f" else 100.0
    stacked = np.stack([np.asarray(p) for p in per_domain])                 # (R, D)
    target = np.array([target_score(p, d) for p, d in zip(stacked, datasets, strict=True)])
    return MethodScores(method, benchmark, [int(s) for s in seeds], stacked * scale,
                        target * scale, float(sum(seconds)), runs, list(datasets))


#: Part of every cached run's key (:func:`run_cached`): bump it when a change to the training
#: code changes what a run computes, so that old cached runs are not reused.
CACHE_VERSION = 1


def data_digest(data: DomainGraphData) -> str:
    """sha256 (16 hex digits) of a dataset's arrays: the data part of a cached run's key."""
    digest = hashlib.sha256()
    for array in (data.x, data.y, data.domain, data.adjacency, np.asarray(data.source)):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def cached_run_key(data: DomainGraphData, config: GRDAConfig, device: torch.device) -> dict:
    """Everything one run's result depends on, as plain JSON (its hash is the cache key)."""
    fields = {k: list(v) if isinstance(v, tuple) else v
              for k, v in asdict(config).items()}
    return {"version": CACHE_VERSION, "data": data_digest(data), "config": fields,
            "device": device.type, "threads": CPU_THREADS,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def run_plan(datasets: Sequence[DomainGraphData], seeds: Sequence[int],
             plan: Mapping[str, int], benchmark: str, *, epochs: int,
             device: torch.device | None = None, **overrides) -> dict[str, MethodScores]:
    """:func:`run_cached` of each method of ``plan`` on its first ``plan[method]`` (dataset,
    seed) pairs: e.g. ``{"grda": 3, "dann": 3, "mdd": 1}``. Methods with the same count are
    paired run for run (the same draws and seeds). overrides: config fields for all."""
    for method, count in plan.items():
        checks.positive_int(f"plan[{method!r}]", count)
        if count > len(datasets) or len(datasets) != len(seeds):
            raise ValueError(f"plan[{method!r}] = {count} needs that many (dataset, seed) pairs; "
                             f"got {len(datasets)} datasets and {len(seeds)} seeds")
    out = {}
    for method, count in plan.items():
        out |= run_cached(datasets[:count], seeds[:count], [method], benchmark, epochs=epochs,
                          device=device, **overrides)
    return out


def cache_summary(scores: Mapping[str, MethodScores], epochs: int) -> str:
    """One sentence: how many runs were read back from the cache and what they cost to make."""
    runs = sum(len(s.target) for s in scores.values())
    cached = sum(s.from_cache for s in scores.values())
    seconds = sum(s.seconds for s in scores.values())
    counts = ", ".join(f"{METHOD_NAMES[m]} x{len(s.target)}" for m, s in scores.items())
    return (f"{runs} runs at {epochs} epochs ({counts}): {cached} read back from the "
            f"artifact cache, {runs - cached} trained in this execution; computing them took "
            f"{seconds / 60:.1f} min of wall time.")


def run_cached(datasets: Sequence[DomainGraphData], seeds: Sequence[int],
               methods: Sequence[str], benchmark: str, *, epochs: int,
               device: torch.device | None = None, **overrides) -> dict[str, MethodScores]:
    """:func:`run_methods`, one run at a time, each loaded from :mod:`iclr22.cache` when a
    copy for its exact key (:func:`cached_run_key`: data, config, device, threads, CPU
    capability, :data:`CACHE_VERSION`) exists, else trained and stored.

    For long schedules (DG-60's 500 epochs, about a CPU-minute a run): the runs are computed
    once, by this function, and later executions read them back. Each run trains alone (a
    lockstep batch of one). That equals the same run inside a larger batch to float rounding
    (tested), but not always bit for bit: for GRDA the pairwise logits are computed with other
    kernels at another batch size (on DG-60 its losses part from epoch 3; DANN's stay
    identical), and over 500 adversarial epochs such differences grow until the two runs end
    apart, as runs on two machines do. Only results over draws carry over.
    ``MethodScores.seconds`` is the wall time the runs took when they were computed;
    ``MethodScores.runs`` is empty (only scores are cached, no models).
    """
    device = torch.device(device) if device is not None else runtime.device()
    if len(datasets) != len(seeds):
        raise ValueError(f"need one seed per dataset, got {len(datasets)} and {len(seeds)}")
    out = {}
    for method in methods:
        per_domain, seconds, trained = [], [], []
        for data, seed in zip(datasets, seeds, strict=True):
            config = cpu_config(method, benchmark, epochs=epochs, seed=int(seed), **overrides)

            def compute(data=data, config=config, trained=trained) -> dict:
                trained.append(config.seed)
                # the embedding is a deterministic function of the graph (in the key's data)
                run = train_many([data], config, [config.seed],
                                 [graph_embedding(data.adjacency, config.embed_dim)], device)[0]
                return {"per_domain": torch.as_tensor(run.per_domain),
                        "seconds": run.seconds}

            artifact = cache.load_or_compute(f"grda_run_{method}",
                                             cached_run_key(data, config, device), compute)
            per_domain.append(artifact["per_domain"].numpy())
            seconds.append(float(artifact["seconds"]))
        out[method] = replace(_method_scores(method, benchmark, seeds, datasets, per_domain,
                                             seconds, []),
                              from_cache=len(datasets) - len(trained))
    return out


def persistence_mse(data: DomainGraphData) -> float:
    """The U.S. task's trivial forecast "no change" (predict 0): its MSE on the targets."""
    target = np.isin(data.domain, data.target)
    return float((data.y[target] ** 2).mean())


def beats_claims(scores: Mapping[str, MethodScores], baselines: Sequence[str] | None = None,
                 *, paper_prefix: str, setting: str, better: str = "higher",
                 unit: str = "points", dataset: str = "") -> list[claims.Claim]:
    """"GRDA beats <baseline>" for each baseline (default: every other method that ran on
    GRDA's seeds), paired over the runs both sides share."""
    ours = scores["grda"]
    if baselines is None:
        baselines = [m for m, s in scores.items() if m != "grda" and s.seeds == ours.seeds]
    out = []
    for name in baselines:
        other = scores[name]
        if other.seeds != ours.seeds:
            raise ValueError(f"{name} ran on seeds {other.seeds}, GRDA on {ours.seeds}: a "
                             "claim needs paired runs")
        verb = "beats" if better == "higher" else "has lower MSE than"
        paper_base = PAPER.get(f"{paper_prefix}/{name}")
        note = "" if paper_base is not None else f" ({METHOD_NAMES[name]} is not in the paper)"
        out.append(claims.compare(
            f"GRDA {verb} {METHOD_NAMES[name]} on {dataset or ours.benchmark}{note}",
            ours.target, other.target, seeds=ours.seeds, setting=setting,
            names=("grda", name), better=better, unit=unit,
            paper=PAPER.get(f"{paper_prefix}/grda") if paper_base is not None else None,
            paper_baseline=paper_base))
    return out


def method_table(scores: Mapping[str, MethodScores], paper_prefix: str, *, digits: int = 1,
                 extra_rows: Mapping[str, float] | None = None):
    """Per method: the paper's number, our mean and 95 % interval, and the number of runs.

    extra_rows: reference values without runs (e.g. the persistence forecast), shown as is.
    """
    import pandas as pd

    rows = [{"method": name, "paper": np.nan, "ours (mean)": round(value, digits),
             "95% interval": "–", "runs": 0} for name, value in (extra_rows or {}).items()]
    for method, s in scores.items():
        mean, low, high = s.interval()
        paper = PAPER.get(f"{paper_prefix}/{method}")
        rows.append({"method": METHOD_NAMES[method],
                     "paper": np.nan if paper is None else paper.value,
                     "ours (mean)": round(mean, digits),
                     "95% interval": "–" if np.isnan(low) else
                     f"[{low:.{digits}f}, {high:.{digits}f}]",
                     "runs": len(s.target)})
    return pd.DataFrame(rows).set_index("method")


def nearest_source_distance(data: DomainGraphData) -> np.ndarray:
    """Angular distance (rad) of every domain from its nearest source domain, on the circle.

    Shapes: -> (D,); 0 for the sources.
    """
    if data.angle is None:
        raise ValueError(f"{data.name} has no domain angles")
    gap = np.abs(data.angle[:, None] - data.angle[None, data.source])    # (D, S)
    return np.minimum(gap, 2 * np.pi - gap).min(1)


def accuracy_by_distance(scores: MethodScores,
                         bins: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Target domains of every run, binned by distance from the nearest source.

    Returns (distance (T_all,), accuracy (T_all,), binned mean accuracy (len(bins) - 1,),
    nan for an empty bin).
    """
    dist = np.concatenate([nearest_source_distance(d)[d.target] for d in scores.datasets])
    acc = np.concatenate([p[d.target] for p, d in zip(scores.per_domain, scores.datasets,
                                                      strict=True)])
    which = np.digitize(dist, bins) - 1
    means = np.array([acc[which == b].mean() if (which == b).any() else np.nan
                      for b in range(len(bins) - 1)])
    return dist, acc, means


def chapter_metrics(benchmarks: Mapping[str, Mapping[str, MethodScores]],
                    us_runs: Mapping[str, Mapping[str, MethodScores]],
                    us_tasks: Mapping[str, DomainGraphData]) -> tuple[dict, dict]:
    """(metrics, paper) for :func:`iclr22.results.record`: each method's mean over its runs
    (accuracy in % on DG-15/DG-60, MSE on the U.S. task), the persistence MSE, and the paper's
    number for the same metric where Table 1 has one (TPT-48 is another dataset: not paired)."""
    metrics, paper = {}, {}
    for name, scores in benchmarks.items():
        for method, s in scores.items():
            key = f"{name}/{method}_target_acc_mean_over_{len(s.target)}"
            metrics[key] = round(float(s.target.mean()), 2)
            if f"{name}/{method}" in PAPER:
                paper[key] = PAPER[f"{name}/{method}"].value
    for split, scores in us_runs.items():
        prefix = "us_income_" + split.replace("->", "to")
        metrics[f"{prefix}/persistence_target_mse"] = round(persistence_mse(us_tasks[split]), 4)
        for method, s in scores.items():
            metrics[f"{prefix}/{method}_target_mse_mean_over_{len(s.target)}"] = round(
                float(s.target.mean()), 4)
    return metrics, paper


def chapter_labels(metrics: Mapping[str, float]) -> tuple[dict[str, str], dict[str, str]]:
    """``units`` and ``better`` of :func:`chapter_metrics`' keys for ``results.record``."""
    units = {k: "% target accuracy" if "_target_acc_" in k else "MSE on target domains"
             for k in metrics}
    better = {k: "higher" if "_target_acc_" in k else "lower" for k in metrics}
    return units, better


# ----------------------------------------------------------------------------- theory check

def conditional_adjacency(p_e_given_u: Tensor, adjacency: Tensor) -> Tensor:
    """E[A_ij | e, e'] for discrete encodings: the Bayes-optimal discriminator (Lemma 4.1).

    Shapes: p_e_given_u (D, K) rows p(e | u = i) over K encoding values (uniform prior over
    domains) -> (K, K) sum_ij p(i | e) p(j | e') A_ij.
    """
    joint = p_e_given_u / p_e_given_u.shape[0]                 # p(i, e)
    posterior = joint / joint.sum(0, keepdim=True).clamp_min(1e-12)   # p(i | e), (D, K)
    return posterior.T @ adjacency.to(posterior.dtype) @ posterior


def equilibrium_gap(p_e_given_u: Tensor, adjacency: Tensor) -> Tensor:
    """How far from GRDA's equilibrium (Theorem 4.1): the encoder's loss gap, >= 0, 0 iff
    optimal.

    The optimal D's expected loss is the conditional entropy H(A | e, e'); the encoder
    maximises it, and H(A | e, e') <= H(A) with equality iff E[A | e, e'] = E[A] = alpha for
    all (e, e') of positive probability. Shapes: (D, K), (D, D) -> a scalar
    H(A) - H(A | e, e') (nats).
    """
    def entropy(p: Tensor) -> Tensor:
        return -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p))   # 0 log 0 = 0

    a = adjacency.float()
    alpha = a.mean()                                           # E[A_ij], i, j uniform
    marginal = p_e_given_u.mean(0)                             # p(e), (K,)
    cond = conditional_adjacency(p_e_given_u, adjacency)       # Lemma 4.1
    return entropy(alpha) - (marginal[:, None] * marginal[None, :] * entropy(cond)).sum()


def solve_equilibrium(adjacency: np.ndarray, num_values: int = 8, steps: int = 3000,
                      seed: int = 0) -> Tensor:
    """Encoding distributions p(e | u) that minimise :func:`equilibrium_gap`.

    The encoder's side of the game with D at its optimum, solved by Adam on softmax logits
    from a random start: a numerical check of Theorem 4.1 for a given graph.
    Shapes: adjacency (D, D) -> (D, num_values).
    """
    a = torch.as_tensor(check_adjacency(adjacency))
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(len(a), num_values, generator=generator).requires_grad_()
    optimizer = torch.optim.Adam([logits], lr=0.05)
    with cpu_threads(torch.device("cpu")):
        for _ in range(steps):
            gap = equilibrium_gap(logits.softmax(1), a)
            optimizer.zero_grad()
            gap.backward()
            optimizer.step()
    return logits.detach().softmax(1)


def total_variation(p: Tensor) -> Tensor:
    """Pairwise total-variation distances between the rows of p. Shapes: (D, K) -> (D, D)."""
    return 0.5 * (p[:, None, :] - p[None, :, :]).abs().sum(-1)


def neighbour_mixture_error(p: Tensor, adjacency: np.ndarray, node: int) -> float:
    """max_e |p(e | node) - mean of p(e | j) over the node's neighbours j| (Corollaries 4.2,
    4.3: 0 for a star's hub and a chain's middle). Shapes: p (D, K)."""
    neighbours = np.flatnonzero(check_adjacency(adjacency)[node])
    return float((p[node] - p[neighbours].mean(0)).abs().max())


@dataclass
class EquilibriumCheck:
    """One graph's solved equilibrium: the gap of Theorem 4.1 (~0), the total-variation
    distances between domains (D, D), and the mixture error at ``node`` (Corollaries)."""

    graph: str
    gap: float
    tv: np.ndarray
    node: int
    mixture_error: float


def equilibrium_checks(graphs: Mapping[str, tuple[np.ndarray, int]], *, num_values: int = 6,
                       steps: int = 800, seed: int = 0) -> list[EquilibriumCheck]:
    """Solve the encoder's optimum for each ``{name: (adjacency, node)}``; check the theory."""
    out = []
    for name, (adjacency, node) in graphs.items():
        p = solve_equilibrium(adjacency, num_values=num_values, steps=steps, seed=seed)
        gap = equilibrium_gap(p, torch.as_tensor(adjacency)).item()
        out.append(EquilibriumCheck(name, abs(gap), total_variation(p).numpy(), node,
                                    neighbour_mixture_error(p, adjacency, node)))
    return out


def equilibrium_table(checks: Sequence[EquilibriumCheck]):
    """The checks as one DataFrame (gap, largest and smallest distance between domains, and
    the mixture error of the named node)."""
    import pandas as pd

    rows = []
    for c in checks:
        off = c.tv[~np.eye(len(c.tv), dtype=bool)]
        rows.append({"graph": c.graph, "H(A) - H(A|e,e') (nats)": round(c.gap, 5),
                     "largest TV between domains": round(float(off.max()), 3),
                     "smallest TV between domains": round(float(off.min()), 3),
                     "node": c.node, "max |p(e|node) - mean of neighbours'|":
                     round(c.mixture_error, 4)})
    return pd.DataFrame(rows).set_index("graph")


# ----------------------------------------------------------------------------- drawing

def draw_domain_graph(ax, positions: np.ndarray, adjacency: np.ndarray, values: np.ndarray,
                      source: np.ndarray, *, vmin: float = 0.5, vmax: float = 1.0,
                      cmap: str = "RdYlGn", labels: Sequence[str] | None = None,
                      node_size: float = 160.0):
    """Nodes at ``positions`` (D, 2) coloured by ``values`` (D,); sources drawn as black squares.

    Returns the scatter of the target nodes (for a colour bar).
    """
    i, j = np.nonzero(np.triu(adjacency, 1))
    for a, b in zip(i, j, strict=True):
        ax.plot(*positions[[a, b]].T, color="0.8", lw=0.6, zorder=1)
    is_source = np.isin(np.arange(len(positions)), source)
    ax.scatter(*positions[is_source].T, marker="s", s=node_size, c="k", zorder=2)
    points = ax.scatter(*positions[~is_source].T, s=node_size, c=values[~is_source], cmap=cmap,
                        vmin=vmin, vmax=vmax, edgecolors="k", linewidths=0.5, zorder=3)
    if labels is not None:
        for (px, py), text, src in zip(positions, labels, is_source, strict=True):
            ax.annotate(text, (px, py), ha="center", va="center", fontsize=6,
                        color="w" if src else "k", zorder=4)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    return points


def angle_positions(angle: np.ndarray) -> np.ndarray:
    """Layout of a DG graph: domain i at angle theta_i on the unit circle. Shapes: (D,) ->
    (D, 2)."""
    return np.stack([np.cos(angle), np.sin(angle)], 1)


def draw_datasets(fig, dg: Mapping[str, DomainGraphData]) -> None:
    """Top: the DG graphs on the circle (sources black). Bottom: three DG-15 domains' inputs.

    Laid out for the book's 7 in column (two rows; about 7 x 6.5 in).
    """
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 1.1])
    for k, (name, d) in enumerate(dg.items()):
        ax = fig.add_subplot(grid[0, k])
        small = d.num_domains <= 15
        draw_domain_graph(ax, angle_positions(d.angle), d.adjacency, np.ones(d.num_domains),
                          d.source, vmin=0, vmax=2, cmap="Greys",
                          labels=d.names if small else None, node_size=90 if small else 30)
        fit_title(ax, rf"{name}: domain $i$ at angle $\theta_i$", fontsize=9)
    ax = fig.add_subplot(grid[1, :])
    d = dg["DG-15"]
    for k, dom in enumerate(np.argsort(d.angle)[[0, 7, 14]]):
        for c, marker in ((0, "o"), (1, "x")):
            pts = d.x[(d.domain == dom) & (d.y == c)]
            ax.scatter(*pts.T, s=8, marker=marker, color=f"C{k}",
                       label=rf"domain {dom}, $\theta$ = {d.angle[dom]:.2f} rad"
                       if c == 0 else None)
    ax.set(xlabel=r"$x_1$ (standardised)", ylabel=r"$x_2$ (standardised)", aspect="equal")
    ax.set_title("DG-15 inputs of three domains (o: class 0, x: class 1)", fontsize=9)
    legend(ax, where="right", fontsize=8)
    fig.tight_layout()


def draw_accuracy_vs_distance(ax, scores: Mapping[str, MethodScores], *,
                              bins: np.ndarray | None = None, title: str = "") -> None:
    """Target accuracy against angular distance from the nearest source, per method: every
    target domain of every draw (dots) and the mean per distance bin (lines); the legend
    (method and number of runs) sits beside the axes."""
    bins = np.linspace(0, 2.0, 9) if bins is None else bins
    centres = (bins[:-1] + bins[1:]) / 2
    for k, (method, s) in enumerate(scores.items()):
        dist, acc, means = accuracy_by_distance(s, bins)
        colour = "k" if method == "grda" else f"C{k}"
        ax.scatter(dist, acc, s=6, color=colour, alpha=0.25, linewidths=0)
        runs = f"{len(s.target)} run" + ("s" if len(s.target) > 1 else "")
        ax.plot(centres, means, "-o", ms=3, color=colour, lw=2.2 if method == "grda" else 1.2,
                label=f"{METHOD_NAMES[method]} ({runs})")
    ax.axhline(50, color="0.6", lw=0.8, ls=":")
    ax.set(xlabel="angular distance from the nearest source (rad)",
           ylabel="target-domain accuracy (%)", ylim=(-3, 103))
    ax.set_title(title, fontsize=9)
    legend(ax, where="right", fontsize=8)


def draw_distance_figure(fig, panels: Sequence[tuple[Mapping[str, MethodScores],
                                                     np.ndarray, str]]) -> None:
    """One row per (scores, bins, title) of :func:`draw_accuracy_vs_distance` (7 in wide)."""
    axes = np.atleast_1d(fig.subplots(len(panels), 1))
    for ax, (scores, bins, title) in zip(axes, panels, strict=True):
        draw_accuracy_vs_distance(ax, scores, bins=bins, title=title)
    fig.tight_layout()


def distance_alt(panels: Mapping[str, Mapping[str, MethodScores]], far: float = 1.0) -> str:
    """Alt text of :func:`draw_distance_figure`: what it plots, and per benchmark and method
    the mean accuracy of the target domains within and beyond ``far`` rad of a source."""
    parts = []
    for name, scores in panels.items():
        cells = []
        for method, s in scores.items():
            dist, acc, _ = accuracy_by_distance(s, np.array([0.0, far, np.inf]))
            near = f"{acc[dist <= far].mean():.0f} %" if (dist <= far).any() else "none"
            beyond = f"{acc[dist > far].mean():.0f} %" if (dist > far).any() else "none"
            cells.append(f"{METHOD_NAMES[method]} {near} within, {beyond} beyond")
        parts.append(f"{name}: " + "; ".join(cells))
    return ("Target-domain accuracy (%) against angular distance (rad) from the nearest source "
            "domain, one panel per benchmark (DG-15 above, DG-60 below), a dot per target "
            "domain of every run and a line of bin means per method. Mean accuracy of target "
            f"domains within and beyond {far:g} rad: " + ". ".join(parts) + ".")


def graphs_alt(scores: Mapping[str, Mapping[str, MethodScores]],
               methods: Sequence[str]) -> str:
    """Alt text of :func:`draw_accuracy_on_graphs`: the layout and each panel's accuracy."""
    rows = []
    for name, by_method in scores.items():
        shown = [f"{METHOD_NAMES[m]} {by_method[m].target[0]:.1f} %" for m in methods
                 if m in by_method]
        rows.append(f"{name}: " + ", ".join(shown))
    return ("Domain graphs of the first draw of each benchmark (one row each), one panel per "
            "method, every target domain coloured by its accuracy from red (0) to green (1), "
            "source domains as black squares. Mean target accuracy per panel: "
            + "; ".join(rows) + ".")


def draw_accuracy_on_graphs(fig, scores: Mapping[str, Mapping[str, MethodScores]],
                            dg: Mapping[str, DomainGraphData], methods: Sequence[str]) -> None:
    """Per benchmark (rows) and method (columns): draw 0's accuracy per domain on its graph,
    with one colour bar below (about 7 x 5.5 in for 2 x 3 panels)."""
    axes = np.atleast_2d(fig.subplots(len(dg), len(methods)))
    points = None
    for row, (name, d) in enumerate(dg.items()):
        small = d.num_domains <= 15
        for ax, method in zip(axes[row], methods, strict=True):
            if method not in scores[name]:
                ax.set_axis_off()   # not run on this benchmark in this profile
                continue
            per_domain = scores[name][method].per_domain[0] / 100
            points = draw_domain_graph(ax, angle_positions(d.angle), d.adjacency, per_domain,
                                       d.source, vmin=0, vmax=1,
                                       labels=d.names if small else None,
                                       node_size=70 if small else 22)
            fit_title(ax, f"{METHOD_NAMES[method]}: {scores[name][method].target[0]:.1f} %",
                      fontsize=9)
        axes[row, 0].set_ylabel(f"{name}, first draw")
    fig.colorbar(points, ax=axes, orientation="horizontal", shrink=0.6, fraction=0.05,
                 pad=0.04, label="target-domain accuracy (fraction)")


def draw_training_snapshot(fig, epoch: int, result: RunResult, data: DomainGraphData,
                           grid_domains: Sequence[int]) -> None:
    """GRDA during training on a DG dataset, at ``epoch`` (a key of ``result.snapshots``).

    Top left: accuracy per domain on the domain graph. Top right: inputs of ``grid_domains``
    (o: class 0, x: class 1) with the learned boundary p(class 1) = 0.5 (solid) and the true
    one (dashed). Bottom: the encodings (first 10 points of each domain, 2-D PCA) coloured by
    the domain's angle. Laid out for the 7 in column (about 7 x 6.5 in).
    """
    shot = result.snapshots[epoch]
    grid = fig.add_gridspec(2, 2, height_ratios=[1.3, 1])
    graph, bounds, codes = (fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]),
                            fig.add_subplot(grid[1, :]))
    draw_domain_graph(graph, angle_positions(data.angle), data.adjacency, shot.metric,
                      data.source, labels=data.names, node_size=90)
    fit_title(graph, f"epoch {epoch + 1}: target accuracy "
              f"{100 * target_score(shot.metric, data):.0f} %", fontsize=9)
    _draw_boundaries(bounds, shot, data, grid_domains)
    flat = pca_2d(shot.encoding.reshape(-1, shot.encoding.shape[-1]))  # (D * 10, 2)
    hue = np.repeat(data.angle, shot.encoding.shape[1])
    points = codes.scatter(*flat.T, c=hue, cmap="twilight", s=5, vmin=0, vmax=2 * np.pi)
    codes.set_title(r"encodings (2-D PCA of 10 points per domain)", fontsize=9)
    codes.set(xlabel="PC 1", ylabel="PC 2", xticks=[], yticks=[])
    fig.colorbar(points, ax=codes, label=r"domain angle $\theta_i$ (rad)")
    fig.tight_layout()


def _draw_boundaries(ax, shot: Snapshot, data: DomainGraphData,
                     grid_domains: Sequence[int]) -> None:
    grid = boundary_grid().numpy()
    steps = int(round(np.sqrt(len(grid))))
    colours = ["tab:blue", "tab:orange", "tab:purple", "tab:brown"]
    gx, gy = grid[:, 0].reshape(steps, steps), grid[:, 1].reshape(steps, steps)
    for k, d in enumerate(grid_domains):
        colour = colours[k % len(colours)]
        pts, ys = data.x[data.domain == d], data.y[data.domain == d]
        for label, marker in ((0, "o"), (1, "x")):
            ax.scatter(*pts[ys == label].T, s=5, marker=marker, color=colour, alpha=0.5,
                       linewidths=0.6)
        ax.contour(gx, gy, shot.grid[k].reshape(steps, steps), levels=[0.5], colors=[colour],
                   linewidths=1.5)
        direction = pts[ys == 0].mean(0) - pts[ys == 1].mean(0)
        normal = np.array([-direction[1], direction[0]]) / np.linalg.norm(direction)
        middle = (pts[ys == 0].mean(0) + pts[ys == 1].mean(0)) / 2
        ax.plot(*(middle + np.outer([-3, 3], normal)).T, ls="--", color=colour, lw=0.8)
    ax.set(xlim=(-2.5, 2.5), ylim=(-2.5, 2.5), aspect="equal", xlabel=r"$x_1$",
           ylabel=r"$x_2$")
    fit_title(ax, "domains " + ", ".join(map(str, grid_domains))
              + ": learned boundary (solid), true (dashed)", fontsize=9)


def snapshot_drawer(result: RunResult, data: DomainGraphData,
                    grid_domains: Sequence[int]) -> Callable:
    """``draw(fig, epoch)`` for :func:`iclr22.viz.explore` over ``result.snapshots``."""
    def draw(fig, epoch: int) -> None:
        draw_training_snapshot(fig, epoch, result, data, grid_domains)
    return draw


def far_targets(data: DomainGraphData, count: int = 3) -> tuple[int, ...]:
    """The ``count`` target domains farthest (in angle) from the nearest source."""
    dist = nearest_source_distance(data)
    order = [int(i) for i in np.argsort(-dist) if i in set(data.target.tolist())]
    return tuple(sorted(order[:count], key=lambda i: data.angle[i]))


def with_snapshots(config: GRDAConfig, epochs: Sequence[int],
                   grid_domains: Sequence[int]) -> GRDAConfig:
    """``config`` recording :class:`Snapshot` s at ``epochs`` (those inside its schedule)."""
    return replace(config, snapshot_epochs=tuple(e for e in epochs if e < config.epochs),
                   grid_domains=tuple(grid_domains))
