"""Recurrent intensity modelling (RIM): recommending items to users *and* users to items.

Paper: Yifei Ma, Ge Liu and Anoop Deoras, "Bridging recommendation and marketing via
recurrent intensity modeling", ICLR 2022. https://openreview.net/forum?id=TZeArecH2Nf
(official code: https://github.com/awslabs/recurrent-intensity-model-experiments).
Bib key ``ma2022rim``. Reference recommender: item-to-item CF (``linden2003amazon``,
:mod:`iclr22.timeseries.item_cf`).

Idea
----
A sequential recommender predicts ``p(y | x)``: which item ``y`` a user in state ``x`` (her
history up to now) takes next. That ranks items for one user (ItemRec) but cannot compare
users for one item (UserRec, marketing): a user who will never come back still has a
next-item distribution that sums to one. The paper models each user as a marked temporal
point process whose *intensity* ``lambda(x)`` says how many events she will have in the
target window, and scores every user-item pair by the marked-TPP decomposition

    lambda(x, y) = lambda(x) p(y | x)                                          (RIM-1)

(intensity x relevance). ItemRec ranks a row of ``lambda(x, y)`` (the intensity is a
per-row constant, so the ranking is the recommender's), UserRec ranks a column. With both
sides' interests at once it solves a capacity-constrained matching (Mtch): each user gets at
most ``k`` items, each item reaches at least (or at most) ``c`` users, through the dual.

Equations
---------
* Relevance: a GRU over the user's item sequence, tied input/output embeddings ``E``,
  ``p(y | x_t) = softmax(E h_t + b)_y``, trained by next-item cross-entropy.      (RIM-2)
* Intensity, Hawkes (the official code's ``Hawkes``: tick's ``HawkesSumExpKern``). With
  times in units of the horizon ``H``, measured from the user's first event ``t_0``,
      ``lambda(t) = mu + sum_k a_k beta_k sum_{t_0 < t_j < t} exp(-beta_k (t - t_j))
                       + sum_k b_k beta_k exp(-beta_k (t - t_0))``              (RIM-3)
  (``b`` is the "hetero" channel: an impulse at the user's first event). ``mu, a, b >= 0``
  maximise the log-likelihood over all users' training intervals ``[t_0, T]``,
      ``L = sum_i log lambda(t_i) - sum_u int_{t_0}^{T} lambda(t) dt - l2/2 ||theta||^2``,
  which is linear-in-parameters inside the log, hence concave.                 (RIM-4)
* Intensity, EMA (the official ``EMA``): ``lambda_u = sum_j exp(-(T - t_j) / H)``.   (RIM-5)
* Score over the target window ``[T, T + H)``: the expected number of events of user ``u``,
  ``Lambda_u = int_T^{T+H} lambda(t) dt`` (no new events inside the window), times the
  relevance: ``S[u, y] = Lambda_u p(y | x_u)``; items the user already has get 0.   (RIM-6)
* ItemRec: top ``k`` items per user; UserRec: top ``C`` users per item; precision = hits /
  recommendations, recall averaged over users (ItemRec) or items (UserRec) with
  ``max(1, #targets)`` in the denominator (the official metrics).                 (RIM-7)
* Matching (Mtch), entropy-regularised:  ``max_pi sum S pi + eps H(pi)`` s.t.
  ``sum_y pi[x, y] <= k`` (each user) and ``sum_x pi[x, y] >= c`` (each item), ``0 <= pi <= 1``.
  Its solution is ``pi = sigmoid((S - u_x - v_y) / eps)`` with duals ``u >= 0``, ``v <= 0``;
  we solve each block exactly by bisection (``sum_y pi = k`` per row, then
  ``sum_x pi = c`` per column, clipped), alternating, annealing ``eps``.          (RIM-8)
* Online matching: ``v`` is solved on an earlier (validation) period only; at test time
  each arriving user solves her own ``u_x`` from ``S[x] - v``: no other test user is seen.
                                                                                   (RIM-9)

Deviations from the paper and the official code
-----------------------------------------------
* Data: MovieLens-100K (943 users; the paper's largest open runs use MovieLens-1M, Netflix,
  Yoochoose), a single global time split ``T`` with a 28-day target window (the official
  ML-1M split is per user: the median activity span; both are "train before T, predict
  [T, T + H)"). Items first seen inside the window cannot be recommended and are dropped
  from the targets.
* GRU: one layer of 64 units, dropout 0.3, the last 30 items of each history, Adam (lr
  0.01, batches of 64 users), at most 20 epochs, the best epoch on the next-item
  log-likelihood of 10 % held-out training users (official: 2 layers of 128, Adagrad,
  truncated BPTT, PyTorch Lightning with the same random user split). Dropout, learning
  rate and history length were chosen on that validation likelihood (split 0), never on
  a target window.
* Hawkes: 12 fixed decay scales from 1e-5 to 10 horizons (official: 50 from 1e-6 to 10),
  L-BFGS-B with ``theta >= 0`` on the average negative log-likelihood plus ``l2 = 1e-3``
  (tick's ``C = 1e3``). We integrate the intensity over the window (RIM-6); the official
  code uses the intensity at ``T``.
* Dual: exact block-coordinate bisection, 30 annealing steps of ``eps`` from 1 to 1e-3 and
  30 more at 1e-3 (official: SGD on ``v`` towards the same block solution, 100 epochs);
  the soft assignment ``pi`` is evaluated as is, as the official code does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from torch import Tensor, nn

from .. import claims, runtime
from .. import train as train_lib
from ..data.movielens import Interactions, load_movielens_100k
from . import item_cf

DAY = 86_400

#: The paper's numbers. The ICLR paper's PDF is not reachable offline; these are read off
#: the official repository's README figure ``figure/rec-ml-1m-prec.png`` (MovieLens-1M,
#: ItemRec prec@36 and UserRec prec@31, x100, i.e. percent; read to about +-0.1).
PAPER = {
    "item_rec_prec/rim": claims.PaperValue(2.5, "README fig. rec-ml-1m-prec (RNN)", "ML-1M"),
    "item_rec_prec/pop": claims.PaperValue(1.07, "README fig. rec-ml-1m-prec (ItemPopularity)",
                                           "ML-1M"),
    "user_rec_prec/rim": claims.PaperValue(4.7, "README fig. rec-ml-1m-prec (RNN-Hawkes)",
                                           "ML-1M"),
    "user_rec_prec/relevance": claims.PaperValue(1.7, "README fig. rec-ml-1m-prec (RNN alone)",
                                                 "ML-1M"),
    "user_rec_prec/rnn_ema": claims.PaperValue(3.4, "README fig. rec-ml-1m-prec (RNN-EMA)",
                                               "ML-1M"),
    "user_rec_prec/rnn_pop": claims.PaperValue(3.05, "README fig. rec-ml-1m-prec (RNN-UserPop)",
                                               "ML-1M"),
    "user_rec_prec/intensity": claims.PaperValue(
        2.0, "README fig. rec-ml-1m-prec (ItemPop-Hawkes)", "ML-1M"),
    "user_rec_prec/pop": claims.PaperValue(1.7, "README fig. rec-ml-1m-prec (ItemPop alone)",
                                           "ML-1M"),
}

#: The score models of the experiment, in table order: name -> (intensity, relevance).
MODELS = {
    "Pop": ("user activity", "item popularity"),
    "Item-CF": ("-", "item-to-item CF"),
    "GRU (relevance only)": ("-", "GRU"),
    "EMA x Pop (intensity only)": ("EMA", "item popularity"),
    "Hawkes x Pop (intensity only)": ("Hawkes", "item popularity"),
    "RIM: GRU x user activity": ("user activity", "GRU"),
    "RIM: GRU x EMA": ("EMA", "GRU"),
    "RIM: GRU x Hawkes": ("Hawkes", "GRU"),
}
RIM = "RIM: GRU x Hawkes"
RELEVANCE = "GRU (relevance only)"
INTENSITY = "Hawkes x Pop (intensity only)"

#: One time split per seed: the start ``T`` of the 28-day target window (UTC dates).
TEST_STARTS = ("1998-01-01", "1998-01-15", "1998-02-01", "1998-02-15", "1998-03-01",
               "1997-12-15", "1998-03-15")


# --- the temporal split ----------------------------------------------------------------------


@dataclass(frozen=True)
class TemporalSplit:
    """Train before ``test_start``, targets in ``[test_start, test_start + horizon)``.

    ``users`` (U,) and ``items`` (I,) are dataset ids: users with an event before the
    start, items seen before the start of the *test* split (a validation split reuses
    them). ``history_items[u]`` (local item index) and ``history_times[u]`` (unix s) are
    user ``u``'s events before the start, in time order. Shapes: target (U, I) CSR counts,
    history (U, I) CSR binary, item_popularity (I,) training counts.
    """

    test_start: int
    horizon: int
    users: np.ndarray
    items: np.ndarray
    history_items: list[np.ndarray]
    history_times: list[np.ndarray]
    history: sp.csr_matrix
    target: sp.csr_matrix
    item_popularity: np.ndarray
    num_dropped_targets: int

    @property
    def num_users(self) -> int:
        return int(self.users.size)

    @property
    def num_items(self) -> int:
        return int(self.items.size)


def _check_time(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int (unix seconds), got {type(value).__name__}")
    return int(value)


def unix_time(date: str) -> int:
    """Unix seconds of a UTC date like ``"1998-01-01"``."""
    return int(pd.Timestamp(date, tz="UTC").timestamp())


def temporal_split(data: Interactions, test_start: int, horizon: int,
                   items: np.ndarray | None = None) -> TemporalSplit:
    """Split ``data`` at ``test_start`` with a target window of ``horizon`` seconds.

    ``items``: the item set (dataset ids) to use, default the items seen before
    ``test_start``. Target events on other items are dropped (counted).
    """
    test_start, horizon = _check_time("test_start", test_start), _check_time("horizon", horizon)
    if horizon <= 0:
        raise ValueError(f"horizon must be positive, got {horizon}")
    past = data.timestamp < test_start
    if not past.any():
        raise ValueError(f"no event before test_start={test_start}")
    future = (data.timestamp >= test_start) & (data.timestamp < test_start + horizon)
    users = np.unique(data.user[past])
    items = np.unique(data.item[past]) if items is None else np.asarray(items, dtype=np.int64)
    user_pos = np.full(data.num_users, -1)
    user_pos[users] = np.arange(users.size)
    item_pos = np.full(data.num_items, -1)
    item_pos[items] = np.arange(items.size)
    pu, pi, pt = user_pos[data.user[past]], item_pos[data.item[past]], data.timestamp[past]
    if (pi < 0).any():
        raise ValueError("items must contain every item seen before test_start")
    order = np.argsort(pu, kind="stable")                  # by user, time order kept
    cuts = np.cumsum(np.bincount(pu, minlength=users.size))[:-1]
    hist_items, hist_times = np.split(pi[order], cuts), np.split(pt[order], cuts)
    fu, fi = user_pos[data.user[future]], item_pos[data.item[future]]
    keep = (fu >= 0) & (fi >= 0)
    shape = (users.size, items.size)
    target = sp.csr_matrix((np.ones(keep.sum()), (fu[keep], fi[keep])), shape=shape)
    history = item_cf.interaction_matrix(pu, pi, *shape)
    return TemporalSplit(test_start, horizon, users, items, hist_items, hist_times, history,
                         target, np.bincount(pi, minlength=items.size).astype(np.float64),
                         int((~keep).sum()))


# --- intensity: Hawkes (sum of exponential kernels) and EMA ----------------------------------


@dataclass(frozen=True)
class HawkesConfig:
    """Decay scales (in horizons) of the sum-of-exponentials kernel, L2 strength, channels."""

    num_scales: int = 12
    min_scale: float = 1e-5
    max_scale: float = 10.0
    l2: float = 1e-3
    hetero: bool = True

    def decays(self) -> np.ndarray:
        """``beta_k = 1 / scale_k``, (K,)."""
        return 1.0 / np.logspace(math.log10(self.min_scale), math.log10(self.max_scale),
                                 self.num_scales)


@dataclass(frozen=True)
class Hawkes:
    """A fitted Hawkes intensity (RIM-3): ``mu``, ``a`` (K,), ``b`` (K,), decays (K,)."""

    mu: float
    a: np.ndarray
    b: np.ndarray
    decays: np.ndarray
    log_likelihood: float


def _padded_times(split: TemporalSplit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's events after her first, in horizons since the first: (U, L) padded with
    NaN, the window start ``end`` (U,) on the same clock, and the valid mask (U, L)."""
    lengths = np.array([t.size - 1 for t in split.history_times])
    rel = np.full((lengths.size, max(1, lengths.max())), np.nan)
    for u, times in enumerate(split.history_times):
        rel[u, :lengths[u]] = (times[1:] - times[0]) / split.horizon
    first = np.array([t[0] for t in split.history_times])
    return rel, (split.test_start - first) / split.horizon, ~np.isnan(rel)


def _event_features(rel: np.ndarray, valid: np.ndarray, decays: np.ndarray) -> np.ndarray:
    """(N, 1 + 2K) rows ``[1, beta_k sum_{j<i} e^{-beta_k (t_i - t_j)}, beta_k e^{-beta_k t_i}]``
    of all valid events, so that ``lambda(t_i) = features_i . theta`` (RIM-3).

    Shapes: rel, valid (U, L) -> (N, 1 + 2K), N = valid.sum(), rows in (user, time) order.
    """
    state = np.zeros(rel.shape + decays.shape)                         # (U, L, K)
    gaps = np.nan_to_num(np.diff(rel, axis=1))                         # (U, L - 1)
    for i in range(1, rel.shape[1]):                                   # recursion over positions
        state[:, i] = np.exp(-gaps[:, i - 1, None] * decays) * (state[:, i - 1] + 1.0)
    start = np.exp(-np.nan_to_num(rel)[..., None] * decays)            # (U, L, K)
    feats = np.concatenate([np.ones(rel.shape + (1,)), decays * state, decays * start], axis=2)
    return feats[valid]


def _compensator(rel: np.ndarray, end: np.ndarray, decays: np.ndarray,
                 window: float | None = None) -> np.ndarray:
    """(U, 1 + 2K) per-user ``int lambda dt`` as linear forms in ``theta`` (RIM-4): over
    ``[0, end]``, or with ``window`` over ``[end, end + window]`` (RIM-6)."""
    pad = np.isnan(rel)[..., None]                                     # (U, L, 1)
    lag = np.where(pad, np.inf, (end[:, None] - np.nan_to_num(rel))[..., None] * decays)
    if window is None:                                                 # lag: (U, L, K)
        excite = np.where(pad, 0.0, 1.0 - np.exp(-lag)).sum(1)
        base = 1.0 - np.exp(-np.outer(end, decays))
        return np.hstack([end[:, None], excite, base])
    fade = 1.0 - np.exp(-decays * window)                              # int of beta e^{-beta s}
    excite = np.exp(-lag).sum(1) * fade
    base = np.exp(-np.outer(end, decays)) * fade
    return np.hstack([np.full((end.size, 1), window), excite, base])


def fit_hawkes(split: TemporalSplit, config: HawkesConfig = HawkesConfig()) -> Hawkes:
    """Maximum-likelihood ``mu, a, b >= 0`` (RIM-4) on every user's training interval.

    Each user's interval is ``[first event, test_start]``: the silence after her last
    event up to ``T`` is evidence too. Only events before ``test_start`` are read.
    """
    decays = config.decays()
    rel, end, valid = _padded_times(split)
    x = _event_features(rel, valid, decays)                            # (N, 1 + 2K)
    comp = _compensator(rel, end, decays).sum(0)                       # (1 + 2K,)
    if not config.hetero:
        x, comp = x[:, :1 + decays.size], comp[:1 + decays.size]
    num = max(1, x.shape[0])
    # Optimise phi = theta * scale (columns of x scaled to mean 1): the short-scale columns
    # carry beta_k up to 1e5 and make the raw problem badly conditioned. Same optimum.
    scale = np.fmax(x.mean(0), 1e-12)
    xs, cs = x / scale, comp / scale

    def objective(phi):
        rate = xs @ phi                                                # lambda(t_i)
        theta = phi / scale
        value = -(np.log(rate).sum() - cs @ phi) / num + 0.5 * config.l2 * theta @ theta
        grad = -(xs.T @ (1.0 / rate) - cs) / num + config.l2 * theta / scale
        return value, grad

    phi0 = np.full(x.shape[1], 0.1 / x.shape[1])
    phi0[0] = x.shape[0] / comp[0]
    bounds = [(1e-10, None)] + [(0.0, None)] * (x.shape[1] - 1)
    opt = minimize(objective, phi0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 300, "ftol": 1e-10})
    theta = opt.x / scale
    b = theta[1 + decays.size:] if config.hetero else np.zeros(decays.size)
    return Hawkes(float(theta[0]), theta[1:1 + decays.size].copy(), b.copy(), decays,
                  float(-opt.fun * num))


def _theta(model: Hawkes) -> np.ndarray:
    return np.concatenate([[model.mu], model.a, model.b])


def hawkes_window_count(model: Hawkes, split: TemporalSplit) -> np.ndarray:
    """(U,) ``Lambda_u``: expected events in ``[T, T + H)`` given the history (RIM-6)."""
    rel, end, _ = _padded_times(split)
    return _compensator(rel, end, model.decays, window=1.0) @ _theta(model)


def hawkes_intensity_curve(model: Hawkes, times: np.ndarray, grid: np.ndarray,
                           horizon: int) -> np.ndarray:
    """(G,) ``lambda(t)`` (events per horizon) at unix times ``grid`` given events ``times``
    (only events before each grid point count; RIM-3)."""
    rel = (np.asarray(times[1:]) - times[0]) / horizon
    g = (np.asarray(grid, dtype=np.float64) - times[0]) / horizon
    lag = g[:, None] - rel[None, :]                                    # (G, n)
    kern = np.where(lag[..., None] > 0,
                    np.exp(-np.clip(lag, 0, None)[..., None] * model.decays), 0.0)
    excite = (kern.sum(1) * model.decays * model.a).sum(1)
    start = (model.b * model.decays * np.exp(-np.clip(g, 0, None)[:, None] * model.decays)).sum(1)
    return np.where(g >= 0, model.mu + excite + start, model.mu)


def ema_intensity(split: TemporalSplit) -> np.ndarray:
    """(U,) ``sum_j exp(-(T - t_j) / H)`` (RIM-5)."""
    return np.array([np.exp(-(split.test_start - t) / split.horizon).sum()
                     for t in split.history_times])


# --- relevance: a GRU next-item recommender ---------------------------------------------------


@dataclass(frozen=True)
class GRUConfig:
    """GRU recommender (RIM-2): sizes, the truncation of histories and the schedule."""

    hidden: int = 64
    max_len: int = 30
    epochs: int = 20
    patience: int = 4
    batch_size: int = 64
    lr: float = 1e-2
    dropout: float = 0.3
    weight_decay: float = 0.0
    val_fraction: float = 0.1


@dataclass(frozen=True)
class GRUFit:
    """The kept epoch and its validation score (mean next-item log-likelihood, nats)."""

    best_epoch: int
    val_log_likelihood: float


class GRURecommender(nn.Module):
    """Token 0 is begin/padding, item ``i`` is token ``i + 1``; tied embeddings (RIM-2).

    Shapes: forward(tokens (B, L)) -> logits (B, L, num_items) over the items.
    """

    def __init__(self, num_items: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.embedding = nn.Embedding(num_items + 1, hidden, padding_idx=0)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.bias = nn.Parameter(torch.zeros(num_items))
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: Tensor) -> Tensor:
        h, _ = self.gru(self.dropout(self.embedding(tokens)))          # (B, L, hidden)
        h = self.dropout(h)
        return h @ self.embedding.weight[1:].t() + self.bias            # (B, L, num_items)


def _token_batches(sequences: list[np.ndarray], batch_size: int) -> list[tuple[Tensor, Tensor]]:
    """Inputs ``[0, y_1 .. y_{n-1}]`` and targets ``[y_1 .. y_n]`` (-100 = pad), batched by
    length. Shapes: each (B, L) int64."""
    order = np.argsort([len(s) for s in sequences], kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = [sequences[i] for i in order[start:start + batch_size]]
        length = max(len(s) for s in chunk)
        inputs = torch.zeros(len(chunk), length, dtype=torch.long)
        targets = torch.full((len(chunk), length), -100, dtype=torch.long)
        for row, seq in enumerate(chunk):
            tokens = torch.as_tensor(seq, dtype=torch.long) + 1
            inputs[row, 1:len(seq)] = tokens[:-1]
            targets[row, :len(seq)] = tokens - 1
        batches.append((inputs, targets))
    return batches


def _nll(model: GRURecommender, batch: tuple[Tensor, Tensor], device) -> tuple[Tensor, int]:
    inputs, targets = (t.to(device) for t in batch)
    logits = model(inputs)
    return (F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                            ignore_index=-100, reduction="sum"), int((targets >= 0).sum()))


def fit_gru(split: TemporalSplit, config: GRUConfig = GRUConfig(), seed: int = 0,
            device=None) -> tuple[GRURecommender, GRUFit]:
    """Train on the histories before ``T``; keep the epoch with the best next-item
    log-likelihood of ``val_fraction`` held-out users. Returns (model, :class:`GRUFit`)."""
    device = runtime.device() if device is None else torch.device(device)
    generator = runtime.seed_everything(seed)
    sequences = [s[-config.max_len:] for s in split.history_items]
    perm = np.random.default_rng(seed).permutation(len(sequences))
    num_val = max(1, int(round(config.val_fraction * len(sequences))))
    train = _token_batches([sequences[i] for i in perm[num_val:]], config.batch_size)
    val = _token_batches([sequences[i] for i in perm[:num_val]], 256)
    model = GRURecommender(split.num_items, config.hidden, config.dropout).to(device)
    fit = train_lib.fit_minibatches(
        model, lambda: [train[i] for i in torch.randperm(len(train), generator=generator)],
        lambda batch: _mean_nll(model, batch, device),
        train_lib.TrainConfig(epochs=config.epochs, lr=config.lr,
                              weight_decay=config.weight_decay, patience=config.patience),
        val_score=lambda: -_mean_nll_of(model, val, device), desc="GRU epochs")
    return model, GRUFit(fit.best_epoch, fit.best_score)


def _mean_nll(model: GRURecommender, batch: tuple[Tensor, Tensor], device) -> Tensor:
    loss, count = _nll(model, batch, device)
    return loss / count


def _mean_nll_of(model: GRURecommender, batches: list, device) -> float:
    """Next-item negative log-likelihood per target token over ``batches``."""
    total = [_nll(model, batch, device) for batch in batches]
    return sum(float(t) for t, _ in total) / sum(c for _, c in total)


def gru_relevance(model: GRURecommender, split: TemporalSplit, max_len: int,
                  device=None) -> np.ndarray:
    """(U, I) ``p(y | x_u)`` after each user's history (last ``max_len`` items)."""
    device = next(model.parameters()).device if device is None else device
    out = np.empty((split.num_users, split.num_items), dtype=np.float64)
    model.eval()
    with torch.no_grad():
        for start in range(0, split.num_users, 256):
            seqs = [s[-max_len:] for s in split.history_items[start:start + 256]]
            length = max(len(s) for s in seqs) + 1
            tokens = torch.zeros(len(seqs), length, dtype=torch.long)
            for row, seq in enumerate(seqs):
                tokens[row, 1:len(seq) + 1] = torch.as_tensor(seq) + 1
            logits = model(tokens.to(device))                             # (B, L, I)
            last = torch.as_tensor([len(s) for s in seqs], device=device)
            final = logits[torch.arange(len(seqs), device=device), last]  # (B, I)
            out[start:start + len(seqs)] = torch.softmax(final.double(), 1).cpu().numpy()
    return out


# --- ItemRec, UserRec and their metrics -------------------------------------------------------


@dataclass(frozen=True)
class RecMetrics:
    """Official metrics of one assignment (RIM-7): precision, recall, coverage, perplexity."""

    precision: float
    recall: float
    item_coverage: float
    item_perplexity: float
    user_coverage: float


def _check_scores(scores: np.ndarray, split: TemporalSplit) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (split.num_users, split.num_items):
        raise ValueError(f"scores must be (num_users, num_items) = "
                         f"{(split.num_users, split.num_items)}, got {scores.shape}")
    if not np.all(np.isfinite(scores)) or (scores < 0).any():
        raise ValueError("scores must be finite and non-negative intensities")
    return scores


def assign_topk(scores: np.ndarray, k: int) -> sp.csr_matrix:
    """(R, M) 0/1 CSR with the ``k`` highest entries of each row (ties: lower index first)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must be an int in 1..{scores.shape[1]}, got {k!r}")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]             # (R, k)
    rows = np.repeat(np.arange(scores.shape[0]), k)
    return sp.csr_matrix((np.ones(rows.size), (rows, top.ravel())), shape=scores.shape)


def perplexity(counts: np.ndarray) -> float:
    """``exp(entropy)`` of the exposure distribution ``counts / sum(counts)``."""
    p = np.ravel(counts) / max(float(np.sum(counts)), 1e-300)
    return float(np.exp(-(p[p > 0] * np.log(p[p > 0])).sum()))


def evaluate_assigned(target: sp.csr_matrix, assigned, axis: int | None,
                      min_total: float = 0.0) -> RecMetrics:
    """Compare an assignment (0/1 or soft, (U, I)) with the targets (RIM-7).

    ``axis=1``: recall per user (ItemRec); ``axis=0``: per item (UserRec); ``None``: no recall.
    """
    assigned = sp.csr_matrix(assigned)
    hits = target.multiply(assigned)
    per_item = np.ravel(assigned.sum(0))
    per_user = np.ravel(assigned.sum(1))
    total = max(min_total, float(per_item.sum()))
    recall = math.nan
    if axis is not None:
        ideal = np.ravel(target.sum(axis))
        recall = float((np.ravel(hits.sum(axis)) / np.fmax(1.0, ideal)).mean())
    return RecMetrics(float(hits.sum()) / total, recall, float((per_item > 0).mean()),
                      perplexity(per_item), float((per_user > 0).mean()))


def item_rec(target: sp.csr_matrix, scores: np.ndarray, k: int) -> RecMetrics:
    """ItemRec: the top ``k`` items of every user."""
    return evaluate_assigned(target, assign_topk(scores, k), axis=1)


def user_rec(target: sp.csr_matrix, scores: np.ndarray, c: int) -> RecMetrics:
    """UserRec: the top ``c`` users of every item."""
    return evaluate_assigned(target, assign_topk(scores.T, c).T, axis=0)


# --- matching through the dual ----------------------------------------------------------------


@dataclass(frozen=True)
class DualConfig:
    """Schedule of the entropic dual (RIM-8): ``num_iters`` block updates while ``eps``
    falls geometrically from ``eps_start`` to ``eps_end``, then ``hold_iters`` at ``eps_end``
    (block-coordinate ascent converges slowly at small ``eps``; holding it there is what
    brings the column constraints in)."""

    eps_start: float = 1.0
    eps_end: float = 1e-3
    num_iters: int = 30
    hold_iters: int = 30
    bisect_steps: int = 20


@dataclass(frozen=True)
class DualSolution:
    """Dual variables: ``u`` (U,) >= 0 per user, ``v`` (I,) <= 0 per item; score ``scale``."""

    u: np.ndarray
    v: np.ndarray
    eps: float
    scale: float


def _solve_rows(z: Tensor, target: float, eps: float, steps: int) -> Tensor:
    """Per row ``w`` with ``sum_m sigmoid((z - w) / eps) = target`` (bisection, monotone)."""
    lo = z.amin(1) - 40 * eps                                         # sum ~ M >= target
    hi = z.amax(1) + 40 * eps                                         # sum ~ 0 <= target
    for _ in range(steps):
        mid = (lo + hi) / 2
        above = torch.sigmoid((z - mid[:, None]) / eps).sum(1) > target
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    return (lo + hi) / 2


def _check_budgets(k: float, c: float, shape: tuple[int, int]) -> None:
    if not 0 < k < shape[1]:
        raise ValueError(f"items_per_user must be in (0, {shape[1]}), got {k}")
    if not 0 <= c < shape[0] or c * shape[1] > k * shape[0]:
        raise ValueError(f"min_users_per_item={c} is infeasible: need 0 <= c < {shape[0]} and "
                         f"c x items <= k x users")


def solve_dual(scores: np.ndarray, items_per_user: float, min_users_per_item: float,
               config: DualConfig = DualConfig()) -> DualSolution:
    """Block-coordinate ascent on the dual of the matching (RIM-8), annealing ``eps``.

    Shapes: scores (U, I) -> u (U,), v (I,). Scores are divided by their maximum first.
    """
    s = np.asarray(scores, dtype=np.float64)
    _check_budgets(items_per_user, min_users_per_item, s.shape)
    scale = float(s.max()) or 1.0
    z = torch.as_tensor(s / scale, dtype=torch.float32)
    v = torch.zeros(z.shape[1])
    u = torch.zeros(z.shape[0])
    schedule = [*np.geomspace(config.eps_start, config.eps_end, config.num_iters),
                *[config.eps_end] * config.hold_iters]                 # anneal, then hold
    for eps in map(float, schedule):
        u = _solve_rows(z - v, items_per_user, eps, config.bisect_steps).clamp(min=0)
        if min_users_per_item > 0:
            v = _solve_rows((z - u[:, None]).t(), min_users_per_item, eps,
                            config.bisect_steps).clamp(max=0)
    return DualSolution(u.numpy().astype(np.float64), v.numpy().astype(np.float64),
                        config.eps_end, scale)


def dual_assignment(scores: np.ndarray, dual: DualSolution, items_per_user: float,
                    config: DualConfig = DualConfig()) -> np.ndarray:
    """(U, I) soft assignment ``sigmoid((S / scale - u - v) / eps)`` where each user solves her
    own ``u`` against the given ``v`` (RIM-9; ``scores`` may be other users than the fit's)."""
    z = torch.as_tensor(np.asarray(scores) / dual.scale, dtype=torch.float32)
    v = torch.as_tensor(dual.v, dtype=torch.float32)
    u = _solve_rows(z - v, items_per_user, dual.eps, config.bisect_steps).clamp(min=0)
    return torch.sigmoid((z - u[:, None] - v) / dual.eps).double().numpy()


@dataclass(frozen=True)
class MatchMetrics:
    """A matching judged on the test window: precision (hits / (k x users)), exposure
    perplexity, the fraction of the items' minimum exposure delivered, and objective."""

    precision: float
    item_perplexity: float
    budget_delivered: float
    objective: float


def evaluate_matching(split: TemporalSplit, scores: np.ndarray, assigned: np.ndarray,
                      items_per_user: float, min_users_per_item: float) -> MatchMetrics:
    """Precision with the official denominator ``k x users``, exposure perplexity,
    ``mean_y min(1, exposure_y / c)`` and ``sum S pi / sum of the top-k scores``."""
    metrics = evaluate_assigned(split.target, assigned, None,
                                min_total=items_per_user * split.num_users)
    exposure = np.asarray(assigned).sum(0)
    delivered = 1.0 if min_users_per_item == 0 else float(
        np.minimum(1.0, exposure / min_users_per_item).mean())
    best = np.sort(scores, axis=1)[:, ::-1][:, :int(items_per_user)].sum()
    return MatchMetrics(metrics.precision, metrics.item_perplexity, delivered,
                        float((scores * assigned).sum() / best))


# --- one run: a split, every model, both tasks, the matching ----------------------------------


@dataclass(frozen=True)
class RIMConfig:
    """One run of the chapter's experiment; ``k`` and ``c`` default to 1 % of items and
    users (the official ``_k1``, ``_c1``); ``exposure_mult`` sets the matching's minimum
    exposure ``c_min = exposure_mult x c`` per item (the official ``mult < 1`` case)."""

    horizon_days: int = 28
    gru: GRUConfig = GRUConfig()
    hawkes: HawkesConfig = HawkesConfig()
    dual: DualConfig = DualConfig()
    num_neighbours: int = 50
    exposure_mult: float = 0.5


#: The quick profile (CI, the claim tests): a smaller GRU and a shorter dual schedule.
QUICK_CONFIG = RIMConfig(gru=GRUConfig(epochs=3, hidden=32),
                         dual=DualConfig(num_iters=15, hold_iters=15, bisect_steps=15))


@dataclass
class SplitRun:
    """Everything one seed produced (test split, fitted pieces, scores and metrics)."""

    seed: int
    split: TemporalSplit
    hawkes: Hawkes
    gru_fit: GRUFit
    scores: dict[str, np.ndarray]
    item_rec: dict[str, RecMetrics]
    user_rec: dict[str, RecMetrics]
    k: int
    c: int
    matching: dict[str, MatchMetrics] = field(default_factory=dict)
    c_min: float = 0.0

    def metrics(self) -> dict[str, float]:
        """Flat per-seed numbers for :func:`iclr22.claims.over_seeds` (percent for precision)."""
        out = {}
        for name in self.scores:
            out[f"item_rec_prec/{name}"] = 100 * self.item_rec[name].precision
            out[f"user_rec_prec/{name}"] = 100 * self.user_rec[name].precision
            out[f"item_rec_recall/{name}"] = 100 * self.item_rec[name].recall
            out[f"user_rec_recall/{name}"] = 100 * self.user_rec[name].recall
        for name, m in self.matching.items():
            out[f"match_prec/{name}"] = 100 * m.precision
            out[f"match_item_ppl/{name}"] = m.item_perplexity
            out[f"match_budget/{name}"] = m.budget_delivered
            out[f"match_objective/{name}"] = m.objective
        return out


def _scores(split: TemporalSplit, relevance: np.ndarray, hawkes: Hawkes,
            similar: item_cf.SimilarItems) -> dict[str, np.ndarray]:
    """Every model's (U, I) score matrix, items in the history zeroed (RIM-1, RIM-6)."""
    activity = np.array([t.size for t in split.history_times], dtype=np.float64)
    pop = (split.item_popularity + 0.01) / split.item_popularity.sum()
    lam, ema = hawkes_window_count(hawkes, split), ema_intensity(split)
    raw = {
        "Pop": np.outer(activity + 0.01, pop),
        "Item-CF": item_cf.recommend_scores(similar, split.history),
        "GRU (relevance only)": relevance,
        "EMA x Pop (intensity only)": np.outer(ema, pop),
        "Hawkes x Pop (intensity only)": np.outer(lam, pop),
        "RIM: GRU x user activity": activity[:, None] * relevance,
        "RIM: GRU x EMA": ema[:, None] * relevance,
        "RIM: GRU x Hawkes": lam[:, None] * relevance,
    }
    mask = split.history.toarray() > 0
    return {name: np.where(mask, 0.0, s) for name, s in raw.items()}


def prepare_splits(data: Interactions, seed: int, horizon_days: int = 28
                   ) -> tuple[TemporalSplit, TemporalSplit]:
    """(test split at ``TEST_STARTS[seed]``, validation split one horizon earlier on the
    same items). Seeds beyond the list are an error (there are as many splits as dates)."""
    if not 0 <= seed < len(TEST_STARTS):
        raise ValueError(f"seed must be in 0..{len(TEST_STARTS) - 1} (one split per date)")
    horizon = horizon_days * DAY
    test = temporal_split(data, unix_time(TEST_STARTS[seed]), horizon)
    val = temporal_split(data, test.test_start - horizon, horizon, items=test.items)
    return test, val


def run_split(data: Interactions, seed: int, config: RIMConfig = RIMConfig(),
              device=None) -> SplitRun:
    """Seed ``seed``: its time split, every model fitted on the past, both tasks, matching.

    Fitted on events before ``T`` only: the GRU, the Hawkes intensity, the item-CF table,
    item popularity. The validation period ``[T - H, T)`` is used only as the "earlier
    users" on which the online dual learns ``v`` (no label is read there).
    """
    test, val = prepare_splits(data, seed, config.horizon_days)
    gru, gru_fit = fit_gru(test, config.gru, seed=seed, device=device)
    hawkes = fit_hawkes(test, config.hawkes)
    similar = item_cf.similar_items_table(test.history, config.num_neighbours)
    scores = _scores(test, gru_relevance(gru, test, config.gru.max_len), hawkes, similar)
    k = math.ceil(0.01 * test.num_items)
    c = math.ceil(0.01 * test.num_users)
    run = SplitRun(seed, test, hawkes, gru_fit, scores,
                   {n: item_rec(test.target, s, k) for n, s in scores.items()},
                   {n: user_rec(test.target, s, c) for n, s in scores.items()}, k, c)
    val_scores = _scores(val, gru_relevance(gru, val, config.gru.max_len), hawkes, similar)
    _run_matching(run, val_scores[RIM], config)
    return run


def _run_matching(run: SplitRun, val_scores: np.ndarray, config: RIMConfig) -> None:
    """Top-k (no budget), offline dual (fit on the test users' scores) and online dual
    (``v`` from the validation users) on RIM's scores; fills ``run.matching``."""
    s, k = run.scores[RIM], run.k
    run.c_min = config.exposure_mult * run.c
    topk = assign_topk(s, k).toarray()
    offline = solve_dual(s, k, run.c_min, config.dual)
    online = solve_dual(val_scores, k, run.c_min, config.dual)
    for name, assigned in (("top-k", topk),
                           ("Dual (offline)", dual_assignment(s, offline, k, config.dual)),
                           ("Dual (online)", dual_assignment(s, online, k, config.dual))):
        run.matching[name] = evaluate_matching(run.split, s, assigned, k, run.c_min)


def run_seeds(data: Interactions, seeds: Sequence[int], config: RIMConfig = RIMConfig(),
              device=None) -> list[SplitRun]:
    """:func:`run_split` for each seed (one time split and one GRU initialisation each)."""
    return [run_split(data, s, config, device) for s in seeds]


def with_sizes(config: RIMConfig, *, epochs: int, hidden: int) -> RIMConfig:
    """``config`` with another GRU schedule and width (profile sizes)."""
    return replace(config, gru=replace(config.gru, epochs=epochs, hidden=hidden))


# --- the claims -------------------------------------------------------------------------------


def headline_claims(runs: Sequence[SplitRun], setting: str) -> list[claims.Claim]:
    """The paper's comparisons, paired over the runs' seeds (percent precision)."""
    seeds = [r.seed for r in runs]
    per = claims.over_seeds(lambda s: next(r for r in runs if r.seed == s).metrics(), seeds)

    def compare(text, a, b, paper=None, paper_b=None, names=None, **kw):
        return claims.compare(text, per[a], per[b], seeds=seeds, setting=setting,
                              names=names, paper=paper, paper_baseline=paper_b, **kw)

    u, i = "user_rec_prec/", "item_rec_prec/"
    return [
        compare("UserRec: RIM (GRU x Hawkes) beats the relevance-only GRU", u + RIM,
                u + RELEVANCE, PAPER["user_rec_prec/rim"], PAPER["user_rec_prec/relevance"],
                names=("RIM", "GRU"), unit="points prec@C"),
        compare("UserRec: RIM beats the intensity-only Hawkes x item popularity", u + RIM,
                u + INTENSITY, PAPER["user_rec_prec/rim"], PAPER["user_rec_prec/intensity"],
                names=("RIM", "Hawkes x Pop"), unit="points prec@C"),
        compare("UserRec: RIM beats popularity (user activity x item popularity)", u + RIM,
                u + "Pop", PAPER["user_rec_prec/rim"], PAPER["user_rec_prec/pop"],
                names=("RIM", "Pop"), unit="points prec@C"),
        compare("UserRec: RIM beats item-to-item CF", u + RIM, u + "Item-CF",
                names=("RIM", "Item-CF"), unit="points prec@C"),
        compare("ItemRec: RIM beats popularity", i + RIM, i + "Pop",
                PAPER["item_rec_prec/rim"], PAPER["item_rec_prec/pop"],
                names=("RIM", "Pop"), unit="points prec@k"),
        compare("ItemRec: RIM beats item-to-item CF", i + RIM, i + "Item-CF",
                names=("RIM", "Item-CF"), unit="points prec@k"),
        claims.at_least("Online Dual matching keeps >= 80 % of the top-k ItemRec precision",
                        np.divide(per["match_prec/Dual (online)"], per["match_prec/top-k"]),
                        0.8, seeds=seeds, setting=setting, name="Dual online / top-k",
                        unit="x"),
        claims.at_least("Online Dual delivers >= 90 % of the items' minimum exposure",
                        per["match_budget/Dual (online)"], 0.9, seeds=seeds, setting=setting,
                        name="budget delivered", unit="x"),
        compare("Dual matching spreads exposure over more items than top-k (perplexity)",
                "match_item_ppl/Dual (online)", "match_item_ppl/top-k", ratio=True,
                names=("Dual online", "top-k"), unit="x"),
    ]


def load_data() -> Interactions:
    """MovieLens-100K (the chapter's data; see :mod:`iclr22.data.movielens`)."""
    return load_movielens_100k()


# --- tables for the chapter -------------------------------------------------------------------


def _mean_sd(values: Sequence[float]) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}" if values.size > 1 else \
        f"{values.mean():.2f}"


def split_table(runs: Sequence[SplitRun]) -> pd.DataFrame:
    """One row per seed: the split date, its sizes, ``k``, ``C`` and the GRU's kept epoch."""
    rows = [{"seed": r.seed, "T (window start)": TEST_STARTS[r.seed],
             "users with a history": r.split.num_users, "items": r.split.num_items,
             "target events": int(r.split.target.sum()),
             "users active in the window": int((np.ravel(r.split.target.sum(1)) > 0).sum()),
             "k (items per user)": r.k, "C (users per item)": r.c,
             "GRU epoch kept": r.gru_fit.best_epoch + 1} for r in runs]
    return pd.DataFrame(rows).set_index("seed")


def results_table(runs: Sequence[SplitRun]) -> pd.DataFrame:
    """Mean ± sd over seeds of ItemRec and UserRec precision and recall (percent) per model,
    beside the paper's ML-1M precisions where its figure has the same model."""
    per = claims.over_seeds(lambda s: next(r for r in runs if r.seed == s).metrics(),
                            [r.seed for r in runs])
    paper_of = {"Pop": "pop", RELEVANCE: "relevance", INTENSITY: "intensity", RIM: "rim",
                "RIM: GRU x EMA": "rnn_ema", "RIM: GRU x user activity": "rnn_pop"}
    paper_item = {"Pop": "pop", RIM: "rim", RELEVANCE: "rim", "RIM: GRU x EMA": "rim",
                  "RIM: GRU x user activity": "rim"}
    rows = []
    for name, (intensity, relevance) in MODELS.items():
        pu = PAPER.get(f"user_rec_prec/{paper_of.get(name, '-')}")
        pi = PAPER.get(f"item_rec_prec/{paper_item.get(name, '-')}")
        rows.append({"model": name, "intensity": intensity, "relevance": relevance,
                     "ItemRec prec@k (%)": _mean_sd(per[f"item_rec_prec/{name}"]),
                     "ItemRec recall@k (%)": _mean_sd(per[f"item_rec_recall/{name}"]),
                     "UserRec prec@C (%)": _mean_sd(per[f"user_rec_prec/{name}"]),
                     "UserRec recall@C (%)": _mean_sd(per[f"user_rec_recall/{name}"]),
                     "paper ItemRec prec (%)": pi.value if pi else np.nan,
                     "paper UserRec prec (%)": pu.value if pu else np.nan})
    return pd.DataFrame(rows).set_index("model")


def matching_table(runs: Sequence[SplitRun]) -> pd.DataFrame:
    """Mean ± sd over seeds of the matching metrics of RIM's scores: top-k, offline and
    online dual with the minimum exposure ``c_min`` per item."""
    rows = []
    for name in runs[0].matching:
        ms = [r.matching[name] for r in runs]
        rows.append({"assignment": name,
                     "precision (%)": _mean_sd([100 * m.precision for m in ms]),
                     "item exposure perplexity": _mean_sd([m.item_perplexity for m in ms]),
                     "min. exposure delivered": _mean_sd([m.budget_delivered for m in ms]),
                     "objective / top-k objective": _mean_sd([m.objective for m in ms])})
    return pd.DataFrame(rows).set_index("assignment")


def targeted_users(run: SplitRun, item: int, num_users: int = 8, data: Interactions | None = None
                   ) -> pd.DataFrame:
    """The users RIM would target for test item ``item`` (local index), with each user's
    intensity, relevance and whether she took the item in the window."""
    scores = run.scores[RIM][:, item]
    top = np.argsort(-scores, kind="stable")[:num_users]
    lam = hawkes_window_count(run.hawkes, run.split)
    rel = run.scores[RELEVANCE][:, item]
    return pd.DataFrame({"user": run.split.users[top] + 1, "events before T":
                         [run.split.history_times[u].size for u in top],
                         "intensity (events / window)": lam[top].round(3),
                         "relevance p(item | user)": rel[top].round(5),
                         "RIM score": scores[top].round(5),
                         "took it in the window":
                             run.split.target[top, item].toarray().ravel() > 0})


def widget_users(run: SplitRun, num: int = 6) -> list[int]:
    """Local indices of users for the widget: the most intense active and inactive ones."""
    lam = hawkes_window_count(run.hawkes, run.split)
    active = np.ravel(run.split.target.sum(1)) > 0
    order = np.argsort(-lam, kind="stable")
    picked = [u for u in order if active[u]][:num - num // 3] + \
        [u for u in order if not active[u]][:num // 3]
    return sorted(int(u) for u in picked)


def draw_user(fig, user: int, *, run: SplitRun, titles: Sequence[str],
              days_before: int = 60, num_items: int = 8) -> None:
    """Widget frame for test user ``user`` (local index): left, her events and the Hawkes
    intensity before and over the target window; right, RIM's top items for her."""
    split, model = run.split, run.hawkes
    times = split.history_times[user]
    start, end = split.test_start - days_before * DAY, split.test_start + split.horizon
    grid = np.linspace(max(start, times[0]), end, 600)
    lam = hawkes_intensity_curve(model, times, grid, split.horizon)
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    day = (grid - split.test_start) / DAY
    ax.plot(day, lam / (split.horizon / DAY), color="C0", label=r"$\lambda(t)$ (Hawkes)")
    ax.axvspan(0, split.horizon / DAY, color="C2", alpha=0.12, label="target window")
    past = (times[times >= start] - split.test_start) / DAY
    ax.plot(past, np.zeros_like(past), "|", color="k", ms=12, label="past events")
    target_items = split.target[user].indices
    count = int(split.target[user].sum())
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xlabel("days since T")
    ax.set_ylabel(r"intensity $\lambda(t)$ (events / day)")
    ax.legend(loc="upper left", fontsize=7)
    expected = hawkes_window_count(model, split)[user]
    ax.set_title(f"user {split.users[user] + 1}: expected {expected:.2f}, actual {count} "
                 "events in the window", fontsize=9)
    scores = run.scores[RIM][user]
    top = np.argsort(-scores, kind="stable")[:num_items][::-1]
    colors = ["C3" if i in target_items else "C7" for i in top]
    bx.barh(range(top.size), scores[top], color=colors)
    bx.set_yticks(range(top.size), [titles[split.items[i]][:24] for i in top], fontsize=7)
    bx.set_xlabel(r"RIM score $\Lambda_u\,p(y\mid x_u)$")
    bx.set_title("top items (red: taken in the window)", fontsize=9)


def headline_metrics(runs: Sequence[SplitRun]) -> tuple[dict[str, float], dict[str, float]]:
    """(our per-metric means over the seeds, the paper's numbers under the same names) for
    :func:`iclr22.results.record`."""
    per = claims.over_seeds(lambda s: next(r for r in runs if r.seed == s).metrics(),
                            [r.seed for r in runs])
    metrics = {key: round(float(np.mean(values)), 4) for key, values in per.items()}
    names = {"item_rec_prec/rim": RIM, "item_rec_prec/pop": "Pop", "user_rec_prec/rim": RIM,
             "user_rec_prec/relevance": RELEVANCE, "user_rec_prec/intensity": INTENSITY,
             "user_rec_prec/rnn_ema": "RIM: GRU x EMA",
             "user_rec_prec/rnn_pop": "RIM: GRU x user activity", "user_rec_prec/pop": "Pop"}
    paper = {f"{key.split('/')[0]}/{names[key]}": value.value for key, value in PAPER.items()}
    return metrics, paper
