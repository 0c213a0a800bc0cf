"""PSA-GAN: blocks, progressive growing and fade-in, PSA-GAN-C, losses, data, floor, claims."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from iclr22 import claims
from iclr22.data.chicago_ridership import Ridership
from iclr22.timeseries import context_fid as cf
from iclr22.timeseries import psagan as ps

CPU = torch.device("cpu")


def tiny(**kw):
    base = dict(length=16, channels=8, attention_features=2, embedding_dim=2, num_steps=8,
                batch_size=8, warmup_generator_steps=1, warmup_discriminator_steps=2)
    return ps.PSAGANConfig(**{**base, **kw})


def inputs(config, batch=3, num_features=4, context=False):
    torch.manual_seed(0)
    noise = torch.randn(batch, 1, config.length)
    feats = torch.randn(batch, num_features, config.length)
    series = torch.tensor([0, 1, 2][:batch])
    past = torch.randn(batch, config.context_length) if context else None
    return noise, feats, series, past


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("length", [4, 12, 24, "32"])
def test_config_rejects_bad_lengths(length):
    with pytest.raises(ValueError, match="power of two"):
        ps.PSAGANConfig(length=length)


def test_config_stages_and_paper_settings():
    assert ps.PSAGANConfig(length=64).num_stages == 4  # 8 -> 16 -> 32 -> 64
    paper = ps.PSAGANConfig.paper(length=64)
    assert (paper.lr, paper.channels, paper.warmup_discriminator_steps) == (5e-5, 32, 50)
    with pytest.raises(ValueError, match="num_steps"):
        ps.PSAGANConfig(length=64, num_steps=2)


# --- the main block ---------------------------------------------------------------------------


def test_self_attention_rows_sum_to_one_and_starts_as_identity():
    sa = ps.SelfAttention(6, 3)
    y = torch.randn(2, 6, 10)
    attn = sa.attention(y)
    assert attn.shape == (2, 10, 10)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 10))
    torch.testing.assert_close(sa(y), y)  # gamma = 0 at initialisation
    with torch.no_grad():
        sa.gamma.fill_(1.0)
    assert not torch.allclose(sa(y), y)


def test_attention_is_global_in_time():
    # with attention on, the output at t = 0 depends on the input at the far end
    block = ps.MainBlock(2, 4, 3, 2, self_attention=True)
    with torch.no_grad():
        block.attention.gamma.fill_(1.0)
    x = torch.randn(1, 2, 32, requires_grad=True)
    block(x)[0, :, 0].sum().backward()
    assert x.grad[0, :, -1].abs().sum() > 0
    plain = ps.MainBlock(2, 4, 3, 2, self_attention=False)
    x2 = torch.randn(1, 2, 32, requires_grad=True)
    plain(x2)[0, :, 0].sum().backward()
    assert x2.grad[0, :, 3:].abs().sum() == 0  # a kernel-3 convolution sees t <= 1 only


def test_spectral_norm_bounds_the_convolution():
    block = ps.MainBlock(3, 5, 3, 2, self_attention=True)
    with torch.no_grad():
        for _ in range(30):  # power iterations run in training mode
            block(torch.randn(2, 3, 8))
        weight = block.conv.weight.reshape(5, -1)
    assert torch.linalg.matrix_norm(weight, ord=2) == pytest.approx(1.0, abs=0.05)


# --- generator, discriminator, fade-in, PSA-GAN-C ---------------------------------------------


def test_generator_doubles_length_per_depth_and_fades_in():
    config = tiny(length=32)
    g = ps.Generator(config, num_features=4, num_series=3).eval()  # fixed spectral norms
    noise, feats, series, _ = inputs(config)
    for depth in range(config.num_stages):
        assert g(noise, feats, series, depth).shape == (3, 1, 8 * 2 ** depth)
    full = g(noise, feats, series, 2, alpha=1.0)
    skip_only = g(noise, feats, series, 2, alpha=0.0)
    half = g(noise, feats, series, 2, alpha=0.5)
    torch.testing.assert_close(half, 0.5 * full + 0.5 * skip_only)
    with pytest.raises(ValueError, match="depth"):
        g(noise, feats, series, 3)


def test_discriminator_scores_every_depth_and_fades_in():
    config = tiny(length=32)
    d = ps.Discriminator(config, num_features=4, num_series=3)
    _, feats, series, _ = inputs(config)
    for depth in range(config.num_stages):
        x = torch.randn(3, 1, 8 * 2 ** depth)
        assert d(x, feats, series, depth).shape == (3, 1)
    x = torch.randn(3, 1, 32)
    mix = d(x, feats, series, 2, alpha=0.3)
    assert not torch.allclose(mix, d(x, feats, series, 2, alpha=1.0))
    with pytest.raises(ValueError, match="length"):
        d(torch.randn(3, 1, 16), feats, series, 2)


def test_psagan_c_reads_the_past():
    config = tiny(context_length=8)
    g = ps.Generator(config, num_features=4, num_series=3)
    noise, feats, series, past = inputs(config, context=True)
    a = g(noise, feats, series, 1, context=past)
    b = g(noise, feats, series, 1, context=past + 1.0)
    assert a.shape == (3, 1, 16) and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="context"):
        g(noise, feats, series, 1)
    with pytest.raises(ValueError, match="context"):
        ps.Generator(tiny(), 4, 3)(noise, feats, series, 1, context=past)


def test_conditioning_changes_the_output():
    config = tiny()
    g = ps.Generator(config, num_features=4, num_series=3)
    noise, feats, series, _ = inputs(config)
    assert not torch.allclose(g(noise, feats, series, 1), g(noise, feats, series.flip(0), 1))
    assert not torch.allclose(g(noise, feats, series, 1), g(noise, feats + 1, series, 1))


# --- losses -----------------------------------------------------------------------------------


def test_lsgan_losses_closed_form():
    ones, zeros = torch.ones(4, 1), torch.zeros(4, 1)
    assert ps.lsgan_discriminator_loss(ones, zeros) == 0  # a perfect discriminator
    assert ps.lsgan_discriminator_loss(zeros, ones) == pytest.approx(1.0)
    assert ps.lsgan_generator_loss(ones) == 0 and ps.lsgan_generator_loss(zeros) == 0.5


def test_moment_loss_by_hand():
    fake = torch.tensor([[[0.0, 2.0]]])   # mean 1, std sqrt(2)
    real = torch.tensor([[[1.0, 1.0]]])   # mean 1, std 0
    assert ps.moment_loss(fake, real) == pytest.approx(2 ** 0.5)
    with pytest.raises(ValueError, match="must match"):
        ps.moment_loss(fake, torch.zeros(1, 1, 3))


# --- the schedule and training ----------------------------------------------------------------


def test_stage_schedule_grows_and_fades_linearly():
    plan = ps.stage_schedule(tiny(length=32, num_steps=30, fade_fraction=0.4))
    depths = [d for d, _ in plan]
    assert len(plan) == 30 and depths == sorted(depths) and set(depths) == {0, 1, 2}
    stage1 = [a for d, a in plan if d == 1]
    assert stage1[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8]) and stage1[4:] == [1.0] * 6
    assert ps.stage_schedule(tiny(length=32, progressive=False)) == [(2, 1.0)] * 8


def toy_panel(num_series=3, num_days=400, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(num_days)
    values = 5 + 2 * (t % 7 < 5)[None, :] + 0.3 * rng.normal(size=(num_series, num_days))
    dates = np.datetime64("2001-01-22") + np.arange(num_days)
    return Ridership(values=values, dates=dates, stations=tuple(f"s{i}" for i in range(num_series)))


def test_prepare_panel_splits_in_time_and_scales_on_training_days():
    panel = ps.prepare_panel(toy_panel(), length=16, context_length=8, train_fraction=0.5,
                             train_stride=2, heldout_stride=4)
    assert panel.train.target.shape[1:] == (16,) and panel.train.features.shape[1:] == (4, 16)
    assert panel.train.context.shape[1] == 8
    assert int((panel.train.start + 16).max()) <= panel.split_day
    assert int((panel.heldout.start - 8).min()) >= panel.split_day  # context is held out too
    np.testing.assert_allclose(panel.values[:, :panel.split_day].mean(1), 1.0, rtol=1e-5)
    i = 5
    s, start = int(panel.train.series[i]), int(panel.train.start[i])
    np.testing.assert_allclose(panel.train.target[i].numpy(), panel.values[s, start:start + 16])


def test_time_features_monday():
    feats = ps.time_features(np.array(["2001-01-22", "2001-01-23"], dtype="datetime64[D]"))
    assert feats.shape == (4, 2)
    assert feats[0, 0] == pytest.approx(0.0, abs=1e-6) and feats[1, 0] == pytest.approx(1.0)


def test_training_is_deterministic_and_records_stage_snapshots():
    panel = ps.prepare_panel(toy_panel(), length=16, context_length=8, train_fraction=0.5)
    a = ps.train_psagan(panel.train, tiny(), num_series=3, seed=1, device=CPU)
    b = ps.train_psagan(panel.train, tiny(), num_series=3, seed=1, device=CPU)
    assert a.generator_loss == b.generator_loss and len(a.generator_loss) == 8
    assert [s.shape[1] for s in a.snapshots] == [8, 16]
    x = ps.generate(a.generator, panel.heldout, seed=0)
    assert x.shape == (len(panel.heldout), 16) and np.isfinite(x).all()
    with pytest.raises(ValueError, match="length"):
        ps.train_psagan(panel.train, tiny(length=32), num_series=3)


def test_psagan_c_trains_on_context():
    panel = ps.prepare_panel(toy_panel(), length=16, context_length=8, train_fraction=0.5)
    run = ps.train_psagan(panel.train, tiny(context_length=8), num_series=3, seed=0, device=CPU)
    assert np.isfinite(ps.generate(run.generator, panel.heldout)).all()


# --- floor and forecaster ---------------------------------------------------------------------


def test_ar_fit_recovers_coefficients_and_samples():
    rng = np.random.default_rng(0)
    x = np.zeros(5000)
    for t in range(2, 5000):
        x[t] = 0.5 + 0.6 * x[t - 1] - 0.2 * x[t - 2] + 0.1 * rng.normal()
    model = ps.fit_ar(x[None], 5000, order=2)
    np.testing.assert_allclose(model.coef[0], [0.5, 0.6, -0.2], atol=0.03)
    assert model.noise_std[0] == pytest.approx(0.1, rel=0.05)
    sample = ps.sample_ar(model, np.zeros(400, dtype=int), 16, seed=0)
    assert sample.shape == (400, 16)
    assert sample.mean() == pytest.approx(0.5 / (1 - 0.6 + 0.2), rel=0.05)
    with pytest.raises(ValueError, match="order"):
        ps.fit_ar(x[None], 10, order=14)


def test_forecaster_recovers_a_linear_rule():
    rng = np.random.default_rng(0)
    past = rng.normal(size=(500, 6))
    future = past[:, -2:] * 2.0 + 1.0
    windows = np.hstack([past, future])
    w = ps.fit_forecaster(windows, horizon=2, ridge=1e-8)
    assert ps.nrmse(w, windows, 2) < 1e-6


def test_ar_forecast_follows_the_mean_path():
    model = ps.ARModel(coef=np.array([[1.0, 0.5, 0.0]]), noise_std=np.array([0.3]))
    path = ps.ar_forecast(model, np.array([0, 0]), np.array([[9.0, 2.0], [0.0, 4.0]]), 3)
    np.testing.assert_allclose(path, [[2.0, 2.0, 2.0], [3.0, 2.5, 2.25]])  # x' = 1 + x / 2
    with pytest.raises(ValueError, match="past"):
        ps.ar_forecast(model, np.array([0]), np.array([[1.0]]), 3)


def test_seasonal_naive_repeats_the_last_week():
    week = np.arange(7.0)
    past = np.tile(week, 3)[None, 3:]                    # 18 days ending on weekday 6
    # the far days start 5 days after the past ends: weekday (6 + 1 + 5) % 7 = 5, ...
    np.testing.assert_allclose(ps.seasonal_naive(past, gap=5, horizon=4), [[5, 6, 0, 1]])
    with pytest.raises(ValueError, match="period"):
        ps.seasonal_naive(past[:, :5], gap=1, horizon=2)


def test_far_forecast_methods_on_known_inputs():
    panel = ps.prepare_panel(toy_panel(), length=16, context_length=8, train_fraction=0.5)
    test, gap = panel.heldout, 12
    oracle = test.target.numpy()[:, :gap]                 # the true gap
    far = ps.far_forecast(panel.train, test, {"oracle": oracle}, horizon=4)
    out = far.nrmse
    short = ps.fit_forecaster(panel.train.target.numpy(), 4)
    assert out["oracle"] == pytest.approx(ps.nrmse(short, test.target.numpy(), 4))
    assert set(out) == {"oracle", "direct", "seasonal_naive"}
    direct = ps.fit_forecaster(np.hstack([panel.train.context.numpy(),
                                          panel.train.target.numpy()[:, -4:]]), 4)
    np.testing.assert_allclose(far.forecasts["direct"],
                               ps.ridge_forecast(direct, test.context.numpy()))  # past -> far
    np.testing.assert_allclose(far.forecasts["seasonal_naive"],
                               ps.seasonal_naive(test.context.numpy(), gap, 4))
    # the toy series is weekly + noise: all three are near the noise level, none is perfect
    assert all(0.0 < v < 0.2 for v in out.values()), out
    with pytest.raises(ValueError, match="shape"):
        ps.far_forecast(panel.train, test, {"bad": oracle[:, :5]}, horizon=4)


def test_fill_gap_averages_draws_and_checks_the_gap():
    config = tiny(context_length=8)
    panel = ps.prepare_panel(toy_panel(), length=16, context_length=8, train_fraction=0.5)
    g = ps.Generator(config, num_features=4, num_series=3)
    one = ps.fill_gap(g, panel.heldout, 12, num_samples=1, seed=3)
    two = ps.fill_gap(g, panel.heldout, 12, num_samples=2, seed=3)
    assert one.shape == (len(panel.heldout), 12)
    np.testing.assert_allclose(one, ps.generate(g, panel.heldout, seed=3)[:, :12])
    np.testing.assert_allclose(2 * two - one, ps.generate(g, panel.heldout, seed=4)[:, :12],
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="gap"):
        ps.fill_gap(g, panel.heldout, 17, num_samples=1)


def test_calendar_correlation_by_hand():
    week = np.tile([1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2], 3)[None, :14]
    real = np.vstack([week, week])
    assert ps.calendar_correlation(real, real) == pytest.approx(1.0)
    assert ps.calendar_correlation(2 - real, real) == pytest.approx(-1.0)       # antiphase
    assert ps.calendar_correlation(3 * real + 1, real) == pytest.approx(1.0)    # level-free
    with pytest.raises(ValueError, match="equal"):
        ps.calendar_correlation(real[:, :5], real)


def test_rank_agreement():
    fid = {"a": 1.0, "b": 2.0, "c": 3.0}
    assert ps.rank_agreement(fid, {"a": 0.1, "b": 0.2, "c": 0.3}) == pytest.approx(1.0)
    assert ps.rank_agreement(fid, {"a": 0.3, "b": 0.2, "c": 0.1}) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="same"):
        ps.rank_agreement(fid, {"a": 0.1})


# --- claim: training PSA-GAN moves its windows towards held-out real ones ---------------------


def test_claim_training_lowers_context_fid_on_ridership():
    # real Chicago data, quick size, 3 seeds: the trained generator is closer to held-out
    # windows than the same generator untrained (a broken loss or schedule fails this).
    # 40 steps are too few for the interval of the ratio to clear 1 on 3 seeds, so the test
    # asserts the stated weaker form: lower on every seed, geometric-mean ratio below 0.6,
    # and never "not reproduced".
    panel = ps.prepare_panel(length=16, context_length=8, train_stride=8, heldout_stride=16)
    enc_cfg = cf.EncoderConfig(channels=8, depth=2, reduced_size=8, out_channels=8, num_steps=30)
    seeds, trained, untrained = [0, 1, 2], [], []
    for seed in seeds:
        enc = cf.train_encoder(panel.train.target, enc_cfg, seed=seed, device=CPU)
        prompts = panel.train.subset(torch.arange(0, len(panel.train), 7)[:400])
        config = tiny(num_steps=40, batch_size=32, lr=2e-3, discriminator_steps=1)
        run = ps.train_psagan(panel.train, config, num_series=20, seed=seed, device=CPU)
        fresh = ps.Generator(config, 4, 20)
        heldout = panel.heldout.target
        trained.append(cf.context_fid(enc, heldout, ps.generate(run.generator, prompts)))
        untrained.append(cf.context_fid(enc, heldout, ps.generate(fresh, prompts)))
    claim = claims.compare("training lowers Context-FID", trained, untrained, seeds=seeds,
                           better="lower", ratio=True, setting="Chicago, length 16, 40 steps")
    assert all(t < u for t, u in zip(trained, untrained, strict=True)), (trained, untrained)
    assert claim.ours.mean < 0.6 and claim.verdict != "not reproduced", claim


# --- claim: PSA-GAN-C reads the past (the MLP block of section 3.4) -------------------------


def regime_panel(num_series=4, num_days=1200, seed=0):
    """SYNTHETIC: a weekly pattern on a level that jumps every 60 days, so that only the past
    (not the station or the calendar) tells a window's level."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_days)
    level = rng.uniform(0.5, 2.0, size=(num_series, num_days // 60 + 1)).repeat(60, axis=1)
    values = (level[:, :num_days] * (1 + 0.3 * (t % 7 < 5))[None, :]
              + 0.05 * rng.normal(size=(num_series, num_days)))
    dates = np.datetime64("2001-01-22") + np.arange(num_days)
    return Ridership(values=values, dates=dates, stations=tuple(f"s{i}" for i in range(num_series)))


def test_claim_psagan_c_fills_gaps_better_from_the_true_past():
    # 3 seeds, 40 steps: the trained PSA-GAN-C fills held-out gaps closer to the truth when it
    # reads each window's own past than when the pasts are shuffled across windows. A block
    # that ignored the context, or read it misaligned, would score the same on both.
    panel = ps.prepare_panel(regime_panel(), length=16, context_length=8, train_fraction=0.7,
                             train_stride=2, heldout_stride=4)
    test, gap, seeds = panel.heldout, 12, [0, 1, 2]
    truth = test.target.numpy()[:, :gap]
    own, shuffled = [], []
    for seed in seeds:
        config = tiny(context_length=8, num_steps=40, batch_size=32, lr=2e-3,
                      discriminator_steps=1)
        g = ps.train_psagan(panel.train, config, num_series=4, seed=seed, device=CPU).generator
        perm = torch.as_tensor(np.random.default_rng(seed).permutation(len(test)))
        other = ps.WindowSet(test.target, test.features, test.series, test.context[perm],
                             test.start)
        own.append(ps.nrmse_of(ps.fill_gap(g, test, gap, num_samples=4, seed=seed), truth))
        shuffled.append(ps.nrmse_of(ps.fill_gap(g, other, gap, num_samples=4, seed=seed), truth))
    claim = claims.compare("PSA-GAN-C reads the past", own, shuffled, seeds=seeds,
                           better="lower", setting="synthetic regimes, length 16, 40 steps")
    assert claim.verdict == "reproduced", claim


def test_run_seed_end_to_end_at_toy_size():
    panel = ps.prepare_panel(toy_panel(num_days=600), length=16, context_length=16,
                             train_fraction=0.6)
    config = ps.ExperimentConfig(
        gan=tiny(), encoder=cf.EncoderConfig(channels=4, depth=1, reduced_size=4,
                                             out_channels=4, num_steps=2),
        ar_order=3, num_eval=60, num_real_forecast=20, num_synthetic=40, horizon=4,
        far_samples=2)
    results = [ps.run_seed(panel, config, seed, CPU) for seed in (0, 1)]
    metrics = results[0].metrics()
    assert {f"far/{k}" for k in ps.FAR_METHODS} <= set(metrics)
    assert {f"align/{k}" for k in (*ps.MODELS, "psagan_c_fill")} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    assert results[0].far_run.config.context_length == 16
    found = ps.paper_claims(results, setting="toy")
    assert len(found) == 6 and "PSA-GAN-C" in found[-1].text
    assert list(ps.far_table(results).index) == [ps.FAR_LABELS[k] for k in ps.FAR_METHODS]
    fig = plt.figure()
    ps.plot_far_forecast(fig, panel.heldout, results[0].far, windows=(0, 3))
    assert len(fig.axes) == 2
    plt.close(fig)
