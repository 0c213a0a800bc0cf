"""PSA-GAN: progressive self-attention GANs for synthetic time series.

Paul Jeha, Michael Bohlke-Schneider, Pedro Mercado, Shubham Kapoor, Rajbir Singh Nirwan,
Valentin Flunkert, Jan Gasthaus, Tim Januschowski. *PSA-GAN: Progressive Self Attention
GANs for Synthetic Time Series*. ICLR 2022. https://openreview.net/forum?id=Ix_mh42xq5w
(arXiv 2108.00981; bib key ``jeha2022psagan``; official code ``mbohlkeschneider/psa-gan``,
``src/gluonts/model/psagan``). The metric, Context-FID, is in
:mod:`iclr22.timeseries.context_fid`.

The idea. A convolutional GAN for univariate windows of length ``L = 8 * 2^n`` that is
*grown*: the generator starts by producing length-8 windows and each new block doubles the
length (linear interpolation, then a block); the discriminator mirrors it, each block
halving the length (average pooling). A new block is *faded in*: for a while the output is a
mix of the new block and a skip path that bypasses it. Every block is a spectrally
normalised convolution followed by residual self-attention, so that long-range structure
(a weekly cycle seen from length 64) is one attention step away. The generator is
conditioned on time features and a learned embedding of the series; PSA-GAN-C adds an MLP
that reads the last ``C`` observed values (the past) before every block, for forecasting.

The equations (paper section 3, in its notation; ``Y`` is a (channels, T) feature map):

    c(Y)    = LR(SN(Conv(Y)))                                  (3.1) convolution, leaky ReLU
    Q, K, V = SN(Conv1x1_q(Y)), SN(Conv1x1_k(Y)), SN(Conv1x1_v(Y))
    SA(Y)   = softmax(Q^T K / sqrt(d_k)) V                       (3.1) self-attention over time
    m(Y)    = gamma * SN(Conv1x1(SA(c(Y)))) + c(Y)               (3.1) main block, gamma = 0 at init
    up(Y)   = linear interpolation to 2T; down(Y) = AvgPool_2(Y)  (3.2)
    G_i     = m([up(G_{i-1}); phi_i]),  phi_i = pooled time features + series embedding
    fade-in : x_out = alpha * out(G_i) + (1 - alpha) * out(skip(up(G_{i-1}))), alpha: 0 -> 1
    PSA-GAN-C: G_i <- G_i + MLP([x_{past}; G_i]) before each block       (3.4)

Losses (paper section 3.5 and the released ``run_gan.py``): least-squares GAN

    L_D = 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]                        (LSGAN)
    L_G = 1/2 E[(D(G(z)) - 1)^2] + lambda * (|std(x) - std(G(z))| + |mean(x) - mean(G(z))|)

with the moment loss (lambda = 1) comparing each generated window with the real window
whose time features and series it was given. The released schedule: Adam at 5e-5, two
discriminator steps per generator step (50 for the first 25 generator steps), four stages
8 -> 16 -> 32 -> 64 of equal length, each new block faded in linearly over the first 40 %
of its stage (2 of 5 epochs).

Deviations (all for the CPU budget, except where marked):
* Training length: 120 generator steps with batch 32 and 16 channels, on windows of 32
  days (three stages 8 -> 16 -> 32), instead of 20 epochs x 100 batches of 512 on 64-256
  steps; to get anywhere in so few steps Adam's learning rate is
  1e-3 (the paper 5e-5) and the discriminator warm-up is 5 steps for the first 5 generator
  steps (the paper 50 for 25). Same code, paper settings: :meth:`PSAGANConfig.paper`.
* Upsampling is linear, as the paper's text says (the released code uses nearest).
* Spectral norm is applied to the query/key/value and output 1x1 convolutions of the
  self-attention, as the text says (the released code normalises only the convolution).
* Attention width: 4 query/key and value features (the released code uses 1).
* Far-forecasting (the paper's section 4.3, whose protocol could not be read here; our
  construction, CPU scale): forecast the last 8 days of a 32-day held-out window from the 32
  days before it; PSA-GAN-C fills the 24-day gap (mean of 10 samples) and the ridge
  forecaster of :func:`fit_forecaster` forecasts from it, against a ridge from the past
  straight to the far days (real data only), the AR mean path as the filler, the
  unconditional PSA-GAN as the filler, and a seasonal naive forecast; ridge instead of
  DeepAR. The discriminator never sees the past, as in the released code.
* Data: windows of the real Chicago 'L' ridership series (:mod:`iclr22.data.chicago_ridership`),
  mean-scaled per station with the training period's mean, as the book's stand-in for the
  paper's traffic/electricity/solar/M4 sets, which no package ships.

The paper's numbers: its tables (Context-FID and NRMSE per data set and model) were not
reachable with the offline search tools of this book's build (only the abstract and the
introduction are indexed), so ``PAPER`` holds no value and the claims of the chapter carry
the paper's *qualitative* statements only; the chapter says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from scipy import stats
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from .. import claims, runtime
from ..data.chicago_ridership import Ridership, load_ridership
from . import context_fid as cfid

#: The paper's numbers by metric key. Empty: see the module docstring (tables not reachable).
PAPER: dict[str, claims.PaperValue] = {}

MIN_LENGTH = 8
MODELS = ("psagan", "no_self_attention", "no_progressive", "ar_floor")
MODEL_LABELS = {"psagan": "PSA-GAN", "no_self_attention": "PSA-GAN w/o self-attention",
                "no_progressive": "PSA-GAN w/o progressive growing",
                "ar_floor": "AR(14) floor", "real_train": "real training windows"}


# --- configuration ----------------------------------------------------------------------------


@dataclass
class PSAGANConfig:
    """Architecture and schedule. Defaults are our CPU sizes; :meth:`paper` the released ones."""

    length: int = 32
    channels: int = 16
    kernel_size: int = 3
    attention_features: int = 4
    embedding_dim: int = 4
    self_attention: bool = True
    progressive: bool = True
    context_length: int = 0          # > 0: PSA-GAN-C (the MLP block that reads the past)
    num_steps: int = 120             # generator steps in all, split evenly over the stages
    batch_size: int = 32
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    discriminator_steps: int = 2
    warmup_generator_steps: int = 5
    warmup_discriminator_steps: int = 5
    fade_fraction: float = 0.4
    moment_weight: float = 1.0

    def __post_init__(self) -> None:
        _check_length(self.length)
        if self.num_steps < self.num_stages:
            raise ValueError(f"num_steps={self.num_steps} must be >= num_stages={self.num_stages}")
        if not 0.0 <= self.fade_fraction < 1.0:
            raise ValueError(f"fade_fraction must be in [0, 1), got {self.fade_fraction}")

    @property
    def num_stages(self) -> int:
        """Stages 8, 16, ..., length: log2(length) - 2 of them."""
        return int(math.log2(self.length)) - 2

    @classmethod
    def paper(cls, **overrides) -> PSAGANConfig:
        """The released settings (GPU scale): 32 channels, Adam 5e-5, batch 512, 2,000 steps."""
        settings = dict(channels=32, attention_features=1, embedding_dim=10, lr=5e-5,
                        batch_size=512, num_steps=2000, warmup_generator_steps=25,
                        warmup_discriminator_steps=50)
        return cls(**{**settings, **overrides})


def _check_length(length: int) -> None:
    if not isinstance(length, int) or length < MIN_LENGTH or length & (length - 1):
        raise ValueError(f"length must be a power of two >= {MIN_LENGTH}, got {length!r}")


# --- the main block: SN convolution + residual self-attention (section 3.1) -------------------


class SelfAttention(nn.Module):
    """Residual self-attention over time with spectrally normalised 1x1 projections.

    Shapes: y (B, C, T) -> (B, C, T). ``gamma`` starts at 0, so the block starts as identity.
    """

    def __init__(self, channels: int, features: int):
        super().__init__()
        self.query = spectral_norm(nn.Conv1d(channels, features, 1))
        self.key = spectral_norm(nn.Conv1d(channels, features, 1))
        self.value = spectral_norm(nn.Conv1d(channels, features, 1))
        self.out = spectral_norm(nn.Conv1d(features, channels, 1))
        self.gamma = nn.Parameter(torch.zeros(()))
        self.scale = 1.0 / math.sqrt(features)

    def attention(self, y: Tensor) -> Tensor:
        """softmax(Q^T K / sqrt(d_k)): (B, C, T) -> (B, T, T), rows sum to 1."""
        q, k = self.query(y), self.key(y)                                  # (B, d, T)
        return torch.softmax(q.transpose(1, 2) @ k * self.scale, dim=-1)  # (3.1)

    def forward(self, y: Tensor) -> Tensor:
        h = self.value(y) @ self.attention(y).transpose(1, 2)  # (B, d, T): sum_s A_ts V_s
        return self.gamma * self.out(h) + y                     # (3.1) residual, learned gamma


class MainBlock(nn.Module):
    """m(Y) = SA(LR(SN(Conv(Y)))) (self-attention optional for the ablation).

    Shapes: (B, C_in, T) -> (B, C_out, T).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 attention_features: int, self_attention: bool):
        super().__init__()
        self.conv = spectral_norm(nn.Conv1d(in_channels, out_channels, kernel_size,
                                            padding=kernel_size // 2))
        self.attention = (SelfAttention(out_channels, attention_features) if self_attention
                          else nn.Identity())

    def forward(self, y: Tensor) -> Tensor:
        return self.attention(F.leaky_relu(self.conv(y), 0.2))  # (3.1)


def _pool_to(x: Tensor, length: int) -> Tensor:
    """Average-pool (B, C, L) to (B, C, length) (L a multiple of length)."""
    return x if x.shape[-1] == length else F.avg_pool1d(x, x.shape[-1] // length)


def _conditioning(embedding: nn.Embedding, features: Tensor, series: Tensor) -> Tensor:
    """[time features; series embedding]: (B, F, L), (B,) -> (B, F + E, L)."""
    emb = embedding(series)[:, :, None].expand(-1, -1, features.shape[-1])  # (B, E, L)
    return torch.cat([features, emb], dim=1)


# --- generator and discriminator (sections 3.2-3.4) -------------------------------------------


def _shared_parts(config: PSAGANConfig, num_features: int,
                  num_series: int) -> tuple[nn.Embedding, int, dict]:
    """What G and D both build: the series embedding, the number of conditioning channels
    (time features + embedding) and the main-block settings."""
    block = dict(kernel_size=config.kernel_size, attention_features=config.attention_features,
                 self_attention=config.self_attention)
    return (nn.Embedding(num_series, config.embedding_dim),
            num_features + config.embedding_dim, block)


class Generator(nn.Module):
    """The progressive generator (PSA-GAN-C when ``config.context_length > 0``).

    Shapes: noise (B, 1, L), features (B, F, L), series (B,), context (B, C) or None
    -> (B, 1, 8 * 2^depth).
    """

    def __init__(self, config: PSAGANConfig, num_features: int, num_series: int):
        super().__init__()
        self.config = config
        self.embedding, cond, block = _shared_parts(config, num_features, num_series)
        ch = config.channels
        self.initial = MainBlock(1 + cond, ch, **block)
        self.blocks = nn.ModuleList(MainBlock(ch + cond, ch, **block)
                                    for _ in range(config.num_stages - 1))
        self.skips = nn.ModuleList(nn.Conv1d(ch, ch, 1) for _ in range(config.num_stages - 1))
        c = config.context_length
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c + ch, c // 2 + ch), nn.LeakyReLU(0.2),
                          nn.Linear(c // 2 + ch, ch))
            for _ in range(config.num_stages - 1)) if c > 0 else None
        self.out = spectral_norm(nn.Conv1d(ch, 1, 1))

    def _read_past(self, stage: int, y: Tensor, context: Tensor) -> Tensor:
        """PSA-GAN-C (3.4): y + MLP([past; y]) at every time step. (B, ch, T) -> same."""
        past = context[:, :, None].expand(-1, -1, y.shape[-1])          # (B, C, T)
        h = torch.cat([past, y], dim=1).transpose(1, 2)                 # (B, T, C + ch)
        return y + self.mlps[stage](h).transpose(1, 2)                  # (B, ch, T)

    def forward(self, noise: Tensor, features: Tensor, series: Tensor, depth: int,
                alpha: float = 1.0, context: Tensor | None = None) -> Tensor:
        _check_depth(depth, self.config.num_stages)
        if (context is None) != (self.mlps is None):
            raise ValueError("context must be given exactly when context_length > 0")
        cond = _conditioning(self.embedding, features, series)                # (B, F+E, L)
        y = self.initial(_pool_to(torch.cat([noise, cond], 1), MIN_LENGTH))   # (B, ch, 8)
        previous = y
        for stage in range(depth):
            y = F.interpolate(y, scale_factor=2, mode="linear", align_corners=False)  # (3.2) up
            previous = y                                                      # (B, ch, 2T)
            if self.mlps is not None:
                y = self._read_past(stage, y, context)
            y = self.blocks[stage](torch.cat([y, _pool_to(cond, y.shape[-1])], 1))
        out = self.out(y)                                                     # (B, 1, T)
        if depth > 0 and alpha < 1.0:                                         # fade-in
            out = alpha * out + (1.0 - alpha) * self.out(self.skips[depth - 1](previous))
        return out


class Discriminator(nn.Module):
    """The progressive discriminator: blocks halve the length down to 8, then a linear head.

    Shapes: x (B, 1, 8 * 2^depth), features (B, F, L), series (B,) -> (B, 1) scores.
    """

    def __init__(self, config: PSAGANConfig, num_features: int, num_series: int):
        super().__init__()
        self.config = config
        self.embedding, cond, block = _shared_parts(config, num_features, num_series)
        ch = config.channels
        self.initial = nn.Sequential(spectral_norm(nn.Conv1d(1 + cond, ch, 1)), nn.LeakyReLU(0.2))
        self.blocks = nn.ModuleList(MainBlock(ch, ch, **block)
                                    for _ in range(config.num_stages - 1))
        self.last = nn.Sequential(MainBlock(ch, ch, **block),
                                  spectral_norm(nn.Conv1d(ch, 1, 1)), nn.LeakyReLU(0.2))
        self.head = spectral_norm(nn.Linear(MIN_LENGTH, 1))

    def forward(self, x: Tensor, features: Tensor, series: Tensor, depth: int,
                alpha: float = 1.0) -> Tensor:
        _check_depth(depth, self.config.num_stages)
        if x.shape[-1] != MIN_LENGTH * 2 ** depth:
            raise ValueError(f"x has length {x.shape[-1]}, depth {depth} needs "
                             f"{MIN_LENGTH * 2 ** depth}")
        cond = _conditioning(self.embedding, features, series)               # (B, F+E, L)
        h = self.initial(torch.cat([x, _pool_to(cond, x.shape[-1])], 1))     # (B, ch, T)
        for stage in reversed(range(depth)):
            h = F.avg_pool1d(self.blocks[stage](h), 2)                       # (3.2) down
            if stage == depth - 1 and alpha < 1.0:                           # fade-in
                skip = self.initial(torch.cat([F.avg_pool1d(x, 2),
                                               _pool_to(cond, h.shape[-1])], 1))
                h = alpha * h + (1.0 - alpha) * skip
        return self.head(self.last(h).squeeze(1))                            # (B, 8) -> (B, 1)


def _check_depth(depth: int, num_stages: int) -> None:
    if not 0 <= depth < num_stages:
        raise ValueError(f"depth must be in [0, {num_stages - 1}], got {depth}")


# --- losses (section 3.5) ---------------------------------------------------------------------


def lsgan_discriminator_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """L_D = 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]. Shapes: (B, 1), (B, 1) -> scalar."""
    return 0.5 * (real_scores - 1).pow(2).mean() + 0.5 * fake_scores.pow(2).mean()


def lsgan_generator_loss(fake_scores: Tensor) -> Tensor:
    """1/2 E[(D(G(z)) - 1)^2]. Shapes: (B, 1) -> scalar."""
    return 0.5 * (fake_scores - 1).pow(2).mean()


def moment_loss(fake: Tensor, real: Tensor) -> Tensor:
    """Mean over windows of |std diff| + |mean diff| along time. Shapes: (B, 1, T) x2 -> scalar."""
    if fake.shape != real.shape:
        raise ValueError(f"fake {tuple(fake.shape)} and real {tuple(real.shape)} must match")
    return ((fake.std(dim=-1) - real.std(dim=-1)).abs().mean()
            + (fake.mean(dim=-1) - real.mean(dim=-1)).abs().mean())


# --- data: windows of the ridership panel -----------------------------------------------------


@dataclass
class WindowSet:
    """Windows of a panel: ``target`` (N, L), ``features`` (N, F, L) time features,
    ``series`` (N,) station index, ``context`` (N, C) the C values before each window,
    ``start`` (N,) the day index of each window's first value."""

    target: Tensor
    features: Tensor
    series: Tensor
    context: Tensor
    start: Tensor

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def subset(self, idx: Tensor) -> WindowSet:
        return WindowSet(self.target[idx], self.features[idx], self.series[idx],
                         self.context[idx], self.start[idx])

    def to(self, device: torch.device) -> WindowSet:
        return WindowSet(*(t.to(device) for t in (self.target, self.features, self.series,
                                                   self.context, self.start)))


@dataclass
class PanelData:
    """Scaled panel (num_series, num_days), its time features (F, num_days), the split day,
    and the training / held-out windows."""

    values: np.ndarray
    time_features: np.ndarray
    split_day: int
    train: WindowSet
    heldout: WindowSet
    stations: tuple[str, ...]
    dates: np.ndarray


def time_features(dates: np.ndarray) -> np.ndarray:
    """Day of week and day of year as sin/cos pairs. Shapes: (T,) datetime64[D] -> (4, T)."""
    days = (dates - np.datetime64("1970-01-05", "D")).astype(np.int64)  # a Monday
    dow = 2 * np.pi * (days % 7) / 7.0
    doy = 2 * np.pi * (dates - dates.astype("datetime64[Y]")).astype(np.int64) / 365.25
    return np.stack([np.sin(dow), np.cos(dow), np.sin(doy), np.cos(doy)]).astype(np.float32)


def make_windows(values: np.ndarray, feats: np.ndarray, starts: np.ndarray, length: int,
                 context_length: int) -> WindowSet:
    """Cut windows at ``starts`` from every series. Shapes: values (S, T), feats (F, T)."""
    num_series = values.shape[0]
    offsets = starts[:, None] + np.arange(length)[None, :]                     # (W, L)
    past = starts[:, None] + np.arange(-context_length, 0)[None, :]            # (W, C)
    target = values[:, offsets].reshape(-1, length)                           # (S*W, L)
    context = values[:, past].reshape(-1, context_length)                     # (S*W, C)
    features = np.broadcast_to(feats[:, offsets].transpose(1, 0, 2)[None],
                               (num_series, len(starts), feats.shape[0], length))
    features = features.reshape(-1, feats.shape[0], length)                   # (S*W, F, L)
    series = np.repeat(np.arange(num_series), len(starts))
    start = np.tile(starts, num_series)
    return WindowSet(torch.tensor(target, dtype=torch.float32),
                     torch.tensor(np.ascontiguousarray(features), dtype=torch.float32),
                     torch.tensor(series), torch.tensor(context, dtype=torch.float32),
                     torch.tensor(start))


def prepare_panel(data: Ridership | None = None, *, length: int = 32, context_length: int = 32,
                  train_fraction: float = 0.7, train_stride: int = 4,
                  heldout_stride: int = 16) -> PanelData:
    """Mean-scale each station by its training-period mean; cut training windows from the
    first ``train_fraction`` of the days and held-out windows from the rest (no overlap).
    """
    _check_length(length)
    if not 0.2 <= train_fraction <= 0.9:
        raise ValueError(f"train_fraction must be in [0.2, 0.9], got {train_fraction}")
    data = data or load_ridership()
    split = int(round(train_fraction * data.num_days))
    scale = data.values[:, :split].mean(axis=1, keepdims=True)               # (S, 1)
    values = (data.values / scale).astype(np.float32)
    feats = time_features(data.dates)
    train_starts = np.arange(context_length, split - length + 1, train_stride)
    heldout_starts = np.arange(split + context_length, data.num_days - length + 1,
                               heldout_stride)
    return PanelData(values=values, time_features=feats, split_day=split,
                     train=make_windows(values, feats, train_starts, length, context_length),
                     heldout=make_windows(values, feats, heldout_starts, length, context_length),
                     stations=data.stations, dates=data.dates)


# --- training (the released schedule, shortened) ----------------------------------------------


def stage_schedule(config: PSAGANConfig) -> list[tuple[int, float]]:
    """(depth, alpha) for every generator step: equal steps per stage, linear fade-in over
    the first ``fade_fraction`` of each new stage. Without progressive growing: full depth,
    alpha = 1 throughout."""
    last = config.num_stages - 1
    if not config.progressive:
        return [(last, 1.0)] * config.num_steps
    bounds = np.linspace(0, config.num_steps, config.num_stages + 1).round().astype(int)
    plan = []
    for depth in range(config.num_stages):
        span = bounds[depth + 1] - bounds[depth]
        fade = max(int(round(config.fade_fraction * span)), 1) if depth > 0 else 0
        plan += [(depth, min(1.0, (i + 1) / (fade + 1)) if i < fade else 1.0)
                 for i in range(span)]
    return plan


@dataclass
class GANRun:
    """A trained generator, its losses per generator step and the stage snapshots
    (samples of a fixed noise batch at the end of every stage, for the widget)."""

    config: PSAGANConfig
    generator: Generator
    discriminator: Discriminator
    generator_loss: list[float]
    discriminator_loss: list[float]
    snapshots: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0


def _batch(windows: WindowSet, size: int, generator: torch.Generator) -> WindowSet:
    return windows.subset(torch.randint(0, len(windows), (size,), generator=generator))


def _fake(g: Generator, batch: WindowSet, depth: int, alpha: float,
          generator: torch.Generator) -> Tensor:
    noise = torch.randn(batch.target.shape[0], 1, batch.target.shape[1],
                        generator=generator).to(batch.target.device)
    context = batch.context if g.config.context_length > 0 else None
    return g(noise, batch.features, batch.series, depth, alpha, context)


def _discriminator_step(g, d, opt_d, batch, depth, alpha, rng) -> float:
    with torch.no_grad():
        fake = _fake(g, batch, depth, alpha, rng)
    real = _pool_to(batch.target[:, None, :], fake.shape[-1])                 # (B, 1, T)
    loss = lsgan_discriminator_loss(d(real, batch.features, batch.series, depth, alpha),
                                    d(fake, batch.features, batch.series, depth, alpha))
    opt_d.zero_grad()
    loss.backward()
    opt_d.step()
    return float(loss.detach())


def _generator_step(g, d, opt_g, batch, depth, alpha, rng, moment_weight) -> float:
    fake = _fake(g, batch, depth, alpha, rng)
    real = _pool_to(batch.target[:, None, :], fake.shape[-1])
    for p in d.parameters():
        p.requires_grad_(False)
    loss = lsgan_generator_loss(d(fake, batch.features, batch.series, depth, alpha))
    loss = loss + moment_weight * moment_loss(fake, real)
    opt_g.zero_grad()
    loss.backward()
    opt_g.step()
    for p in d.parameters():
        p.requires_grad_(True)
    return float(loss.detach())


def train_psagan(train: WindowSet, config: PSAGANConfig, *, num_series: int, seed: int = 0,
                 device: torch.device | None = None, snapshot_windows: int = 4) -> GANRun:
    """Train PSA-GAN (or an ablation, or PSA-GAN-C) on training windows.

    Shapes: train.target (N, L) with L = config.length.
    """
    if train.target.shape[1] != config.length:
        raise ValueError(f"windows have length {train.target.shape[1]}, config.length is "
                         f"{config.length}")
    device = device or runtime.device()
    rng = runtime.seed_everything(seed)
    num_features = train.features.shape[1]
    g = Generator(config, num_features, num_series).to(device)
    d = Discriminator(config, num_features, num_series).to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=config.lr, betas=config.betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=config.lr, betas=config.betas)
    train = train.to(device)
    fixed = train.subset(torch.arange(snapshot_windows) * (len(train) // snapshot_windows))
    fixed_rng = torch.Generator().manual_seed(seed + 1)
    plan = stage_schedule(config)
    run = GANRun(config, g, d, [], [])
    start = runtime.elapsed()
    for step in runtime.progress(range(config.num_steps), desc="PSA-GAN"):
        depth, alpha = plan[step]
        num_d = (config.warmup_discriminator_steps if step < config.warmup_generator_steps
                 else config.discriminator_steps)
        for _ in range(num_d):
            loss_d = _discriminator_step(g, d, opt_d, _batch(train, config.batch_size, rng),
                                         depth, alpha, rng)
        run.discriminator_loss.append(loss_d)
        batch = _batch(train, config.batch_size, rng)
        run.generator_loss.append(_generator_step(g, d, opt_g, batch, depth, alpha, rng,
                                                  config.moment_weight))
        if step + 1 == config.num_steps or plan[step + 1][0] != depth:
            with torch.no_grad():
                fixed_rng.manual_seed(seed + 1)
                run.snapshots.append(_fake(g, fixed, depth, 1.0, fixed_rng)[:, 0].cpu().numpy())
    run.seconds = runtime.elapsed() - start
    return run


@torch.no_grad()
def generate(g: Generator, windows: WindowSet, *, seed: int = 0,
             batch_size: int = 1024) -> np.ndarray:
    """Synthetic windows with the time features and series of ``windows`` (and their past,
    for PSA-GAN-C), at full length. Shapes: -> (N, L)."""
    g.eval()
    rng = torch.Generator().manual_seed(seed)
    device = next(g.parameters()).device
    parts = []
    for i in range(0, len(windows), batch_size):
        batch = windows.subset(torch.arange(i, min(i + batch_size, len(windows)))).to(device)
        parts.append(_fake(g, batch, g.config.num_stages - 1, 1.0, rng)[:, 0].cpu())
    g.train()
    return torch.cat(parts).numpy()


# --- the statistical floor: an AR(p) per series ----------------------------------------------


@dataclass
class ARModel:
    """Per-series AR(p) with intercept: ``coef`` (S, p + 1), residual ``noise_std`` (S,)."""

    coef: np.ndarray
    noise_std: np.ndarray

    @property
    def order(self) -> int:
        return int(self.coef.shape[1] - 1)


def fit_ar(values: np.ndarray, split_day: int, order: int = 14) -> ARModel:
    """Least-squares AR(order) of each series on its training period only.

    Shapes: values (S, T) -> coef (S, order + 1), noise_std (S,).
    """
    if values.ndim != 2 or split_day <= 2 * order:
        raise ValueError(f"values must be (S, T) with a training period longer than 2 x order, "
                         f"got {values.shape}, split_day={split_day}")
    coefs, stds = [], []
    for series in values[:, :split_day]:
        lags = np.stack([series[order - k - 1:-k - 1] for k in range(order)], axis=1)  # (n, p)
        design = np.hstack([np.ones((lags.shape[0], 1)), lags])                     # (n, p+1)
        coef, *_ = np.linalg.lstsq(design, series[order:], rcond=None)
        coefs.append(coef)
        stds.append(np.std(series[order:] - design @ coef))
    return ARModel(np.asarray(coefs), np.asarray(stds))


def sample_ar(model: ARModel, series: np.ndarray, length: int, *, seed: int = 0,
              burn_in: int = 100) -> np.ndarray:
    """Unconditional AR windows: simulate ``burn_in + length`` steps from the series mean.

    Shapes: series (N,) station of each window -> (N, length).
    """
    rng = np.random.default_rng(seed)
    coef, std = model.coef[series], model.noise_std[series]                  # (N, p+1), (N,)
    mean = coef[:, 0] / np.clip(1 - coef[:, 1:].sum(1), 1e-3, None)
    history = np.repeat(mean[:, None], model.order, axis=1)                  # (N, p), newest last
    shocks = std * rng.standard_normal((burn_in + length, len(std)))        # (burn_in + L, N)
    return _ar_path(coef, history, shocks)[:, burn_in:].astype(np.float32)


def ar_forecast(model: ARModel, series: np.ndarray, past: np.ndarray, steps: int) -> np.ndarray:
    """The AR mean path from observed pasts (no shocks): the AR point forecast.

    Shapes: series (N,), past (N, >= p) newest last -> (N, steps).
    """
    if past.ndim != 2 or past.shape[1] < model.order or steps < 1:
        raise ValueError(f"past must be (N, >= {model.order}) and steps >= 1, got "
                         f"{past.shape}, steps={steps}")
    shocks = np.zeros((steps, past.shape[0]))
    return _ar_path(model.coef[series], past[:, -model.order:], shocks).astype(np.float32)


def _ar_path(coef: np.ndarray, history: np.ndarray, shocks: np.ndarray) -> np.ndarray:
    """x_t = c + sum_k a_k x_{t-k} + e_t, one row per series. Shapes: coef (N, p+1),
    history (N, p) newest last, shocks (T, N) -> (N, T)."""
    out = []
    for shock in shocks:
        nxt = coef[:, 0] + (coef[:, 1:] * history[:, ::-1]).sum(1) + shock  # AR(p) step
        history = np.hstack([history[:, 1:], nxt[:, None]])
        out.append(nxt)
    return np.stack(out, axis=1)


# --- downstream forecasting: a ridge forecaster with and without synthetic windows ----------


def fit_forecaster(windows: np.ndarray, horizon: int, ridge: float = 1.0) -> np.ndarray:
    """Ridge regression of the last ``horizon`` values of a window on the others (+ bias).

    Shapes: windows (N, L) -> weights (L - horizon + 1, horizon).
    """
    x = np.hstack([np.ones((windows.shape[0], 1)), windows[:, :-horizon]])   # (N, L-H+1)
    y = windows[:, -horizon:]                                                # (N, H)
    gram = x.T @ x + ridge * np.eye(x.shape[1])
    return np.linalg.solve(gram, x.T @ y)


def nrmse(weights: np.ndarray, windows: np.ndarray, horizon: int) -> float:
    """sqrt(mean((y_hat - y)^2)) / mean(|y|) on the last ``horizon`` values of windows."""
    return nrmse_of(ridge_forecast(weights, windows[:, :-horizon]), windows[:, -horizon:])


def ridge_forecast(weights: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """[1, inputs] @ weights. Shapes: weights (I + 1, H), inputs (N, I) -> (N, H)."""
    return np.hstack([np.ones((inputs.shape[0], 1)), inputs]) @ weights


def nrmse_of(forecast: np.ndarray, truth: np.ndarray) -> float:
    """sqrt(mean((y_hat - y)^2)) / mean(|y|). Shapes: (N, H), (N, H) -> scalar."""
    if forecast.shape != truth.shape:
        raise ValueError(f"forecast {forecast.shape} and truth {truth.shape} must match")
    return float(np.sqrt(np.mean((forecast - truth) ** 2)) / np.mean(np.abs(truth)))


# --- far-forecasting with PSA-GAN-C: fill the gap, then forecast --------------------------------

#: Far-forecasting methods: a gap filler + the short forecaster, or a forecaster of the far
#: days straight from the past.
FAR_METHODS = ("psagan_c", "psagan", "ar_fill", "direct", "seasonal_naive")
FAR_LABELS = {"psagan_c": "PSA-GAN-C fills the gap", "psagan": "PSA-GAN (no past) fills the gap",
              "ar_fill": "AR(14) fills the gap", "direct": "real data only: ridge from the past",
              "seasonal_naive": "seasonal naive (last observed week)"}


@torch.no_grad()
def fill_gap(g: Generator, windows: WindowSet, gap: int, *, num_samples: int,
             seed: int = 0) -> np.ndarray:
    """The mean of ``num_samples`` generated windows over their first ``gap`` days: PSA-GAN-C
    reads each window's past (``windows.context``); an unconditional generator does not.

    Shapes: windows of length L >= gap -> (N, gap).
    """
    if not 1 <= gap <= g.config.length or num_samples < 1:
        raise ValueError(f"need 1 <= gap <= {g.config.length} and num_samples >= 1, got "
                         f"gap={gap}, num_samples={num_samples}")
    draws = [generate(g, windows, seed=seed + k)[:, :gap] for k in range(num_samples)]
    return np.mean(draws, axis=0)


def seasonal_naive(past: np.ndarray, gap: int, horizon: int, period: int = 7) -> np.ndarray:
    """Each far day takes the value of the same weekday in the last observed period.

    Shapes: past (N, C >= period) newest last -> (N, horizon) for days gap .. gap + horizon - 1.
    """
    if past.shape[1] < period:
        raise ValueError(f"past has {past.shape[1]} days, fewer than the period {period}")
    days = past.shape[1] - period + (gap + np.arange(horizon)) % period
    return past[:, days]


@dataclass
class FarForecast:
    """Far-forecasting on the held-out windows: each gap filler's ``fills`` (N, gap), each
    method's ``forecasts`` of the far days (N, H), and each method's ``nrmse``."""

    fills: dict[str, np.ndarray]
    forecasts: dict[str, np.ndarray]
    nrmse: dict[str, float]


def far_forecast(train: WindowSet, test: WindowSet, fills: dict[str, np.ndarray],
                 horizon: int, ridge: float = 1.0) -> FarForecast:
    """Forecasts of the last ``horizon`` days of every test window, made at the end of its
    past (``context``), ``gap = L - horizon`` days before the first forecast day, and their
    NRMSE.

    * each fill (N, gap) stands for the unobserved gap and feeds the *short* forecaster (ridge
      of a window's last ``horizon`` days on its first ``gap``, fitted on real training windows);
    * ``direct``: a ridge from the past straight to the far days, fitted on the real training
      windows' pasts and last days (the forecaster that uses real data only);
    * ``seasonal_naive``: the last observed week repeated.
    """
    gap = train.target.shape[1] - horizon
    truth = test.target.numpy()[:, -horizon:]                                    # (N, H)
    short = fit_forecaster(train.target.numpy(), horizon, ridge)                 # gap -> H
    forecasts = {}
    for name, fill in fills.items():
        if fill.shape != (len(test), gap):
            raise ValueError(f"fill {name!r} has shape {fill.shape}, expected {(len(test), gap)}")
        forecasts[name] = ridge_forecast(short, fill)
    direct = fit_forecaster(np.hstack([train.context.numpy(), train.target.numpy()[:, -horizon:]]),
                            horizon, ridge)                                      # C -> H
    forecasts["direct"] = ridge_forecast(direct, test.context.numpy())
    forecasts["seasonal_naive"] = seasonal_naive(test.context.numpy(), gap, horizon)
    return FarForecast(fills=dict(fills), forecasts=forecasts,
                       nrmse={k: nrmse_of(f, truth) for k, f in forecasts.items()})


# --- the experiment ---------------------------------------------------------------------------


@dataclass
class ExperimentConfig:
    """Everything one seed runs. ``for_profile()`` picks the full or the quick sizes."""

    gan: PSAGANConfig = field(default_factory=PSAGANConfig)
    encoder: cfid.EncoderConfig = field(default_factory=cfid.EncoderConfig)
    ar_order: int = 14
    num_eval: int = 1500          # windows per Context-FID sample (generated and reference)
    num_real_forecast: int = 150  # the few real training windows of the downstream task
    num_synthetic: int = 1500     # synthetic windows added to them
    horizon: int = 8
    far_samples: int = 10         # generated windows averaged into one gap fill (far-forecasting)

    @classmethod
    def for_profile(cls) -> ExperimentConfig:
        steps = runtime.pick(full=120, quick=12)
        return cls(gan=PSAGANConfig(num_steps=steps),
                   encoder=cfid.EncoderConfig(num_steps=runtime.pick(full=200, quick=30)),
                   num_eval=runtime.pick(full=1500, quick=300),
                   num_synthetic=runtime.pick(full=1500, quick=300))


@dataclass
class SeedResult:
    """One seed: Context-FID and downstream NRMSE per model, the reference values, the runs."""

    seed: int
    fid: dict[str, float]
    forecast_nrmse: dict[str, float]
    reference_fid: float
    real_only_nrmse: float
    runs: dict[str, GANRun]
    samples: dict[str, np.ndarray]
    far: FarForecast | None = None
    far_run: GANRun | None = None
    alignment: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """Flat metric names for :func:`iclr22.claims.over_seeds`."""
        out = {f"fid/{k}": v for k, v in self.fid.items()}
        out.update({f"nrmse/{k}": v for k, v in self.forecast_nrmse.items()})
        out["fid/real_train"] = self.reference_fid
        out["nrmse/real_only"] = self.real_only_nrmse
        out["spearman"] = rank_agreement(self.fid, self.forecast_nrmse)
        if self.far is not None:
            out.update({f"far/{k}": v for k, v in self.far.nrmse.items()})
        out.update({f"align/{k}": v for k, v in self.alignment.items()})
        return out


def calendar_correlation(generated: np.ndarray, real: np.ndarray) -> float:
    """Mean over windows of the Pearson correlation between a generated window and the real
    window whose dates and station it was generated for: +1 when the weekly peaks fall on the
    right days, -1 in antiphase, about 0 without alignment. Context-FID cannot see this (it
    compares the two sets of windows without their dates); a gap filler pays for it.

    Shapes: (N, L), (N, L) -> scalar.
    """
    if generated.shape != real.shape or generated.ndim != 2:
        raise ValueError(f"generated {generated.shape} and real {real.shape} must be equal (N, L)")
    a = generated - generated.mean(1, keepdims=True)
    b = real - real.mean(1, keepdims=True)
    r = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1)).clip(1e-12)
    return float(r.mean())


def rank_agreement(fid: dict[str, float], error: dict[str, float]) -> float:
    """Spearman correlation between Context-FID and forecast error across the same models."""
    names = sorted(fid)
    if sorted(error) != names or len(names) < 3:
        raise ValueError(f"need the same >= 3 models on both sides, got {sorted(fid)}, "
                         f"{sorted(error)}")
    rho = stats.spearmanr([fid[k] for k in names], [error[k] for k in names]).statistic
    return float(rho) if np.isfinite(rho) else 0.0


def ablation_configs(config: PSAGANConfig) -> dict[str, PSAGANConfig]:
    """PSA-GAN and the paper's two ablations (section 4.4) with the same budget."""
    return {"psagan": config,
            "no_self_attention": replace(config, self_attention=False),
            "no_progressive": replace(config, progressive=False)}


def _draw(windows: WindowSet, num: int, rng: np.random.Generator) -> WindowSet:
    idx = rng.choice(len(windows), size=min(num, len(windows)), replace=False)
    return windows.subset(torch.as_tensor(np.sort(idx)))


def run_seed(panel: PanelData, config: ExperimentConfig, seed: int,
             device: torch.device | None = None) -> SeedResult:
    """Train the encoder, the three GANs and the AR floor on the training windows; score
    every generator by Context-FID against held-out windows and by the downstream NRMSE;
    then train PSA-GAN-C and score the far-forecasting methods (:func:`far_forecast`)."""
    rng = np.random.default_rng(seed)
    num_series = len(panel.stations)
    encoder = cfid.train_encoder(panel.train.target, config.encoder, seed=seed, device=device)
    heldout = _draw(panel.heldout, config.num_eval, rng).target.numpy()
    prompts = _draw(panel.train, config.num_eval, rng)       # features/series to generate with
    real_train = _draw(panel.train, config.num_eval, rng).target.numpy()
    runs = {name: train_psagan(panel.train, cfg, num_series=num_series, seed=seed, device=device)
            for name, cfg in ablation_configs(config.gan).items()}
    samples = {name: generate(run.generator, prompts, seed=seed) for name, run in runs.items()}
    ar = fit_ar(panel.values, panel.split_day, config.ar_order)
    samples["ar_floor"] = sample_ar(ar, prompts.series.numpy(), config.gan.length, seed=seed)
    fid = {name: cfid.context_fid(encoder, heldout, x) for name, x in samples.items()}
    few_real = _draw(panel.train, config.num_real_forecast, rng).target.numpy()
    test = panel.heldout.target.numpy()
    nrmse_of = {name: nrmse(fit_forecaster(np.vstack([few_real, x[:config.num_synthetic]]),
                                           config.horizon), test, config.horizon)
                for name, x in samples.items()}
    result = SeedResult(seed=seed, fid=fid, forecast_nrmse=nrmse_of,
                        reference_fid=cfid.context_fid(encoder, heldout, real_train),
                        real_only_nrmse=nrmse(fit_forecaster(few_real, config.horizon), test,
                                              config.horizon),
                        runs=runs, samples=samples)
    result.far_run, result.far = far_experiment(panel, config, seed, runs["psagan"], ar, device)
    gap = config.gan.length - config.horizon
    result.alignment = {name: calendar_correlation(x, prompts.target.numpy())
                        for name, x in samples.items()}
    result.alignment["psagan_c_fill"] = calendar_correlation(
        result.far.fills["psagan_c"], panel.heldout.target.numpy()[:, :gap])
    return result


def far_experiment(panel: PanelData, config: ExperimentConfig, seed: int, psagan: GANRun,
                   ar: ARModel, device: torch.device | None = None
                   ) -> tuple[GANRun, FarForecast]:
    """Train PSA-GAN-C (reading each window's past) on the training windows, fill the gap of
    every held-out window with it, with the unconditional PSA-GAN and with the AR mean path,
    and score all far-forecasting methods by NRMSE (:func:`far_forecast`)."""
    past = panel.train.context.shape[1]
    run = train_psagan(panel.train, replace(config.gan, context_length=past),
                       num_series=len(panel.stations), seed=seed, device=device)
    test, gap = panel.heldout, config.gan.length - config.horizon
    fills = {name: fill_gap(gan.generator, test, gap, num_samples=config.far_samples, seed=seed)
             for name, gan in (("psagan_c", run), ("psagan", psagan))}
    fills["ar_fill"] = ar_forecast(ar, test.series.numpy(), test.context.numpy(), gap)
    return run, far_forecast(panel.train, test, fills, config.horizon)


def paper_claims(results: Sequence[SeedResult], setting: str) -> list[claims.Claim]:
    """The paper's headline comparisons, paired over our seeds."""
    seeds = [r.seed for r in results]
    table = claims.over_seeds(lambda s: results[seeds.index(s)].metrics(), seeds)
    fid = {k: table[f"fid/{k}"] for k in MODELS}
    # Each seed trains its own encoder, so Context-FIDs of different seeds are on different
    # scales: the comparison is the paired *ratio* (its log-mean is scale-free per seed).
    out = [claims.compare(f"PSA-GAN has a lower Context-FID than {MODEL_LABELS[k]} "
                          "(section 4.2, 4.4)",
                          fid["psagan"], fid[k], seeds=seeds, better="lower", ratio=True,
                          names=("psagan", k), setting=setting, unit="x")
           for k in MODELS[1:]]
    out.append(claims.at_least(
        "Context-FID ranks the generators as their downstream forecast error does "
        "(Spearman > 0 across the four generators, section 4.5)",
        table["spearman"], 0.0, seeds=seeds, name="spearman", setting=setting,
        unit="Spearman rho"))
    out.append(claims.compare(
        "Adding PSA-GAN windows to few real windows lowers the forecast error (section 4.3)",
        table["nrmse/psagan"], table["nrmse/real_only"], seeds=seeds, better="lower",
        names=("psagan", "real_only"), setting=setting, unit="NRMSE"))
    out.append(claims.compare(
        "Far-forecasting: filling the gap with PSA-GAN-C lowers the error below the "
        "forecaster that uses real data only (section 4.3)",
        table["far/psagan_c"], table["far/direct"], seeds=seeds, better="lower",
        names=("psagan_c", "direct"), setting=setting, unit="NRMSE"))
    return out


def summary_table(results: Sequence[SeedResult]):
    """One DataFrame: mean and std over seeds of Context-FID and NRMSE per generator, and the
    mean :func:`calendar_correlation` of its windows with the real windows of their dates."""
    import pandas as pd

    rows = []
    for name in (*MODELS, "real_train"):
        fids = [r.reference_fid if name == "real_train" else r.fid[name] for r in results]
        errs = [r.real_only_nrmse if name == "real_train" else r.forecast_nrmse[name]
                for r in results]
        align = [r.alignment[name] for r in results] if name != "real_train" else [1.0]
        rows.append({"generator": MODEL_LABELS[name],
                     "Context-FID vs held-out (mean)": np.mean(fids),
                     "Context-FID (std)": np.std(fids, ddof=1) if len(fids) > 1 else 0.0,
                     "downstream NRMSE (mean)": np.mean(errs),
                     "NRMSE (std)": np.std(errs, ddof=1) if len(errs) > 1 else 0.0,
                     "calendar correlation (mean)": np.mean(align)})
    frame = pd.DataFrame(rows).set_index("generator")
    frame.index = [*frame.index[:-1], "reference: real training windows / real-only forecaster"]
    return frame.round(4)


def far_table(results: Sequence[SeedResult]):
    """One DataFrame: far-forecast NRMSE per method, mean and std over seeds."""
    import pandas as pd

    rows = [{"method": FAR_LABELS[name],
             "far-forecast NRMSE (mean)": np.mean([r.far.nrmse[name] for r in results]),
             "NRMSE (std)": (np.std([r.far.nrmse[name] for r in results], ddof=1)
                             if len(results) > 1 else 0.0)} for name in FAR_METHODS]
    return pd.DataFrame(rows).set_index("method").round(4)


def headline_metrics(results: Sequence[SeedResult]) -> tuple[dict[str, float], dict[str, str],
                                                             dict[str, str]]:
    """Mean metrics over seeds for ``results.record``, their units and which way is better."""
    keys = results[0].metrics().keys()
    metrics = {k: float(np.mean([r.metrics()[k] for r in results])) for k in keys}
    units = {k: ("Context-FID" if k.startswith("fid") else "NRMSE" if k.startswith("nrmse")
                 else "NRMSE of the far days" if k.startswith("far")
                 else "correlation with the real window of the same dates"
                 if k.startswith("align") else "Spearman rho") for k in keys}
    better = {k: "higher" if k == "spearman" or k.startswith("align") else "lower"
              for k in keys}
    return metrics, units, better


# --- figures ----------------------------------------------------------------------------------


def draw_stage(fig, stage: int, *, run: GANRun, real: np.ndarray) -> None:
    """Widget frame: the fixed-noise samples at the end of training stage ``stage`` (length
    8 * 2^stage, each value drawn at the centre of the days it stands for) against two real
    windows at full length."""
    ax = fig.subplots()
    length = run.config.length
    sample = run.snapshots[stage]                                     # (k, 8 * 2^stage)
    for i, window in enumerate(real[:2]):
        ax.plot(np.arange(length), window, color="0.6", lw=1.2,
                label="real windows" if i == 0 else None)
    step = length // sample.shape[1]
    t = np.arange(sample.shape[1]) * step + (step - 1) / 2
    for i, window in enumerate(sample[:3]):
        ax.plot(t, window, marker="o", ms=3, lw=1.5,
                label=f"generated, length {sample.shape[1]}" if i == 0 else None)
    ax.set_xlabel("day in the window")
    ax.set_ylabel("ridership / station mean")
    ax.set_title(f"PSA-GAN after stage {stage + 1} of {len(run.snapshots)}: "
                 f"output length {sample.shape[1]}")
    ax.legend(loc="lower left", fontsize=8)


def plot_samples(fig, result: SeedResult, real: np.ndarray, num: int = 3) -> None:
    """One panel per generator: ``num`` of its windows (colour) over ``num`` held-out real
    windows (grey), all with the same y axis."""
    names = MODELS
    axes = fig.subplots(1, len(names), sharey=True)
    for ax, name in zip(axes, names, strict=True):
        for window in real[:num]:
            ax.plot(window, color="0.7", lw=1)
        for window in result.samples[name][:num]:
            ax.plot(window, lw=1.2)
        ax.set_title(MODEL_LABELS[name].replace("PSA-GAN w/o", "w/o"), fontsize=8)
        ax.set_xlabel("day")
    axes[0].set_ylabel("ridership / station mean")


def plot_far_forecast(fig, test: WindowSet, far: FarForecast, windows: Sequence[int] = (0, 1),
                      methods: Sequence[str] = ("psagan_c", "ar_fill", "direct")) -> None:
    """One panel per held-out window: its observed past (grey), the truth (black), each gap
    filler's fill and every method's forecast of the far days; day 0 is the first unobserved
    day."""
    axes = fig.subplots(1, len(windows), sharey=True, squeeze=False)[0]
    past, horizon = test.context.shape[1], next(iter(far.forecasts.values())).shape[1]
    length = test.target.shape[1]
    for ax, i in zip(axes, windows, strict=True):
        ax.plot(np.arange(-past, 0), test.context[i].numpy(), color="0.6", lw=1.2,
                label="observed past")
        ax.plot(np.arange(length), test.target[i].numpy(), color="k", lw=1.2, label="truth")
        for k, name in enumerate(methods):
            colour = f"C{k}"
            if name in far.fills:
                ax.plot(np.arange(far.fills[name].shape[1]), far.fills[name][i], color=colour,
                        lw=1, ls="--")
            ax.plot(np.arange(length - horizon, length), far.forecasts[name][i], color=colour,
                    lw=2, marker="o", ms=3, label=FAR_LABELS[name])
        ax.axvspan(length - horizon - 0.5, length - 0.5, color="0.92", zorder=0)
        ax.set_xlabel("day (0 = first unobserved day)")
        ax.set_title(f"held-out window {i} (station {int(test.series[i])})", fontsize=9)
    axes[0].set_ylabel("ridership / station mean")
    axes[-1].legend(loc="lower left", fontsize=7)
