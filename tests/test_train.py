"""Tests of iclr22.train: the best-validation-epoch loop, node-wise fitting, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from iclr22 import train


def _blobs(num_nodes: int = 120, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(num_nodes) % 3
    x = torch.randn(num_nodes, 4, generator=g)
    x[torch.arange(num_nodes), y] += 2.0
    return x, y


def test_accuracy_hand_value_and_empty_index():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 0])
    assert train.accuracy(logits, labels, [0, 1, 2]) == pytest.approx(2 / 3)
    assert torch.isnan(torch.tensor(train.accuracy(logits, labels, [])))


def test_fit_best_on_validation_keeps_the_best_epoch_state():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    scores = iter([0.1, 0.9, 0.2, 0.3])          # epoch 1 is best
    seen = {}

    def val_score():
        score = next(scores)
        seen[score] = model.weight.item()
        return score

    config = train.TrainConfig(epochs=4, lr=0.1, weight_decay=0.0, patience=10)
    result = train.fit_best_on_validation(model, lambda: (model.weight - 1.0).pow(2).sum(),
                                          val_score, config)
    assert result == train.FitResult(best_epoch=1, best_score=0.9, num_epochs=4)
    assert model.weight.item() == pytest.approx(seen[0.9])
    assert not model.training


def test_patience_stops_early():
    model = nn.Linear(1, 1)
    config = train.TrainConfig(epochs=50, lr=0.1, weight_decay=0.0, patience=3)
    result = train.fit_best_on_validation(model, lambda: model.weight.pow(2).sum(),
                                          lambda: 0.5, config)
    assert result.best_epoch == 0 and result.num_epochs == 4


def test_fit_nodewise_learns_and_reads_only_train_and_val_rows():
    x, y = _blobs()
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    train_idx, val_idx = torch.arange(0, 80), torch.arange(80, 100)
    x_poisoned = x.clone()
    x_poisoned[100:] = float("nan")              # test rows: never read
    result = train.fit_nodewise(model, x_poisoned, y, train_idx, val_idx,
                                train.TrainConfig(epochs=60, lr=0.1, weight_decay=0.0))
    assert result.best_score > 0.8
    assert train.accuracy(model(x), y, torch.arange(100, 120)) > 0.8


def test_fit_is_deterministic():
    x, y = _blobs()
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = nn.Linear(4, 3)
        train.fit_classifier(model, lambda m=model: m(x), y, torch.arange(60),
                             torch.arange(60, 90), train.TrainConfig(epochs=10))
        outs.append(model.weight.detach().clone())
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_fit_epochs_runs_a_fixed_number_of_steps():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    config = train.TrainConfig(epochs=3, lr=0.5, weight_decay=0.0)
    result = train.fit_epochs(model, lambda: model.weight.sum(), config)
    assert result.num_epochs == 3
    assert model.weight.item() == pytest.approx(1.0 - 3 * 0.5, abs=1e-5)   # Adam: lr a step


def test_bad_input():
    with pytest.raises(ValueError, match="epochs"):
        train.TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="lr"):
        train.TrainConfig(lr=0.0)
    x, y = _blobs(10)
    with pytest.raises(TypeError, match="train_idx"):
        train.fit_nodewise(nn.Linear(4, 3), x, y, [0, 1], torch.arange(2, 4), train.TrainConfig())
    with pytest.raises(ValueError, match="outside"):
        train.fit_nodewise(nn.Linear(4, 3), x, y, torch.arange(5), torch.tensor([12]),
                           train.TrainConfig())
    with pytest.raises(ValueError, match="empty"):
        train.fit_classifier(nn.Linear(4, 3), lambda: x, y, torch.arange(0), torch.arange(3),
                             train.TrainConfig())


# ---- mini-batch loop ------------------------------------------------------------------------


def _minibatch_fit(seed: int, val_score=None, epochs: int = 4):
    x, y = _blobs(seed=0)
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    gen = torch.Generator().manual_seed(seed)
    seen = []

    def batches():
        order = torch.randperm(len(x), generator=gen).split(32)
        seen.append(len(order))
        return order

    loss = lambda b: nn.functional.cross_entropy(model(x[b]), y[b])  # noqa: E731
    score = None if val_score is None else (lambda: val_score(model))
    fit = train.fit_minibatches(model, batches, loss,
                                train.TrainConfig(epochs=epochs, lr=0.05, patience=2),
                                val_score=score)
    return model, fit, seen


def test_fit_minibatches_steps_every_batch_of_every_epoch_and_learns():
    x, y = _blobs(seed=0)
    model, fit, seen = _minibatch_fit(0, epochs=5)
    assert seen == [4] * 5                     # 120 rows in batches of 32, reshuffled per epoch
    assert (fit.num_epochs, fit.best_epoch) == (5, 4) and torch.isnan(torch.tensor(fit.best_score))
    assert not model.training
    assert train.accuracy(model(x), y, torch.arange(len(y))) > 0.8


def test_fit_minibatches_keeps_the_best_epoch_and_stops_on_patience():
    scores = iter([0.1, 0.5, 0.3, 0.2, 0.9, 1.0])
    states = []

    def val_score(model):
        states.append(model.weight.detach().clone())
        return next(scores)

    model, fit, seen = _minibatch_fit(1, val_score=val_score, epochs=6)
    assert (fit.best_epoch, fit.best_score, fit.num_epochs) == (1, 0.5, 4)   # patience 2
    assert len(seen) == 4
    torch.testing.assert_close(model.weight, states[1])


def test_fit_minibatches_takes_another_optimiser_and_a_per_step_schedule():
    x, y = _blobs(seed=0)
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    gen = torch.Generator().manual_seed(0)
    made, lrs, losses = {}, [], []

    def optimiser(m):  # SGD at 0.1 / (step + 1): the schedule must step after every batch
        made["opt"] = torch.optim.SGD(m.parameters(), lr=0.1)
        return made["opt"], torch.optim.lr_scheduler.LambdaLR(made["opt"], lambda k: 1 / (k + 1))

    def loss(b):
        lrs.append(made["opt"].param_groups[0]["lr"])
        return nn.functional.cross_entropy(model(x[b]), y[b])

    train.fit_minibatches(model, lambda: torch.randperm(len(y), generator=gen).split(32), loss,
                          train.TrainConfig(epochs=2), optimiser=optimiser, step_losses=losses)
    assert len(losses) == 8 and all(isinstance(v, float) for v in losses)  # 2 epochs x 4
    assert lrs == pytest.approx([0.1 / (k + 1) for k in range(8)])
    assert losses[-1] < losses[0]


def test_fit_minibatches_is_deterministic_for_a_seed():
    a, _, _ = _minibatch_fit(3)
    b, _, _ = _minibatch_fit(3)
    c, _, _ = _minibatch_fit(4)
    torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0)
    assert not torch.equal(a.weight, c.weight)
