"""Tests of the offline Fashion-MNIST loader (Debian dataset-fashion-mnist)."""

from __future__ import annotations

import numpy as np
import pytest

from iclr22.data import DataFileError
from iclr22.data.fashion_mnist import CLASS_NAMES, class_subset, load_fashion_mnist


@pytest.fixture(scope="module")
def test_split():
    return load_fashion_mnist("test")


def test_sizes_and_balance(test_split):
    assert test_split.images.shape == (10_000, 28, 28)
    assert test_split.images.dtype == np.uint8
    assert np.bincount(test_split.labels).tolist() == [1000] * 10
    assert len(CLASS_NAMES) == 10


def test_train_split_size():
    train = load_fashion_mnist("train")
    assert len(train) == 60_000 and np.bincount(train.labels).tolist() == [6000] * 10


def test_class_subset_is_balanced_reindexed_and_deterministic(test_split):
    x1, y1 = class_subset(test_split, (5, 7), 30, seed=0)
    x2, y2 = class_subset(test_split, (5, 7), 30, seed=0)
    assert x1.shape == (60, 28, 28) and x1.dtype == np.float32 and 0 <= x1.min() <= x1.max() <= 1
    assert np.bincount(y1).tolist() == [30, 30]
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)


def test_bad_input(tmp_path, test_split):
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("valid")
    with pytest.raises(DataFileError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("test", root=tmp_path)
    with pytest.raises(ValueError, match="classes"):
        class_subset(test_split, (3, 3), 5, seed=0)
    with pytest.raises(ValueError, match="asked for"):
        class_subset(test_split, (3,), 5000, seed=0)
    with pytest.raises(ValueError, match="num_per_class must be >= 1"):
        class_subset(test_split, (3,), 0, seed=0)


def test_class_subset_keeps_every_image_with_none(test_split):
    x, y = class_subset(test_split, (1, 8), None, seed=0)
    assert x.shape == (2000, 28, 28) and np.bincount(y).tolist() == [1000, 1000]


def test_declares_its_debian_package():
    from iclr22.data import fashion_mnist
    assert fashion_mnist.DEBIAN_PACKAGES == ("dataset-fashion-mnist",)
