"""Trans-Encoder: the losses, both formulations, the distillation loop, claims over seeds."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from iclr22 import claims
from iclr22.data.lee_similarity import RatedPairs, load_word_pairs
from iclr22.nlp import trans_encoder as te

TINY = te.DistillConfig(num_rounds=1, cross_epochs=1, cross_batch_size=8, cross_max_length=12,
                        bi_epochs=1, bi_batch_size=64, bi_max_length=8)


#: Single-threaded (tests/conftest.py): exact repeat checks, and no spinning threads.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pretrained():
    return te.load_pretrained(torch.device("cpu"))


@pytest.fixture(scope="module")
def words():
    """12 SimLex-999 pairs of the evaluation half (short texts: cheap on a CPU)."""
    _, evaluation = te.split_pairs(load_word_pairs("simlex999"))
    return evaluation.take(np.arange(12))


# --- the paper's maths on hand-checkable inputs --------------------------------------------


def test_bce_soft_matches_the_formula():
    logits, labels = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([0.5, 0.9, 0.0])
    p = torch.sigmoid(logits)
    expected = -(labels * p.log() + (1 - labels) * (1 - p).log()).mean()  # eq. (1)
    assert torch.allclose(te.bce_soft(logits, labels), expected)
    # at logit 0 and label 1/2 the loss is log 2
    assert math.isclose(float(te.bce_soft(torch.zeros(1), torch.full((1,), 0.5))), math.log(2),
                        rel_tol=1e-6)


def test_mse_to_labels_matches_the_formula():
    scores, labels = torch.tensor([0.2, 0.8]), torch.tensor([0.0, 1.0])
    assert math.isclose(float(te.mse_to_labels(scores, labels)), (0.04 + 0.04) / 2, rel_tol=1e-6)


def test_loss_input_checks():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        te.bce_soft(torch.zeros(2), torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="must both be"):
        te.bce_soft(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="must both be"):
        te.mse_to_labels(torch.zeros(2, 1), torch.zeros(2, 1))


def test_spearman_is_pearson_of_ranks_with_ties():
    scores, human = np.array([0.1, 0.4, 0.4, 0.9, 0.3]), np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    ranks = np.array([1, 3.5, 3.5, 5, 2])  # average ranks for the tie
    expected = np.corrcoef(ranks, np.array([1, 3, 2, 5, 4]))[0, 1]
    assert math.isclose(te.spearman(scores, human), expected, rel_tol=1e-12)
    with pytest.raises(ValueError, match="P >= 3"):
        te.spearman([1, 2], [1, 2])


def test_config_checks():
    with pytest.raises(ValueError, match="num_rounds"):
        te.DistillConfig(num_rounds=0)
    with pytest.raises(ValueError, match="learning rates"):
        te.DistillConfig(cross_lr=0.0)
    with pytest.raises(ValueError, match="warmup_fraction"):
        te.DistillConfig(warmup_fraction=1.0)
    with pytest.raises(ValueError, match="dataset"):
        te.ExperimentConfig(dataset="stsb")
    with pytest.raises(ValueError, match="seeds"):
        te.ExperimentConfig(seeds=(1, 1))
    assert te.DistillConfig.paper().cross_lr == 2e-5


def test_split_pairs_halves_are_disjoint():
    data = load_word_pairs("wordsim353")
    dev, evaluation = te.split_pairs(data)
    assert dev.num_pairs == 176 and evaluation.num_pairs == 177
    # together the halves hold every rated pair exactly once (WordSim repeats a few pairs)
    rows = lambda d: sorted(zip(map(tuple, d.pairs.tolist()), d.human.tolist(), strict=True))  # noqa: E731, E501
    assert sorted(rows(dev) + rows(evaluation)) == rows(data)
    assert te.split_pairs(data)[0].human.tolist() == dev.human.tolist()  # a fixed split


# --- the two formulations: parity with sentence-transformers --------------------------------


def test_bi_scores_match_sentence_transformers(pretrained, words):
    ours = te.bi_scores(pretrained.bi, words, max_length=8)
    a, b = words.pairs.T
    emb = pretrained.bi.encode(list(words.texts), convert_to_tensor=True,
                               normalize_embeddings=True)
    reference = (emb[a] * emb[b]).sum(1).cpu()
    assert ours.shape == (12,) and ours.dtype == torch.float32
    assert torch.allclose(ours, reference, atol=1e-5)


def test_cross_scores_match_cross_encoder_predict(pretrained, words):
    cross = pretrained.new_cross(seed=3)
    texts = [(words.texts[a], words.texts[b]) for a, b in words.pairs]
    reference = torch.as_tensor(cross.predict(texts, convert_to_numpy=True))  # sigmoid
    ours = te.cross_scores(cross, words, max_length=512)
    assert torch.allclose(ours, reference.float(), atol=1e-5)
    assert ((ours > 0) & (ours < 1)).all()


def test_fresh_heads_depend_on_the_seed_only(pretrained):
    w = [pretrained.new_cross(seed=s).model.classifier.weight for s in (5, 5, 6)]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])
    assert not pretrained.new_bi()[0].auto_model.embeddings.word_embeddings.weight.requires_grad


def test_training_moves_the_weights_and_fits_the_labels(pretrained, words):
    cross = pretrained.new_cross(seed=0)
    before = cross.model.classifier.weight.detach().clone()
    labels = torch.linspace(0.05, 0.95, words.num_pairs)
    config = te.DistillConfig(cross_epochs=6, cross_batch_size=8, cross_lr=3e-4,
                              cross_max_length=12)
    losses = te.train_cross(cross, words, labels, config, seed=0)
    assert len(losses) == 6 * math.ceil(24 / 8)  # both orders of 12 pairs, batches of 8
    assert not torch.equal(before, cross.model.classifier.weight)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    bi = pretrained.new_bi()
    bi_losses = te.train_bi(bi, words, labels, te.DistillConfig(bi_epochs=4, bi_lr=1e-4,
                                                                bi_max_length=8), seed=0)
    assert len(bi_losses) == 4 and bi_losses[-1] < bi_losses[0]


def test_bad_inputs(pretrained, words):
    with pytest.raises(ValueError, match=r"\(12,\) tensor"):
        te.train_bi(pretrained.new_bi(), words, torch.zeros(5), TINY, seed=0)
    with pytest.raises(TypeError, match="RatedPairs"):
        te.bi_scores(pretrained.bi, [("a", "b")])
    bad = RatedPairs("bad", ("a", "b"), np.array([[0, 2]]), np.zeros(1))
    with pytest.raises(ValueError, match="outside"):
        te.cross_scores(pretrained.cross, bad)
    with pytest.raises(ValueError, match=">= 2 models"):
        te.mutual_distill(pretrained, words, TINY, seed=0, num_models=1)


# --- the distillation loop -------------------------------------------------------------------


def test_self_distillation_is_deterministic_and_paired_with_mutual(pretrained, words):
    one = te.self_distill(pretrained, words, TINY, seed=1)
    two = te.self_distill(pretrained, words, TINY, seed=1)
    mutual = te.mutual_distill(pretrained, words, TINY, seed=1)
    assert [r.round for r in one.rounds] == [0, 1]
    assert one.rounds[1].bi.shape == (1, 12) and mutual.rounds[1].cross.shape == (2, 12)
    np.testing.assert_array_equal(one.rounds[1].bi, two.rounds[1].bi)
    # round 1 of a mutual run: model 1's cross-encoder is the self run's (same labels, seed)
    np.testing.assert_allclose(mutual.rounds[1].cross[0], one.rounds[1].cross[0], atol=1e-6)
    # ... but its bi-encoder learns from the average of two cross-encoders
    assert not np.allclose(mutual.rounds[1].bi[0], one.rounds[1].bi[0])
    assert set(mutual.spearman()) == {"bi", "bi1", "bi2", "cross", "cross1", "cross2"}


def test_carried_weights_start_the_cross_encoder_from_the_bi_encoder(pretrained, words):
    config = te.with_sizes(TINY, fresh_start=False, num_rounds=2)
    run = te.self_distill(pretrained, words, config, seed=0, keep_models=True)
    assert len(run.rounds) == 3 and len(run.models["bi"]) == 1


def test_widget_frames_and_scorer(pretrained, words):
    run = te.self_distill(pretrained, words, TINY, seed=0, keep_models=True)
    frames = te.round_frames(run)
    assert frames[0].cross is None and frames[1].cross.shape == (12,)
    for index in (0, 1):
        fig = plt.figure()
        te.draw_round(fig, index, frames)
        assert all(ax.get_xlabel() for ax in fig.axes)
        plt.close(fig)
    table = te.live_scorer(run, "a cat", "a dog", live=False)
    assert list(table.columns) == ["text A", "text B", "bi-encoder cosine",
                                   "cross-encoder score"]
    assert -1 <= table["bi-encoder cosine"][0] <= 1
    assert 0 < table["cross-encoder score"][0] < 1


# --- claims over seeds -------------------------------------------------------------------------


def test_cross_encoder_learns_its_teachers_ranking_over_seeds(pretrained):
    """Eq. (1) at work: over 3 seeds (different pairs, heads, orders) the cross-encoder's
    scores rank the pairs like the bi-encoder labels it was trained on (Spearman >= 0.3).
    A wrong loss, a swapped label or a broken pairing fails this."""
    _, evaluation = te.split_pairs(load_word_pairs("simlex999"))
    config = te.DistillConfig(cross_epochs=3, cross_batch_size=16, cross_lr=2e-4,
                              cross_max_length=12, bi_max_length=8)
    fidelity = []
    for seed in (0, 1, 2):
        data = evaluation.take(np.random.default_rng(seed).choice(evaluation.num_pairs, 24,
                                                                  replace=False))
        labels = te.bi_scores(pretrained.bi, data, 8).clamp(0, 1)
        cross = pretrained.new_cross(seed)
        te.train_cross(cross, data, labels, config, seed)
        fidelity.append(te.spearman(te.cross_scores(cross, data, 12), labels.numpy()))
    claim = claims.at_least("cross-encoder reproduces its teacher's ranking", fidelity, 0.3,
                            seeds=[0, 1, 2], setting="24 SimLex pairs, 3 epochs")
    assert claim.verdict == "reproduced", fidelity


def _fake_result(seed: int, words) -> te.SeedResult:
    """A seed result with made-up scores (no training): claims and tables are pure functions."""
    rng = np.random.default_rng(seed)
    human = words.human
    noisy = lambda k, scale: human + rng.normal(0, scale, (k, human.size))  # noqa: E731
    start = te.RoundResult(0, noisy(1, 3.0), np.empty((0, human.size)))
    self_run = te.DistillRun(words, [start, te.RoundResult(1, noisy(1, 2.0), noisy(1, 1.0))],
                             TINY)
    mutual = te.DistillRun(words, [te.RoundResult(0, np.repeat(start.bi, 2, 0),
                                                  np.empty((0, human.size))),
                                   te.RoundResult(1, noisy(2, 1.5), noisy(2, 1.0))], TINY)
    return te.SeedResult(seed, self_run, mutual)


def test_paper_claims_and_table_from_seed_results(words):
    results = [_fake_result(seed, words) for seed in (0, 1, 2)]
    assert set(results[0].metrics()) == {"start_bi", "self_bi", "self_cross", "mutual_bi",
                                         "mutual_cross"}
    made = te.paper_claims(results, setting="made-up scores")
    assert len(made) == 3 and all(not claims.check_claim(c.to_dict()) for c in made)
    assert made[0].paper["statistic"] == pytest.approx(80.47 - 76.10)
    assert made[0].values["trans_bi"] == [r.metrics()["self_bi"] for r in results]
    table = te.rounds_table(results)
    assert ("mean", 0) in table.columns and ("self", "cross") in table.index
    metrics, paper, units, better = te.headline_metrics(results)
    assert set(paper) <= set(metrics) and set(units) == set(better) == set(metrics)


def test_run_seed_draws_pairs_paired_across_runs(pretrained, words):
    config = te.ExperimentConfig(num_pairs=6, seeds=(0, 1), distill=TINY, mutual=False)
    result = te.run_seed(pretrained, words, config, seed=4)
    assert result.mutual_run is None and result.self_run.data.num_pairs == 6
    assert set(result.metrics()) == {"start_bi", "self_bi", "self_cross"}
    with pytest.raises(ValueError, match="num_pairs"):
        te.run_seed(pretrained, words, te.ExperimentConfig(num_pairs=13, distill=TINY), 0)
