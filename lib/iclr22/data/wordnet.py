"""WordNet 3.0 synset graphs (verbs, nouns) from the Debian package ``wordnet-base``.

Source:  Princeton WordNet 3.0 {cite:p}`miller1995wordnet`, as installed by Debian's
         ``wordnet-base`` (version 1:3.0-37) under ``/usr/share/wordnet/``
         (``apt-get install wordnet-base``). Nothing is downloaded.
Licence: the WordNet 3.0 licence (permissive, BSD-like): use, copy, modify and distribute
         for any purpose without fee, provided the copyright notice below is kept on all
         copies. :data:`LICENCE_NOTICE` holds the notice; it is printed by the chapters.
Size:    ``data.verb`` 2.8 MB: 13,767 verb synsets, 15 classes (lexicographer files 29-43,
         ``verb.body`` ... ``verb.weather``), 14,687 undirected edges from the verb-to-verb
         pointers ``@`` (hypernym), ``*`` (entailment), ``>`` (cause), ``$`` (verb group);
         ``data.noun`` 15.3 MB: 82,115 synsets, 26 classes (files 3-28), edges from
         ``@ @i #m #s #p`` (hypernym, instance hypernym, member/substance/part holonym).

A node is a synset; its text is its lemmas (underscores as spaces) followed by its gloss
(definition and example sentences); its class is the lexicographer file it was filed in.
Every file is checked against the sha256 of the Debian package's copy before it is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import checked_file

WORDNET_DIR = Path("/usr/share/wordnet")
INSTALL_HINT = "apt-get install wordnet-base"
#: Debian packages this loader reads; iclr22.colab.install_data installs them in Colab.
DEBIAN_PACKAGES = ("wordnet-base",)

#: sha256 of the files of Debian wordnet-base 1:3.0-37.
SHA256 = {
    "verb": "adcf43e35b581e8036d8b5a52d63d9cd3d3b4870b2720d3c03c799df44777bc2",
    "noun": "fea17d2f9656611334eac790e5d69e47645fa180c4aa481fb4cd9b3520754ca2",
}

#: Pointer symbols that become (undirected) edges, per part of speech.
EDGE_POINTERS = {
    "verb": ("@", "*", ">", "$"),
    "noun": ("@", "@i", "#m", "#s", "#p"),
}

#: Lexicographer file numbers -> names, from lexnames(5WN).
LEXNAMES = {
    3: "noun.Tops", 4: "noun.act", 5: "noun.animal", 6: "noun.artifact", 7: "noun.attribute",
    8: "noun.body", 9: "noun.cognition", 10: "noun.communication", 11: "noun.event",
    12: "noun.feeling", 13: "noun.food", 14: "noun.group", 15: "noun.location",
    16: "noun.motive", 17: "noun.object", 18: "noun.person", 19: "noun.phenomenon",
    20: "noun.plant", 21: "noun.possession", 22: "noun.process", 23: "noun.quantity",
    24: "noun.relation", 25: "noun.shape", 26: "noun.state", 27: "noun.substance",
    28: "noun.time", 29: "verb.body", 30: "verb.change", 31: "verb.cognition",
    32: "verb.communication", 33: "verb.competition", 34: "verb.consumption",
    35: "verb.contact", 36: "verb.creation", 37: "verb.emotion", 38: "verb.motion",
    39: "verb.perception", 40: "verb.possession", 41: "verb.social", 42: "verb.stative",
    43: "verb.weather",
}

LICENCE_NOTICE = (
    "WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. "
    "THIS SOFTWARE AND DATABASE IS PROVIDED \"AS IS\" AND PRINCETON UNIVERSITY MAKES NO "
    "REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED. Used under the WordNet 3.0 licence "
    "(https://wordnet.princeton.edu/license-and-commercial-use); the full licence is the "
    "header of /usr/share/wordnet/data.* and /usr/share/doc/wordnet-base/copyright."
)

_POS_CHAR = {"verb": "v", "noun": "n"}


@dataclass(frozen=True)
class WordNetGraph:
    """A WordNet synset graph.

    texts:       N strings, lemmas then gloss.
    labels:      (N,) int64 class index in ``0..len(class_names)-1``.
    edges:       (E, 2) int64 undirected edges ``i < j``, unique, no self-loops.
    class_names: lexicographer file names, in label order.
    offsets:     N synset offsets (the synset's id in WordNet).
    """

    texts: list[str]
    labels: np.ndarray
    edges: np.ndarray
    class_names: list[str]
    offsets: list[str]

    @property
    def num_nodes(self) -> int:
        return len(self.texts)

    def degrees(self) -> np.ndarray:
        """(N,) number of distinct neighbours of each node."""
        return np.bincount(self.edges.ravel(), minlength=self.num_nodes)

    @property
    def edge_index(self) -> np.ndarray:
        """(2, 2E) int64, PyG-style: every undirected edge in both directions."""
        return np.concatenate([self.edges.T, self.edges[:, ::-1].T], axis=1)


def wordnet_file(pos: str = "verb", path: str | Path | None = None) -> Path:
    """The checked ``data.<pos>`` file (default: the Debian package's copy)."""
    if pos not in SHA256:
        raise ValueError(f"pos must be one of {sorted(SHA256)}, got {pos!r}")
    path = WORDNET_DIR / f"data.{pos}" if path is None else Path(path)
    return checked_file(path, SHA256[pos], install_hint=INSTALL_HINT)


def parse_data_file(lines, pos: str = "verb"):
    """Parse the lines of a WordNet ``data.<pos>`` file.

    Returns ``(offsets, lexfile numbers, texts, edges)`` with ``edges`` an (E, 2) int64 array
    of undirected, unique, self-loop-free pairs ``i < j`` from the pointers
    :data:`EDGE_POINTERS` [pos] that point to a synset of the same part of speech.
    """
    if pos not in EDGE_POINTERS:
        raise ValueError(f"pos must be one of {sorted(EDGE_POINTERS)}, got {pos!r}")
    target_pos, keep = _POS_CHAR[pos], set(EDGE_POINTERS[pos])
    offsets, lexfiles, texts, pointers = [], [], [], []
    for line in lines:
        if line.startswith("  ") or not line.strip():  # licence header
            continue
        head, _, gloss = line.partition(" | ")
        fields = head.split()
        word_count = int(fields[3], 16)
        words = [fields[4 + 2 * k].replace("_", " ") for k in range(word_count)]
        p = 4 + 2 * word_count
        ptrs = [(fields[p + 1 + 4 * k], fields[p + 2 + 4 * k], fields[p + 3 + 4 * k])
                for k in range(int(fields[p]))]
        offsets.append(fields[0])
        lexfiles.append(int(fields[1]))
        texts.append(", ".join(words) + " | " + gloss.strip())
        pointers.append([t for s, t, tp in ptrs if s in keep and tp == target_pos])
    index = {off: i for i, off in enumerate(offsets)}
    pairs = [(i, index[t]) for i, ts in enumerate(pointers) for t in ts if t in index]
    edges = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    edges = np.sort(edges, axis=1)
    edges = edges[edges[:, 0] != edges[:, 1]]
    edges = np.unique(edges, axis=0)
    return offsets, lexfiles, texts, edges


def load_wordnet(pos: str = "verb", path: str | Path | None = None) -> WordNetGraph:
    """The WordNet 3.0 synset graph of one part of speech (``"verb"`` or ``"noun"``)."""
    file = wordnet_file(pos, path)
    with open(file, encoding="latin-1") as handle:
        offsets, lexfiles, texts, edges = parse_data_file(handle, pos)
    files = sorted(set(lexfiles))
    label_of = {f: k for k, f in enumerate(files)}
    labels = np.array([label_of[f] for f in lexfiles], dtype=np.int64)
    return WordNetGraph(texts=texts, labels=labels, edges=edges,
                        class_names=[LEXNAMES[f] for f in files], offsets=offsets)


def load_wordnet_verbs(path: str | Path | None = None) -> WordNetGraph:
    """The WordNet 3.0 verb graph: 13,767 synsets, 15 classes, 14,687 edges."""
    return load_wordnet("verb", path)


def tfidf_features(texts: list[str], fit_nodes, *, min_df: int = 2,
                   max_features: int | None = 20000, sublinear_tf: bool = True):
    """Sparse TF-IDF node features whose vocabulary and idf are fitted on ``fit_nodes`` only.

    texts: N strings; fit_nodes: indices of the training nodes. Returns a coalesced
    ``torch.sparse_coo_tensor`` of shape (N, V), float32, rows L2-normalised. Words seen only
    outside ``fit_nodes`` are ignored, so test nodes leak nothing into the features.
    """
    import torch
    from sklearn.feature_extraction.text import TfidfVectorizer

    fit_nodes = np.asarray(fit_nodes, dtype=np.int64)
    if fit_nodes.ndim != 1 or fit_nodes.size == 0:
        raise ValueError("fit_nodes must be a non-empty 1-D array of node indices")
    if fit_nodes.min() < 0 or fit_nodes.max() >= len(texts):
        raise ValueError(f"fit_nodes must lie in 0..{len(texts) - 1}")
    vectorizer = TfidfVectorizer(min_df=min_df, max_features=max_features,
                                 sublinear_tf=sublinear_tf, dtype=np.float32)
    vectorizer.fit([texts[i] for i in fit_nodes])
    matrix = vectorizer.transform(texts).tocoo()
    index = torch.from_numpy(np.stack([matrix.row, matrix.col]).astype(np.int64))
    return torch.sparse_coo_tensor(index, torch.from_numpy(matrix.data), matrix.shape,
                                   check_invariants=True).coalesce()
