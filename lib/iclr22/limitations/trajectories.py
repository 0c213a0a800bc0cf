"""Trajectory prediction with and without neighbours: the model whose features are attributed.

The predictor follows the general framework of Makansi et al. (ICLR 2022, Fig. 2; bib key
``makansi2022walk``), with the per-neighbour edges of their Trajectron++Edge variant:

* (b) a history encoder ``psi``: an LSTM over the target's past, ``F^i = psi(x^i_{t-h:t})``;
* (c) an interaction encoder ``xi``: an MLP of each neighbour's whole past relative to the
  target (positions, velocities, kind), ``E^{ij} = xi(x^i, x^j)``, aggregated with
  additive attention queried by ``F^i`` and masked by the adjacency ``A^{ij}`` (eq. 1
  with attention weights instead of the plain mean; with every neighbour masked,
  ``bar E^i = 0``);
* (d) a decoder ``theta``: an MLP of ``[F^i, bar E^i]`` that adds a correction to the
  constant-velocity extrapolation of the last observed step and outputs an isotropic
  Gaussian per future step (mean and ``log sigma``), trained by negative log-likelihood.

``use_neighbours=False`` gives *the same model without neighbours* (every ``A^{ij} = 0``
in training and at test): the paper's Appendix C "retrained without interaction".

Positions are relative to the target's last observed position and divided by
``scale_m`` (set from the training split only). The paper's baseline for a dropped past
(section 3.1) is a static agent: relative positions and velocities all zero.

Deviations from the paper: one deterministic-mean Gaussian instead of Trajectron++'s CVAE
with a GMM decoder (so min-ADE over samples is plain ADE); small LSTMs (32-64 units) so a
CPU trains them in seconds; ``max_neighbours`` nearest agents at the last observed step
(the paper pads to a maximum number of agents with dummies, as we do).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from iclr22 import runtime


def one_thread(fn):
    """Run ``fn`` with one torch thread (restored afterwards). These models work on small
    tensors, where a second intra-op thread costs more in synchronisation than it saves, and
    on a shared CPU it makes every op wait for a busy core."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)
    return wrapper


#: Neighbour kinds relative to the target: same team (or any pedestrian), other team, ball.
SAME, OTHER, BALL = 0, 1, 2
NUM_KINDS = 3


@dataclass
class Samples:
    """One row per (scene, target agent).

    Shapes: past (N, T_obs, 2) and future (N, T_pred, 2) metres; neighbours (N, K, T_obs, 2)
    metres (zeros where padded); neighbour_mask (N, K) bool, True for a real neighbour;
    neighbour_kind (N, K) long in {SAME, OTHER, BALL}; scene (N,) long; agent (N,) long and
    neighbour_agent (N, K) long (-1 where padded): agent indices within the scene.
    """

    past: torch.Tensor
    future: torch.Tensor
    neighbours: torch.Tensor
    neighbour_mask: torch.Tensor
    neighbour_kind: torch.Tensor
    scene: torch.Tensor
    agent: torch.Tensor
    neighbour_agent: torch.Tensor

    def __len__(self) -> int:
        return self.past.shape[0]

    def subset(self, index) -> Samples:
        """The rows ``index`` (a tensor, array or slice)."""
        return Samples(*(getattr(self, f)[index] for f in self.__dataclass_fields__))

    def to(self, device) -> Samples:
        return Samples(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    @property
    def num_neighbours(self) -> torch.Tensor:
        """(N,) number of real neighbours."""
        return self.neighbour_mask.sum(1)


def _check_positions(positions: np.ndarray, kinds: np.ndarray, num_obs: int,
                     num_pred: int) -> None:
    if positions.ndim != 4 or positions.shape[-1] != 2:
        raise ValueError(f"positions must be (num_scenes, num_agents, T, 2), got "
                         f"{positions.shape}")
    if positions.shape[2] != num_obs + num_pred:
        raise ValueError(f"positions have {positions.shape[2]} steps, expected "
                         f"{num_obs} + {num_pred}")
    if kinds.shape != positions.shape[:2]:
        raise ValueError(f"kinds {kinds.shape} must match positions' (scenes, agents) "
                         f"{positions.shape[:2]}")
    if num_obs < 2 or num_pred < 1:
        raise ValueError(f"need num_obs >= 2 and num_pred >= 1, got {num_obs}, {num_pred}")


def build_samples(positions: np.ndarray, kinds: np.ndarray, *, num_obs: int, num_pred: int,
                  max_neighbours: int, target_kinds: tuple[int, ...] = (0, 1),
                  team_based: bool = True) -> Samples:
    """Targets and their neighbours from padded scenes.

    positions: (num_scenes, num_agents, num_obs + num_pred, 2) metres, NaN where an agent
    is not observed. kinds: (num_scenes, num_agents) agent kinds (football: HOME/AWAY/BALL;
    pedestrians: 0); -1 for padding. A target is an agent of a kind in ``target_kinds``
    seen at every step; its neighbours are the other agents seen at every observed step,
    the ``max_neighbours`` nearest at the last observed step. With ``team_based`` a
    neighbour's kind is SAME/OTHER by team and BALL for kind 2, else SAME for everyone.
    """
    _check_positions(positions, kinds, num_obs, num_pred)
    seen = np.isfinite(positions).all(-1)                    # (S, A, T)
    full = seen.all(-1) & np.isin(kinds, target_kinds)        # (S, A) usable targets
    observed = seen[:, :, :num_obs].all(-1) & (kinds >= 0)    # (S, A) usable neighbours
    rows = {k: [] for k in ("past", "future", "nb", "mask", "kind", "scene", "agent", "nba")}
    for s, a in zip(*np.nonzero(full), strict=True):
        others = np.nonzero(observed[s] & (np.arange(positions.shape[1]) != a))[0]
        last = positions[s, a, num_obs - 1]
        dist = np.linalg.norm(positions[s, others, num_obs - 1] - last, axis=1)
        others = others[np.argsort(dist, kind="stable")][:max_neighbours]
        nb = np.zeros((max_neighbours, num_obs, 2), np.float32)
        nb[:len(others)] = positions[s, others, :num_obs]
        kind = np.zeros(max_neighbours, np.int64)
        if team_based:
            kind[:len(others)] = np.where(kinds[s, others] == 2, BALL,
                                          np.where(kinds[s, others] == kinds[s, a], SAME, OTHER))
        nba = np.full(max_neighbours, -1, np.int64)
        nba[:len(others)] = others
        rows["past"].append(positions[s, a, :num_obs])
        rows["future"].append(positions[s, a, num_obs:])
        rows["nb"].append(nb)
        rows["mask"].append(np.arange(max_neighbours) < len(others))
        rows["kind"].append(kind)
        rows["scene"].append(s)
        rows["agent"].append(a)
        rows["nba"].append(nba)
    if not rows["past"]:
        raise ValueError("no agent is seen at every step of any scene: no targets")
    t = {k: torch.as_tensor(np.stack(v) if k not in ("scene", "agent") else np.array(v))
         for k, v in rows.items()}
    return Samples(t["past"].float(), t["future"].float(), t["nb"].float(), t["mask"].bool(),
                   t["kind"].long(), t["scene"].long(), t["agent"].long(), t["nba"].long())


def windows(positions: np.ndarray, period: np.ndarray, kinds: np.ndarray, *, length: int,
            stride: int, max_agents: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut a long recording into scenes of ``length`` steps.

    positions: (T, A, 2) NaN where unseen; period: (T,) 0 out of play (a window never
    crosses a period or a gap); kinds: (A,). Keeps per window the agents seen at some step,
    at most ``max_agents`` (the most observed first). Returns positions (S, max_agents,
    length, 2), kinds (S, max_agents) with -1 padding, start step (S,).
    Shapes: see above.
    """
    scenes, kind_rows, starts = [], [], []
    for start in range(0, positions.shape[0] - length + 1, stride):
        p = period[start:start + length]
        if p[0] == 0 or (p != p[0]).any():
            continue
        window = positions[start:start + length].transpose(1, 0, 2)      # (A, length, 2)
        count = np.isfinite(window[..., 0]).sum(1)
        keep = np.argsort(-count, kind="stable")[:max_agents]
        keep = keep[count[keep] > 0]
        if len(keep) < 2:
            continue
        block = np.full((max_agents, length, 2), np.nan, np.float32)
        block[:len(keep)] = window[keep]
        k = np.full(max_agents, -1, np.int64)
        k[:len(keep)] = kinds[keep]
        scenes.append(block)
        kind_rows.append(k)
        starts.append(start)
    return np.stack(scenes), np.stack(kind_rows), np.array(starts)


# --- the model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictorConfig:
    """Sizes and training settings of :class:`InteractionPredictor`."""

    hidden: int = 64
    edge_hidden: int = 32
    use_neighbours: bool = True
    epochs: int = 30
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-5

    def with_(self, **changes) -> PredictorConfig:
        return replace(self, **changes)


def _motion_features(rel: torch.Tensor) -> torch.Tensor:
    """[relative position, velocity] per step. Shapes: rel (..., T, 2) -> (..., T, 4)."""
    vel = torch.diff(rel, dim=-2, prepend=rel[..., :1, :])
    return torch.cat([rel, vel], dim=-1)


@dataclass
class Encoding:
    """Everything a coalition needs, computed once per target (eq. 1's ingredients).

    Shapes: F (B, 2, H) history encodings [real past, static past]; E (B, K, H_e) edges;
    score (B, 2, K) attention logits for each past variant; cv (B, 2, T_pred, 2) the
    constant-velocity extrapolation for each past variant (scaled units); mask (B, K).
    """

    F: torch.Tensor
    E: torch.Tensor
    score: torch.Tensor
    cv: torch.Tensor
    mask: torch.Tensor


class InteractionPredictor(nn.Module):
    """History encoder + per-neighbour edge encoder + attention + Gaussian decoder.

    Shapes: forward(past (B, T_obs, 2), neighbours (B, K, T_obs, 2), mask (B, K),
    kind (B, K)) -> mean (B, T_pred, 2) metres (absolute) and log_sigma (B, T_pred).
    """

    def __init__(self, num_obs: int, num_pred: int, scale_m: float, config: PredictorConfig):
        super().__init__()
        h, he = config.hidden, config.edge_hidden
        self.num_pred, self.config = num_pred, config
        self.register_buffer("scale", torch.tensor(float(scale_m)))
        self.history = nn.LSTM(4, h, batch_first=True)                       # psi
        self.edge = nn.Sequential(nn.Linear(4 * num_obs + NUM_KINDS, 2 * he), nn.ReLU(),
                                  nn.Linear(2 * he, he), nn.ReLU())           # xi
        self.att_query = nn.Linear(h, he, bias=False)                        # additive
        self.att_key = nn.Linear(he, he)
        self.att_v = nn.Linear(he, 1, bias=False)
        self.decoder = nn.Sequential(nn.Linear(h + he, 128), nn.ReLU(),      # theta
                                     nn.Linear(128, num_pred * 3))
        nn.init.zeros_(self.decoder[-1].weight)   # start at constant velocity, sigma = scale
        nn.init.zeros_(self.decoder[-1].bias)

    # -- encoders (run once per target) --
    def encode(self, past: torch.Tensor, neighbours: torch.Tensor, mask: torch.Tensor,
               kind: torch.Tensor) -> Encoding:
        """Encode the real past, the static past (section 3.1) and every neighbour once."""
        last = past[:, -1:, :]                                            # (B, 1, 2)
        rel = (past - last) / self.scale                                  # (B, T, 2)
        both = torch.stack([rel, torch.zeros_like(rel)], dim=1)           # (B, 2, T, 2)
        b, _, t, _ = both.shape
        _, (hn, _) = self.history(_motion_features(both).reshape(b * 2, t, 4))
        F = hn[-1].reshape(b, 2, -1)                                      # (B, 2, H)
        k = neighbours.shape[1]
        nrel = (neighbours - last[:, None]) / self.scale                  # (B, K, T, 2)
        onehot = nn.functional.one_hot(kind, NUM_KINDS).float()           # (B, K, 3)
        x = torch.cat([_motion_features(nrel).reshape(b, k, t * 4), onehot], -1)  # (B,K,4T+3)
        E = self.edge(x)                                                  # (B, K, H_e)
        score = self.att_v(torch.tanh(self.att_query(F)[:, :, None] + self.att_key(E)[:, None]))
        score = score.squeeze(-1)                                         # (B, 2, K)
        steps = torch.arange(1, self.num_pred + 1, device=past.device, dtype=past.dtype)
        vel = both[:, :, -1] - both[:, :, -2]                             # (B, 2, 2)
        cv = vel[:, :, None, :] * steps[None, None, :, None]              # (B, 2, T_pred, 2)
        use = mask & self.config.use_neighbours
        return Encoding(F, E, score, cv, use)

    # -- decoder for any coalitions (cheap) --
    def decode(self, enc: Encoding, with_past: torch.Tensor,
               neighbour_on: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict for C coalitions of every target at once.

        with_past: (B, C) bool, True where the coalition keeps the real past;
        neighbour_on: (B, C, K) bool, the coalition's adjacency row (eq. 3).
        Returns mean (B, C, T_pred, 2) relative to the last observed position, scaled, and
        log_sigma (B, C, T_pred).
        """
        idx = (~with_past).long()                                          # 0 real, 1 static
        F = torch.gather(enc.F, 1, idx[..., None].expand(-1, -1, enc.F.shape[-1]))  # (B,C,H)
        score = torch.gather(enc.score, 1, idx[..., None].expand(-1, -1, enc.score.shape[-1]))
        on = neighbour_on & enc.mask[:, None, :]                           # eq. 3
        score = score.masked_fill(~on, float("-inf"))
        alpha = torch.softmax(score, dim=-1).nan_to_num(0.0)               # all off -> 0
        Ebar = torch.einsum("bck,bkh->bch", alpha, enc.E)                  # (B, C, H_e)
        out = self.decoder(torch.cat([F, Ebar], -1))                       # (B, C, 3 T_pred)
        b, c = with_past.shape
        out = out.reshape(b, c, self.num_pred, 3)
        cv = torch.gather(enc.cv, 1, idx[..., None, None].expand(-1, -1, self.num_pred, 2))
        return cv + out[..., :2], out[..., 2].clamp(-6.0, 4.0)

    def forward(self, past, neighbours, mask, kind):
        enc = self.encode(past, neighbours, mask, kind)
        b = past.shape[0]
        mean, log_sigma = self.decode(enc, torch.ones(b, 1, dtype=torch.bool, device=past.device),
                                      torch.ones(b, 1, mask.shape[1], dtype=torch.bool,
                                                 device=past.device))
        return past[:, -1:, :] + mean[:, 0] * self.scale, log_sigma[:, 0]


def gaussian_nll(mean: torch.Tensor, log_sigma: torch.Tensor, target: torch.Tensor,
                 scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Isotropic 2-D Gaussian NLL per step, averaged over steps (in scaled units).

    Shapes: mean, target (..., T, 2); log_sigma (..., T) -> (...).
    """
    z = (target - mean) / scale
    nll = 0.5 * (z ** 2).sum(-1) * torch.exp(-2 * log_sigma) + 2 * log_sigma + np.log(2 * np.pi)
    return nll.mean(-1)


def ade(mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Average displacement error (metres). Shapes: (..., T, 2) -> (...)."""
    return torch.linalg.norm(mean - target, dim=-1).mean(-1)


def fde(mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Final displacement error (metres). Shapes: (..., T, 2) -> (...)."""
    return torch.linalg.norm(mean[..., -1, :] - target[..., -1, :], dim=-1)


def displacement_scale(samples: Samples) -> float:
    """RMS per-step displacement of the observed pasts (fit on the training split only)."""
    step = torch.diff(samples.past, dim=1)
    return float(torch.sqrt((step ** 2).sum(-1).mean()).clamp_min(1e-3))


@dataclass
class TrainedPredictor:
    """A trained model and its training record (validation ADE per epoch, best epoch)."""

    model: InteractionPredictor
    val_ade: list[float] = field(default_factory=list)
    best_epoch: int = 0


def _check_samples(samples: Samples) -> None:
    if not isinstance(samples, Samples):
        raise TypeError(f"expected Samples, got {type(samples).__name__}")
    if len(samples) == 0:
        raise ValueError("no samples")
    if not torch.isfinite(samples.past).all() or not torch.isfinite(samples.future).all():
        raise ValueError("past and future must be finite (drop unobserved targets first)")


@one_thread
@torch.no_grad()
def evaluate(model: InteractionPredictor, samples: Samples, *, drop_neighbours: bool = False,
             batch_size: int = 2048) -> dict[str, float]:
    """ADE, FDE (metres) and NLL over ``samples``; ``drop_neighbours`` cuts every edge."""
    model.eval()
    out = {"ade": [], "fde": [], "nll": []}
    for start in range(0, len(samples), batch_size):
        s = samples.subset(slice(start, start + batch_size))
        mask = torch.zeros_like(s.neighbour_mask) if drop_neighbours else s.neighbour_mask
        mean, log_sigma = model(s.past, s.neighbours, mask, s.neighbour_kind)
        out["ade"].append(ade(mean, s.future))
        out["fde"].append(fde(mean, s.future))
        out["nll"].append(gaussian_nll(mean, log_sigma, s.future, model.scale))
    return {k: float(torch.cat(v).mean()) for k, v in out.items()}


@one_thread
def train_predictor(train: Samples, val: Samples, config: PredictorConfig, *, seed: int,
                    device: torch.device | str = "cpu") -> TrainedPredictor:
    """Adam on the Gaussian NLL; keeps the epoch with the best validation ADE.

    The scale and every weight see the training split only; the validation split picks the
    epoch. The test split is never touched here.
    """
    _check_samples(train)
    _check_samples(val)
    generator = runtime.seed_everything(seed)
    model = InteractionPredictor(train.past.shape[1], train.future.shape[1],
                                 displacement_scale(train), config)
    model.to(device)
    train, val = train.to(device), val.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    record = TrainedPredictor(model)
    best_state, best = None, float("inf")
    for epoch in runtime.progress(range(config.epochs), desc="epochs"):
        model.train()
        order = torch.randperm(len(train), generator=generator).to(device)
        for start in range(0, len(train), config.batch_size):
            s = train.subset(order[start:start + config.batch_size])
            mask = s.neighbour_mask if config.use_neighbours else torch.zeros_like(
                s.neighbour_mask)
            mean, log_sigma = model(s.past, s.neighbours, mask, s.neighbour_kind)
            loss = gaussian_nll(mean, log_sigma, s.future, model.scale).mean()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        score = evaluate(model, val, drop_neighbours=not config.use_neighbours)["ade"]
        record.val_ade.append(score)
        if score < best:
            best, record.best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    return record


def time_split(starts: np.ndarray, length: int, fractions: tuple[float, float] = (0.7, 0.1)
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation / test scene indices in time order (first 70 %, next 10 %, rest),
    dropping the scenes that overlap a boundary so no step is in two splits.

    Shapes: starts (S,) start step of each scene -> three index arrays.
    """
    if not (fractions[0] > 0 and fractions[1] > 0 and sum(fractions) < 1):
        raise ValueError(f"fractions must be positive and sum below 1, got {fractions}")
    lo, hi = starts.min(), starts.max() + length
    cut1 = lo + fractions[0] * (hi - lo)
    cut2 = lo + sum(fractions) * (hi - lo)
    end = starts + length
    train = np.nonzero(end <= cut1)[0]
    val = np.nonzero((starts >= cut1) & (end <= cut2))[0]
    test = np.nonzero(starts >= cut2)[0]
    return train, val, test


# --- the two data sets -------------------------------------------------------------------------

NUM_OBS, NUM_PRED = 8, 12          # 3.2 s observed, 4.8 s predicted at 2.5 Hz (the paper's)
RATE_HZ = 2.5


@dataclass
class Splits:
    """Train / validation / test samples of one data set (scenes never shared by splits)."""

    name: str
    train: Samples
    val: Samples
    test: Samples
    simulated: bool
    description: str


def _samples(positions, kinds, scenes, **kwargs) -> Samples:
    s = build_samples(positions[scenes], kinds[scenes], num_obs=NUM_OBS, num_pred=NUM_PRED,
                      **kwargs)
    s.scene = torch.as_tensor(scenes)[s.scene]           # scene ids of the whole data set
    return s


def football_splits(*, train_stride: int = 4, test_stride: int = 8,
                    max_neighbours: int = 10) -> Splits:
    """The SkillCorner match at 2.5 Hz in 20-step windows, split in time (70/10/20 %).

    Training windows start every ``train_stride`` steps, validation and test windows every
    ``test_stride``; targets are players, neighbours players and the ball.
    """
    from iclr22.data import football_tracking as ft

    tracks = ft.resample(ft.load_skillcorner(), RATE_HZ)
    pos, kinds, starts = windows(tracks.positions, tracks.period, tracks.kind,
                                 length=NUM_OBS + NUM_PRED, stride=train_stride, max_agents=24)
    train, val, test = time_split(starts, NUM_OBS + NUM_PRED)
    val, test = val[starts[val] % test_stride == 0], test[starts[test] % test_stride == 0]
    kw = dict(max_neighbours=max_neighbours, target_kinds=(ft.HOME, ft.AWAY))
    return Splits("football", _samples(pos, kinds, train, **kw), _samples(pos, kinds, val, **kw),
                  _samples(pos, kinds, test, **kw), simulated=False,
                  description=f"SkillCorner {tracks.team_names[0]} vs {tracks.team_names[1]}, "
                              "real tracking, 2.5 Hz")


@dataclass
class CrowdSplits(Splits):
    """:class:`Splits` of the SIMULATED crowds, with the simulation for ground truth."""

    crowds: object = None


def crowd_splits(num_scenes: int, *, data_seed: int = 0, max_neighbours: int = 10,
                 **simulation) -> CrowdSplits:
    """SIMULATED social-force crowds (:func:`iclr22.data.crowds.simulate_crowds` with
    ``simulation`` settings), split by scene at random (70/10/20 %)."""
    from iclr22.data import crowds as cr

    sim = cr.simulate_crowds(num_scenes, seed=data_seed, num_steps=NUM_OBS + NUM_PRED,
                             **simulation)
    kinds = np.where(np.isfinite(sim.positions[:, :, 0, 0]), 0, -1)
    order = np.random.default_rng(data_seed).permutation(num_scenes)
    a, b = int(0.7 * num_scenes), int(0.8 * num_scenes)
    kw = dict(max_neighbours=max_neighbours, target_kinds=(0,), team_based=False)
    parts = [_samples(sim.positions, kinds, np.sort(order[i:j]), **kw)
             for i, j in ((0, a), (a, b), (b, num_scenes))]
    return CrowdSplits("pedestrians (simulated)", *parts, simulated=True,
                       description=f"SIMULATED social-force crowds, {num_scenes} scenes",
                       crowds=sim)
