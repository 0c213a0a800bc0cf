"""In-domain generalization (Schott et al.): the four splits' cut-points, disjointness and
coverage; labels and the grid-normalised R^2 on hand cases and against the benchmark's own
computation; the five model families (shapes, the STN's identity start, the beta-VAE loss);
no fitted piece sees test cells; determinism; bad input; and the claims at quick size over
three seeds."""

import numpy as np
import pytest
import torch

from iclr22 import claims
from iclr22.data import dsprites
from iclr22.limitations import generalization as g

SPLITS = {name: g.make_split(name) for name in g.SPLITS}
CPU = torch.device("cpu")


# --- splits ------------------------------------------------------------------------------------


def test_split_sizes_follow_the_benchmark_ratio():
    """About 30 % training cells, as the benchmark's test asserts for its split files."""
    fractions = {n: s.train_fraction for n, s in SPLITS.items()}
    assert fractions["random"] == pytest.approx(0.3, abs=0.002)
    assert fractions["composition"] == pytest.approx(1 - 5 / 6 * 37 / 40 * (30 / 32) ** 2)
    assert fractions["interpolation"] == pytest.approx(4 / 6 * 30 / 40 * (24 / 32) ** 2)
    assert fractions["extrapolation"] == pytest.approx(4 / 6 * 30 / 40 * (24 / 32) ** 2)
    for split in SPLITS.values():
        assert round(split.train_fraction, 1) == 0.3
        cover = np.zeros(dsprites.NUM_IMAGES, dtype=np.int64)
        cover[split.train_indices] += 1
        cover[split.test_indices] += 1
        assert (cover == 1).all()                                      # disjoint and complete


def _factors(split, train=True):
    return dsprites.factor_indices(split.train_indices if train else split.test_indices)


def test_every_split_keeps_all_shapes_on_both_sides():
    for split in SPLITS.values():
        for side in (True, False):
            assert set(np.unique(_factors(split, side)[:, 0])) == {0, 1, 2}


def test_composition_holds_out_a_corner_but_no_value():
    train, test = _factors(SPLITS["composition"]), _factors(SPLITS["composition"], False)
    for k, low in g.COMPOSITION_TEST_FROM.items():
        assert (test[:, k] >= low).all()                               # all high at once
        assert set(np.unique(train[:, k])) == set(range(dsprites.FACTOR_SIZES[k]))
    high = np.all([train[:, k] >= v for k, v in g.COMPOSITION_TEST_FROM.items()], axis=0)
    assert not high.any()


def test_interpolation_holds_out_interior_values_only():
    train, test = _factors(SPLITS["interpolation"]), _factors(SPLITS["interpolation"], False)
    for k, held in g.INTERPOLATION_HELD_OUT.items():
        size = dsprites.FACTOR_SIZES[k]
        assert 0 not in held and size - 1 not in held                 # interior
        assert not np.isin(train[:, k], held).any()
        assert set(np.unique(train[:, k])) == set(range(size)) - set(held)
    some_held = np.any([np.isin(test[:, k], v) for k, v in g.INTERPOLATION_HELD_OUT.items()],
                       axis=0)
    assert some_held.all()


def test_extrapolation_holds_out_the_top_values():
    train, test = _factors(SPLITS["extrapolation"]), _factors(SPLITS["extrapolation"], False)
    for k, top in g.EXTRAPOLATION_TRAIN_UP_TO.items():
        assert train[:, k].max() == top
    assert train[:, 1].max() == 3                                      # scales 0.9, 1.0 out
    above = np.any([test[:, k] > v for k, v in g.EXTRAPOLATION_TRAIN_UP_TO.items()], axis=0)
    assert above.all()


def test_random_split_is_one_fixed_draw():
    np.testing.assert_array_equal(g.make_split("random").train_mask, SPLITS["random"].train_mask)


def test_sampled_cells_never_cross_the_split():
    config = g.BenchmarkConfig(num_train=300, num_test=200)
    for split in SPLITS.values():
        data = g.load_split(split, config, seed=1)
        assert split.train_mask.ravel()[data.train_indices].all()
        assert not split.train_mask.ravel()[data.test_indices].any()
        assert data.x_train.shape == (300, 1, 32, 32) and data.y_test.shape == (200, 5)


# --- labels and R^2 ------------------------------------------------------------------------------


def test_labels_are_normalised_grid_indices():
    labels = g.normalised_labels([0, dsprites.NUM_IMAGES - 1, 1])
    np.testing.assert_allclose(labels, [[0] * 5, [1] * 5, [0, 0, 0, 0, 1 / 31]])


def test_grid_variance_is_the_benchmarks():
    """The official RSquared divides by the variance of the normalised labels over every
    cell of the grid; (K + 1) / (12 (K - 1)) in closed form (K = 3: 1/6)."""
    labels = g.normalised_labels(np.arange(dsprites.NUM_IMAGES)).astype(np.float64)
    np.testing.assert_allclose(g.grid_variance(), labels.var(axis=0), rtol=1e-6)
    assert g.grid_variance()[0] == pytest.approx(1 / 6)


def test_r_squared_hand_cases():
    target = np.tile([[0.0, 0.2, 0.4, 0.6, 1.0], [1.0, 0.8, 0.6, 0.4, 0.0]], (5, 1))
    np.testing.assert_allclose(g.r_squared(target, target), np.ones(5))
    offset = g.r_squared(target + 0.1, target)
    np.testing.assert_allclose(offset, 1 - 0.01 / g.grid_variance())
    # the grid mean predicted everywhere scores 0 on the whole grid
    labels = g.normalised_labels(np.arange(0, dsprites.NUM_IMAGES, 7))
    np.testing.assert_allclose(g.r_squared(np.full_like(labels, 0.5), labels), 0, atol=2e-3)


def test_r_squared_is_not_normalised_by_the_test_cells():
    """A test set of only large scales: a constant error of 0.1 costs the same as anywhere."""
    target = np.full((10, 5), 0.9)
    np.testing.assert_allclose(g.r_squared(target - 0.1, target), 1 - 0.01 / g.grid_variance())


def test_r_squared_bad_input():
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        g.r_squared(np.zeros((3, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="both"):
        g.r_squared(np.zeros((3, 5)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="finite"):
        g.r_squared(np.full((3, 5), np.nan), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="at least one"):
        g.r_squared(np.zeros((0, 5)), np.zeros((0, 5)))


def test_bad_split_and_config():
    with pytest.raises(ValueError, match="split"):
        g.make_split("diagonal")
    with pytest.raises(ValueError, match="models"):
        g.BenchmarkConfig(models=("VGG",))
    with pytest.raises(ValueError, match="image_size"):
        g.BenchmarkConfig(image_size=48)
    with pytest.raises(ValueError, match="epochs"):
        g.BenchmarkConfig(epochs=(("MLP", 1),))
    with pytest.raises(ValueError, match="seeds"):
        g.run_benchmark(g.BenchmarkConfig(), seeds=[0])
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        g.fit_model("MLP", g.SplitData(SPLITS["random"], np.zeros(2), np.zeros(2),
                                       torch.zeros(2, 32, 32), torch.zeros(2, 5),
                                       torch.zeros(2, 1, 32, 32), np.zeros((2, 5))),
                    g.BenchmarkConfig(), 0, CPU)


# --- models --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", g.MODELS)
def test_every_family_maps_images_to_five_factors(name, size):
    model = g.build_model(name, size)
    x = torch.rand(3, 1, size, size)
    if isinstance(model, g.BetaVAE):
        logits, mu, logvar = model(x)
        assert logits.shape == x.shape and mu.shape == logvar.shape == (3, 10)
        readout = g.VAEReadout(model, g.MLP(10, 8, 5, num_hidden=1, dropout=0.0),
                               torch.zeros(10), torch.ones(10))
        assert readout(x).shape == (3, 5)
    else:
        out = model(x)
        assert out.shape == (3, 5)
        out.sum().backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_spatial_transformer_starts_as_the_identity():
    model = g.SpatialTransformerRegressor(32)
    x = torch.from_numpy(dsprites.render([12345, 400_000], 32)).unsqueeze(1)
    theta = model.localisation(x)
    np.testing.assert_allclose(theta.detach().numpy(), [[1, 0, 0, 0, 1, 0]] * 2, atol=1e-7)
    grid = torch.nn.functional.affine_grid(theta.view(-1, 2, 3), list(x.shape),
                                           align_corners=False)
    warped = torch.nn.functional.grid_sample(x, grid, align_corners=False)
    np.testing.assert_allclose(warped.detach().numpy(), x.numpy(), atol=1e-5)


def test_beta_vae_loss_hand_case():
    """Zero logits: BCE = S^2 log 2 per image whatever x; KL of N(mu, 1) = |mu|^2 / 2."""
    x = torch.rand(2, 1, 4, 4)
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    loss = g.beta_vae_loss(torch.zeros(2, 1, 4, 4), x, mu, torch.zeros(2, 2), beta=4.0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.zeros(2, 1, 4, 4), x, reduction="sum") / 2
    assert loss.item() == pytest.approx(bce.item() + 4.0 * (0.5 + 2.0) / 2)


def test_fit_regression_checks_lengths():
    with pytest.raises(ValueError, match="same"):
        g.fit_regression(torch.nn.Linear(2, 1), torch.zeros(3, 2), torch.zeros(2, 1),
                         epochs=1, batch_size=2, lr=0.1, seed=0, device=CPU)


TINY = g.BenchmarkConfig(num_train=128, num_test=64, readout_epochs=1, num_examples=16,
                         epochs=tuple((m, 1) for m in g.MODELS))


def test_fits_are_deterministic_given_the_seed():
    data = g.load_split(SPLITS["extrapolation"], TINY, seed=3)
    for name in ("MLP", "beta-VAE + readout"):
        preds = [g.predict(g.fit_model(name, data, TINY, 3, CPU), data.x_test, CPU)
                 for _ in range(2)]
        torch.testing.assert_close(preds[0], preds[1], rtol=0, atol=0)


def test_one_seed_scores_every_split_and_family_and_draws():
    import matplotlib.pyplot as plt

    bench = g.Benchmark(TINY, [g.run_seed(TINY, 0, CPU, SPLITS), g.run_seed(TINY, 1, CPU,
                                                                            SPLITS)], SPLITS)
    assert set(bench.runs[0].metrics()) == {f"{m}/{s}" for m in g.MODELS for s in g.SPLITS}
    score = bench.runs[0].scores["extrapolation", "STN"]
    assert score.r2.shape == (5,) and score.predictions.shape == (16, 5)
    assert not SPLITS["extrapolation"].train_mask.ravel()[score.examples].any()
    assert len(g.generalization_claims(bench)) == 4 * len(g.MODELS)
    assert g.r2_table(bench).shape == (len(g.MODELS), 4 + 5 + 1)
    keys = g.widget_keys(bench)
    assert len(keys) == 20
    fig = plt.figure(figsize=(7, 3.2))
    g.draw_frame(fig, keys[-1], bench)
    assert len(fig.axes) == 3
    plt.close(fig)
    book_keys = g.widget_keys(bench, flipbook=True)
    assert len(book_keys) == 8 and all(" · MLP" not in k for k in book_keys)


def test_recorded_widget_fits_the_flipbook_limit_with_the_chapters_example_count():
    """The chapter's flip-book (8 frames, 7 x 3.2 in, dpi 40) with 400 held-out predictions
    a frame, as in the full run (all five families or three did not fit: 3.4 / 2.2 MB)."""
    from functools import partial

    from iclr22 import viz
    config = TINY.scaled(num_test=400, num_examples=400)
    bench = g.Benchmark(config, [g.run_seed(config, 0, CPU, SPLITS)], SPLITS)
    assert bench.runs[0].scores["random", "CNN"].predictions.shape == (400, 5)
    viz.flipbook(partial(g.draw_frame, bench=bench), g.widget_keys(bench, flipbook=True),
                 figsize=(7, 3.2), dpi=40, alt="the chapter's widget, recorded")


def test_dot_diagram_of_extrapolation():
    diagram = g.dot_diagram(SPLITS["extrapolation"], (3, 4))           # x against y
    assert diagram.shape == (32, 32)
    np.testing.assert_allclose(diagram[:24, :24], 4 / 6 * 30 / 40)
    assert (diagram[24:] == 0).all() and (diagram[:, 24:] == 0).all()
    assert g.dot_diagram(SPLITS["extrapolation"], (2, 1)).shape == (40, 6)


# --- the claims at quick size over three seeds ---------------------------------------------------

#: The MLP is the one family cheap enough to train 12 times inside the suite's budget; the
#: chapter's full run checks every family.
QUICK = g.BenchmarkConfig(num_train=1000, num_test=600, models=("MLP",), epochs=(("MLP", 8),),
                          num_examples=8)


@pytest.fixture(scope="module")
def quick_bench():
    return g.run_benchmark(QUICK, seeds=[0, 1, 2], device=CPU)


def test_claim_every_family_drops_from_random_to_extrapolation(quick_bench):
    found = {c.text: c for c in g.generalization_claims(quick_bench)}
    for model in QUICK.models:
        claim = found[f"{model}: R^2 drops from the random to the extrapolation split"]
        assert claim.verdict == "reproduced", claim.ours
        assert claim.ours.mean > 0.1
        assert claim.paper["value"] == g.PAPER["dsprites/extrapolation/DenseNet121"].value
        composition = found[f"{model}: R^2 drops from the random to the composition split"]
        assert composition.verdict == "reproduced", composition.ours
        assert composition.ours.mean > 0.1


def test_claim_extrapolation_is_the_worst_split(quick_bench):
    found = {c.text: c for c in g.generalization_claims(quick_bench)}
    for model in QUICK.models:
        claim = found[f"{model}: extrapolation is worse than both composition and interpolation"]
        assert claim.verdict == "reproduced", claim.ours
        assert claims.check_claim(claim.to_dict()) == []


def test_random_split_is_learnt(quick_bench):
    """The drop is not an artefact of a model that learns nothing: on the random split the
    positions are inferred well, and far better than on extrapolation."""
    for model in QUICK.models:
        r2 = quick_bench.factor_r2(model, "random").mean(axis=0)
        assert r2[3] > 0.7 and r2[4] > 0.7, r2
        extrapolated = quick_bench.factor_r2(model, "extrapolation").mean(axis=0)
        assert (extrapolated[3:] < r2[3:] - 0.2).all(), extrapolated


def test_beta_vae_kl_warmup_rises_linearly_from_zero(monkeypatch):
    weights = []
    real = g.beta_vae_loss

    def spy(logits, x, mu, logvar, beta):
        weights.append(beta)
        return real(logits, x, mu, logvar, beta)

    monkeypatch.setattr(g, "beta_vae_loss", spy)
    x = torch.rand(40, 1, 32, 32)
    g.fit_beta_vae(g.build_model("beta-VAE + readout", 32), x, epochs=3, batch_size=10,
                   lr=1e-3, beta=4.0, seed=0, device=torch.device("cpu"), warmup_epochs=2)
    assert len(weights) == 12                                  # 3 epochs x 4 batches
    np.testing.assert_allclose(weights[:8], 4.0 * np.arange(8) / 8)
    assert weights[8:] == [4.0] * 4


def test_vae_readout_standardises_with_training_statistics():
    vae = g.build_model("beta-VAE + readout", 32)
    readout = g.VAEReadout(vae, torch.nn.Identity(), torch.full((10,), 2.0),
                           torch.full((10,), 4.0))
    x = torch.rand(2, 1, 32, 32)
    mu, _ = vae.encode(x)
    torch.testing.assert_close(readout(x), (mu - 2.0) / 4.0)
