"""The device path of the three paper modules (Cold Brew, GRDA, DIVA).

Each test runs a tiny piece of the method with an explicit ``device=`` and checks that what
it returns lives on that device (where the API says so), is finite, and, on CUDA, agrees
with the CPU: tightly for closed forms in float64, loosely (shapes, finiteness, better than
chance) for training runs, whose GPU kernels need not be bit-for-bit those of the CPU.
The ``cuda`` cases are marked ``gpu`` and skip without CUDA (tests/conftest.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from iclr22.data.dg_domains import DomainGraphData
from iclr22.dataopt import diva as D
from iclr22.graphs import cold_brew as cb
from iclr22.graphs import grda
from iclr22.nn import gcn_propagation, mean_propagation

CPU = torch.device("cpu")
DEVICES = [pytest.param("cpu", id="cpu"),
           pytest.param("cuda", marks=pytest.mark.gpu, id="cuda")]


def _on(t: torch.Tensor, device: torch.device) -> bool:
    return t.device.type == device.type


def _finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def _params_on(model: torch.nn.Module, device: torch.device) -> bool:
    return all(_on(t, device) for t in [*model.parameters(), *model.buffers()])


# ---- Cold Brew ------------------------------------------------------------------------------


def _toy_graph(n: int = 90, classes: int = 3, seed: int = 0):
    """A small homophilous graph with class-shifted features (planted partition)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    same = labels[:, None] == labels[None, :]
    upper = np.triu(rng.random((n, n)) < np.where(same, 0.1, 0.005), k=1)
    edges = np.argwhere(upper)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    x[np.arange(n), labels] += 1.5
    return torch.from_numpy(x), torch.from_numpy(labels).long(), edges


@pytest.mark.parametrize("dev", DEVICES)
def test_cold_brew_on_device(dev):
    device = torch.device(dev)
    x, labels, edges = _toy_graph()
    n = len(labels)
    edge_index = torch.as_tensor(edges.T.copy()).long()
    # closed forms: the propagation operators and label propagation match the CPU
    prop = gcn_propagation(edge_index, n, device)
    prop_mean = mean_propagation(edge_index, n, device)
    assert _on(prop.edge_index, device) and _on(prop.matrix.coo, device)
    assert _on(prop.matrix.cols_t, device) and _on(prop_mean.matrix.coo, device)
    torch.testing.assert_close(prop.to_dense().cpu(), gcn_propagation(edge_index, n).to_dense())
    torch.testing.assert_close(prop_mean.to_dense().cpu(),
                               mean_propagation(edge_index, n).to_dense())
    w = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close((prop @ w.to(device)).cpu(), prop.to_dense().cpu() @ w,
                               rtol=1e-5, atol=1e-6)
    train_idx = torch.arange(0, n, 2)
    lp = cb.label_propagation(prop, labels.to(device), train_idx.to(device), 3, 0.8, 10)
    assert _on(lp, device) and _finite(lp)
    lp_cpu = cb.label_propagation(gcn_propagation(edge_index, n), labels, train_idx, 3, 0.8, 10)
    torch.testing.assert_close(lp.cpu(), lp_cpu, rtol=1e-5, atol=1e-6)

    # a few epochs of the whole method: every model and tensor it keeps is on the device
    config = cb.ColdBrewConfig(hidden=16, student_hidden=16, mlp_hidden=16).with_epochs(10)
    run = cb.run_cold_brew(x, labels, edge_index, config, seed=0, baselines=("GCN", "MLP"),
                           device=device, keep=True)
    models = run.models
    for name, model in (*models.baselines.items(), ("teacher", models.teacher),
                        ("student", models.student)):
        assert _params_on(model, device), name
    problem = models.problem
    for name in ("labels", "train_idx", "val_idx", "test_idx"):
        assert _on(getattr(problem, name), device), name
    assert _on(models.teacher_emb, device) and _on(models.student_extra, device)
    assert all(_on(idx, device) for idx in problem.groups.values())
    assert _finite(models.teacher_emb) and _finite(models.student_extra)
    with torch.no_grad():
        logits = models.student(problem.x, models.student_extra)   # no graph at inference
    assert _on(logits, device) and logits.shape == (n, 3) and _finite(logits)
    for model_name, per_group in run.accuracy.items():
        overall = per_group["overall"]
        assert math.isfinite(overall) and 0.0 <= overall <= 1.0, model_name
    # better than chance (the teacher; 10 epochs leave the student too noisy on 18 nodes)
    assert run.accuracy["GCN+SE (teacher)"]["overall"] > 1 / 3 + 0.2


# ---- GRDA -----------------------------------------------------------------------------------


def _dg_like(n_domains: int = 4, per_domain: int = 16, seed: int = 0) -> DomainGraphData:
    """Points in 2-D, class = sign of a domain-rotated first coordinate; a chain of domains."""
    rng = np.random.default_rng(seed)
    domain = np.repeat(np.arange(n_domains), per_domain)
    x = rng.standard_normal((n_domains * per_domain, 2)).astype(np.float32)
    angle = 0.2 * domain
    y = (np.cos(angle) * x[:, 0] + np.sin(angle) * x[:, 1] > 0).astype(np.int64)
    chain = np.eye(n_domains, k=1, dtype=np.int64)
    return DomainGraphData("dg-like", x, y, domain, chain + chain.T, np.array([0, 1]),
                           tuple(map(str, range(n_domains))))


@pytest.mark.parametrize("dev", DEVICES)
def test_grda_on_device(dev):
    device = torch.device(dev)
    data = _dg_like()
    # the domain embedding: fitted on the device, returned on the CPU (as documented)
    u = grda.graph_embedding(data.adjacency, 2, steps=100, device=device)
    u_cpu = grda.graph_embedding(data.adjacency, 2, steps=100, device=CPU)
    assert u.shape == (4, 2) and _finite(u)
    torch.testing.assert_close(u, u_cpu, rtol=1e-3, atol=1e-4)
    # the equilibrium theory's closed forms on device tensors match the CPU
    p = torch.softmax(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), 1)
    a = torch.as_tensor(data.adjacency)
    gap = grda.equilibrium_gap(p.to(device), a.to(device))
    assert _on(gap, device)
    torch.testing.assert_close(gap.cpu(), grda.equilibrium_gap(p, a), rtol=1e-4, atol=1e-6)

    # a few epochs of training
    config = grda.GRDAConfig(method="grda", hidden=16, epochs=30, lr=1e-2, init_std=None,
                             batch_size=8, sample_v=4, snapshot_epochs=(29,),
                             grid_domains=(0,))
    result = grda.train(data, config, embedding=u_cpu, device=device)
    model = result.model
    assert _params_on(model, device) and _on(model.embedding, device)
    assert len(result.loss_f) == 30
    assert all(math.isfinite(v) for v in result.loss_f + result.loss_adv)
    x, y, domain = grda.by_domain(data, device)
    assert _on(x, device) and _on(y, device) and _on(domain, device)
    with torch.no_grad():
        out = model(x[None], domain[None])[0]                       # one run: M = 1
    assert _on(out, device) and out.shape == (4, 16, 2) and _finite(out)
    acc = grda.evaluate(model, data, device)
    assert acc.shape == (4,) and np.isfinite(acc).all()
    assert acc[data.source].mean() > 0.6                             # better than chance
    shot = result.snapshots[29]
    assert shot.encoding.shape == (4, 10, 16) and np.isfinite(shot.encoding).all()
    assert shot.grid.shape == (1, 41 * 41) and np.isfinite(shot.grid).all()


# ---- DIVA -----------------------------------------------------------------------------------


def _tiny_images(n_per_class: int = 12, classes: int = 3, seed: int = 0):
    """(N, 28, 28) noise images with a bright square whose position gives the class."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    images = 0.3 * rng.random((len(labels), 28, 28)).astype(np.float32)
    for i, c in enumerate(labels):
        images[i, 4:12, 2 + 8 * c:10 + 8 * c] += 0.7
    return images, labels


@pytest.mark.parametrize("dev", DEVICES)
def test_diva_on_device(dev):
    device = torch.device(dev)
    images, labels = _tiny_images()
    n, k = len(labels), 3
    cfg = D.CNNConfig(width=2, hidden=4, epochs=1, batch_size=16)
    # pre-training on the device returns a CPU state_dict (as documented), finite
    state = D.pretrain_cnn(images, labels, k, cfg, device)
    assert all(_on(v, CPU) and _finite(v.float()) for v in state.values())
    # features of one fixed state: computed on the device, returned as CPU float64
    state_cpu = D.pretrain_cnn(images, labels, k, cfg, CPU)
    feats = D.cnn_features(state_cpu, images, k, cfg, device)
    feats_cpu = D.cnn_features(state_cpu, images, k, cfg, CPU)
    assert feats.shape == (n, 4) and feats.dtype == torch.float64 and _finite(feats)
    torch.testing.assert_close(feats, feats_cpu, rtol=1e-2, atol=1e-3)   # TF32 convs on GPU

    # closed forms in float64 on the device: LOO predictions, the dataset derivative and
    # a few DIVA Reweight steps agree with the CPU and with explicit retraining
    z_cpu = D.last_layer_features(feats_cpu)
    y_cpu = D.one_hot(torch.as_tensor(labels), k)
    z, y = z_cpu.to(device), y_cpu.to(device)
    alpha = torch.ones(n, dtype=torch.float64, device=device)
    loo = D.loo_predictions(z, y, alpha, 1.0)
    assert _on(loo, device) and loo.shape == (n, k) and _finite(loo)
    torch.testing.assert_close(loo.cpu(), D.loo_predictions(z_cpu, y_cpu, alpha.cpu(), 1.0),
                               rtol=1e-4, atol=1e-10)
    brute = D.loo_by_retraining(z, y, alpha, 1.0, range(0, n, 7))
    torch.testing.assert_close(brute, loo[0:n:7], rtol=1e-8, atol=1e-10)
    cfg_rw = D.DivaConfig(ridge=1.0, lr=0.5, steps=2)
    history = D.diva_reweight(z, y, cfg_rw)
    history_cpu = D.diva_reweight(z_cpu, y_cpu, cfg_rw)
    for snap, ref in zip(history, history_cpu, strict=True):
        assert _on(snap.alpha, device) and _on(snap.grad, device) and _finite(snap.grad)
        torch.testing.assert_close(snap.alpha.cpu(), ref.alpha, rtol=1e-4, atol=1e-10)
        torch.testing.assert_close(snap.grad.cpu(), ref.grad, rtol=1e-4, atol=1e-10)
        assert snap.loo_loss == pytest.approx(ref.loo_loss, rel=1e-4)

    # per-example Jacobians of a float64 network and the NTK block LOO
    torch.manual_seed(0)
    net = D.SmallCNN(k, width=2, hidden=4).double()
    x_img = torch.as_tensor(images[::6], dtype=torch.float64).unsqueeze(1)
    names = ["fc1.weight", "head.weight", "head.bias"]
    f0_cpu, jac_cpu = D.jacobian_features(net, x_img, names, chunk=4)
    f0, jac = D.jacobian_features(net.to(device), x_img.to(device), names, chunk=4)
    assert _on(f0, device) and _on(jac, device) and _finite(jac)
    torch.testing.assert_close(f0.cpu(), f0_cpu, rtol=1e-4, atol=1e-10)
    torch.testing.assert_close(jac.cpu(), jac_cpu, rtol=1e-4, atol=1e-10)
    kern = D.ntk(jac)
    assert _on(kern, device) and kern.dtype == torch.float64
    m = len(x_img)
    a_m = torch.ones(m, dtype=torch.float64)
    t_m = D.one_hot(torch.as_tensor(labels[::6]), k) - f0_cpu
    res = D.block_loo_residuals(D.block_hat_matrix(kern, a_m.to(device), k, 0.5),
                                t_m.to(device), a_m.to(device))
    res_cpu = D.block_loo_residuals(D.block_hat_matrix(D.ntk(jac_cpu), a_m, k, 0.5), t_m, a_m)
    assert _on(res, device) and _finite(res)
    torch.testing.assert_close(res.cpu(), res_cpu, rtol=1e-4, atol=1e-10)
    # sanity: the LOO ridge on the CNN features classifies better than chance
    assert (loo.argmax(1) == y.argmax(1)).double().mean().item() > 1 / k + 0.1
