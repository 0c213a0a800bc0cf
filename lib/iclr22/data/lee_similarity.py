"""Human-rated text similarity shipped in the ``gensim`` wheel: the Lee news pairs, word pairs.

Source:  ``gensim/test/test_data/`` of the ``gensim==4.4.0`` wheel, installed with
         ``pip install --no-deps gensim==4.4.0`` (gensim is never imported: without its
         dependencies it does not import, so the folder is found with
         ``importlib.util.find_spec``):

         * ``lee.cor``: 50 short news documents from the Australian Broadcasting
           Corporation's news mail service (one a line, Latin-1), 51-154 word pieces;
         * ``similarities0-1.txt``: a 50 x 50 upper-triangular matrix of the *mean human
           similarity rating* of every document pair, rescaled to [0, 1] (83 students rated
           each pair on a 1-5 scale; Lee, Pincombe and Welsh 2005): 1,225 rated pairs;
         * ``lee_background.cor``: 300 further documents of the same service, unrated;
         * ``wordsim353.tsv`` (353 word pairs, relatedness 0-10; Finkelstein et al. 2002) and
           ``simlex999.txt`` (999 word pairs, similarity 0-10; Hill et al. 2015).
Licence: gensim is LGPL-2.1; the Lee corpus and ratings were released by their authors for
         research on document similarity; WordSim-353 and SimLex-999 are free for research.
         We read them from the installed wheel and never copy them into the repository.
Size:    24.7 kB (documents), 8.7 kB (ratings), 360 kB (background), 7.2 kB and 18 kB
         (word pairs).

These are *document* pairs and word pairs, not the STS sentence pairs of the papers that use
them in this book: no package ships STS-B, SICK or STS12-16.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import DataFileError, checked_file

INSTALL_HINT = "pip install --no-deps gensim==4.4.0"
DEBIAN_PACKAGES: tuple[str, ...] = ()
PIP_DATA_WHEELS = ("gensim==4.4.0",)      # installed --no-deps by iclr22.colab.install_data
SHA256 = {
    "lee.cor": "a878f9a58f6743c32985c56c2f2f75988386216b38a4023a01fd3bcf7884d93e",
    "similarities0-1.txt": "23762bc6b728897144dda3d324a2c032dc1e059e1009806226d64b6dd123ed79",
    "lee_background.cor": "5d78d6dafd953bbf65797bef09a9ffb9ec430583381be705f8fd460000f370fb",
    "wordsim353.tsv": "f92a022fc2537793a15bc3a8c162ebcd74990e033a228bb6388cb71e4c0b1e1d",
    "simlex999.txt": "d5e0501971478a511430ee880bd0121e94ac701ba86d90544d83e6d2ba3db05d",
}
NUM_DOCUMENTS = 50
NUM_PAIRS = 1225
NUM_BACKGROUND = 300
WORD_PAIR_FILES = {"wordsim353": ("wordsim353.tsv", 353), "simlex999": ("simlex999.txt", 999)}


@dataclass(frozen=True)
class RatedPairs:
    """Texts and human-rated pairs of them.

    Shapes: texts (num_texts,) str; pairs (num_pairs, 2) int64 indices into ``texts``;
    human (num_pairs,) float64 mean human rating (higher = more similar).
    """

    name: str
    texts: tuple[str, ...]
    pairs: np.ndarray
    human: np.ndarray

    @property
    def num_pairs(self) -> int:
        return int(self.pairs.shape[0])

    def take(self, pair_ids) -> RatedPairs:
        """The pairs ``pair_ids`` (all texts kept)."""
        pair_ids = np.asarray(pair_ids, dtype=np.int64)
        if pair_ids.ndim != 1 or pair_ids.size < 1 or pair_ids.min() < 0 \
                or pair_ids.max() >= self.num_pairs:
            raise ValueError(f"pair_ids must be a non-empty 1-D array in 0..{self.num_pairs - 1}")
        return RatedPairs(self.name, self.texts, self.pairs[pair_ids], self.human[pair_ids])

    def subset(self, text_ids) -> RatedPairs:
        """The pairs whose two texts are both in ``text_ids`` (texts re-indexed 0..k-1)."""
        keep = np.unique(np.asarray(text_ids, dtype=np.int64))
        if keep.size < 2 or keep.min() < 0 or keep.max() >= len(self.texts):
            raise ValueError(f"text_ids must name >= 2 texts in 0..{len(self.texts) - 1}")
        new_id = np.full(len(self.texts), -1, dtype=np.int64)
        new_id[keep] = np.arange(keep.size)
        mask = (new_id[self.pairs] >= 0).all(axis=1)
        return RatedPairs(self.name, tuple(self.texts[i] for i in keep),
                          new_id[self.pairs[mask]], self.human[mask])


def data_folder() -> Path:
    """``gensim/test/test_data`` of the installed wheel (gensim itself is not imported)."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise DataFileError(f"package 'gensim' is not installed: `{INSTALL_HINT}`")
    return Path(list(spec.submodule_search_locations)[0]) / "test" / "test_data"


def _file(name: str) -> Path:
    return checked_file(data_folder() / name, SHA256[name], install_hint=INSTALL_HINT)


def _lines(name: str) -> list[str]:
    text = _file(name).read_text(encoding="latin-1")
    return [line.strip() for line in text.splitlines() if line.strip()]


def load_documents() -> tuple[str, ...]:
    """The 50 rated Lee documents, in the order of the rating matrix."""
    docs = tuple(_lines("lee.cor"))
    if len(docs) != NUM_DOCUMENTS:
        raise DataFileError(f"lee.cor has {len(docs)} documents, expected {NUM_DOCUMENTS}")
    return docs


def load_background() -> tuple[str, ...]:
    """The 300 unrated Lee background documents."""
    return tuple(_lines("lee_background.cor"))


def load_lee_pairs() -> RatedPairs:
    """All 1,225 pairs of distinct Lee documents with their mean human rating in [0, 1].

    Pairs are the upper triangle of the rating matrix in row-major order: (0, 1), (0, 2), ...
    """
    ratings = np.loadtxt(_file("similarities0-1.txt"))  # (50, 50), upper triangle rated
    if ratings.shape != (NUM_DOCUMENTS, NUM_DOCUMENTS):
        raise DataFileError(f"similarities0-1.txt has shape {ratings.shape}, expected 50 x 50")
    rows, cols = np.triu_indices(NUM_DOCUMENTS, k=1)
    return RatedPairs("Lee news documents", load_documents(),
                      np.stack([rows, cols], axis=1).astype(np.int64), ratings[rows, cols])


def load_word_pairs(name: str = "simlex999") -> RatedPairs:
    """WordSim-353 (``"wordsim353"``) or SimLex-999 (``"simlex999"``) word pairs, 0-10."""
    if name not in WORD_PAIR_FILES:
        raise ValueError(f"name must be one of {sorted(WORD_PAIR_FILES)}, got {name!r}")
    filename, expected = WORD_PAIR_FILES[name]
    rows = [line.split("\t") for line in _lines(filename) if not line.startswith("#")]
    if len(rows) != expected:
        raise DataFileError(f"{filename} has {len(rows)} pairs, expected {expected}")
    words = sorted({w for r in rows for w in r[:2]})
    index = {w: i for i, w in enumerate(words)}
    pairs = np.array([[index[r[0]], index[r[1]]] for r in rows], dtype=np.int64)
    return RatedPairs(name, tuple(words), pairs, np.array([float(r[2]) for r in rows]))
