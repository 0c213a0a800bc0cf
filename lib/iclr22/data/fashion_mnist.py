"""Fashion-MNIST {cite:p}`xiao2017fashion` from the Debian package ``dataset-fashion-mnist``.

Source:  Zalando Research's Fashion-MNIST, as installed by Debian's ``dataset-fashion-mnist``
         under ``/usr/share/datasets/fashion-mnist/`` (``apt-get install
         dataset-fashion-mnist``). Nothing is downloaded.
Licence: MIT (Copyright (c) 2017 Zalando SE).
Size:    60,000 training and 10,000 test images, 28x28 grey levels (uint8), 10 balanced
         classes (:data:`CLASS_NAMES`); four gzip'd IDX files, 30 MB in all.

Every file is checked against its sha256 before it is parsed.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import checked_file

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = "apt-get install dataset-fashion-mnist"
#: Debian packages this loader reads; iclr22.colab.install_data installs them in Colab.
DEBIAN_PACKAGES = ("dataset-fashion-mnist",)

#: sha256 of the four files of the Debian package.
SHA256 = {
    "train-images-idx3-ubyte.gz":
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz":
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}

#: Class names in label order (from the dataset's README).
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


@dataclass(frozen=True)
class FashionMNIST:
    """One split of Fashion-MNIST.

    images: (N, 28, 28) uint8, 0 = background.
    labels: (N,) int64 in ``0..9`` (see :data:`CLASS_NAMES`).
    """

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)


def load_fashion_mnist(split: str = "train", root: str | Path = FASHION_MNIST_DIR) -> FashionMNIST:
    """Load the ``"train"`` (60,000) or ``"test"`` (10,000) split, checking each file's sha256."""
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    prefix = _SPLIT_PREFIX[split]
    names = (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz")
    img_path, lab_path = (checked_file(root / n, SHA256[n], install_hint=INSTALL_HINT)
                          for n in names)
    images = _read_idx(img_path, 16).reshape(-1, 28, 28)  # IDX3 header: 16 bytes
    labels = _read_idx(lab_path, 8).astype(np.int64)      # IDX1 header: 8 bytes
    if len(images) != len(labels):
        raise ValueError(f"{img_path} has {len(images)} images but {lab_path} "
                         f"{len(labels)} labels")
    return FashionMNIST(images=images, labels=labels)


def class_subset(data: FashionMNIST, classes: tuple[int, ...] | list[int],
                 num_per_class: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A class-balanced random subset, labels re-indexed ``0..len(classes)-1``.

    Returns images (M, 28, 28) float32 in [0, 1] and labels (M,) int64, shuffled with
    ``seed``. ``num_per_class=None`` keeps every image of the chosen classes.
    """
    classes = list(classes)
    if not classes or len(set(classes)) != len(classes) or not all(0 <= c <= 9 for c in classes):
        raise ValueError(f"classes must be distinct integers in 0..9, got {classes}")
    if num_per_class is not None and num_per_class < 1:
        raise ValueError(f"num_per_class must be >= 1 or None, got {num_per_class}")
    rng = np.random.default_rng(seed)
    picked = []
    for c in classes:
        idx = np.flatnonzero(data.labels == c)
        if num_per_class is not None:
            if num_per_class > len(idx):
                raise ValueError(f"class {c} has {len(idx)} images, asked for {num_per_class}")
            idx = rng.choice(idx, size=num_per_class, replace=False)
        picked.append(idx)
    order = rng.permutation(np.concatenate(picked))
    remap = {c: k for k, c in enumerate(classes)}
    labels = np.array([remap[int(c)] for c in data.labels[order]], dtype=np.int64)
    return data.images[order].astype(np.float32) / 255.0, labels
