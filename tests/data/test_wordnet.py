"""Tests of iclr22.data.wordnet: the real Debian files, the parser, checksums, features."""

from __future__ import annotations

import numpy as np
import pytest

from iclr22.data import DataFileError
from iclr22.data import wordnet as wn

SAMPLE = [
    "  1 This software and database is being provided to you, the LICENSEE, by  \n",
    "00000001 29 v 02 breathe 0 respire 0 002 @ 00000003 v 0000 $ 00000002 v 0000 "
    "01 + 08 00 | draw air into the lungs  \n",
    "00000002 29 v 01 exhale 0 002 @ 00000003 v 0000 + 01234567 n 0101 01 + 08 00 "
    "| expel air  \n",
    "00000003 30 v 01 change 0 000 01 + 02 00 | become different  \n",
]


def test_parse_sample_lines():
    offsets, lexfiles, texts, edges = wn.parse_data_file(SAMPLE, "verb")
    assert offsets == ["00000001", "00000002", "00000003"]
    assert lexfiles == [29, 29, 30]
    assert texts[0] == "breathe, respire | draw air into the lungs"
    # @ and $ between verbs become edges; the pointer to a noun does not
    assert edges.tolist() == [[0, 1], [0, 2], [1, 2]]


def test_verb_graph_statistics():
    graph = wn.load_wordnet_verbs()
    assert graph.num_nodes == 13_767
    assert len(graph.class_names) == 15 and graph.class_names[0] == "verb.body"
    assert graph.labels.min() == 0 and graph.labels.max() == 14
    assert len(graph.edges) == 14_687
    assert (graph.edges[:, 0] < graph.edges[:, 1]).all()          # i < j, no self-loop
    assert len(np.unique(graph.edges, axis=0)) == len(graph.edges)
    assert int((graph.degrees() == 0).sum()) == 130


def test_checksum_mismatch_names_the_install_command(tmp_path):
    fake = tmp_path / "data.verb"
    fake.write_text("not wordnet\n")
    with pytest.raises(DataFileError, match="apt-get install wordnet-base"):
        wn.load_wordnet("verb", fake)
    with pytest.raises(DataFileError, match="not found"):
        wn.load_wordnet("verb", tmp_path / "missing")
    with pytest.raises(ValueError, match="pos"):
        wn.load_wordnet("adverb")


def test_tfidf_is_fitted_on_training_nodes_only():
    texts = ["alpha beta", "alpha gamma", "beta alpha", "zeta omega"]
    x = wn.tfidf_features(texts, [0, 1, 2], min_df=1)
    dense = x.to_dense().numpy()
    assert dense.shape == (4, 3)                                    # alpha, beta, gamma
    assert np.abs(dense[3]).sum() == 0                              # unseen words only
    np.testing.assert_allclose(np.linalg.norm(dense[:3], axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="fit_nodes"):
        wn.tfidf_features(texts, [7])


def test_licence_notice_is_kept():
    assert "Princeton University" in wn.LICENCE_NOTICE


def test_edge_index_is_pyg_style_both_directions():
    graph = wn.load_wordnet_verbs()
    edge_index = graph.edge_index
    assert edge_index.shape == (2, 2 * len(graph.edges))
    pairs = set(map(tuple, edge_index.T.tolist()))
    assert all((j, i) in pairs for i, j in graph.edges[:100].tolist())
