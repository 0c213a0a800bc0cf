"""Graph-relational domain adaptation (GRDA) and the adversarial baselines it is compared with.

Paper: Zihao Xu, Hao He, Guang-He Lee, Yuyang Wang, Hao Wang, "Graph-Relational Domain
Adaptation", ICLR 2022, https://openreview.net/forum?id=kcwyXtt7yDJ (arXiv 2202.03628),
bib key ``xu2022grda``; official code github.com/Wang-ML-Lab/GRDA.

Idea. Classic adversarial domain adaptation (DANN) trains an encoder whose features fool a
discriminator that classifies the domain, which at equilibrium aligns *every* domain with every
other. GRDA is given a *domain graph* (adjacency ``A`` between domains, e.g. U.S. states that
share a border) and replaces the domain classifier with a *graph discriminator*: from two
encodings ``e_l`` (of a point of domain ``i``) and ``e_l'`` (domain ``j``) it predicts whether
``i`` and ``j`` are adjacent, ``A_hat_ij = sigmoid(D(e_l)^T D(e_l'))``. The encoder
``E(x, u)`` sees the input and its domain's node embedding ``u`` and plays
``min_{E,F} max_D  L_f(E, F) - lambda_d L_d(D, E)``. At equilibrium the encodings carry no
information about adjacency beyond the graph's average (Theorem 1 of the paper): with a clique
that is DANN's uniform alignment, with a chain the middle domain's encodings are the mixture of
its neighbours', and in general domains align *according to the graph*.

Implemented: encoder, predictor, graph discriminator and the balanced graph-reconstruction loss
with the official code's sub-graph sampling (random node sets or random-walk chains), Adam with
the official betas and per-epoch exponential decay that halves the learning rate every 100
epochs, the official weight initialisation (N(0, 0.01) weights, zero biases), and fixed 2-D
domain embeddings obtained, as in the official code, by fitting ``sigmoid(u_i^T u_j) ~ A_ij``.
Baselines with the same encoder/predictor: source-only, DANN :cite:p:`ganin2016dann`,
CDANN (class-conditional DANN), ADDA :cite:p:`tzeng2017adda` (the official one-stage variant),
MDD :cite:p:`zhang2019mdd` and CIDA :cite:p:`wang2020cida` (its discriminator regresses the
domain's embedding, the graph's continuous stand-in for CIDA's domain index).

Deviations (all for a 2-core CPU; say so in the chapter):

* the chapter uses width ``hidden=64`` instead of 512, 100 epochs instead of 500 and learning
  rate 1e-3 instead of 1e-4 (DG-60: 1e-5); the decay still halves it every fifth of training;
* PyTorch's default initialisation (``init_std=None``) in the chapter: the official N(0, 0.01)
  weights (the config default here) do not train at width 64 in 100 epochs;
* training runs on one CPU thread (:data:`CPU_THREADS`): the networks are tiny;
* D and E/F are updated alternately within a step (D first, on detached encodings; then E/F
  against the updated D). As we read the released code, it back-propagates ``-lambda L_d``
  into D's gradient as well (one backward pass for both players), so with ``lambda = 1`` (its
  DG-15 config) D's gradient cancels to zero for GRDA and DANN; we follow the paper's game;
* the predictor outputs logits and uses the plain cross-entropy (official: log(softmax + 1e-4)).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import runtime
from ..data.dg_domains import DomainGraphData
from ..viz.projection import pca_2d

METHODS = ("so", "dann", "cdann", "adda", "mdd", "cida", "grda")
METHOD_NAMES = {"so": "Source-only", "dann": "DANN", "cdann": "CDANN", "adda": "ADDA",
                "mdd": "MDD", "cida": "CIDA", "grda": "GRDA"}
CLASSIFICATION_ONLY = ("cdann", "mdd")
#: torch threads while training on a CPU: the networks are tiny, so intra-op threads only add
#: overhead (measured on the 2-core book machine: 6 s with 1 thread, 139 s with 2 when busy).
CPU_THREADS = 1


@dataclass
class GRDAConfig:
    """Settings of one run; defaults are the official DG-15 config (``config_random_15_new``)."""

    method: str = "grda"
    hidden: int = 512          # nh: width of E, F and D
    embed_dim: int = 2         # nt: dimension of the domain (node) embedding u
    disc_dim: int = 2          # nd_out: dimension of D's graph embedding z = D(e)
    lambda_adv: float = 1.0    # lambda_d (lambda_gan): 1 for DG-15, 0.5 for DG-60
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

    def check(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in ("hidden", "embed_dim", "disc_dim", "epochs", "halve_every", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        sample_v = self.sample_v
        if isinstance(sample_v, bool) or not isinstance(sample_v, int) or sample_v < 2:
            raise ValueError(f"sample_v must be an int >= 2, got {self.sample_v!r}")
        if not (self.lr > 0 and self.lambda_adv >= 0):
            raise ValueError(f"lr must be > 0 and lambda_adv >= 0, got {self.lr}, "
                             f"{self.lambda_adv}")
        if any(not 0 <= e < self.epochs for e in self.snapshot_epochs):
            raise ValueError(f"snapshot_epochs must lie in [0, {self.epochs}), "
                             f"got {self.snapshot_epochs}")


# ----------------------------------------------------------------------------- networks

def mlp(sizes: Sequence[int], *, last_relu: bool = False) -> nn.Sequential:
    """Linear layers with ReLU between them (and after the last if ``last_relu``)."""
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if k < len(sizes) - 2 or last_relu:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """e = E(x, u): the official FeatureNet. x: (..., F), u: (..., embed_dim) -> (..., hidden)."""

    def __init__(self, n_in: int, embed_dim: int, hidden: int):
        super().__init__()
        self.x_net = mlp([n_in, hidden], last_relu=True)
        self.u_net = mlp([embed_dim, hidden, hidden], last_relu=True)
        self.joint = mlp([2 * hidden, 2 * hidden, 2 * hidden, 2 * hidden, hidden])

    def forward(self, x: Tensor, u: Tensor) -> Tensor:
        return self.joint(torch.cat([self.x_net(x), self.u_net(u)], dim=-1))


def predictor(hidden: int, n_out: int) -> nn.Sequential:
    """y_hat = F(e): the official PredNet (two hidden layers). (..., hidden) -> (..., n_out)."""
    return mlp([hidden, hidden, hidden, n_out])


def discriminator(method: str, hidden: int, *, n_domains: int, n_classes: int,
                  embed_dim: int, disc_dim: int) -> nn.Module | None:
    """The adversary of each method (five hidden layers as in the official code)."""
    if method == "so":
        return None
    if method == "mdd":  # auxiliary classifier F', same shape as F
        return predictor(hidden, n_classes)
    n_in = hidden + (n_classes if method == "cdann" else 0)
    n_out = {"grda": disc_dim, "dann": n_domains, "cdann": n_domains, "adda": 1,
             "cida": embed_dim}[method]
    return mlp([n_in] + [hidden] * 5 + [n_out])


class DomainAdaptationModel(nn.Module):
    """Encoder, predictor, adversary and the fixed domain embeddings ``u`` (a buffer, (D, k))."""

    def __init__(self, config: GRDAConfig, n_in: int, n_out: int, embedding: Tensor):
        super().__init__()
        self.method = config.method
        self.register_buffer("embedding", embedding.float())
        self.encoder = Encoder(n_in, config.embed_dim, config.hidden)
        self.predictor = predictor(config.hidden, n_out)
        self.adversary = discriminator(config.method, config.hidden, n_domains=len(embedding),
                                       n_classes=n_out, embed_dim=config.embed_dim,
                                       disc_dim=config.disc_dim)
        for module in self.modules():  # official __init_weight__
            if isinstance(module, nn.Linear) and config.init_std is not None:
                nn.init.normal_(module.weight, mean=0.0, std=config.init_std)
                nn.init.zeros_(module.bias)

    def encode(self, x: Tensor, domain: Tensor) -> Tensor:
        """x: (..., F) and domain: (...) int -> e: (..., hidden)."""
        return self.encoder(x, self.embedding[domain])

    def forward(self, x: Tensor, domain: Tensor) -> Tensor:
        """Predictions (logits or regression outputs), (..., n_out)."""
        return self.predictor(self.encode(x, domain))


# ----------------------------------------------------------------------------- domain embedding

def graph_embedding(adjacency: np.ndarray, dim: int = 2, steps: int = 1000, seed: int = 0,
                    device: torch.device | None = None) -> Tensor:
    """Node embeddings u (D, dim) with sigmoid(u_i^T u_j) ~ A_ij (the official GNet's loss_G).

    adjacency: (D, D) 0/1 symmetric. Fitted by full-batch Adam on the mean binary
    cross-entropy over pairs i < j; deterministic given ``seed``.
    """
    a = check_adjacency(adjacency)
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


def check_adjacency(adjacency: np.ndarray | Tensor) -> np.ndarray:
    """``adjacency`` as int64 after checking it is a 0/1 symmetric (D, D) with D >= 2."""
    a = np.asarray(adjacency.cpu() if isinstance(adjacency, Tensor) else adjacency)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
        raise ValueError(f"adjacency must be a square (D, D) matrix with D >= 2, got {a.shape}")
    if not np.isin(a, (0, 1)).all() or not (a == a.T).all():
        raise ValueError("adjacency must be symmetric with entries 0 or 1")
    return a.astype(np.int64)


# ----------------------------------------------------------------------------- GRDA's loss

def sample_subgraph(adjacency: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct domains: with prob. 1/2 uniformly, else random-walk chains (official code).

    A chain starts at a random unvisited node and moves to a random unvisited neighbour until
    it is stuck; then a new chain starts, until k nodes are chosen. Returns (k,) int64.
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


def graph_reconstruction_loss(z: Tensor, adjacency: Tensor, nodes: Tensor) -> Tensor:
    """GRDA's discriminator loss L_d on the domains ``nodes`` (balanced as in the official code).

    z: (D, B, k) graph embeddings z = D(e) of B points of every domain; adjacency: (D, D) 0/1;
    nodes: (S,) distinct domain ids. For every pair a < b of ``nodes`` and every batch position
    n the logit is z[a, n]^T z[b, n]; the loss is the binary cross-entropy against A_ab,
    averaged separately over adjacent and non-adjacent pairs, then
    L_d = D * (mean_adjacent + mean_non_adjacent) / 2 (a side with no pair contributes 0).
    """
    if z.dim() != 3 or adjacency.shape != (z.shape[0], z.shape[0]):
        raise ValueError(f"z must be (D, B, k) and adjacency (D, D); got {tuple(z.shape)} and "
                         f"{tuple(adjacency.shape)}")
    if nodes.dim() != 1 or len(nodes) < 2 or len(torch.unique(nodes)) != len(nodes):
        raise ValueError(f"nodes must be >= 2 distinct domain ids, got {nodes.tolist()}")
    zs = z[nodes]                                      # (S, B, k)
    logits = torch.einsum("anc,bnc->abn", zs, zs)      # z_a^T z_b for each batch position n
    a, b = torch.triu_indices(len(nodes), len(nodes), offset=1, device=z.device)
    labels = adjacency[nodes[a], nodes[b]].float()     # A_ab, (P,)
    logits = logits[a, b]                              # (P, B)
    # h = -A log sigmoid(z_a^T z_b) - (1 - A) log(1 - sigmoid(z_a^T z_b))
    bce = F.binary_cross_entropy_with_logits(
        logits, labels[:, None].expand_as(logits), reduction="none").mean(1)
    sides = [bce[labels == value].mean() for value in (1.0, 0.0) if (labels == value).any()]
    return z.shape[0] * torch.stack(sides).sum() / 2


# ----------------------------------------------------------------------------- the game

@dataclass
class Batch:
    """One step's data laid out by domain: x (D, B, F), y (D, B) or (D, B, T), domain (D, B)."""

    x: Tensor
    y: Tensor
    domain: Tensor
    source: Tensor   # (D,) bool mask of labelled domains


def prediction_loss(out: Tensor, y: Tensor, regression: bool) -> Tensor:
    """L_f on labelled points: cross-entropy (classes) or mean squared error (regression)."""
    if regression:
        return F.mse_loss(out, y)
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def adversary_loss(model: DomainAdaptationModel, e: Tensor, out: Tensor, batch: Batch,
                   adjacency: Tensor, nodes: Tensor, config: GRDAConfig) -> Tensor:
    """The loss the adversary minimises and the encoder maximises (ADDA: see ``encoder_loss``).

    e: (D, B, h) encodings, out: (D, B, C) predictions (detached for the adversary's step).
    """
    method, adv = config.method, model.adversary
    if method == "grda":
        return graph_reconstruction_loss(adv(e), adjacency, nodes)        # L_d
    if method in ("dann", "cdann"):
        inputs = e if method == "dann" else torch.cat([e, out.softmax(-1).detach()], -1)
        logits = adv(inputs)                                              # p(domain | e)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.domain.reshape(-1))
    if method == "cida":  # regress the domain's (continuous) embedding from e
        return F.mse_loss(adv(e), model.embedding[batch.domain])
    if method == "adda":  # D(e) = p(source | e)
        src, tgt = adv(e[batch.source]).squeeze(-1), adv(e[~batch.source]).squeeze(-1)
        # -log D(e_source) - log(1 - D(e_target))
        return (F.binary_cross_entropy_with_logits(src, torch.ones_like(src))
                + F.binary_cross_entropy_with_logits(tgt, torch.zeros_like(tgt)))
    if method == "mdd":  # F' agrees with F on source, disagrees on target
        guess = out.argmax(-1).detach()
        p = adv(e).softmax(-1)
        agree = F.nll_loss(torch.log(p[batch.source] + 1e-10).reshape(-1, p.shape[-1]),
                           guess[batch.source].reshape(-1))
        disagree = F.nll_loss(torch.log(1 - p[~batch.source] + 1e-10).reshape(-1, p.shape[-1]),
                              guess[~batch.source].reshape(-1))
        weights = config.lambda_src + config.lambda_tgt
        return (config.lambda_src * agree + config.lambda_tgt * disagree) / weights
    raise ValueError(f"method {method!r} has no adversary")


def encoder_loss(model: DomainAdaptationModel, batch: Batch, adjacency: Tensor, nodes: Tensor,
                 config: GRDAConfig, regression: bool,
                 encoded: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """(total, L_f): the E/F objective L_f - lambda * L_adv (ADDA: L_f + lambda * GAN loss).

    encoded: (e, predictions) of ``batch`` if already computed (with gradients), else computed.
    """
    if encoded is None:
        e = model.encode(batch.x, batch.domain)
        encoded = (e, model.predictor(e))
    e, out = encoded
    pred = prediction_loss(out[batch.source], batch.y[batch.source], regression)
    if config.method == "so" or config.lambda_adv == 0:
        return pred, pred
    if config.method == "adda":  # target encodings should look like source: -log D(e_target)
        logit = model.adversary(e[~batch.source]).squeeze(-1)
        fool = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
        return pred + config.lambda_adv * fool, pred
    # min_{E,F} max_D  L_f(E, F) - lambda_d L_d(D, E)
    adversarial = adversary_loss(model, e, out, batch, adjacency, nodes, config)
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


def by_domain(data: DomainGraphData, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """x (D, M, F), y (D, M[, T]), domain (D, M): the data grouped by domain."""
    order = np.argsort(data.domain, kind="stable")
    n, m = data.n_domains, len(data.x) // data.n_domains
    x = torch.as_tensor(data.x[order], device=device).reshape(n, m, -1)
    y = torch.as_tensor(data.y[order], device=device).reshape(n, m, *data.y.shape[1:])
    domain = torch.as_tensor(data.domain[order], device=device).reshape(n, m)
    return x, y, domain


@torch.no_grad()
def evaluate(model: DomainAdaptationModel, data: DomainGraphData,
             device: torch.device | None = None) -> np.ndarray:
    """Per-domain accuracy (classification) or mean squared error (regression), (D,)."""
    device = device or next(model.parameters()).device
    model.eval()
    x, y, domain = by_domain(data, device)
    out = model(x, domain)
    model.train()
    if data.y.dtype.kind == "f":
        return ((out - y) ** 2).mean(dim=tuple(range(1, out.dim()))).cpu().numpy()
    return (out.argmax(-1) == y).float().mean(1).cpu().numpy()


def boundary_grid(limit: float = 2.5, steps: int = 41) -> Tensor:
    """A (steps * steps, 2) grid over [-limit, limit]^2 for drawing decision boundaries."""
    axis = torch.linspace(-limit, limit, steps)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)


@torch.no_grad()
def snapshot(model: DomainAdaptationModel, data: DomainGraphData, config: GRDAConfig,
             device: torch.device) -> dict[str, Tensor]:
    """Per-domain metric, encodings of the first 10 points of each domain, boundary grids."""
    x, _, domain = by_domain(data, device)
    model.eval()
    shot = {"metric": torch.as_tensor(evaluate(model, data, device)),
            "encoding": model.encode(x[:, :10], domain[:, :10]).cpu()}
    if config.grid_domains:
        grid = boundary_grid().to(device)
        ids = torch.as_tensor(list(config.grid_domains), device=device)
        out = model(grid[None].expand(len(ids), -1, -1), ids[:, None].expand(-1, len(grid)))
        shot["grid"] = out.softmax(-1)[..., 1].cpu()   # p(class 1), (G, steps^2)
    model.train()
    return shot


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


def train(data: DomainGraphData, config: GRDAConfig, embedding: Tensor | None = None,
          device: torch.device | None = None) -> tuple[DomainAdaptationModel, dict]:
    """Train ``config.method`` on ``data``; return the model and a history.

    history: "loss_f", "loss_adv" (per epoch means), "snapshots" {epoch: snapshot(...)}.
    embedding: (D, embed_dim) domain embeddings; default :func:`graph_embedding` of the graph.
    """
    check_data(data)
    config.check()
    regression = data.y.dtype.kind == "f"
    if regression and config.method in CLASSIFICATION_ONLY:
        raise ValueError(f"method {config.method!r} needs class labels; data has float targets")
    device = torch.device(device) if device is not None else runtime.device()
    with cpu_threads(device):
        return _train(data, config, embedding, device, regression)


def _train(data: DomainGraphData, config: GRDAConfig, embedding: Tensor | None,
           device: torch.device, regression: bool) -> tuple[DomainAdaptationModel, dict]:
    runtime.seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    if embedding is None:
        embedding = graph_embedding(data.adjacency, config.embed_dim, seed=config.seed)
    if embedding.shape != (data.n_domains, config.embed_dim):
        raise ValueError(f"embedding must be ({data.n_domains}, {config.embed_dim}), "
                         f"got {tuple(embedding.shape)}")
    n_out = data.y.shape[1] if regression else int(data.y.max()) + 1
    model = DomainAdaptationModel(config, data.x.shape[1], n_out, embedding).to(device)
    x, y, domain = by_domain(data, device)
    source = torch.zeros(data.n_domains, dtype=torch.bool, device=device)
    source[torch.as_tensor(data.source, device=device)] = True
    adjacency = torch.as_tensor(data.adjacency, device=device)
    betas = (config.beta1, 0.999)
    opt_ef = torch.optim.Adam([*model.encoder.parameters(), *model.predictor.parameters()],
                              lr=config.lr, betas=betas)
    optimizers = [opt_ef]
    if model.adversary is not None:
        opt_d = torch.optim.Adam(model.adversary.parameters(), lr=config.lr, betas=betas)
        optimizers.append(opt_d)
    gamma = 0.5 ** (1 / config.halve_every)  # lr halves every `halve_every` epochs
    schedulers = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=gamma) for o in optimizers]
    sample_v = min(config.sample_v, data.n_domains)
    history: dict = {"loss_f": [], "loss_adv": [], "snapshots": {}}
    per_domain = x.shape[1]
    for epoch in range(config.epochs):
        order = torch.as_tensor(rng.permutation(per_domain), device=device)
        sums = np.zeros(2)
        steps = 0
        for start in range(0, per_domain, config.batch_size):
            idx = order[start:start + config.batch_size]
            batch = Batch(x[:, idx], y[:, idx], domain[:, idx], source)
            nodes = torch.as_tensor(sample_subgraph(data.adjacency, sample_v, rng), device=device)
            adv_value = 0.0
            e = model.encode(batch.x, batch.domain)   # one forward pass serves both players
            out = model.predictor(e)
            if model.adversary is not None and config.lambda_adv > 0:
                loss_d = adversary_loss(model, e.detach(), out.detach(), batch, adjacency, nodes,
                                        config)
                opt_d.zero_grad()
                loss_d.backward()
                opt_d.step()   # D first; E/F below play against the updated D
                adv_value = loss_d.item()
            total, pred = encoder_loss(model, batch, adjacency, nodes, config, regression,
                                       encoded=(e, out))
            opt_ef.zero_grad()
            total.backward()
            opt_ef.step()
            sums += (pred.item(), adv_value)
            steps += 1
        for scheduler in schedulers:
            scheduler.step()
        history["loss_f"].append(sums[0] / steps)
        history["loss_adv"].append(sums[1] / steps)
        if epoch in config.snapshot_epochs:
            history["snapshots"][epoch] = snapshot(model, data, config, device)
    return model, history


def target_score(per_domain: np.ndarray, data: DomainGraphData) -> float:
    """Mean of a per-domain metric over the target domains."""
    return float(np.mean(np.asarray(per_domain)[data.target]))


# ----------------------------------------------------------------------------- theory check

def conditional_adjacency(p_e_given_u: Tensor, adjacency: Tensor) -> Tensor:
    """E[A_ij | e, e'] for discrete encodings: the Bayes-optimal discriminator (Lemma 1).

    p_e_given_u: (D, K) rows p(e | u = i) over K encoding values (uniform prior over domains);
    returns (K, K) sum_ij p(i | e) p(j | e') A_ij.
    """
    joint = p_e_given_u / p_e_given_u.shape[0]                 # p(i, e)
    posterior = joint / joint.sum(0, keepdim=True).clamp_min(1e-12)   # p(i | e), (D, K)
    return posterior.T @ adjacency.to(posterior.dtype) @ posterior


def equilibrium_gap(p_e_given_u: Tensor, adjacency: Tensor) -> Tensor:
    """How far from GRDA's equilibrium (Theorem 1): the encoder's loss gap, >= 0, 0 iff optimal.

    The optimal D's expected loss is the conditional entropy H(A | e, e'); the encoder
    maximises it, and H(A | e, e') <= H(A) with equality iff E[A | e, e'] = E[A] = alpha for
    all (e, e') of positive probability. Returns H(A) - H(A | e, e') (nats).
    """
    def entropy(p: Tensor) -> Tensor:
        return -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p))   # 0 log 0 = 0

    a = adjacency.float()
    alpha = a.mean()                                           # E[A_ij], i, j uniform
    marginal = p_e_given_u.mean(0)                             # p(e), (K,)
    cond = conditional_adjacency(p_e_given_u, adjacency)
    return entropy(alpha) - (marginal[:, None] * marginal[None, :] * entropy(cond)).sum()


def solve_equilibrium(adjacency: np.ndarray, n_values: int = 8, steps: int = 3000,
                      seed: int = 0) -> Tensor:
    """Encoding distributions p(e | u) (D, K) that minimise :func:`equilibrium_gap`.

    The encoder's side of the game with D at its optimum, solved by Adam on softmax logits
    from a random start: a numerical check of the paper's equilibrium for a given graph.
    """
    a = torch.as_tensor(check_adjacency(adjacency))
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(len(a), n_values, generator=generator).requires_grad_()
    optimizer = torch.optim.Adam([logits], lr=0.05)
    with cpu_threads(torch.device("cpu")):
        for _ in range(steps):
            gap = equilibrium_gap(logits.softmax(1), a)
            optimizer.zero_grad()
            gap.backward()
            optimizer.step()
    return logits.detach().softmax(1)


def total_variation(p: Tensor) -> Tensor:
    """Pairwise total-variation distances between the rows of p (D, K): (D, D)."""
    return 0.5 * (p[:, None, :] - p[None, :, :]).abs().sum(-1)


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
    return points


def angle_positions(angle: np.ndarray) -> np.ndarray:
    """Layout of a DG graph: domain i at angle theta_i on the unit circle, (D, 2)."""
    return np.stack([np.cos(angle), np.sin(angle)], 1)


def draw_training_snapshot(fig, epoch: int, history: dict, data: DomainGraphData,
                           grid_domains: Sequence[int]) -> None:
    """GRDA during training on a DG dataset, at ``epoch`` (a key of history["snapshots"]).

    Left: accuracy per domain on the domain graph. Middle: inputs of ``grid_domains`` (o: class
    0, x: class 1) with the learned boundary p(class 1) = 0.5 (solid) and the true one
    (dashed). Right: the encodings
    (first 10 points of each domain, 2-D PCA) coloured by the domain's angle.
    """
    shot = history["snapshots"][epoch]
    metric = np.asarray(shot["metric"])
    axes = fig.subplots(1, 3)
    draw_domain_graph(axes[0], angle_positions(data.angle), data.adjacency, metric, data.source,
                      labels=data.names, node_size=110)
    axes[0].set_title(f"epoch {epoch + 1}: target acc {100 * target_score(metric, data):.0f}%",
                      fontsize=9)
    grid = boundary_grid().numpy()
    steps = int(round(np.sqrt(len(grid))))
    colours = ["tab:blue", "tab:orange", "tab:purple", "tab:brown"]
    for k, d in enumerate(grid_domains):
        colour = colours[k % len(colours)]
        pts, ys = data.x[data.domain == d], data.y[data.domain == d]
        for label, marker in ((0, "o"), (1, "x")):
            axes[1].scatter(*pts[ys == label].T, s=5, marker=marker, color=colour, alpha=0.5,
                            linewidths=0.6)
        prob = np.asarray(shot["grid"][k]).reshape(steps, steps)
        axes[1].contour(grid[:, 0].reshape(steps, steps), grid[:, 1].reshape(steps, steps), prob,
                        levels=[0.5], colors=[colour], linewidths=1.5)
        direction = pts[ys == 0].mean(0) - pts[ys == 1].mean(0)
        normal = np.array([-direction[1], direction[0]]) / np.linalg.norm(direction)
        middle = (pts[ys == 0].mean(0) + pts[ys == 1].mean(0)) / 2
        line = middle + np.outer([-3, 3], normal)
        axes[1].plot(*line.T, ls="--", color=colour, lw=0.8)
    axes[1].set_xlim(-2.5, 2.5)
    axes[1].set_ylim(-2.5, 2.5)
    axes[1].set_aspect("equal")
    axes[1].set_title("domains " + ", ".join(map(str, grid_domains))
                      + ": learned (solid) vs true (dashed)", fontsize=9)
    enc = np.asarray(shot["encoding"])
    flat = pca_2d(enc.reshape(-1, enc.shape[-1]))
    hue = np.repeat(data.angle, enc.shape[1])
    axes[2].scatter(*flat.T, c=hue, cmap="twilight", s=5, vmin=0, vmax=2 * np.pi)
    axes[2].set_title("encodings (PCA), colour = domain angle", fontsize=9)
    axes[2].set_xticks([])
    axes[2].set_yticks([])
    fig.tight_layout()
