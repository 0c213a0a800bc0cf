"""DIVA: the dataset derivative of a learning task.

Paper:   Yonatan Dukler, Alessandro Achille, Giovanni Paolini, Avinash Ravichandran,
         Marzia Polito, Stefano Soatto, "DIVA: Dataset Derivative of a Learning Task",
         ICLR 2022. https://openreview.net/forum?id=bVvMOtLMiw (arXiv 2111.09785).
         Bib key ``dukler2022diva``.

Idea.  Give every training example a weight ``alpha_i`` and train on the weighted loss
``sum_i alpha_i l(f_w(x_i), y_i)``. Around a pre-trained network the model is replaced by
its first-order Taylor expansion in the weights (a *linearised* network, LQF
{cite:p}`achille2021lqf`, "gradients as features" {cite:p}`mu2020gradients`), trained with a
ridge-regularised squared loss on one-hot targets. Training then has a closed form (a
weighted ridge regression on Jacobian features), and so does the *leave-one-out* (LOO)
prediction of every training example (the hat-matrix identity). Both are differentiable
in ``alpha``: the gradient of the LOO loss with respect to ``alpha`` is the *dataset
derivative*. Its sign says whether an example helps (negative) or hurts (positive) the
cross-validated loss, with no separate validation set; a few gradient steps on ``alpha``
reweight the dataset ("DIVA Reweight"), and thresholding it flags detrimental, e.g.
mislabeled, examples.

What is here.
* :func:`jacobian_features`: per-example Jacobians ``J_i = d f(x_i; w) / d w`` at ``w0`` of
  any subset of a network's parameters (torch.func ``vmap(jacrev)``), and the
  linearisation ``f_lin(x) = f(x; w0) + J(x)(w - w0)`` (paper eq. 2).
* The paper's experimental model, the linearised *last layer* (shared features
  ``z_i``, ``J_i = I_K (x) z_i``): weighted ridge (eq. 6), hat matrix, closed-form LOO
  (Prop. 3, in a form that also holds at ``alpha_i = 0``), the closed-form dataset
  derivatives of the LOO loss (derived in the chapter) and of a validation loss
  (Prop. 2), and DIVA Reweight (eq. 14).
* The general linearisation (any parameter block, ``K``-output Jacobians): kernel (dual)
  weighted ridge and block LOO with ``K x K`` leverage blocks; its dataset derivative is
  taken with autograd through the closed form.
* Baselines: Koh & Liang influence functions {cite:p}`koh2017influence`, computed exactly
  for the linear model from its Hessian; explicit LOO retraining; and the two reweighting
  baselines of the paper's Table 1, learning-to-reweight {cite:p}`ren2018learning` and
  active bias {cite:p}`chang2017active`, each reduced to one closed-form step on the
  linear model (see their docstrings).
* The backbone of the chapter: a small CNN pre-trained on one task and linearised on
  another, and the widget's draw function.

Deviations from the paper (CPU scale).
* The backbone is a small CNN pre-trained on Fashion-MNIST classes 0-4 (not a ResNet-34
  pre-trained on ImageNet); the target task is classes 5-9 with a few hundred to 2,000
  images (the paper: CUB-200, Aircraft, ... with thousands).
* As in the paper's experiments, the main experiment linearises the last layer only; the
  general Jacobian path is exercised at small size.
* The paper takes 1-3 plain gradient steps with ``eta ~ 0.1`` (eq. 14). That step size
  belongs to the paper's loss scale; with the summed LOO loss of eq. (11) at our size,
  ``eta = 0.1`` moves the weights by well under 1 % per step, so the chapter uses
  ``eta = 1`` (and shows a sweep). We clip ``alpha >= 0`` and renormalise
  ``mean(alpha) = 1`` after each step (our choice: scaling all weights by ``c`` is the same
  as dividing ``lambda`` by ``c``, so this keeps the regularisation fixed).
  ``normalize_grad=True`` is an option (step of ``eta`` times the gradient over its mean
  absolute value), off by default.
* The ridge ``lambda`` is chosen by the closed-form LOO loss on a grid (the paper does not
  state its value).
* The paper leaves the outer loss ``l`` of eq. (11) generic; we offer the squared loss and
  the cross-entropy of the LOO outputs (the inner training loss is always squared).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from .. import runtime
from ..cache import load_or_compute
from ..data.fashion_mnist import class_subset, load_fashion_mnist

LOSSES = ("squared", "cross_entropy")


# ----------------------------------------------------------------------------- configs


@dataclass
class DivaConfig:
    """DIVA Reweight settings (paper section 3.4: 1-3 steps, ``eta ~ 0.1``, ``alpha = 1``)."""

    ridge: float = 1.0            # lambda of eq. (5)
    lr: float = 0.1               # eta of eq. (14)
    steps: int = 3                # the paper stops after 1-3 steps (LOO overfits after)
    loss: str = "squared"         # outer loss l in L_LOO (eq. 11); the inner loss is squared
    normalize_grad: bool = False  # divide the gradient by its mean |.| (not in the paper)
    renormalize: bool = True      # keep mean(alpha) = 1 (our choice, see the docstring)
    min_weight: float = 0.0       # alpha >= min_weight


@dataclass
class CNNConfig:
    """Pre-training of the small CNN backbone (Adam, cross-entropy)."""

    width: int = 16               # channels of the first conv; the second has 2x
    hidden: int = 64              # penultimate features (the last block's input to the head)
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


# ----------------------------------------------------------------------- input checks


def _check_matrix(name: str, x: Tensor, rows: int | None = None) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(x.shape)}")
    if rows is not None and x.shape[0] != rows:
        raise ValueError(f"{name} must have {rows} rows, got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be floating point, got {x.dtype}")


def _check_alpha(alpha: Tensor, n: int) -> None:
    if not isinstance(alpha, Tensor):
        raise TypeError(f"alpha must be a torch.Tensor, got {type(alpha).__name__}")
    if alpha.shape != (n,):
        raise ValueError(f"alpha must have shape ({n},), got {tuple(alpha.shape)}")
    if not torch.is_floating_point(alpha):
        raise TypeError(f"alpha must be floating point, got {alpha.dtype}")
    if bool((alpha.detach() < 0).any()):
        raise ValueError("alpha must be >= 0 (sample weights)")


def _check_ridge(lam: float) -> None:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam > 0:
        raise ValueError(f"ridge lambda must be a positive number, got {lam!r}")


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def one_hot(labels: Tensor, n_classes: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """One-hot targets (N, K) of integer labels (N,) in ``0..n_classes-1``."""
    if labels.dim() != 1 or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"labels must be a 1-D integer tensor, got {labels.dtype} "
                         f"{tuple(labels.shape)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    return torch.nn.functional.one_hot(labels.long(), n_classes).to(dtype)


# ------------------------------------------------------------------------ linearisation


def jacobian_features(model: nn.Module, x: Tensor, param_names: Sequence[str],
                      *, chunk: int = 256) -> tuple[Tensor, Tensor]:
    """Outputs and per-example Jacobians of ``model`` w.r.t. the named parameters at ``w0``.

    x: (N, ...) inputs. Returns ``f0``: (N, K) outputs ``f(x_i; w0)`` and ``J``: (N, K, P)
    with ``J[i] = d f(x_i; w) / d w`` at the current weights ``w0``, over the parameters
    ``param_names`` flattened in that order (``P`` = their total size). Computed with
    ``torch.func.vmap(jacrev(...))`` in chunks of ``chunk`` examples. The linearised model
    is ``f_lin(x) = f0(x) + J(x) (w - w0)`` (paper eq. 2).
    """
    params = dict(model.named_parameters())
    missing = [n for n in param_names if n not in params]
    if not param_names or missing:
        raise ValueError(f"param_names must name parameters of the model; unknown: {missing}, "
                         f"available: {list(params)}")
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ValueError("x must be a batch tensor (N, ...)")
    chosen = {n: params[n].detach() for n in param_names}
    frozen = {n: p.detach() for n, p in params.items() if n not in chosen}
    buffers = dict(model.named_buffers())

    def single(theta: dict[str, Tensor], xi: Tensor) -> Tensor:
        out = functional_call(model, ({**frozen, **theta}, buffers), (xi.unsqueeze(0),))
        return out.squeeze(0)

    jac_fn = vmap(jacrev(single), in_dims=(None, 0))
    outs, jacs = [], []
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            xb = x[start:start + chunk]
            outs.append(vmap(single, in_dims=(None, 0))(chosen, xb))
            jac = jac_fn(chosen, xb)  # dict name -> (B, K, *param_shape)
            jacs.append(torch.cat([jac[n].flatten(2) for n in param_names], dim=2))
    return torch.cat(outs), torch.cat(jacs)


def linearized_predict(f0: Tensor, jac: Tensor, delta_w: Tensor) -> Tensor:
    """``f_lin(x) = f(x; w0) + J(x) (w - w0)`` (eq. 2). f0: (N, K), jac: (N, K, P),
    delta_w: (P,). Returns (N, K)."""
    if jac.dim() != 3 or f0.shape != jac.shape[:2] or delta_w.shape != (jac.shape[2],):
        raise ValueError(f"shapes f0 {tuple(f0.shape)}, jac {tuple(jac.shape)}, delta_w "
                         f"{tuple(delta_w.shape)} must be (N, K), (N, K, P), (P,)")
    return f0 + jac @ delta_w


# --------------------------------------------- last-layer model: shared features z_i


def weighted_ridge(z: Tensor, t: Tensor, alpha: Tensor, lam: float) -> Tensor:
    """Weighted ridge regression ``w_alpha`` (P, K) of eq. (6).

    z: (N, P) features, t: (N, K) targets, alpha: (N,) weights >= 0.
    ``w = (Z^T D_a Z + lambda I)^{-1} Z^T D_a T`` with ``D_a = diag(alpha)``.
    """
    _check_matrix("z", z)
    _check_matrix("t", t, z.shape[0])
    _check_alpha(alpha, z.shape[0])
    _check_ridge(lam)
    gram = z.T @ (alpha[:, None] * z)                                  # Z^T D_a Z
    eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    return torch.linalg.solve(gram + lam * eye, z.T @ (alpha[:, None] * t))   # eq. (6)


def ridge_covariance(z: Tensor, alpha: Tensor, lam: float) -> Tensor:
    """``C_a = (Z^T D_a Z + lambda I)^{-1}`` (P, P) of eq. (7)."""
    _check_matrix("z", z)
    _check_alpha(alpha, z.shape[0])
    _check_ridge(lam)
    eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    return torch.linalg.inv(z.T @ (alpha[:, None] * z) + lam * eye)


def hat_matrix(z: Tensor, alpha: Tensor, lam: float, z_eval: Tensor | None = None) -> Tensor:
    """Unweighted hat matrix ``S = Z_eval C_a Z^T`` (M, N); ``Z_eval = Z`` by default (N, N).

    The fitted values are ``F = S D_a T`` and ``d F_m / d alpha_k = S_mk (t_k - f_k)``.
    Uses the primal form (a P x P inverse) when ``P <= N``, else the kernel (dual) form
    ``S = K_eval (D_a K + lambda I)^{-1}`` with ``K = Z Z^T`` (an N x N solve).
    """
    _check_matrix("z", z)
    _check_alpha(alpha, z.shape[0])
    _check_ridge(lam)
    z_eval = z if z_eval is None else z_eval
    _check_matrix("z_eval", z_eval)
    if z_eval.shape[1] != z.shape[1]:
        raise ValueError(f"z_eval has {z_eval.shape[1]} features, z has {z.shape[1]}")
    n, p = z.shape
    if p <= n:
        return z_eval @ ridge_covariance(z, alpha, lam) @ z.T
    kern = z @ z.T
    eye = torch.eye(n, dtype=z.dtype, device=z.device)
    # S^T = (K D_a + lambda I)^{-1} K_eval^T   (push-through identity)
    return torch.linalg.solve(kern * alpha[None, :] + lam * eye, z @ z_eval.T).T


def fit_residuals(s: Tensor, t: Tensor, alpha: Tensor) -> Tensor:
    """Training residuals ``E = T - S D_a T`` (N, K) of the weighted ridge fit."""
    return t - s @ (alpha[:, None] * t)


def loo_residuals(s: Tensor, t: Tensor, alpha: Tensor) -> Tensor:
    """Closed-form LOO residuals ``t_i - f^{-i}(x_i)`` (N, K) (paper Prop. 3).

    s: (N, N) hat matrix of :func:`hat_matrix`, t: (N, K), alpha: (N,).
    With leverage ``h_i = alpha_i S_ii`` the LOO residual is ``e_i / (1 - h_i)``; this is
    eq. (13) with ``sqrt(alpha_i)`` cancelled, so it also holds at ``alpha_i = 0``.
    """
    _check_matrix("s", s)
    if s.shape[0] != s.shape[1]:
        raise ValueError(f"s must be square (N, N), got {tuple(s.shape)}")
    _check_matrix("t", t, s.shape[0])
    _check_alpha(alpha, s.shape[0])
    lev = alpha * torch.diagonal(s)                                     # h_i = alpha_i S_ii
    return fit_residuals(s, t, alpha) / (1.0 - lev)[:, None]            # e_i / (1 - h_i)


def loo_predictions(z: Tensor, y: Tensor, alpha: Tensor, lam: float,
                    f0: Tensor | None = None) -> Tensor:
    """LOO outputs ``f^{-i}(x_i)`` (N, K) of the weighted linearised model, closed form.

    z: (N, P) features, y: (N, K) one-hot targets, f0: (N, K) outputs at ``w0`` (zero if
    None). The model fits the residual targets ``t = y - f0`` (eq. 4). When ``P <= N``
    only the diagonal of the hat matrix is formed (cost of one fit, ``O(N P^2)``).
    """
    _check_matrix("z", z)
    _check_matrix("y", y, z.shape[0])
    t = y if f0 is None else y - f0
    if z.shape[1] > z.shape[0]:
        return y - loo_residuals(hat_matrix(z, alpha, lam), t, alpha)
    w = weighted_ridge(z, t, alpha, lam)                                # eq. (6)
    cov_z = z @ ridge_covariance(z, alpha, lam)                         # Z C_a
    lev = alpha * (cov_z * z).sum(1)                                    # h_i = a_i z_i^T C z_i
    return y - (t - z @ w) / (1.0 - lev)[:, None]                       # Prop. 3


def output_loss(out: Tensor, y: Tensor, loss: str = "squared") -> tuple[Tensor, Tensor]:
    """Per-example loss (N,) and its gradient w.r.t. the outputs (N, K).

    out: (N, K) outputs, y: (N, K) one-hot. ``squared``: ``||out - y||^2`` (the paper's
    loss); ``cross_entropy``: ``-log softmax(out)_y``.
    """
    _check_loss(loss)
    if out.shape != y.shape:
        raise ValueError(f"out {tuple(out.shape)} and y {tuple(y.shape)} must match")
    if loss == "squared":
        diff = out - y
        return diff.pow(2).sum(1), 2.0 * diff
    logp = torch.log_softmax(out, dim=1)
    return -(logp * y).sum(1), logp.exp() - y


def loo_loss(z: Tensor, y: Tensor, alpha: Tensor, lam: float, f0: Tensor | None = None,
             loss: str = "squared") -> Tensor:
    """``L_LOO(alpha) = sum_i l(f^{-i}(x_i), y_i)`` (eq. 11), a differentiable scalar."""
    return output_loss(loo_predictions(z, y, alpha, lam, f0), y, loss)[0].sum()


def loo_gradient(s: Tensor, t: Tensor, y: Tensor, alpha: Tensor,
                 loss: str = "squared") -> Tensor:
    """Closed-form dataset derivative ``d L_LOO / d alpha`` (N,).

    The paper states that this closed form exists (its appendix); this is our derivation,
    checked against autograd and finite differences in the tests.

    s: (N, N) hat matrix, t: (N, K) residual targets ``y - f0``, y: (N, K) one-hot.
    With ``E = T - S D_a T``, ``h_i = alpha_i S_ii``, ``u_i = 1 / (1 - h_i)``, LOO output
    ``o_i = y_i - u_i e_i`` and ``g_i = dl/do (o_i, y_i)``, using ``dE_i/da_k = -S_ik e_k``
    and ``dh_i/da_k = delta_ik S_ii - alpha_i S_ik^2``:

        dL/da_k = sum_i S_ik u_i <g_i, e_k>  -  S_kk u_k^2 <g_k, e_k>
                  + sum_i alpha_i S_ik^2 u_i^2 <g_i, e_i>
    """
    _check_loss(loss)
    _check_matrix("y", y, s.shape[0])
    if y.shape != t.shape:
        raise ValueError(f"y {tuple(y.shape)} and t {tuple(t.shape)} must match")
    err = fit_residuals(s, t, alpha)                                    # E (N, K)
    u = 1.0 / (1.0 - alpha * torch.diagonal(s))                         # 1 / (1 - h_i)
    out = y - u[:, None] * err                                          # LOO outputs
    g = output_loss(out, y, loss)[1]                                    # dl/do (N, K)
    term1 = ((s @ (u[:, None] * g)) * err).sum(1)                       # sum_i S_ik u_i <g_i,e_k>
    term2 = torch.diagonal(s) * u.pow(2) * (g * err).sum(1)             # S_kk u_k^2 <g_k,e_k>
    c = alpha * u.pow(2) * (g * err).sum(1)                             # alpha_i u_i^2 <g_i,e_i>
    term3 = s.pow(2) @ c                                                # sum_i S_ik^2 c_i
    return term1 - term2 + term3


def val_gradient(s_val: Tensor, s: Tensor, t: Tensor, alpha: Tensor, y_val: Tensor,
                 f0_val: Tensor | None = None, loss: str = "squared") -> Tensor:
    """Dataset derivative of a validation loss ``d L_val / d alpha`` (N,) (Prop. 2).

    s_val: (M, N) ``Z_val C_a Z^T``, s: (N, N), t: (N, K), y_val: (M, K) one-hot.
    ``dL_val/da_k = sum_m S_val[m, k] <g_m, e_k>`` with ``g_m = dl/df`` at the validation
    outputs and ``e_k`` the training residuals (eq. 10).
    """
    _check_matrix("s_val", s_val)
    if s_val.shape[1] != s.shape[0]:
        raise ValueError(f"s_val must be (M, {s.shape[0]}), got {tuple(s_val.shape)}")
    err = fit_residuals(s, t, alpha)
    out_val = s_val @ (alpha[:, None] * t)                              # F_val = S_val D_a T
    if f0_val is not None:
        out_val = out_val + f0_val
    g = output_loss(out_val, y_val, loss)[1]
    return ((s_val.T @ g) * err).sum(1)                                 # eq. (10)


def select_ridge(z: Tensor, y: Tensor, grid: Sequence[float], loss: str = "squared") -> float:
    """The ``lambda`` of ``grid`` with the smallest unweighted closed-form LOO loss."""
    if not grid:
        raise ValueError("grid must hold at least one lambda")
    ones = torch.ones(len(z), dtype=z.dtype, device=z.device)
    scores = [float(loo_loss(z, y, ones, float(lam), loss=loss)) for lam in grid]
    return float(grid[int(np.argmin(scores))])


# ------------------------------------------------------------------------- DIVA Reweight


@dataclass
class ReweightStep:
    """One snapshot of DIVA Reweight: weights before the step, their LOO loss and gradient."""

    step: int
    alpha: Tensor
    loo_loss: float
    grad: Tensor
    extra: dict = field(default_factory=dict)


def diva_step(alpha: Tensor, grad: Tensor, cfg: DivaConfig) -> Tensor:
    """One update of eq. (14), ``alpha <- alpha - eta grad``, with the constraints of cfg."""
    if grad.shape != alpha.shape:
        raise ValueError(f"grad {tuple(grad.shape)} must match alpha {tuple(alpha.shape)}")
    if cfg.normalize_grad:
        grad = grad / grad.abs().mean().clamp_min(1e-300)
    new = (alpha - cfg.lr * grad).clamp_min(cfg.min_weight)           # eq. (14), alpha >= 0
    if cfg.renormalize:
        new = new * (len(new) / new.sum().clamp_min(1e-300))           # mean(alpha) = 1
    return new


def diva_reweight(z: Tensor, y: Tensor, cfg: DivaConfig | None = None,
                  f0: Tensor | None = None, alpha0: Tensor | None = None,
                  callback: Callable[[ReweightStep], dict] | None = None) -> list[ReweightStep]:
    """DIVA Reweight by gradient descent on the closed-form LOO loss (eq. 11, 14).

    z: (N, P) features, y: (N, K) one-hot, f0: (N, K) outputs at ``w0``. Starts from
    ``alpha0`` (default all ones, as in the paper) and takes ``cfg.steps`` steps. Returns
    ``cfg.steps + 1`` snapshots (the last has the final weights and its own gradient);
    ``callback(snapshot)`` may return a dict stored in ``snapshot.extra`` (e.g. test loss).
    """
    cfg = cfg or DivaConfig()
    _check_matrix("z", z)
    _check_matrix("y", y, z.shape[0])
    _check_ridge(cfg.ridge)
    _check_loss(cfg.loss)
    if not isinstance(cfg.steps, int) or cfg.steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {cfg.steps!r}")
    n = z.shape[0]
    alpha = torch.ones(n, dtype=z.dtype, device=z.device) if alpha0 is None else alpha0.clone()
    _check_alpha(alpha, n)
    t = y if f0 is None else y - f0
    history = []
    for step in range(cfg.steps + 1):
        s = hat_matrix(z, alpha, cfg.ridge)
        out = y - loo_residuals(s, t, alpha)
        value = float(output_loss(out, y, cfg.loss)[0].sum())
        grad = loo_gradient(s, t, y, alpha, cfg.loss)
        snap = ReweightStep(step, alpha.clone(), value, grad)
        if callback is not None:
            snap.extra = dict(callback(snap))
        history.append(snap)
        if step < cfg.steps:
            alpha = diva_step(alpha, grad, cfg)
    return history


def detrimental(grad: Tensor, eps: float = 0.0) -> Tensor:
    """Indices of examples with ``(d L / d alpha)_i >= eps`` (eq. 15)."""
    return torch.nonzero(grad >= eps).flatten()


# ------------------------------------------------ general linearisation (K-output blocks)


def ntk(jac: Tensor, jac2: Tensor | None = None, *, chunk: int = 4096) -> Tensor:
    """Empirical neural tangent kernel ``J J2^T`` (N*K, M*K) in float64.

    jac: (N, K, P), jac2: (M, K, P) (default jac). Accumulated over chunks of ``chunk``
    parameters, so a float32 Jacobian is never copied whole to float64.
    """
    if jac.dim() != 3 or (jac2 is not None and (jac2.dim() != 3 or jac2.shape[2] != jac.shape[2])):
        raise ValueError(f"jac must be (N, K, P) (and jac2 (M, K, P)), got {tuple(jac.shape)}")
    a = jac.flatten(0, 1)
    b = a if jac2 is None else jac2.flatten(0, 1)
    kern = torch.zeros(a.shape[0], b.shape[0], dtype=torch.float64, device=jac.device)
    for start in range(0, a.shape[1], chunk):
        ca = a[:, start:start + chunk].double()
        cb = ca if jac2 is None else b[:, start:start + chunk].double()
        kern += ca @ cb.T
    return kern


def block_hat_matrix(kern: Tensor, alpha: Tensor, n_out: int, lam: float,
                     kern_eval: Tensor | None = None) -> Tensor:
    """``S = Theta_eval (A Theta + lambda I)^{-1}`` for the full NTK (kernel/dual form).

    kern: (N*K, N*K) NTK of the training set, ``A = diag(alpha) (x) I_K``;
    kern_eval: (M*K, N*K), default ``kern``. Returns (M*K, N*K).
    """
    _check_ridge(lam)
    nk = kern.shape[0]
    if kern.shape != (nk, nk) or nk % n_out:
        raise ValueError(f"kern must be square (N*K, N*K) with K={n_out}, got {tuple(kern.shape)}")
    _check_alpha(alpha, nk // n_out)
    a = alpha.repeat_interleave(n_out)
    kern_eval = kern if kern_eval is None else kern_eval
    eye = torch.eye(nk, dtype=kern.dtype, device=kern.device)
    # S^T = (Theta A + lambda I)^{-1} Theta_eval^T   (Theta symmetric)
    return torch.linalg.solve(kern * a[None, :] + lam * eye, kern_eval.T).T


def block_loo_residuals(s: Tensor, t: Tensor, alpha: Tensor) -> Tensor:
    """Closed-form LOO residuals (N, K) for a K-output linearisation.

    s: (N*K, N*K) from :func:`block_hat_matrix`, t: (N, K) residual targets. Removing
    example i (its K rows) gives ``t_i - f^{-i}(x_i) = (I_K - alpha_i S_ii)^{-1} e_i`` with
    ``S_ii`` the i-th K x K diagonal block (Woodbury); for ``K = 1`` this is Prop. 3.
    """
    n, k = t.shape
    _check_alpha(alpha, n)
    if s.shape != (n * k, n * k):
        raise ValueError(f"s must be ({n * k}, {n * k}), got {tuple(s.shape)}")
    a = alpha.repeat_interleave(k)
    err = (t.flatten() - s @ (a * t.flatten())).reshape(n, k)           # e = t - S A t
    blocks = s.reshape(n, k, n, k).diagonal(dim1=0, dim2=2).permute(2, 0, 1)   # (N, K, K)
    eye = torch.eye(k, dtype=s.dtype, device=s.device)
    lhs = eye - alpha[:, None, None] * blocks                           # I - alpha_i S_ii
    return torch.linalg.solve(lhs, err.unsqueeze(-1)).squeeze(-1)


def block_loo_loss(kern: Tensor, y: Tensor, alpha: Tensor, lam: float,
                   f0: Tensor | None = None, loss: str = "squared") -> Tensor:
    """``L_LOO(alpha)`` (eq. 11) for a K-output linearisation; kern: (N*K, N*K) NTK of
    :func:`ntk`, y: (N, K) one-hot, f0: (N, K) outputs at ``w0``."""
    t = y if f0 is None else y - f0
    s = block_hat_matrix(kern, alpha, y.shape[1], lam)
    return output_loss(y - block_loo_residuals(s, t, alpha), y, loss)[0].sum()


def block_loo_gradient(kern: Tensor, y: Tensor, alpha: Tensor, lam: float,
                       f0: Tensor | None = None, loss: str = "squared") -> Tensor:
    """``d L_LOO / d alpha`` (N,) for a K-output linearisation, by autograd through the
    closed form (torch.func.grad); kern: (N*K, N*K) NTK."""
    fn = torch.func.grad(lambda a: block_loo_loss(kern, y, a, lam, f0, loss))
    return fn(alpha)


def block_ridge_delta(jac: Tensor, t: Tensor, alpha: Tensor, lam: float) -> Tensor:
    """Weighted ridge on Jacobian features, primal: ``w - w0`` (P,) minimising
    ``sum_i alpha_i ||J_i dw - t_i||^2 + lambda ||dw||^2``. For tests and retraining."""
    jf = jac.flatten(0, 1)                                              # (N*K, P)
    a = alpha.repeat_interleave(jac.shape[1])
    eye = torch.eye(jf.shape[1], dtype=jf.dtype, device=jf.device)
    return torch.linalg.solve(jf.T @ (a[:, None] * jf) + lam * eye, jf.T @ (a * t.flatten()))


def block_loo_by_retraining(kern: Tensor, t: Tensor, alpha: Tensor, lam: float,
                            indices: Sequence[int]) -> Tensor:
    """LOO residuals (len(indices), K) by refitting the kernel ridge without each example.

    kern: (N*K, N*K) NTK, t: (N, K) residual targets. Each refit solves the
    ``(N-1)K``-dimensional dual system of the remaining examples.
    """
    n, k = t.shape
    out = []
    for i in indices:
        keep = (torch.arange(n, device=t.device) != i).repeat_interleave(k)
        rows = torch.zeros(n * k, dtype=torch.bool, device=t.device)
        rows[i * k:(i + 1) * k] = True
        a_rest = alpha[torch.arange(n, device=t.device) != i]
        s_i = block_hat_matrix(kern[keep][:, keep], a_rest, k, lam, kern[rows][:, keep])
        fit = s_i @ (a_rest.repeat_interleave(k) * t.flatten()[keep])
        out.append(t[i] - fit)
    return torch.stack(out)


# ----------------------------------------------------------------- baselines and checks


def loo_by_retraining(z: Tensor, y: Tensor, alpha: Tensor, lam: float,
                      indices: Sequence[int], f0: Tensor | None = None) -> Tensor:
    """LOO outputs (len(indices), K) by actually refitting the ridge without each example."""
    t = y if f0 is None else y - f0
    out = []
    for i in indices:
        keep = torch.ones(len(z), dtype=torch.bool, device=z.device)
        keep[i] = False
        w = weighted_ridge(z[keep], t[keep], alpha[keep], lam)         # eq. (12)
        out.append(y[i] - (t[i] - z[i] @ w))                            # f0_i + z_i w
    return torch.stack(out)


def influence_functions(z: Tensor, y: Tensor, alpha: Tensor, lam: float,
                        z_val: Tensor | None = None, y_val: Tensor | None = None,
                        loss: str = "squared") -> dict[str, Tensor]:
    """Koh & Liang influence functions, exact for the linear model (explicit Hessian).

    Training objective ``R(w) = sum_i alpha_i ||w^T z_i - y_i||^2 + lambda ||w||^2``, so
    ``H = 2 (Z^T D_a Z + lambda I) (x) I_K`` and ``grad l_i = 2 z_i (w^T z_i - y_i)^T``.
    Returns ``self``: (N,) ``-I_up,loss(z_i, z_i) = grad l_i^T H^{-1} grad l_i`` (>= 0,
    the self-influence used to find mislabeled examples) and, when a validation set is
    given, ``val``: (N,) ``I_up,loss(z_i, val) = -grad L_val^T H^{-1} grad l_i``, the change
    of the validation loss per unit of up-weighting of example i.
    """
    w = weighted_ridge(z, y, alpha, lam)                                # (P, K)
    eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    hess = 2.0 * (z.T @ (alpha[:, None] * z) + lam * eye)               # per output column
    grads = 2.0 * z[:, :, None] * (z @ w - y)[:, None, :]               # (N, P, K)
    flat = grads.permute(1, 0, 2).reshape(z.shape[1], -1)               # (P, N*K)
    h_inv_g = torch.linalg.solve(hess, flat).reshape(z.shape[1], len(z), -1).permute(1, 0, 2)
    result = {"self": (grads * h_inv_g).sum((1, 2))}
    if z_val is not None:
        if y_val is None:
            raise ValueError("y_val is required with z_val")
        g_out = output_loss(z_val @ w, y_val, loss)[1]                  # (M, K)
        g_val = z_val.T @ g_out                                         # grad_w L_val (P, K)
        result["val"] = -(g_val[None] * h_inv_g).sum((1, 2))
    return result


def ren2018_weights(z: Tensor, y: Tensor, lam: float, z_val: Tensor, y_val: Tensor) -> Tensor:
    """Learning-to-reweight {cite:p}`ren2018learning`, one meta step at the ridge solution.

    Ren et al. weight example i by ``max(0, -d L_val(w - eta sum_j e_j grad l_j) / d e_i)``
    ``= max(0, eta <grad L_val, grad l_i>)``, normalised. We take that step once at the
    ridge solution ``w`` of (z, y) (the original applies it at every SGD step).
    Returns weights (N,) with mean 1 (all ones if every score is <= 0).
    """
    _check_matrix("z_val", z_val)
    ones = torch.ones(len(z), dtype=z.dtype, device=z.device)
    w = weighted_ridge(z, y, ones, lam)
    g_val = z_val.T @ output_loss(z_val @ w, y_val)[1]                  # grad_w L_val (P, K)
    # <grad L_val, grad l_i> with grad l_i = 2 z_i (w^T z_i - y_i)^T
    score = 2.0 * ((z @ g_val) * (z @ w - y)).sum(1)
    weights = score.clamp_min(0.0)
    return ones if float(weights.sum()) == 0.0 else weights * (len(z) / weights.sum())


def chang2017_weights(z: Tensor, y: Tensor, lam: float, smoothing: float = 0.1) -> Tensor:
    """Active bias, threshold closeness {cite:p}`chang2017active`: ``p (1 - p) + smoothing``.

    ``p`` is the probability of the given label, here the LOO output of the ridge model for
    that label clipped to [0, 1] (Chang et al. average softmax outputs over past epochs).
    Returns weights (N,) with mean 1.
    """
    ones = torch.ones(len(z), dtype=z.dtype, device=z.device)
    prob = (loo_predictions(z, y, ones, lam) * y).sum(1).clamp(0.0, 1.0)
    weights = prob * (1.0 - prob) + smoothing
    return weights * (len(z) / weights.sum())


def inject_label_noise(labels: np.ndarray, fraction: float, n_classes: int,
                       seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Replace the labels of ``round(fraction * N)`` random examples by a *different* class.

    Returns (noisy labels, boolean mask of the flipped examples).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    rng = np.random.default_rng(seed)
    n = len(labels)
    flipped = np.zeros(n, dtype=bool)
    flipped[rng.choice(n, size=int(round(fraction * n)), replace=False)] = True
    noisy = labels.copy()
    shift = rng.integers(1, n_classes, size=int(flipped.sum()))         # never the same class
    noisy[flipped] = (labels[flipped] + shift) % n_classes
    return noisy, flipped


def ranking_auc(scores: Tensor | np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` ranking ``positives`` first (ties count 1/2)."""
    scores = np.asarray(scores.detach().cpu() if isinstance(scores, Tensor) else scores,
                        dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if scores.shape != positives.shape or positives.all() or not positives.any():
        raise ValueError("scores and positives must match and hold both classes")
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores[np.diff(np.sort(scores), prepend=np.nan) == 0]):
        tie = scores == value
        ranks[tie] = ranks[tie].mean()                                  # average ranks on ties
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ----------------------------------------------------------------------- CNN backbone


class SmallCNN(nn.Module):
    """Conv(1->w,5)-pool-Conv(w->2w,5)-pool-FC(16*2w->hidden)-head(hidden->K), leaky ReLU.

    Leaky ReLU as in LQF {cite:p}`achille2021lqf`. ``features(x)``: (N, hidden).
    """

    def __init__(self, n_classes: int, width: int = 16, hidden: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 5)
        self.conv2 = nn.Conv2d(width, 2 * width, 5)
        self.fc1 = nn.Linear(2 * width * 16, hidden)
        self.head = nn.Linear(hidden, n_classes)
        self.act = nn.LeakyReLU(0.1)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (N, hidden) of images x: (N, 1, 28, 28)."""
        h = nn.functional.max_pool2d(self.act(self.conv1(x)), 2)
        h = nn.functional.max_pool2d(self.act(self.conv2(h)), 2)
        return self.act(self.fc1(h.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def pretrain_cnn(images: np.ndarray, labels: np.ndarray, n_classes: int, cfg: CNNConfig,
                 device: torch.device | None = None) -> dict[str, Tensor]:
    """Train :class:`SmallCNN` with Adam on cross-entropy; returns its state_dict on CPU.

    images: (N, 28, 28) float in [0, 1], labels: (N,) int in ``0..n_classes-1``.
    """
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(f"images must be (N, 28, 28) with N labels, got {images.shape}, "
                         f"{labels.shape}")
    device = device or runtime.device()
    gen = runtime.seed_everything(cfg.seed)
    model = SmallCNN(n_classes, cfg.width, cfg.hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    x = torch.as_tensor(images, dtype=torch.float32).unsqueeze(1)
    y = torch.as_tensor(labels, dtype=torch.int64)
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(x), generator=gen).split(cfg.batch_size):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx].to(device)), y[idx].to(device))
            loss.backward()
            opt.step()
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def cnn_features(state: dict[str, Tensor], images: np.ndarray, n_classes: int, cfg: CNNConfig,
                 device: torch.device | None = None, batch: int = 1000) -> Tensor:
    """Penultimate features (N, hidden) float64 of a pre-trained :class:`SmallCNN`."""
    device = device or runtime.device()
    model = SmallCNN(n_classes, cfg.width, cfg.hidden).to(device)
    model.load_state_dict(state)
    model.eval()
    x = torch.as_tensor(images, dtype=torch.float32).unsqueeze(1)
    with torch.no_grad():
        feats = [model.features(x[i:i + batch].to(device)).cpu() for i in range(0, len(x), batch)]
    return torch.cat(feats).double()


def last_layer_features(feats: Tensor, reference: Tensor | None = None) -> Tensor:
    """Jacobian features of a zero-initialised linear head: ``z = [standardised phi, 1]``.

    feats: (N, H) penultimate features; ``reference`` (default feats) gives the mean and
    standard deviation. For a head ``W phi + b`` the Jacobian of output k w.r.t. (W, b) is
    ``e_k (x) [phi, 1]``, so the last-layer linearisation is ridge regression on ``z``.
    """
    _check_matrix("feats", feats)
    ref = feats if reference is None else reference
    mu, sd = ref.mean(0), ref.std(0).clamp_min(1e-6)
    ones = torch.ones(len(feats), 1, dtype=feats.dtype, device=feats.device)
    return torch.cat([(feats - mu) / sd, ones], dim=1)


@dataclass
class TaskConfig:
    """The chapter's transfer task on Fashion-MNIST (see the module docstring)."""

    source_classes: tuple[int, ...] = (0, 1, 2, 3, 4)   # pre-training task
    target_classes: tuple[int, ...] = (5, 6, 7, 8, 9)   # linearised task
    n_pretrain_per_class: int = 2000
    n_train: int = 2000                                 # target training set (noisy)
    n_test_per_class: int | None = None                 # None: all 1,000 test images
    noise: float = 0.2                                  # fraction of flipped labels
    seed: int = 0


def build_task(task: TaskConfig, cnn: CNNConfig, device: torch.device | None = None,
               use_cache: bool = True) -> dict:
    """Pre-train the CNN on the source classes (cached), embed the target task.

    Returns a dict: ``z``, ``z_test`` (last-layer Jacobian features, float64),
    ``images`` (N, 28, 28) target training images, ``labels_true``, ``labels_noisy``,
    ``flipped`` (numpy), ``labels_test`` (numpy), ``state`` (CNN state_dict),
    ``pretrain_time_s`` (0 when loaded from the cache).
    """
    n_cls = len(task.target_classes)
    if task.n_train < 2 * n_cls or task.n_train % n_cls:
        raise ValueError(f"n_train must be a multiple of {n_cls} and >= {2 * n_cls}, "
                         f"got {task.n_train}")
    device = device or runtime.device()
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    xp, yp = class_subset(train, task.source_classes, task.n_pretrain_per_class, task.seed)
    timer = {"t": 0.0}

    def compute() -> dict[str, Tensor]:
        start = time.perf_counter()
        state = pretrain_cnn(xp, yp, len(task.source_classes), cnn, device)
        timer["t"] = time.perf_counter() - start
        return state

    key = {"task": {k: v for k, v in vars(task).items() if k in
                    ("source_classes", "n_pretrain_per_class", "seed")}, "cnn": vars(cnn)}
    state = (load_or_compute("diva_cnn", key, compute) if use_cache else compute())
    xt, yt = class_subset(train, task.target_classes, task.n_train // n_cls, task.seed + 1)
    xs, ys = class_subset(test, task.target_classes, task.n_test_per_class, task.seed + 2)
    noisy, flipped = inject_label_noise(yt, task.noise, n_cls, task.seed + 3)
    n_src = len(task.source_classes)
    ft = cnn_features(state, xt, n_src, cnn, device)
    fs = cnn_features(state, xs, n_src, cnn, device)
    return {"z": last_layer_features(ft), "z_test": last_layer_features(fs, ft), "images": xt,
            "labels_true": yt, "labels_noisy": noisy, "flipped": flipped, "labels_test": ys,
            "state": state, "pretrain_time_s": timer["t"]}


def error_rate(out: Tensor, labels: Tensor) -> float:
    """Fraction of rows of out (N, K) whose argmax differs from labels (N,)."""
    return float((out.argmax(1) != labels).double().mean())


# --------------------------------------------------------------------------- widget


def draw_reweighting(fig, step: int, *, snapshots: list[dict], images: np.ndarray,
                     given: np.ndarray, true: np.ndarray, class_names: Sequence[str],
                     n_show: int = 8) -> None:
    """Widget frame: the most detrimental examples at ``step`` and the loss curves.

    snapshots: per step dicts with ``grad`` (N,) numpy, ``loo`` and ``test`` losses and
    ``test_err``. Top row: the ``n_show`` examples with the largest derivative (red title =
    mislabeled); bottom: LOO and test loss over the steps, the current step marked.
    """
    if not 0 <= step < len(snapshots):
        raise ValueError(f"step must be in 0..{len(snapshots) - 1}, got {step}")
    snap = snapshots[step]
    order = np.argsort(-snap["grad"])[:n_show]
    grid = fig.add_gridspec(2, n_show, height_ratios=[1.0, 1.5], hspace=0.45, top=0.86,
                            bottom=0.12, left=0.08, right=0.98)
    for col, i in enumerate(order):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(images[i], cmap="gray_r")
        wrong = given[i] != true[i]
        ax.set_title(f"{class_names[given[i]][:7]}\n({class_names[true[i]][:7]})",
                     fontsize=7, color="crimson" if wrong else "black")
        ax.set_xticks([])
        ax.set_yticks([])
    steps = np.arange(len(snapshots))
    ax = fig.add_subplot(grid[1, : n_show // 2])
    loo = np.array([s["loo"] for s in snapshots])
    test = np.array([s["test"] for s in snapshots])
    ax.plot(steps, loo / loo[0], label="LOO loss (train)")
    ax.plot(steps, test / test[0], label="test loss")
    ax.axvline(step, color="gray", lw=0.8)
    ax.set_xlabel("DIVA step")
    ax.set_ylabel("relative to step 0")
    ax.legend(fontsize=7)
    ax2 = fig.add_subplot(grid[1, n_show // 2 + 1:])
    ax2.hist([snap["grad"][given != true], snap["grad"][given == true]], bins=30,
             label=["mislabeled", "clean"], color=["crimson", "steelblue"], stacked=True)
    ax2.axvline(0.0, color="gray", lw=0.8)
    ax2.set_xlabel("dL_LOO / d alpha_i")
    ax2.legend(fontsize=7)
    fig.suptitle(f"step {step}: test error {100 * snap['test_err']:.1f} %, "
                 f"{int((snap['alpha'] < 1e-6).sum())} weights at 0", fontsize=9)

