"""Context-FID: the Frechet distance between embeddings of real and synthetic time series.

Part of PSA-GAN: Progressive Self Attention GANs for Synthetic Time Series. Paul Jeha,
Michael Bohlke-Schneider, Pedro Mercado, Shubham Kapoor, Rajbir Singh Nirwan, Valentin
Flunkert, Jan Gasthaus, Tim Januschowski. ICLR 2022. https://openreview.net/forum?id=Ix_mh42xq5w
(bib key ``jeha2022psagan``).

The idea. The Frechet Inception distance judges image generators by comparing the
Gaussian moments of Inception features of real and generated images. Time series have no
Inception network, so the paper trains an *unsupervised* time-series encoder on the real
data and compares the embeddings of real and synthetic windows: a *contextual* embedding,
hence Context-FID. Lower is better; two samples from the same distribution score near 0.

The equations. With embeddings ``e = f(x)`` of the real windows (mean ``mu_r``, covariance
``S_r``) and of the synthetic windows (``mu_g``, ``S_g``)::

    FID = ||mu_r - mu_g||^2 + tr(S_r + S_g - 2 (S_r S_g)^{1/2})            (Context-FID)

The encoder (which one). The text cites TS2Vec-style contextual representations, but the
released code (``mbohlkeschneider/psa-gan``, ``cnn_encoder/``) trains the encoder of
Franceschi et al. (2019, "T-Loss"): a causal CNN of dilated, weight-normalised convolution
blocks with residual connections, global max pooling over time and a linear layer, trained
with the triplet loss

    L = -log sigma(f(x_ref) . f(x_pos)) - sum_k log sigma(-f(x_ref) . f(x_neg_k))    (T-Loss)

where ``x_pos`` is a random sub-window *inside* the reference sub-window ``x_ref`` and the
``x_neg_k`` are random sub-windows of other training windows. We follow the released code
(T-Loss), not TS2Vec.

Deviations from the paper and the released code.
* Held-out reference. The released metric draws its "real" windows from the full series,
  mostly training data, so a generator that memorises its training data scores better
  than fresh real data. Here every Context-FID is computed against *held-out* real windows
  (a later period than anything a generator or the encoder saw), and the distance of real
  *training* windows to them is reported as the reference a perfect generator would reach.
* The encoder is trained on the training windows only (never on held-out windows), once
  per seed, for a few hundred steps (the released runs train far longer); the released code
  averages 10 evaluations of the metric, we evaluate once per seed on 1,000-2,000 windows and
  average over seeds instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import linalg
from torch import Tensor, nn
from torch.nn import functional as F

from .. import runtime


@dataclass
class EncoderConfig:
    """The T-Loss causal CNN and its training (our CPU sizes; the released code uses 40-160
    channels, depth 10 and far more steps)."""

    channels: int = 16
    depth: int = 3
    reduced_size: int = 16
    out_channels: int = 16
    kernel_size: int = 3
    num_negatives: int = 5
    min_length: int = 4
    num_steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3


def _check_windows(name: str, x) -> Tensor:
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.dim() != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"{name} must be (N, L) windows with N >= 2 and L >= 2, "
                         f"got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} has non-finite values")
    return x


class CausalBlock(nn.Module):
    """Two causal dilated convolutions (weight norm, leaky ReLU) plus a residual 1x1 conv.

    Shapes: (B, C_in, T) -> (B, C_out, T).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.padding = (kernel_size - 1) * dilation  # left padding only: causal
        wn = nn.utils.parametrizations.weight_norm
        self.conv1 = wn(nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation))
        self.conv2 = wn(nn.Conv1d(out_channels, out_channels, kernel_size, dilation=dilation))
        self.residual = (nn.Conv1d(in_channels, out_channels, 1)
                         if in_channels != out_channels else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        h = F.leaky_relu(self.conv1(F.pad(x, (self.padding, 0))))
        h = F.leaky_relu(self.conv2(F.pad(h, (self.padding, 0))))
        return h + self.residual(x)


class CausalCNNEncoder(nn.Module):
    """T-Loss encoder: causal blocks with dilations 1, 2, 4, ..., max pooling over time, linear.

    Shapes: x (B, T) or (B, 1, T) -> (B, out_channels); any T >= 1.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        layers, in_channels = [], 1
        for level in range(config.depth):
            layers.append(CausalBlock(in_channels, config.channels, config.kernel_size,
                                      2 ** level))
            in_channels = config.channels
        layers.append(CausalBlock(config.channels, config.reduced_size, config.kernel_size,
                                  2 ** config.depth))
        self.network = nn.Sequential(*layers)
        self.linear = nn.Linear(config.reduced_size, config.out_channels)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)  # (B, T) -> (B, 1, T)
        h = self.network(x).amax(dim=2)  # global max pooling over time: (B, reduced_size)
        return self.linear(h)


def triplet_loss(encoder: nn.Module, windows: Tensor, batch_idx: Tensor, config: EncoderConfig,
                 generator: torch.Generator) -> Tensor:
    """The T-Loss of one batch (module docstring), sampled as in Franceschi et al. (2019).

    Shapes: windows (N, L) the training set; batch_idx (B,) rows of the batch. Returns a scalar.
    """
    num_windows, length = windows.shape
    device = windows.device

    def draw(high: int, size=(), low: int = 0) -> Tensor:
        return torch.randint(low, high, size, generator=generator).to(device)

    pos_len = int(draw(length + 1, low=config.min_length))        # positive/negative length
    ref_len = int(draw(length + 1, low=pos_len))                  # reference length >= pos_len
    batch = windows[batch_idx]                                    # (B, L)
    size = (batch.shape[0],)
    ref_start = draw(length - ref_len + 1, size)                  # (B,)
    pos_start = ref_start + draw(ref_len - pos_len + 1, size)     # positive inside the reference
    offsets = torch.arange(length, device=device)
    ref = torch.gather(batch, 1, ref_start[:, None] + offsets[None, :ref_len])   # (B, ref_len)
    pos = torch.gather(batch, 1, pos_start[:, None] + offsets[None, :pos_len])   # (B, pos_len)
    neg_rows = draw(num_windows, (batch.shape[0] * config.num_negatives,))
    neg_start = draw(length - pos_len + 1, (neg_rows.shape[0],))
    neg = torch.gather(windows[neg_rows], 1, neg_start[:, None] + offsets[None, :pos_len])
    z_ref, z_pos = encoder(ref), encoder(pos)                     # (B, D)
    z_neg = encoder(neg).reshape(batch.shape[0], config.num_negatives, -1)  # (B, K, D)
    loss = -F.logsigmoid((z_ref * z_pos).sum(1))                                 # (T-Loss)
    loss = loss - F.logsigmoid(-(z_neg * z_ref[:, None, :]).sum(2)).sum(1)
    return loss.mean()


def train_encoder(windows, config: EncoderConfig | None = None, *, seed: int = 0,
                  device: torch.device | None = None) -> CausalCNNEncoder:
    """Train the T-Loss encoder on (training) windows; returns it in eval mode.

    Shapes: windows (N, L).
    """
    config = config or EncoderConfig()
    x = _check_windows("windows", windows)
    if x.shape[1] < config.min_length:
        raise ValueError(f"windows of length {x.shape[1]} are shorter than min_length "
                         f"{config.min_length}")
    device = device or runtime.device()
    generator = runtime.seed_everything(seed)
    encoder = CausalCNNEncoder(config).to(device)
    x = x.to(device)
    optimiser = torch.optim.Adam(encoder.parameters(), lr=config.lr)
    for _ in runtime.progress(range(config.num_steps), desc="T-Loss encoder"):
        idx = torch.randint(0, x.shape[0], (config.batch_size,), generator=generator).to(device)
        loss = triplet_loss(encoder, x, idx, config, generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return encoder.eval()


@torch.no_grad()
def embed(encoder: nn.Module, windows, batch_size: int = 1024) -> np.ndarray:
    """Embeddings of windows. Shapes: (N, L) -> (N, D) float64."""
    x = _check_windows("windows", windows)
    device = next(encoder.parameters()).device
    parts = [encoder(x[i:i + batch_size].to(device)).double().cpu()
             for i in range(0, x.shape[0], batch_size)]
    return torch.cat(parts).numpy()


def gaussian_moments(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of embeddings z (N, D)."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"embeddings must be (N, D) with N >= 2, got {z.shape}")
    return z.mean(axis=0), np.atleast_2d(np.cov(z, rowvar=False))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """Frechet (2-Wasserstein) distance of two Gaussians, the Context-FID formula.

    Shapes: mu (D,), sigma (D, D). Returns ``||mu1-mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2})``.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != 2 * mu1.shape:
        raise ValueError(f"means {mu1.shape}, {mu2.shape} and covariances {sigma1.shape}, "
                         f"{sigma2.shape} must be (D,) and (D, D)")
    root = linalg.sqrtm(sigma1 @ sigma2)  # (S1 S2)^{1/2}: its eigenvalues are real and >= 0
    if not np.all(np.isfinite(root)):  # nearly singular product: regularise as FID code does
        offset = np.eye(sigma1.shape[0]) * 1e-6
        root = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root).real
    return float(max(value, 0.0))


def context_fid(encoder: nn.Module, real, generated) -> float:
    """Context-FID between real and generated windows under ``encoder``.

    Shapes: real (N, L), generated (M, L) with the same L.
    """
    real, generated = _check_windows("real", real), _check_windows("generated", generated)
    if real.shape[1] != generated.shape[1]:
        raise ValueError(f"real windows have length {real.shape[1]}, generated "
                         f"{generated.shape[1]}: they must match")
    return frechet_distance(*gaussian_moments(embed(encoder, real)),
                            *gaussian_moments(embed(encoder, generated)))


def gaussian_w2_closed_form(mu1, std1, mu2, std2) -> float:
    """Reference value for diagonal Gaussians: ``||mu1-mu2||^2 + sum (std1 - std2)^2``."""
    mu1, mu2, std1, std2 = (np.asarray(v, dtype=np.float64) for v in (mu1, mu2, std1, std2))
    return float(((mu1 - mu2) ** 2).sum() + ((std1 - std2) ** 2).sum())

