"""Tests of iclr22.dataopt.diva: closed forms against brute force, autograd and finite
differences; bad input; determinism; and the paper's claims at quick size on real data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iclr22 import claims
from iclr22.dataopt import diva as D

N, P, K = 24, 5, 3
LAM = 0.7


@pytest.fixture()
def problem():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(N, P, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, K, (N,), generator=gen)
    y = D.one_hot(labels, K)
    f0 = 0.1 * torch.randn(N, K, generator=gen, dtype=torch.float64)
    alpha = 0.5 + torch.rand(N, generator=gen, dtype=torch.float64)
    return z, y, f0, alpha


def test_shapes(problem):
    z, y, f0, alpha = problem
    assert D.weighted_ridge(z, y, alpha, LAM).shape == (P, K)
    assert D.hat_matrix(z, alpha, LAM).shape == (N, N)
    assert D.hat_matrix(z, alpha, LAM, z[:4]).shape == (4, N)
    assert D.loo_predictions(z, y, alpha, LAM, f0).shape == (N, K)
    s = D.hat_matrix(z, alpha, LAM)
    assert D.loo_gradient(s, y - f0, y, alpha).shape == (N,)
    assert D.loo_loss(z, y, alpha, LAM, f0).dim() == 0


def test_weighted_ridge_matches_lstsq(problem):
    z, y, _, alpha = problem
    # min sum_i alpha_i ||w^T z_i - y_i||^2 + lam ||w||^2 as an augmented least squares
    a = torch.cat([alpha.sqrt()[:, None] * z, LAM ** 0.5 * torch.eye(P, dtype=z.dtype)])
    b = torch.cat([alpha.sqrt()[:, None] * y, torch.zeros(P, K, dtype=z.dtype)])
    ref = torch.linalg.lstsq(a, b).solution
    torch.testing.assert_close(D.weighted_ridge(z, y, alpha, LAM), ref, rtol=1e-10, atol=1e-10)


def test_alpha_one_is_ordinary_ridge(problem):
    z, y, _, _ = problem
    ones = torch.ones(N, dtype=torch.float64)
    ref = torch.linalg.solve(z.T @ z + LAM * torch.eye(P, dtype=z.dtype), z.T @ y)
    torch.testing.assert_close(D.weighted_ridge(z, y, ones, LAM), ref)


def test_zero_weight_equals_removal(problem):
    z, y, _, alpha = problem
    alpha = alpha.clone()
    alpha[[2, 7]] = 0.0
    keep = alpha > 0
    torch.testing.assert_close(D.weighted_ridge(z, y, alpha, LAM),
                               D.weighted_ridge(z[keep], y[keep], alpha[keep], LAM))


def test_dual_hat_matrix_equals_primal():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(8, 30, generator=gen, dtype=torch.float64)   # P > N: kernel form
    alpha = torch.rand(8, generator=gen, dtype=torch.float64)
    primal = z @ D.ridge_covariance(z, alpha, 0.3) @ z.T
    torch.testing.assert_close(D.hat_matrix(z, alpha, 0.3), primal)


@pytest.mark.parametrize("zero_weight", [False, True])
def test_loo_equals_explicit_retraining(problem, zero_weight):
    z, y, f0, alpha = problem
    alpha = alpha.clone()
    if zero_weight:
        alpha[5] = 0.0                       # Prop. 3 in our form holds at alpha_i = 0
    closed = D.loo_predictions(z, y, alpha, LAM, f0)
    brute = D.loo_by_retraining(z, y, alpha, LAM, range(N), f0)
    torch.testing.assert_close(closed, brute, rtol=1e-10, atol=1e-10)
    # the N x N hat-matrix path (used when P > N) agrees with the diagonal-only path
    via_s = y - D.loo_residuals(D.hat_matrix(z, alpha, LAM), y - f0, alpha)
    torch.testing.assert_close(closed, via_s)


def test_loo_matches_paper_eq13(problem):
    z, y, _, alpha = problem
    # eq. (13): R = sqrt(D) Z C Z^T sqrt(D) (Z as rows), f^{-i} = [R sqrt(D) Y - diag(R)
    # sqrt(D) Y] / diag(sqrt(D) - sqrt(D) R)
    sq = alpha.sqrt()
    r = sq[:, None] * (z @ D.ridge_covariance(z, alpha, LAM) @ z.T) * sq[None, :]
    num = r @ (sq[:, None] * y) - torch.diagonal(r)[:, None] * sq[:, None] * y
    den = sq - sq * torch.diagonal(r)
    torch.testing.assert_close(D.loo_predictions(z, y, alpha, LAM), num / den[:, None])


@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_loo_gradient_matches_autograd(problem, loss):
    z, y, f0, alpha = problem
    closed = D.loo_gradient(D.hat_matrix(z, alpha, LAM), y - f0, y, alpha, loss)
    a = alpha.clone().requires_grad_(True)
    D.loo_loss(z, y, a, LAM, f0, loss).backward()
    torch.testing.assert_close(closed, a.grad, rtol=1e-9, atol=1e-11)


def test_loo_gradient_matches_finite_differences(problem):
    z, y, f0, alpha = problem
    closed = D.loo_gradient(D.hat_matrix(z, alpha, LAM), y - f0, y, alpha)
    eps = 1e-6
    fd = torch.empty(N, dtype=torch.float64)
    for k in range(N):
        up, down = alpha.clone(), alpha.clone()
        up[k] += eps
        down[k] -= eps
        fd[k] = (D.loo_loss(z, y, up, LAM, f0) - D.loo_loss(z, y, down, LAM, f0)) / (2 * eps)
    torch.testing.assert_close(closed, fd, rtol=1e-5, atol=1e-7)


def test_val_gradient_equals_autograd_and_influence(problem):
    z, y, _, alpha = problem
    gen = torch.Generator().manual_seed(2)
    zv = torch.randn(9, P, generator=gen, dtype=torch.float64)
    yv = D.one_hot(torch.randint(0, K, (9,), generator=gen), K)
    s, sv = D.hat_matrix(z, alpha, LAM), D.hat_matrix(z, alpha, LAM, zv)
    closed = D.val_gradient(sv, s, y, alpha, yv)
    a = alpha.clone().requires_grad_(True)
    D.output_loss(zv @ D.weighted_ridge(z, y, a, LAM), yv)[0].sum().backward()
    torch.testing.assert_close(closed, a.grad)
    # Koh & Liang's I_up,loss with the exact Hessian is the same derivative (quadratic model)
    inf = D.influence_functions(z, y, alpha, LAM, zv, yv)
    torch.testing.assert_close(inf["val"], closed)
    assert bool((inf["self"] >= 0).all())


def test_block_linearisation_reduces_to_last_layer(problem):
    z, y, f0, alpha = problem
    jac = torch.einsum("kl,np->nklp", torch.eye(K, dtype=z.dtype), z).reshape(N, K, K * P)
    kern = D.ntk(jac)
    block = y - D.block_loo_residuals(D.block_hat_matrix(kern, alpha, K, LAM), y - f0, alpha)
    torch.testing.assert_close(block, D.loo_predictions(z, y, alpha, LAM, f0))
    torch.testing.assert_close(D.block_loo_gradient(kern, y, alpha, LAM, f0),
                               D.loo_gradient(D.hat_matrix(z, alpha, LAM), y - f0, y, alpha))


def test_block_loo_equals_retraining():
    gen = torch.Generator().manual_seed(3)
    n, k, p = 10, 3, 12
    jac = torch.randn(n, k, p, generator=gen, dtype=torch.float64)
    t = torch.randn(n, k, generator=gen, dtype=torch.float64)
    alpha = torch.rand(n, generator=gen, dtype=torch.float64)
    res = D.block_loo_residuals(D.block_hat_matrix(D.ntk(jac), alpha, k, 0.5), t, alpha)
    for i in range(n):
        keep = torch.arange(n) != i
        dw = D.block_ridge_delta(jac[keep], t[keep], alpha[keep], 0.5)
        torch.testing.assert_close(res[i], t[i] - jac[i] @ dw)


def test_jacobian_features_of_a_network():
    torch.manual_seed(0)
    model = D.SmallCNN(num_classes=3, width=2, hidden=4).double()
    x = torch.randn(5, 1, 28, 28, dtype=torch.float64)
    f0, jac = D.jacobian_features(model, x, ["fc1.weight", "head.weight", "head.bias"], chunk=2)
    n_par = model.fc1.weight.numel() + model.head.weight.numel() + 3
    assert f0.shape == (5, 3) and jac.shape == (5, 3, n_par)
    torch.testing.assert_close(f0, model(x).detach())
    # head block: J_i = e_k (x) [phi_i, 1]  (the paper's last-layer linearisation)
    _, jh = D.jacobian_features(model, x, ["head.weight", "head.bias"])
    phi = model.features(x).detach()
    expected = torch.cat([torch.einsum("kl,nh->nklh", torch.eye(3, dtype=x.dtype), phi)
                          .flatten(2), torch.eye(3, dtype=x.dtype).expand(5, 3, 3)], dim=2)
    torch.testing.assert_close(jh, expected)
    # the linearisation is exact to first order: f(w0 + dw) - f_lin = O(|dw|^2)
    dw = 1e-4 * torch.randn(n_par, dtype=torch.float64)
    lin = D.linearized_predict(f0, jac, dw)
    with torch.no_grad():
        model.fc1.weight += dw[:model.fc1.weight.numel()].reshape(model.fc1.weight.shape)
        rest = dw[model.fc1.weight.numel():]
        model.head.weight += rest[:12].reshape(3, 4)
        model.head.bias += rest[12:]
        assert (model(x) - lin).abs().max() < 1e-6


def test_bad_input_errors(problem):
    z, y, f0, alpha = problem
    with pytest.raises(ValueError, match="alpha must have shape"):
        D.weighted_ridge(z, y, alpha[:-1], LAM)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        D.weighted_ridge(z, y, -alpha, LAM)
    with pytest.raises(ValueError, match="ridge lambda"):
        D.weighted_ridge(z, y, alpha, 0.0)
    with pytest.raises(ValueError, match="rows"):
        D.weighted_ridge(z, y[:-1], alpha, LAM)
    with pytest.raises(TypeError, match="torch.Tensor"):
        D.weighted_ridge(z.numpy(), y, alpha, LAM)
    with pytest.raises(ValueError, match="loss must be one of"):
        D.loo_loss(z, y, alpha, LAM, loss="hinge")
    with pytest.raises(ValueError, match="param_names"):
        D.jacobian_features(D.SmallCNN(3, 2, 4), torch.zeros(2, 1, 28, 28), ["nope"])
    with pytest.raises(ValueError, match="fraction"):
        D.inject_label_noise(np.zeros(10, int), 1.5, 3, 0)
    with pytest.raises(ValueError, match="labels must lie"):
        D.one_hot(torch.tensor([0, 5]), 3)
    with pytest.raises(ValueError, match="steps"):
        D.diva_reweight(z, y, D.DivaConfig(ridge=LAM, steps=-1))


@pytest.mark.parametrize("mode", ["uniform", "different"])
def test_noise_injection(mode):
    labels = np.arange(1000) % 5
    noisy, wrong = D.inject_label_noise(labels, 0.2, 5, seed=0, mode=mode)
    assert np.array_equal(wrong, noisy != labels)
    changed = int(wrong.sum())
    if mode == "different":                  # every replaced label is wrong
        assert changed == 200
    else:                                    # a replacement keeps the label w.p. 1/5
        assert 140 <= changed <= 180, changed
    assert np.bincount(noisy, minlength=5).min() > 150   # no class is emptied or favoured


def test_ranking_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 50).astype(float)       # with ties
    pos = rng.random(50) < 0.3
    assert D.ranking_auc(scores, pos) == pytest.approx(roc_auc_score(pos, scores))


def test_reweight_is_deterministic_and_keeps_constraints(problem):
    z, y, f0, _ = problem
    cfg = D.DivaConfig(ridge=LAM, lr=0.5, steps=3)
    first = D.diva_reweight(z, y, cfg, f0)
    second = D.diva_reweight(z, y, cfg, f0)
    assert len(first) == 4
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a.alpha, b.alpha) and a.loo_loss == b.loo_loss
    final = first[-1].alpha
    assert bool((final >= 0).all()) and final.mean().item() == pytest.approx(1.0)


def test_pretraining_is_deterministic():
    rng = np.random.default_rng(0)
    images = rng.random((40, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 3, 40)
    cfg = D.CNNConfig(width=2, hidden=4, epochs=1, batch_size=16)
    s1 = D.pretrain_cnn(images, labels, 3, cfg, torch.device("cpu"))
    s2 = D.pretrain_cnn(images, labels, 3, cfg, torch.device("cpu"))
    assert all(torch.equal(s1[k], s2[k]) for k in s1)



def test_paper_numbers_are_data():
    assert D.PAPER["test_err/diva/CUB-200"].value == 36.93
    assert D.PAPER["test_err/original/CUB-200"].source == "Table 1"
    assert D.PAPER["auc/lowest"].value == 0.90 and D.PAPER["auc/highest"].value == 0.99
    assert D.PAPER["gain/lowest"].value == pytest.approx(1.07)
    assert D.PAPER["gain/highest"].value == pytest.approx(2.94)


def test_ren2018_weights_match_one_meta_step(problem):
    z, y, _, _ = problem
    ren = D.ren2018_weights(z[:16], y[:16], LAM, z[16:], y[16:])
    assert ren.shape == (16,) and bool((ren >= 0).all())
    assert ren.mean().item() == pytest.approx(1.0)
    # brute force: d L_val / d eps_i of one SGD step from the ridge solution
    w = D.weighted_ridge(z[:16], y[:16], torch.ones(16, dtype=torch.float64), LAM)
    eps = torch.zeros(16, dtype=torch.float64, requires_grad=True)
    step = w - 0.01 * torch.autograd.grad(
        (eps * D.output_loss(z[:16] @ w.requires_grad_(True), y[:16])[0]).sum(), w,
        create_graph=True)[0]
    (-D.output_loss(z[16:] @ step, y[16:])[0].sum()).backward()
    ref = eps.grad.clamp_min(0)
    torch.testing.assert_close(ren, ref * 16 / ref.sum())


def test_chang2017_weights_by_hand():
    """Group-indicator features: the ridge LOO output of example i in group g is the count
    of its label among the *other* members of g over (n_g - 1 + lambda), so every weight
    p (1 - p) + 0.1 can be written down."""
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 0])
    z = torch.nn.functional.one_hot(groups, 2).double()
    y = D.one_hot(labels, 2)
    # group 0 (n = 4): label 0 -> p = 2 / (3 + 1); label 1 -> p = 0
    # group 1 (n = 3): label 1 -> p = 1 / (2 + 1); label 0 -> p = 0
    p = torch.tensor([0.5, 0.5, 0.5, 0.0, 1 / 3, 1 / 3, 0.0], dtype=torch.float64)
    raw = p * (1 - p) + 0.1
    expected = raw * 7 / raw.sum()
    torch.testing.assert_close(D.chang2017_weights(z, y, 1.0, smoothing=0.1), expected)
    # the weights belong to their examples: a permutation of them is a different answer
    assert not torch.allclose(expected, expected[torch.tensor([3, 1, 2, 0, 6, 5, 4])])


def _fake_task_data(num: int = 20, seed: int = 0) -> D.TaskData:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, num)
    noisy, wrong = D.inject_label_noise(labels, 0.3, 5, seed, "different")
    z = torch.as_tensor(rng.normal(size=(num, 4)))
    task = D.TaskConfig(num_train=num)
    backbone = D.Backbone({}, D.CNNConfig(), 5, 0.0)
    return D.TaskData(task, seed, z, z[:8], rng.random((num, 28, 28)), labels, noisy, wrong,
                      labels[:8], backbone)


def test_draw_reweighting_headless():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    data = _fake_task_data()
    snaps = D.reweighting_snapshots(data, 1.0, steps=2)
    assert [s.step for s in snaps] == [0, 1, 2]
    fig = plt.figure()
    D.draw_reweighting(fig, 1, snapshots=snaps, data=data)
    assert len(fig.axes) == 8 + 2
    assert fig.axes[-1].get_xlabel() == r"$\partial L_{LOO} / \partial \alpha_i$"
    plt.close(fig)
    with pytest.raises(ValueError, match="step"):
        D.draw_reweighting(plt.figure(), 5, snapshots=snaps, data=data)
    plt.close("all")


def test_task_checks():
    with pytest.raises(ValueError, match="multiple of 5"):
        D.draw_task(None, D.TaskConfig(num_train=12), 0)
    with pytest.raises(ValueError, match="disjoint"):
        D.pretrain_backbone(D.TaskConfig(source_classes=(0, 5)), D.CNNConfig())
    with pytest.raises(ValueError, match="clean"):
        _fake_task_data().one_hot("dirty")


def test_lambda_is_chosen_on_training_labels_only():
    data = _fake_task_data(num=60)
    cfg = D.ExperimentConfig()
    first = D.run_condition(data, "noisy", cfg)
    data.labels_test = np.roll(data.labels_test, 1)           # other test labels ...
    second = D.run_condition(data, "noisy", cfg)
    assert first.ridge == second.ridge                         # ... same lambda
    assert D.run_condition(data, "clean", cfg).ridge in cfg.ridge_grid


# ----------------------------------------------------------- claims at quick size, 3 seeds

QUICK_SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def quick_run():
    import dataclasses
    task = dataclasses.replace(D.TASKS["distinct"], num_pretrain_per_class=400, num_train=400,
                               num_test_per_class=200)
    backbone = D.pretrain_backbone(task, D.CNNConfig(epochs=2), torch.device("cpu"),
                                   use_cache=False)
    data = [D.draw_task(backbone, task, s, torch.device("cpu")) for s in QUICK_SEEDS]
    cfg = D.ExperimentConfig()
    return data, D.ExperimentResult(task, cfg, [D.run_on_data(d, cfg) for d in data])


def test_claim_derivative_detects_label_noise(quick_run):
    """Fig. 3: AUC at least the paper's lowest (0.90) with the cross-entropy LOO loss, over 3
    seeds (the full run reproduces it too); a shuffled derivative must fail the same claim."""
    data, result = quick_run
    claim = D.detection_claims(result)[0]
    assert claim.threshold == D.PAPER["auc/lowest"].value
    assert claim.verdict == "reproduced", claim.ours
    shuffled = [D.ranking_auc(D.detection_scores(d, lam)["diva_cross_entropy"][
        torch.randperm(len(d.z), generator=torch.Generator().manual_seed(d.seed))], d.mislabeled)
        for d, lam in zip(data, result.series("noisy", "ridge"), strict=True)]
    wrong = claims.at_least("shuffled", shuffled, claim.threshold, seeds=QUICK_SEEDS,
                            setting="test")
    assert wrong.verdict == "not reproduced", shuffled
    # the squared LOO loss (the paper's L2) ranks worse than cross-entropy but far above chance
    squared = np.mean(result.series("detection", "auc_diva_squared"))
    assert 0.7 < squared < claim.ours.mean


def test_claim_derivative_against_training_loss(quick_run):
    """DIVA's derivative is no better a detector than the example's training loss (the full
    run: 'not reproduced', -0.0105 AUC [-0.013, -0.008]); stated here with a margin: not
    'reproduced' and within 0.05 AUC of the training loss, which a broken derivative
    (AUC ~0.5) is not."""
    _, result = quick_run
    claim = D.detection_claims(result)[2]
    assert claim.verdict != "reproduced"
    assert abs(claim.ours.mean) < 0.05, claim.ours


def test_claim_reweighting(quick_run):
    """Reweighting on test error, 3 seeds, with margins. The full run (8 seeds, 2,000
    images) finds: beats learning to reweight by > 9 points (reproduced); lowers the error
    on noisy labels by 0.17 points [0.03, 0.31] (reproduced) and raises it on clean labels
    by 0.1 (not reproduced). At quick size the error effects are inside seed noise, so the
    test asserts: DIVA beats Ren et al. by > 5 points; no verdict contradicts the full run;
    both effects are under a point; and the weight moves off the wrong labels (>= 0.2 of
    the mean weight 1), which shuffled weight changes (a wrong implementation) fail."""
    data, result = quick_run
    rw = {c.text.split(" (")[0]: c for c in D.reweighting_claims(result)}
    ren = rw["DIVA Reweight beats learning to reweight"]
    assert ren.verdict == "reproduced" and ren.ours.high < -5.0, ren.ours
    for which, contradicts in (("clean", "reproduced"), ("noisy", "not reproduced")):
        claim = rw[f"DIVA reweighting lowers test error on {which} labels"]
        assert abs(claim.ours.mean) < 1.0, (which, claim.ours)
        assert claim.verdict != contradicts, (which, claim.verdict)
    gaps = result.series("noisy", "weight_gap")
    moved = claims.at_least("gap", gaps, -0.2, seeds=QUICK_SEEDS, setting="t", better="lower")
    assert moved.verdict == "reproduced", gaps
    shuffled = []
    for d, lam in zip(data, result.series("noisy", "ridge"), strict=True):
        alpha = D.diva_reweight(d.z, d.one_hot("noisy"), D.DivaConfig(ridge=lam, lr=1.0))[-1].alpha
        alpha = alpha[torch.randperm(len(alpha), generator=torch.Generator().manual_seed(d.seed))]
        wrong = torch.as_tensor(d.mislabeled)
        shuffled.append(float(alpha[wrong].mean() - alpha[~wrong].mean()))
    assert claims.at_least("gap", shuffled, -0.2, seeds=QUICK_SEEDS, setting="t",
                           better="lower").verdict != "reproduced", shuffled
