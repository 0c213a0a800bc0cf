"""Training loops shared by the chapters: full-batch Adam, keep the best validation epoch.

Three loops with Adam, all built on one epoch loop that keeps the best validation epoch:

* :func:`fit_best_on_validation` (full batch): minimise ``train_loss()``; after every epoch
  score the model with ``val_score()`` (higher is better) and keep the parameters of the
  best epoch; stop after ``patience`` epochs without improvement. :func:`fit_classifier`
  and :func:`fit_nodewise` are its cross-entropy forms for node classification.
* :func:`fit_epochs` (full batch): minimise ``train_loss()`` for a fixed number of epochs
  (no model selection; e.g. a distillation target that has no validation score).
* :func:`fit_minibatches`: one Adam step per mini-batch of ``batches()`` (called anew each
  epoch, so it may shuffle), with or without the best-validation-epoch selection; another
  optimiser and a per-step learning-rate schedule can replace Adam (Trans-Encoder's AdamW
  with linear warm-up and decay).

Model selection reads validation nodes only; test nodes are never touched here. Loops wrap
their epochs in :func:`iclr22.runtime.progress` (a bar in a live kernel only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import checks, runtime
from .nn import Features, rows

__all__ = ["FitResult", "TrainConfig", "accuracy", "fit_best_on_validation", "fit_classifier",
           "fit_epochs", "fit_minibatches", "fit_nodewise"]


@dataclass(frozen=True)
class TrainConfig:
    """Full-batch Adam: ``epochs``, learning rate, L2 ``weight_decay``, early-stop
    ``patience`` (epochs without a better validation score)."""

    epochs: int = 200
    lr: float = 0.01
    weight_decay: float = 5e-4
    patience: int = 50

    def __post_init__(self) -> None:
        checks.positive_int("epochs", self.epochs)
        if not self.lr > 0 or self.weight_decay < 0 or self.patience < 1:
            raise ValueError(f"need lr > 0, weight_decay >= 0, patience >= 1, got {self}")


@dataclass(frozen=True)
class FitResult:
    """What a loop did: the kept epoch, its validation score, the epochs run."""

    best_epoch: int
    best_score: float
    num_epochs: int


def accuracy(logits: Tensor, labels: Tensor, index) -> float:
    """Fraction of ``index`` nodes whose arg-max class is the label (nan for no node).

    Shapes: logits (N, C), labels (N,), index (M,) -> float.
    """
    index = torch.as_tensor(index, dtype=torch.long, device=logits.device)
    if index.numel() == 0:
        return float("nan")
    return (logits[index].argmax(1) == labels[index]).float().mean().item()


def _check_index(name: str, index: Tensor, num_rows: int) -> None:
    if not isinstance(index, Tensor) or index.dim() != 1 or index.dtype != torch.long:
        raise TypeError(f"{name} must be a 1-D int64 tensor")
    if index.numel() == 0:
        raise ValueError(f"{name} is empty")
    if int(index.min()) < 0 or int(index.max()) >= num_rows:
        raise ValueError(f"{name} holds ids outside 0..{num_rows - 1}")


def _optimiser(parameters: Iterable[nn.Parameter], config: TrainConfig):
    return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)


def _epochs_keeping_best(model: nn.Module, run_epoch: Callable[[], None],
                         val_score: Callable[[], float] | None, epochs: int, patience: int,
                         desc: str) -> FitResult:
    """Call ``run_epoch()`` (model in train mode) up to ``epochs`` times; after each, score
    the model with ``val_score()`` (eval mode, no grad) and keep the best epoch's state, or,
    with ``val_score=None``, keep the last epoch. Leaves the model in eval mode."""
    best, best_state, best_epoch, epoch = -float("inf"), None, 0, -1
    for epoch in runtime.progress(range(epochs), desc=desc, leave=False):
        model.train()
        run_epoch()
        if val_score is None:
            continue
        model.eval()
        with torch.no_grad():
            score = float(val_score())
        if score > best:
            best, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= patience:
            break
    model.eval()
    if val_score is None:
        return FitResult(epochs - 1, float("nan"), epochs)
    model.load_state_dict(best_state)
    return FitResult(best_epoch, best, epoch + 1)


def _full_batch_step(opt: torch.optim.Optimizer,
                     train_loss: Callable[[], Tensor]) -> Callable[[], None]:
    def step() -> None:
        opt.zero_grad()
        train_loss().backward()
        opt.step()
    return step


def fit_best_on_validation(model: nn.Module, train_loss: Callable[[], Tensor],
                           val_score: Callable[[], float], config: TrainConfig,
                           parameters: Iterable[nn.Parameter] | None = None,
                           desc: str = "training") -> FitResult:
    """Adam on ``train_loss()``; keep the state of the epoch with the best ``val_score()``.

    ``model`` is in train mode during ``train_loss`` and in eval mode (no grad) during
    ``val_score``; it is left in eval mode with the best state loaded. ``parameters``
    (default: all of ``model``'s) are the ones optimised.
    """
    opt = _optimiser(model.parameters() if parameters is None else parameters, config)
    return _epochs_keeping_best(model, _full_batch_step(opt, train_loss), val_score,
                                config.epochs, config.patience, desc)


def fit_epochs(model: nn.Module, train_loss: Callable[[], Tensor], config: TrainConfig,
               parameters: Iterable[nn.Parameter] | None = None,
               desc: str = "training") -> FitResult:
    """Adam on ``train_loss()`` for ``config.epochs`` epochs (no model selection)."""
    opt = _optimiser(model.parameters() if parameters is None else parameters, config)
    return _epochs_keeping_best(model, _full_batch_step(opt, train_loss), None,
                                config.epochs, config.patience, desc)


#: ``optimiser(model)`` -> (optimizer, scheduler stepped after every optimizer step, or None)
Optimiser = Callable[[nn.Module], "tuple[torch.optim.Optimizer, Any]"]


def fit_minibatches(model: nn.Module, batches: Callable[[], Iterable[Any]],
                    batch_loss: Callable[[Any], Tensor], config: TrainConfig,
                    val_score: Callable[[], float] | None = None,
                    desc: str = "training", optimiser: Optimiser | None = None,
                    step_losses: list[float] | None = None) -> FitResult:
    """Mini-batch Adam: each epoch, one step on ``batch_loss(b)`` for every ``b`` in
    ``batches()``; with ``val_score`` keep the best validation epoch (early stop after
    ``config.patience`` epochs without improvement), without it train ``config.epochs``.

    ``batches`` is called once per epoch, so it can shuffle (draw from a seeded
    ``torch.Generator`` for reproducible order). Example::

        gen = torch.Generator().manual_seed(seed)
        fit_minibatches(model, lambda: torch.randperm(len(x), generator=gen).split(128),
                        lambda b: F.mse_loss(model(x[b]), y[b]), TrainConfig(epochs=5))

    ``optimiser(model)`` replaces Adam with ``config.lr`` and ``config.weight_decay`` by
    another optimizer and an optional scheduler (stepped after every optimizer step);
    ``step_losses``, when given, receives the loss of every step.
    """
    opt, schedule = (optimiser(model) if optimiser is not None
                     else (_optimiser(model.parameters(), config), None))

    def run_epoch() -> None:
        for batch in batches():
            opt.zero_grad()
            loss = batch_loss(batch)
            loss.backward()
            opt.step()
            if schedule is not None:
                schedule.step()
            if step_losses is not None:
                step_losses.append(float(loss.detach()))

    return _epochs_keeping_best(model, run_epoch, val_score, config.epochs, config.patience,
                                desc)


def fit_classifier(model: nn.Module, forward: Callable[[], Tensor], labels: Tensor,
                   train_idx: Tensor, val_idx: Tensor, config: TrainConfig,
                   penalty: Callable[[], Tensor] | None = None,
                   desc: str = "training") -> FitResult:
    """Cross-entropy on ``train_idx`` (+ ``penalty()``), best validation accuracy kept.

    Shapes: forward() -> (N, C) logits; labels (N,); train_idx, val_idx (M,) int64.
    """
    _check_index("train_idx", train_idx, labels.shape[0])
    _check_index("val_idx", val_idx, labels.shape[0])

    def train_loss() -> Tensor:
        loss = F.cross_entropy(forward()[train_idx], labels[train_idx])
        return loss if penalty is None else loss + penalty()

    return fit_best_on_validation(model, train_loss,
                                  lambda: accuracy(forward(), labels, val_idx), config,
                                  desc=desc)


def fit_nodewise(model: nn.Module, x: Features, labels: Tensor, train_idx: Tensor,
                 val_idx: Tensor, config: TrainConfig, extra: Tensor | None = None,
                 desc: str = "training") -> FitResult:
    """:func:`fit_classifier` for a node-wise model ``model(x_rows[, extra_rows])``: only the
    rows of ``train_idx`` and ``val_idx`` are ever computed (an MLP needs no other node).

    Shapes: x (N, F); extra (N, D) or None; labels (N,).
    """
    _check_index("train_idx", train_idx, labels.shape[0])
    _check_index("val_idx", val_idx, labels.shape[0])
    index = torch.cat([train_idx, val_idx])
    x_rows = rows(x, index)
    extra_rows = None if extra is None else extra[index]
    local_train = torch.arange(len(train_idx), device=index.device)
    local_val = torch.arange(len(train_idx), len(index), device=index.device)

    def forward() -> Tensor:
        return model(x_rows) if extra_rows is None else model(x_rows, extra_rows)

    return fit_classifier(model, forward, labels[index], local_train, local_val, config,
                          desc=desc)
