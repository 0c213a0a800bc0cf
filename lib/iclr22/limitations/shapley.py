"""You mostly walk alone: Shapley values of the features of a trajectory predictor.

Osama Makansi, Julius von Kugelgen, Francesco Locatello, Peter Gehler, Dominik Janzing,
Thomas Brox and Bernhard Scholkopf, "You mostly walk alone: Analyzing feature attribution
in trajectory prediction", ICLR 2022. https://openreview.net/forum?id=POxF-LEqnF
Bib key: ``makansi2022walk``. Official code: amazon-science/explainable-trajectory-prediction.

Idea
----
Which cues does a trajectory predictor actually use? Treat the target's own past and each
neighbouring agent as the *players* of a cooperative game whose payout is the model's
*performance* (not its output), and share the payout out with Shapley values. On the
pedestrian benchmarks the past takes nearly everything and the neighbours nearly nothing:
"you mostly walk alone"; on basketball (SportVU) the neighbours matter.

The maths
---------
Players ``N = {past, neighbour 1, ..., neighbour n}`` (plus, for the robustness check of
section 3.3, one *random* agent taken from another scene). For a coalition ``S ⊆ N`` the
model predicts from the features in ``S`` only, and

    nu(S) = - L(x_hat^i_{t+1:t+dt}(S), x^i_{t+1:t+dt})                        (section 3)

with ``L`` the prediction error (here ADE in metres, or the Gaussian NLL), so a positive
value means "this feature lowers the error". The Shapley value of player ``i`` is (eq. 2)

    phi_i = sum_{S ⊆ N \\ {i}} |S|! (|N| - |S| - 1)! / |N|!  (nu(S ∪ {i}) - nu(S)).

Missing features (section 3.1, "a modified version of baseline Shapley values"): a dropped
*past* is replaced by a static, non-moving agent at the target's current position (all
relative positions and velocities zero, as the official code's ``get_zero_neighbor``); a
dropped *neighbour* is removed from the scene by cutting its edge (eq. 3):

    A^{ij}_S = 0 if j ∉ S,   A^{ij} otherwise.

Exact evaluation enumerates all ``2^|N|`` coalitions; every coalition of every target is
evaluated in one batched pass (:func:`coalition_values`): the encoders run once per target
(the real past, the static past and each neighbour), and a coalition only changes which
history encoding is used and which edges enter the attention, so the decoder runs on
``(targets, coalitions)`` rows at once. Above ``max_exact_players`` players we sample:
``M`` random permutations ``pi`` and the marginal contribution of each player when it joins
the players before it (Castro et al. 2009), unbiased for eq. 2:

    phi_i ≈ 1/M sum_m [nu(Pre_i(pi_m) ∪ {i}) - nu(Pre_i(pi_m))].

Social interaction score (eq. 4): the neighbours change from scene to scene ("temporary"
features), so they are first aggregated within a scene by the max, then averaged:

    phi_T = E[ max_{j ∈ T} phi(x_j) ],

while the past ("permanent" feature) is averaged directly, ``phi_past = E[phi(x_past)]``.
The ablation of Table 1 removes all neighbours at inference (``nu`` of ``{past}`` vs ``N``);
Appendix C retrains without them (:mod:`iclr22.limitations.trajectories`).

Deviations
----------
* From the paper: our model is a small LSTM + attention Gaussian predictor, not Trajectron++
  or PECNet; our data are a real football match (SkillCorner) for the coordinated case and
  SIMULATED social-force crowds for the pedestrian case (no real pedestrian data is
  installable offline). The error is ADE of the predicted mean (the paper: NLL for
  Trajectron++, min-ADE for PECNet); :func:`attribute` also offers ``metric="nll"``.
* From the official code: its estimator draws, for each player, 10 coalitions in which every
  other player is present with probability 1/2 and averages the marginal contributions.
  That converges to the *Banzhaf* value, not to eq. 2 (the weights differ; Banzhaf values
  need not add up to ``nu(N) - nu(∅)``). We compute eq. 2 exactly when it is affordable
  (up to 12 players, 4,096 coalitions, covers every target here) and otherwise sample
  permutations, which estimates eq. 2 without bias.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from iclr22 import checks, claims, runtime
from iclr22.limitations.trajectories import (
    BALL,
    OTHER,
    SAME,
    CrowdSplits,
    InteractionPredictor,
    PredictorConfig,
    Samples,
    Splits,
    ade,
    crowd_splits,
    evaluate,
    football_splits,
    gaussian_nll,
    one_thread,
    train_predictor,
)

#: The paper's numbers (Table 1: min-ADE / min-FDE / NLL with and without interaction).
#: ETH-UCY and SDD are pedestrian benchmarks; SportVU is NBA basketball.
PAPER = {
    "ade/trajpp/eth_ucy": claims.PaperValue(0.30, "Table 1", "ETH-UCY (Trajectron++)"),
    "ade/trajpp_no_interaction/eth_ucy": claims.PaperValue(0.31, "Table 1",
                                                           "ETH-UCY (Trajectron++)"),
    "ade/trajpp/sportvu": claims.PaperValue(4.86, "Table 1", "SportVU (Trajectron++)"),
    "ade/trajpp_no_interaction/sportvu": claims.PaperValue(6.62, "Table 1",
                                                           "SportVU (Trajectron++)"),
    "fde/trajpp/sportvu": claims.PaperValue(5.31, "Table 1", "SportVU (Trajectron++)"),
    "fde/trajpp_no_interaction/sportvu": claims.PaperValue(8.98, "Table 1",
                                                           "SportVU (Trajectron++)"),
    "ade/edge/sportvu": claims.PaperValue(4.78, "Table 1", "SportVU (Trajectron++Edge)"),
    "ade/edge_no_interaction/sportvu": claims.PaperValue(7.49, "Table 1",
                                                         "SportVU (Trajectron++Edge)"),
    "ade/trajpp/eth_ucy_retrained": claims.PaperValue(0.30, "Table 2", "ETH-UCY avg"),
    "ade/trajpp_retrained_no_interaction/eth_ucy": claims.PaperValue(0.30, "Table 2",
                                                                     "ETH-UCY avg"),
}
METRICS = ("ade", "nll")
#: Exact enumeration up to this many players (2^12 = 4,096 coalitions a target).
MAX_EXACT_PLAYERS = 12


# --- Shapley values of any game ---------------------------------------------------------------


def _check_num_players(num_players: int, limit: int = 20) -> None:
    checks.positive_int("num_players", num_players)
    if num_players > limit:
        raise ValueError(f"{num_players} players: 2^{num_players} coalitions is too many to "
                         f"enumerate (limit {limit}); use sampled_shapley")


def all_coalitions(num_players: int) -> torch.Tensor:
    """Every coalition as a row of booleans; row ``m`` is the bitmask ``m`` (player ``i`` is
    bit ``i``). Shapes: -> (2^P, P) bool."""
    _check_num_players(num_players)
    masks = torch.arange(2 ** num_players)
    return (masks[:, None] >> torch.arange(num_players)[None, :]) & 1 == 1


def exact_shapley_from_values(values: torch.Tensor, num_players: int) -> torch.Tensor:
    """Eq. 2 from the values of all coalitions in :func:`all_coalitions` order.

    Shapes: values (2^P,) or (2^P, B) -> (P,) or (P, B).
    """
    _check_num_players(num_players)
    if values.shape[0] != 2 ** num_players:
        raise ValueError(f"need 2^{num_players} = {2 ** num_players} coalition values, got "
                         f"{values.shape[0]}")
    masks = torch.arange(2 ** num_players)
    size = all_coalitions(num_players).sum(1)
    p = num_players
    weight = torch.tensor([math.factorial(s) * math.factorial(p - s - 1) / math.factorial(p)
                           for s in range(p)], dtype=torch.float64)
    phi = []
    v = values.double()
    for i in range(p):
        without = masks[(masks >> i) & 1 == 0]                        # (2^(P-1),) S ∌ i
        w = weight[size[without]]
        delta = v[without | (1 << i)] - v[without]                    # nu(S ∪ {i}) - nu(S)
        phi.append(torch.tensordot(w, delta, dims=1))
    return torch.stack(phi).to(values.dtype)


def exact_shapley(value_fn: Callable[[torch.Tensor], torch.Tensor],
                  num_players: int) -> torch.Tensor:
    """Eq. 2 by enumeration, all coalitions in one call of ``value_fn``.

    value_fn: (C, P) bool coalitions -> (C,) or (C, B) values. Shapes: -> (P,) or (P, B).
    """
    return exact_shapley_from_values(value_fn(all_coalitions(num_players)), num_players)


def permutation_coalitions(num_players: int, num_permutations: int,
                           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The prefix coalitions of random permutations, for :func:`sampled_shapley`.

    Returns coalitions (M (P + 1), P) bool (for each permutation the empty set, then one more
    player at a time) and the permutations (M, P). Shapes: see above.
    """
    _check_num_players(num_players, limit=10_000)
    if num_permutations < 1:
        raise ValueError(f"num_permutations must be >= 1, got {num_permutations}")
    perms = torch.stack([torch.randperm(num_players, generator=generator)
                         for _ in range(num_permutations)])                  # (M, P)
    rank = torch.argsort(perms, dim=1)                                       # position of i
    steps = torch.arange(num_players + 1)
    coalitions = rank[:, None, :] < steps[None, :, None]                     # (M, P+1, P)
    return coalitions.reshape(-1, num_players), perms


def sampled_shapley_from_values(values: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """Permutation estimate of eq. 2 from the values of :func:`permutation_coalitions`.

    Shapes: values (M (P + 1),) or (M (P + 1), B), perms (M, P) -> (P,) or (P, B).
    """
    m, p = perms.shape
    v = values.reshape(m, p + 1, *values.shape[1:])
    marginal = v[:, 1:] - v[:, :-1]                       # (M, P, ...) k-th joiner's gain
    phi = torch.zeros((p, *values.shape[1:]), dtype=values.dtype)
    for row in range(m):
        phi[perms[row]] += marginal[row]
    return phi / m


def sampled_shapley(value_fn: Callable[[torch.Tensor], torch.Tensor], num_players: int,
                    num_permutations: int, generator: torch.Generator) -> torch.Tensor:
    """Permutation-sampling estimate of eq. 2, all coalitions in one call of ``value_fn``.

    Shapes: value_fn (C, P) -> (C,) or (C, B); returns (P,) or (P, B).
    """
    coalitions, perms = permutation_coalitions(num_players, num_permutations, generator)
    return sampled_shapley_from_values(value_fn(coalitions), perms)


def naive_shapley(value_of: Callable[[frozenset], float], num_players: int) -> np.ndarray:
    """Eq. 2 term by term, one coalition at a time: the reference the batched code must match.

    value_of: a coalition (frozenset of player indices) -> its value. Shapes: -> (P,).
    """
    _check_num_players(num_players, limit=16)
    cache: dict[frozenset, float] = {}

    def nu(s: frozenset) -> float:
        if s not in cache:
            cache[s] = float(value_of(s))
        return cache[s]

    p = num_players
    phi = np.zeros(p)
    for i in range(p):
        others = [j for j in range(p) if j != i]
        for mask in range(2 ** (p - 1)):
            s = frozenset(others[k] for k in range(p - 1) if mask >> k & 1)
            w = math.factorial(len(s)) * math.factorial(p - len(s) - 1) / math.factorial(p)
            phi[i] += w * (nu(s | {i}) - nu(s))
    return phi


# --- the trajectory game ----------------------------------------------------------------------


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def _check_coalitions(coalitions: torch.Tensor, num_players: int) -> None:
    if coalitions.dtype != torch.bool or coalitions.ndim != 2 \
            or coalitions.shape[1] != num_players:
        raise ValueError(f"coalitions must be (C, {num_players}) bool, got "
                         f"{tuple(coalitions.shape)} {coalitions.dtype}")


def _error(model: InteractionPredictor, mean_rel: torch.Tensor, log_sigma: torch.Tensor,
           future_rel: torch.Tensor, metric: str) -> torch.Tensor:
    """The error ``L`` of section 3 in metres (ADE) or nats (NLL); shapes (..., T, 2) -> (...)."""
    if metric == "ade":
        return ade(mean_rel * model.scale, future_rel * model.scale)
    return gaussian_nll(mean_rel, log_sigma, future_rel)


@one_thread
@torch.no_grad()
def coalition_values(model: InteractionPredictor, samples: Samples, coalitions: torch.Tensor,
                     *, metric: str = "ade", max_rows: int = 65_536) -> torch.Tensor:
    """``nu(S) = -L`` for every coalition of every target, batched (section 3, eq. 3).

    Player 0 is the target's past, player ``1 + k`` the neighbour in slot ``k``; every
    target in ``samples`` must have all ``K`` slots real (see :func:`compact_players`).
    Shapes: coalitions (C, 1 + K) bool -> values (C, B).
    """
    _check_metric(metric)
    k = samples.neighbours.shape[1]
    _check_coalitions(coalitions, 1 + k)
    if not bool(samples.neighbour_mask.all()):
        raise ValueError("every neighbour slot must be real: use compact_players first")
    model.eval()
    enc = model.encode(samples.past, samples.neighbours, samples.neighbour_mask,
                       samples.neighbour_kind)
    last = samples.past[:, -1:, :]
    future_rel = (samples.future - last) / model.scale                   # (B, T, 2)
    b, c = len(samples), coalitions.shape[0]
    out = torch.empty(c, b)
    chunk = max(1, max_rows // max(b, 1))
    for start in range(0, c, chunk):
        part = coalitions[start:start + chunk].to(samples.past.device)   # (c', 1 + K)
        with_past = part[None, :, 0].expand(b, -1)                       # (B, c')
        on = part[None, :, 1:].expand(b, -1, -1)                         # (B, c', K)
        mean, log_sigma = model.decode(enc, with_past, on)               # (B, c', T, 2)
        err = _error(model, mean, log_sigma, future_rel[:, None], metric)
        out[start:start + chunk] = -err.T.cpu()
    return out


@one_thread
@torch.no_grad()
def naive_coalition_values(model: InteractionPredictor, samples: Samples,
                           coalitions: torch.Tensor, *, metric: str = "ade") -> torch.Tensor:
    """The same values by re-running the whole model once per coalition (the slow reference
    for the batched :func:`coalition_values`). Shapes: (C, 1 + K) -> (C, B)."""
    _check_metric(metric)
    _check_coalitions(coalitions, 1 + samples.neighbours.shape[1])
    model.eval()
    last = samples.past[:, -1:, :]
    static = last.expand_as(samples.past)                                # section 3.1
    out = torch.empty(coalitions.shape[0], len(samples))
    for row, coalition in enumerate(coalitions):
        past = samples.past if bool(coalition[0]) else static
        mask = samples.neighbour_mask & coalition[None, 1:]              # eq. 3
        mean, log_sigma = model(past, samples.neighbours, mask, samples.neighbour_kind)
        err = _error(model, (mean - last) / model.scale, log_sigma,
                     (samples.future - last) / model.scale, metric)
        out[row] = -err
    return out


def with_random_agent(samples: Samples, pool: Samples, *, seed: int,
                      kinds: tuple[int, ...] = (SAME, OTHER)) -> Samples:
    """Append one *random* neighbour to every target (section 3.3): the past of an agent of
    another scene of ``pool``, at its own place, in an extra slot (the last one).

    Its agent index is -2 (not an agent of the scene). Shapes: K -> K + 1 slots.
    """
    gen = torch.Generator().manual_seed(seed)
    n = len(samples)
    pick = torch.randint(len(pool), (n,), generator=gen)
    for _ in range(10):                                  # re-draw those from the same scene
        same = pool.scene[pick] == samples.scene
        if not bool(same.any()):
            break
        pick[same] = torch.randint(len(pool), (int(same.sum()),), generator=gen)
    kind = torch.tensor(kinds)[torch.randint(len(kinds), (n,), generator=gen)]
    return Samples(samples.past, samples.future,
                   torch.cat([samples.neighbours, pool.past[pick][:, None]], 1),
                   torch.cat([samples.neighbour_mask, torch.ones(n, 1, dtype=torch.bool)], 1),
                   torch.cat([samples.neighbour_kind, kind[:, None]], 1),
                   samples.scene, samples.agent,
                   torch.cat([samples.neighbour_agent, torch.full((n, 1), -2)], 1))


def compact_players(samples: Samples, index: torch.Tensor) -> Samples:
    """Targets ``index`` (all with the same number of real slots) with the padding removed:
    real neighbour slots first (as built), then the random slot if there is one."""
    s = samples.subset(index)
    keep = s.neighbour_mask[0]
    if not bool((s.neighbour_mask == keep).all()):
        raise ValueError("compact_players needs targets with the same real slots")
    return Samples(s.past, s.future, s.neighbours[:, keep], s.neighbour_mask[:, keep],
                   s.neighbour_kind[:, keep], s.scene, s.agent, s.neighbour_agent[:, keep])


@dataclass
class Attribution:
    """Shapley values of every target's features.

    Shapes: past (N,); neighbours (N, K) over the slots of the samples (NaN where padded);
    random (N,) (NaN without a random agent); full (N,) = nu(N) and empty (N,) = nu(∅);
    exact (N,) bool, False where the values were sampled; kind (N, K) and agent (N, K) of
    the slots; scene (N,), target (N,).
    """

    past: np.ndarray
    neighbours: np.ndarray
    random: np.ndarray
    full: np.ndarray
    empty: np.ndarray
    exact: np.ndarray
    kind: np.ndarray
    agent: np.ndarray
    scene: np.ndarray
    target: np.ndarray
    metric: str

    @property
    def max_neighbour(self) -> np.ndarray:
        """(N,) the largest neighbour value of each target (NaN without neighbours)."""
        filled = np.where(np.isnan(self.neighbours), -np.inf, self.neighbours)
        best = filled.max(1, initial=-np.inf)
        return np.where(np.isfinite(best), best, np.nan)


@one_thread
def attribute(model: InteractionPredictor, samples: Samples, *, metric: str = "ade",
              random_slot: bool = True, max_exact_players: int = MAX_EXACT_PLAYERS,
              num_permutations: int = 64, seed: int = 0) -> Attribution:
    """Shapley values (eq. 2) of the past, each neighbour and the random agent, per target.

    ``samples`` may have a random agent in its last slot (:func:`with_random_agent`;
    ``random_slot=True``). Targets are grouped by their number of players and each group is
    evaluated in one batched pass: exact up to ``max_exact_players`` players, otherwise with
    ``num_permutations`` sampled permutations.
    """
    _check_metric(metric)
    if len(samples) == 0:
        raise ValueError("no samples to attribute")
    n, k = samples.neighbour_mask.shape
    real = samples.neighbour_mask.clone()
    past = np.full(n, np.nan)
    nbs = np.full((n, k), np.nan)
    full, empty, exact = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, bool)
    gen = torch.Generator().manual_seed(seed)
    patterns, group = torch.unique(real, dim=0, return_inverse=True)
    for g, pattern in enumerate(patterns):
        index = torch.nonzero(group == g).squeeze(1)
        s = compact_players(samples, index)
        p = 1 + int(pattern.sum())
        if p <= max_exact_players:
            coalitions = all_coalitions(p)
            values = coalition_values(model, s, coalitions, metric=metric)     # (2^P, B)
            phi = exact_shapley_from_values(values, p)                          # (P, B)
            exact[index.numpy()] = True
        else:
            coalitions, perms = permutation_coalitions(p, num_permutations, gen)
            values = coalition_values(model, s, coalitions, metric=metric)
            phi = sampled_shapley_from_values(values, perms)
        everyone = torch.ones(1, p, dtype=torch.bool)
        nobody = torch.zeros(1, p, dtype=torch.bool)
        ends = coalition_values(model, s, torch.cat([everyone, nobody]), metric=metric)
        idx = index.numpy()
        past[idx] = phi[0].numpy()
        nbs[np.ix_(idx, np.nonzero(pattern.numpy())[0])] = phi[1:].T.numpy()
        full[idx], empty[idx] = ends[0].numpy(), ends[1].numpy()
    random = np.full(n, np.nan)
    if random_slot:
        random = nbs[:, -1].copy()
        nbs = nbs[:, :-1]
    kind = samples.neighbour_kind.numpy()[:, :nbs.shape[1]]
    agent = samples.neighbour_agent.numpy()[:, :nbs.shape[1]]
    return Attribution(past, nbs, random, full, empty, exact, kind, agent,
                       samples.scene.numpy(), samples.agent.numpy(), metric)


@dataclass(frozen=True)
class AttributionSummary:
    """Dataset-level aggregation of section 3.2.

    past: E[phi(past)]; social_score: eq. 4, E[max_j phi(x_j)] over targets with at least
    one neighbour; random: E[phi(random agent)]; neighbour_share: the neighbours' part of the
    total gain, E[sum_j phi_j] / (E[phi(past)] + E[sum_j phi_j]); ball: E[phi(ball)] where
    the ball is a neighbour (NaN otherwise); num_targets.
    """

    past: float
    social_score: float
    random: float
    neighbour_share: float
    ball: float
    num_targets: int


def social_interaction_score(attribution: Attribution) -> float:
    """Eq. 4: the mean over targets (with >= 1 neighbour) of the largest neighbour value."""
    best = attribution.max_neighbour
    best = best[np.isfinite(best)]
    if best.size == 0:
        raise ValueError("no target has a neighbour: the social interaction score is undefined")
    return float(best.mean())


def summarize(attribution: Attribution) -> AttributionSummary:
    """Aggregate per-target Shapley values over a data set (section 3.2)."""
    past = float(np.mean(attribution.past))
    total_nb = float(np.mean(np.nansum(attribution.neighbours, axis=1)))
    ball = attribution.neighbours[attribution.kind == BALL]
    ball = ball[np.isfinite(ball)]
    random = attribution.random[np.isfinite(attribution.random)]
    return AttributionSummary(
        past=past, social_score=social_interaction_score(attribution),
        random=float(random.mean()) if random.size else float("nan"),
        neighbour_share=total_nb / (past + total_nb) if past + total_nb != 0 else float("nan"),
        ball=float(ball.mean()) if ball.size else float("nan"),
        num_targets=len(attribution.past))


# --- ground truth in simulation -----------------------------------------------------------------


@one_thread
def ground_truth_influence(splits, samples: Samples) -> np.ndarray:
    """How far each neighbour truly moves each target's future (SIMULATED crowds only).

    For every target, the scene is restarted at the last observed step once as it was and
    once per neighbour with that neighbour removed; the influence is the mean distance
    between the target's two futures (metres). Shapes: -> (N, K), NaN where padded.
    """
    from iclr22.data import crowds as cr
    from iclr22.limitations.trajectories import NUM_OBS, NUM_PRED

    if not getattr(splits, "simulated", False) or getattr(splits, "crowds", None) is None:
        raise ValueError("ground truth needs the simulated crowds (crowd_splits)")
    influence = np.full(samples.neighbour_mask.shape, np.nan)
    scenes = samples.scene.numpy()
    for scene in np.unique(scenes):
        n = int(splits.crowds.num_agents[scene])
        futures = cr.counterfactual_futures(splits.crowds, int(scene), [None, *range(n)],
                                            start_step=NUM_OBS - 1, num_steps=NUM_PRED)
        moved = np.linalg.norm(futures[1:] - futures[:1], axis=-1).mean(-1)   # (removed, agent)
        for row in np.nonzero(scenes == scene)[0]:
            slots = np.nonzero(samples.neighbour_mask[row].numpy())[0]
            agents = samples.neighbour_agent[row, slots].numpy()
            influence[row, slots] = moved[agents, int(samples.agent[row])]
    return influence


@dataclass(frozen=True)
class GroundTruthCheck:
    """Do the attributions point at the truly influential neighbour?

    Over targets with >= 2 neighbours whose most influential neighbour moves them by at
    least ``threshold_m``: top1 = how often the neighbour with the largest Shapley value is
    that one, chance = the mean of 1 / (number of neighbours), phi_influential / phi_other
    = mean Shapley value of that neighbour / of the others (metres of ADE).
    """

    top1: float
    chance: float
    phi_influential: float
    phi_other: float
    num_interacting: int
    num_targets: int
    threshold_m: float


def ground_truth_check(attribution: Attribution, influence: np.ndarray,
                       threshold_m: float = 0.1) -> GroundTruthCheck:
    """Compare Shapley values with the simulator's ground-truth influence (same slots)."""
    phi = attribution.neighbours
    if phi.shape != influence.shape:
        raise ValueError(f"attribution {phi.shape} and influence {influence.shape} differ")
    real = np.isfinite(influence)
    count = real.sum(1)
    best_true = np.where(real, influence, -np.inf).max(1)
    rows = np.nonzero((count >= 2) & (best_true >= threshold_m))[0]
    if rows.size == 0:
        raise ValueError(f"no target is moved >= {threshold_m} m by a neighbour")
    true_arg = np.where(real, influence, -np.inf)[rows].argmax(1)
    phi_rows = np.where(real[rows], phi[rows], -np.inf)
    top1 = float((phi_rows.argmax(1) == true_arg).mean())
    chance = float((1.0 / count[rows]).mean())
    infl = phi[rows, true_arg]
    other = np.where(real[rows], phi[rows], 0.0)
    other[np.arange(rows.size), true_arg] = 0.0
    phi_other = float((other.sum(1) / (count[rows] - 1)).mean())
    return GroundTruthCheck(top1, chance, float(infl.mean()), phi_other, int(rows.size),
                            int(len(phi)), threshold_m)


# --- the experiment -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentConfig:
    """Sizes of one run. ``for_profile()`` picks the full or the quick settings; the
    paper-scale GPU settings are ``ExperimentConfig.paper_scale()`` (same code)."""

    predictor: PredictorConfig = PredictorConfig(epochs=10)
    num_crowd_scenes: int = 400
    football_train_stride: int = 4
    max_test_targets: int = 300
    gt_threshold_m: float = 0.1

    @classmethod
    def for_profile(cls) -> ExperimentConfig:
        return runtime.pick(full=cls(), quick=cls(predictor=PredictorConfig(epochs=4),
                                                  num_crowd_scenes=150, football_train_stride=8,
                                                  max_test_targets=80))

    @classmethod
    def paper_scale(cls) -> ExperimentConfig:
        """Closer to the paper: bigger model, 50 epochs, training windows every 2 steps,
        2,000 crowd scenes, every test target attributed (minutes on a GPU)."""
        return cls(predictor=PredictorConfig(hidden=128, edge_hidden=64, epochs=50),
                   num_crowd_scenes=2000, football_train_stride=2, max_test_targets=100_000)


@dataclass
class Data:
    """Both data sets, the attributed test targets and the crowds' ground truth (N_c, K)."""

    football: Splits
    crowds: CrowdSplits
    football_test: Samples
    crowd_test: Samples
    influence: np.ndarray


def _first(samples: Samples, num: int) -> Samples:
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(0))
    return samples.subset(torch.sort(order[:num]).values)


def prepare_data(config: ExperimentConfig) -> Data:
    """Load the football match, simulate the crowds, pick the targets to attribute (the same
    for every seed) and compute the crowds' ground-truth influence once."""
    football = football_splits(train_stride=config.football_train_stride)
    crowds = crowd_splits(config.num_crowd_scenes)
    crowd_test = _first(crowds.test, config.max_test_targets)
    return Data(football, crowds, _first(football.test, config.max_test_targets), crowd_test,
                ground_truth_influence(crowds, crowd_test))


@dataclass
class DatasetRun:
    """One data set, one seed: test errors (Table 1 and Appendix C) and attributions.

    errors: ade/fde/nll of the interaction model, the same with every neighbour dropped at
    inference (``*_dropped``) and of the model retrained without neighbours
    (``*_retrained``); summary: :class:`AttributionSummary` of the attributed targets.
    """

    errors: dict[str, float]
    summary: AttributionSummary
    attribution: Attribution
    model: InteractionPredictor
    samples: Samples


def run_dataset(splits: Splits, test: Samples, config: ExperimentConfig, *, seed: int,
                random_kinds: tuple[int, ...], device: torch.device | str = "cpu") -> DatasetRun:
    """Train both models (train split; epochs picked on validation), evaluate on the whole
    test split, attribute the chosen test targets with a random agent added."""
    with_nb = train_predictor(splits.train, splits.val, config.predictor, seed=seed,
                              device=device).model.cpu()
    without = train_predictor(splits.train, splits.val,
                              config.predictor.with_(use_neighbours=False), seed=seed,
                              device=device).model.cpu()
    errors = evaluate(with_nb, splits.test)
    errors |= {f"{k}_dropped": v for k, v in
               evaluate(with_nb, splits.test, drop_neighbours=True).items()}
    errors |= {f"{k}_retrained": v for k, v in evaluate(without, splits.test).items()}
    probe = with_random_agent(test, splits.test, seed=seed, kinds=random_kinds)
    attribution = attribute(with_nb, probe, seed=seed)
    return DatasetRun(errors, summarize(attribution), attribution, with_nb, probe)


@dataclass
class SeedRun:
    """Both data sets for one seed, and the simulated ground-truth check."""

    seed: int
    football: DatasetRun
    crowds: DatasetRun
    ground_truth: GroundTruthCheck

    def metrics(self) -> dict[str, float]:
        """Flat per-seed numbers for :func:`iclr22.claims.over_seeds` and the tables."""
        out = {}
        for name, run in (("football", self.football), ("crowds", self.crowds)):
            out |= {f"{name}/{k}": v for k, v in run.errors.items()}
            s = run.summary
            out |= {f"{name}/phi_past": s.past, f"{name}/social_score": s.social_score,
                    f"{name}/phi_random": s.random, f"{name}/neighbour_share": s.neighbour_share,
                    f"{name}/past_share": 1.0 - s.neighbour_share}
        g = self.ground_truth
        out |= {"crowds/gt_top1": g.top1, "crowds/gt_chance": g.chance,
                "crowds/gt_phi_influential": g.phi_influential, "crowds/gt_phi_other": g.phi_other}
        return out


def run_seed(data: Data, config: ExperimentConfig, seed: int,
             device: torch.device | str = "cpu") -> SeedRun:
    """Everything the claims need, for one seed (model init, batch order, random agents)."""
    football = run_dataset(data.football, data.football_test, config, seed=seed,
                           random_kinds=(SAME, OTHER), device=device)
    crowds = run_dataset(data.crowds, data.crowd_test, config, seed=seed, random_kinds=(SAME,),
                         device=device)
    check = ground_truth_check(crowds.attribution, data.influence, config.gt_threshold_m)
    return SeedRun(seed, football, crowds, check)


def paper_claims(runs: list[SeedRun], *, setting: str) -> list[claims.Claim]:
    """The paper's headline claims, each paired over the seeds of ``runs``."""
    seeds = [r.seed for r in runs]
    v = claims.over_seeds(lambda s: next(r for r in runs if r.seed == s).metrics(), seeds)
    fig4 = "Fig. 4 shows bars only, no numbers"
    return [
        claims.at_least(
            "Pedestrian-style scenes: the target's own past carries nearly all the attribution "
            "(>= 90 % of the gain)", v["crowds/past_share"], 0.9, seeds=seeds,
            setting=f"SIMULATED crowds; {setting}", name="past share", unit="",
            notes=f"Fig. 4a-d (ETH-UCY, nuScenes, SDD); {fig4}"),
        claims.compare(
            "Neighbours carry a larger share of the attribution in football than in "
            "pedestrian scenes", v["football/neighbour_share"], v["crowds/neighbour_share"],
            seeds=seeds, names=("football share", "crowds share"),
            setting=f"SkillCorner match vs SIMULATED crowds; {setting}",
            notes=f"Fig. 4e vs 4a; {fig4}"),
        claims.compare(
            "Football: the social interaction score (eq. 4) exceeds a random agent's value",
            v["football/social_score"], v["football/phi_random"], seeds=seeds,
            names=("social score", "random agent"), setting=f"SkillCorner match; {setting}",
            unit="m", notes=f"Fig. 4e (SportVU); {fig4}"),
        claims.compare(
            "Football: dropping every neighbour at inference raises the error (Table 1)",
            v["football/ade_dropped"], v["football/ade"], seeds=seeds, ratio=True,
            names=("ADE w/o interaction", "ADE"), setting=f"SkillCorner match; {setting}",
            paper=PAPER["ade/trajpp_no_interaction/sportvu"],
            paper_baseline=PAPER["ade/trajpp/sportvu"]),
        claims.compare(
            "Pedestrian-style scenes: dropping every neighbour at inference raises the error "
            "by less than 5 % (Table 1)", v["crowds/ade_dropped"], v["crowds/ade"],
            seeds=seeds, ratio=True, threshold=1.05, better="lower",
            names=("ADE w/o interaction", "ADE"), setting=f"SIMULATED crowds; {setting}",
            paper=PAPER["ade/trajpp_no_interaction/eth_ucy"],
            paper_baseline=PAPER["ade/trajpp/eth_ucy"]),
        claims.compare(
            "Pedestrian-style scenes: a model retrained without neighbours has an error less "
            "than 5 % above the interaction model's (Appendix C, Table 2)",
            v["crowds/ade_retrained"], v["crowds/ade"], seeds=seeds, ratio=True,
            threshold=1.05, better="lower",
            names=("ADE retrained w/o", "ADE"), setting=f"SIMULATED crowds; {setting}",
            paper=PAPER["ade/trajpp_retrained_no_interaction/eth_ucy"],
            paper_baseline=PAPER["ade/trajpp/eth_ucy_retrained"]),
        claims.compare(
            "Simulation: the neighbour with the largest Shapley value is the truly most "
            "influential one more often than chance", v["crowds/gt_top1"],
            v["crowds/gt_chance"], seeds=seeds, names=("top-1 agreement", "chance"),
            setting=f"SIMULATED crowds, targets moved >= 0.1 m by a neighbour; {setting}",
            notes="section 5: a known influence with a near-zero value points to a failure "
                  "of the model"),
    ]


# --- measured costs, tables and figures -----------------------------------------------------------


def _timed(fn) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


@one_thread
def speed_ratio(model: InteractionPredictor, samples: Samples, *, num_neighbours: int = 7,
                num_targets: int = 16) -> dict[str, float]:
    """Batched vs naive evaluation of every coalition, measured in one run on the same
    targets (those with >= ``num_neighbours`` neighbours, truncated to that many)."""
    rows = torch.nonzero(samples.num_neighbours >= num_neighbours).squeeze(1)[:num_targets]
    if rows.numel() == 0:
        raise ValueError(f"no target has {num_neighbours} neighbours")
    s = samples.subset(rows)
    keep = torch.zeros_like(s.neighbour_mask)
    keep[:, :num_neighbours] = True
    s = compact_players(Samples(s.past, s.future, s.neighbours, keep, s.neighbour_kind,
                                s.scene, s.agent, s.neighbour_agent), torch.arange(len(s)))
    coalitions = all_coalitions(1 + num_neighbours)
    batched_s, fast = _timed(lambda: coalition_values(model, s, coalitions))
    naive_s, slow = _timed(lambda: naive_coalition_values(model, s, coalitions))
    return {"targets": len(s), "coalitions per target": len(coalitions),
            "batched (s)": round(batched_s, 4), "naive loop (s)": round(naive_s, 3),
            "speed-up (x)": round(naive_s / batched_s, 1),
            "max |difference| (m)": float((fast - slow).abs().max())}


@one_thread
def sampling_error(model: InteractionPredictor, samples: Samples,
                   num_permutations: tuple[int, ...] = (4, 16, 64, 256), *,
                   num_targets: int = 20, seed: int = 0):
    """Mean absolute error (metres) of the permutation estimate against exact eq. 2, for the
    targets with the most players. Returns a pandas Series indexed by M."""
    import pandas as pd

    most = int(samples.num_neighbours.max())
    rows = torch.nonzero(samples.num_neighbours == most).squeeze(1)[:num_targets]
    s = compact_players(samples, rows)
    p = 1 + most
    exact = exact_shapley_from_values(coalition_values(model, s, all_coalitions(p)), p)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for m in num_permutations:
        coalitions, perms = permutation_coalitions(p, m, gen)
        approx = sampled_shapley_from_values(coalition_values(model, s, coalitions), perms)
        out[m] = float((approx - exact).abs().mean())
    series = pd.Series(out, name=f"mean |sampled - exact| (m), {p} players, {len(s)} targets")
    series.index.name = "permutations M"
    return series


def _mean_sd(values: list[float], digits: int = 3) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.{digits}f} ± {a.std(ddof=1) if a.size > 1 else 0.0:.{digits}f}"


def errors_table(runs: list[SeedRun]):
    """Table 1 / Table 2 layout: ADE / FDE (m) and NLL per data set and variant, mean ± sd
    over seeds, with the paper's Trajectron++ numbers beside them."""
    import pandas as pd

    variants = {"with interaction": "", "w/o interaction (dropped at inference)": "_dropped",
                "retrained w/o interaction": "_retrained"}
    paper = {("football", ""): "4.86 / 5.31 / 5.99 (SportVU)",
             ("football", "_dropped"): "6.62 / 8.98 / 6.77 (SportVU)",
             ("crowds", ""): "0.30 / 0.51 / -0.33 (ETH-UCY)",
             ("crowds", "_dropped"): "0.31 / 0.52 / -0.33 (ETH-UCY)",
             ("crowds", "_retrained"): "0.30 / 0.50 (ETH-UCY, Table 2)"}
    rows = []
    for name, label in (("football", "football (real)"), ("crowds", "pedestrians (SIMULATED)")):
        for variant, suffix in variants.items():
            per = [getattr(r, name).errors for r in runs]
            cells = {m.upper(): _mean_sd([e[f"{m}{suffix}"] for e in per])
                     for m in ("ade", "fde", "nll")}
            rows.append({"data": label, "model": variant, **cells,
                         "paper, Traj++ (ADE / FDE / NLL)": paper.get((name, suffix), "-")})
    return pd.DataFrame(rows)


def attribution_table(runs: list[SeedRun]):
    """Section 3.2 aggregates per data set (metres of ADE), mean ± sd over seeds."""
    import pandas as pd

    rows = {}
    for name, label in (("football", "football (real)"), ("crowds", "pedestrians (SIMULATED)")):
        s = [getattr(r, name).summary for r in runs]
        rows[label] = {"phi(past)": _mean_sd([x.past for x in s]),
                       "social interaction score (eq. 4)": _mean_sd([x.social_score for x in s]),
                       "phi(random agent)": _mean_sd([x.random for x in s]),
                       "neighbours' share of the gain": _mean_sd([x.neighbour_share for x in s]),
                       "targets attributed": s[0].num_targets}
    return pd.DataFrame(rows).T


def plot_attribution_bars(runs: list[SeedRun], ax) -> None:
    """Fig. 4 of the paper for our two data sets: phi(past), the social interaction score
    and phi(random agent), mean and standard deviation over seeds."""
    labels = [r"$\varphi_{\mathrm{past}}$", r"$\varphi_{\mathcal{T}}$ (eq. 4)",
              r"$\varphi_{\mathrm{random}}$"]
    x = np.arange(3)
    for offset, (name, label, colour) in zip((-0.2, 0.2), (
            ("football", "football (real)", "tab:green"),
            ("crowds", "pedestrians (SIMULATED)", "tab:blue")), strict=True):
        s = [getattr(r, name).summary for r in runs]
        vals = np.array([[x_.past, x_.social_score, x_.random] for x_ in s])
        ax.bar(x + offset, vals.mean(0), 0.4, yerr=vals.std(0, ddof=1) if len(s) > 1 else None,
               label=label, color=colour, capsize=3)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, labels)
    ax.set_ylabel("Shapley value (m of ADE saved)")
    ax.set_title("Who gets the credit: own past, best neighbour, random agent")
    ax.legend(loc="upper right")


_KIND_STYLE = {SAME: ("tab:blue", "team-mate"), OTHER: ("tab:green", "opponent"),
               BALL: ("gold", "ball")}


def scene_frames(run: DatasetRun, num_scenes: int = 8) -> list[dict]:
    """Targets to show in the widget: half with the largest social score, half with the
    smallest (the paper's Fig. 5: interaction needed or not), with their predictions."""
    a, s = run.attribution, run.samples
    best = np.nan_to_num(a.max_neighbour, nan=-np.inf)
    order = np.argsort(-best)
    rows = list(order[: num_scenes // 2]) + list(order[::-1][: num_scenes - num_scenes // 2])
    with torch.no_grad():
        mean, _ = run.model(s.past[rows], s.neighbours[rows, :-1], s.neighbour_mask[rows, :-1],
                            s.neighbour_kind[rows, :-1])
    frames = []
    for i, r in enumerate(rows):
        real = np.isfinite(a.neighbours[r])
        frames.append({"past": s.past[r].numpy(), "future": s.future[r].numpy(),
                       "prediction": mean[i].numpy(),
                       "neighbours": s.neighbours[r, :-1][real].numpy(),
                       "kind": a.kind[r][real], "phi": a.neighbours[r][real],
                       "phi_past": a.past[r], "phi_random": a.random[r]})
    return frames


def draw_scene(fig, index: int, *, frames: list[dict]) -> None:
    """Widget frame: the scene with arrows to the neighbours whose width is their Shapley
    value (left) and the values as bars (right), as the paper's Fig. 5."""
    f = frames[index]
    ax, bars = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    last = f["past"][-1]
    for nb, kind, phi in zip(f["neighbours"], f["kind"], f["phi"], strict=True):
        colour, _ = _KIND_STYLE[int(kind)]
        ax.plot(nb[:, 0], nb[:, 1], color=colour, lw=1.2)
        ax.plot(*nb[-1], "o", color=colour, ms=5)
        width = 0.5 + 12 * max(phi, 0.0) / max(1e-6, np.abs(f["phi"]).max())
        ax.annotate("", xy=nb[-1], xytext=last, arrowprops=dict(
            arrowstyle="-|>", lw=width, color="tab:red" if phi > 0 else "grey", alpha=0.6))
    ax.plot(f["past"][:, 0], f["past"][:, 1], color="tab:red", lw=2, label="target past")
    ax.plot(f["future"][:, 0], f["future"][:, 1], "k--", lw=1.5, label="true future")
    ax.plot(f["prediction"][:, 0], f["prediction"][:, 1], ":", color="tab:red", lw=2,
            marker=".", label="prediction")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(f"target {index}: arrow width = Shapley value")
    ax.legend(loc="best", fontsize=7)
    names = ["past", *[f"{_KIND_STYLE[int(k)][1][:4]} {j + 1}" for j, k in enumerate(f["kind"])],
             "random"]
    vals = [f["phi_past"], *f["phi"], f["phi_random"]]
    bars.barh(np.arange(len(vals)), vals, color=["tab:red", *[
        _KIND_STYLE[int(k)][0] for k in f["kind"]], "lightgrey"])
    bars.set_yticks(np.arange(len(vals)), names, fontsize=7)
    bars.invert_yaxis()
    bars.axvline(0, color="black", lw=0.8)
    bars.set_xlabel(r"$\varphi$ (m of ADE saved)")
    fig.tight_layout()


def headline_metrics(runs: list[SeedRun]) -> tuple[dict[str, float], dict[str, float]]:
    """(our headline numbers, mean over seeds; the paper's where it has the same quantity)
    for :func:`iclr22.results.record`. Ratios are ADE without interaction / with."""
    per = claims.over_seeds(lambda s: next(r for r in runs if r.seed == s).metrics(),
                            [r.seed for r in runs])
    mean = {k: round(float(np.mean(v)), 5) for k, v in per.items()}
    for name in ("football", "crowds"):
        for variant in ("dropped", "retrained"):
            ratio = np.array(per[f"{name}/ade_{variant}"]) / np.array(per[f"{name}/ade"])
            mean[f"{name}/ade_ratio_{variant}"] = round(float(ratio.mean()), 5)
    p = {k: v.value for k, v in PAPER.items()}
    paper = {"football/ade_ratio_dropped": round(p["ade/trajpp_no_interaction/sportvu"]
                                                 / p["ade/trajpp/sportvu"], 5),
             "crowds/ade_ratio_dropped": round(p["ade/trajpp_no_interaction/eth_ucy"]
                                               / p["ade/trajpp/eth_ucy"], 5),
             "crowds/ade_ratio_retrained": round(p["ade/trajpp_retrained_no_interaction/eth_ucy"]
                                                 / p["ade/trajpp/eth_ucy_retrained"], 5)}
    return mean, paper


def data_table(data: Data):
    """Sizes of the two data sets: targets per split and neighbours per target."""
    import pandas as pd

    rows = {}
    for splits in (data.football, data.crowds):
        rows[splits.name] = {"source": splits.description,
                             **{f"{k} targets": len(getattr(splits, k))
                                for k in ("train", "val", "test")},
                             "median neighbours": float(splits.test.num_neighbours.median()),
                             "max neighbours": int(splits.test.num_neighbours.max())}
    return pd.DataFrame(rows).T
