"""Per-capita income of the 48 contiguous U.S. states on their contiguity graph (libpysal).

Source:  ``libpysal/examples/us_income/`` of the ``libpysal`` wheel (4.14): ``usjoin.csv``
         (per-capita personal income, current dollars, 48 states x 1929-2009, from the
         Bureau of Economic Analysis' Regional Economic Information System), ``states48.gal``
         (rook contiguity, 107 edges; ids are the rows of the CSV) and ``us48.shp``/``us48.dbf``
         (state polygons, used only for the centroids that split east/west and north/south).
         Nothing is downloaded: ``pip install libpysal``.
Licence: libpysal is BSD-3-Clause; the BEA figures are U.S. government works (public domain).
Size:    48 states x 81 years (21 kB CSV), 107 undirected edges.

This is the book's real stand-in for the paper's TPT-48 (monthly temperature of the same 48
states, released only as a zip in the authors' repository, shipped by no package). The task
mirrors TPT-48's "previous 6 months -> next 6 months" regression: from a state's *relative
log income* (log income minus the 48-state mean of log income, in percent) over 6 consecutive
years, predict its change over the next 3 years (relative to the last observed year). Each
state is a domain (73 windows each); the source
domains are the 24 eastern (or northern) states by polygon centroid, the targets the other 24,
as TPT-48's E (24) -> W (24) and N (24) -> S (24) tasks.
"""

from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path

import numpy as np

from .dg_domains import DomainGraphData
from .files import package_file

INSTALL_HINT = "pip install 'libpysal>=4.14'"
SHA256 = {
    "usjoin.csv": "01566698b83366c27193ba6cc9d844f92d7c0a1a5dd4b9348aa46935dc9160d8",
    "states48.gal": "08ee593424c543ac39a1279374d37eef4819625ca953771ecd9d16db505d3b9f",
    "us48.shp": "041a6f67137b217a048238a8c2d6badfc3dcebfde4f98cbd923b409e25e30a28",
}
NUM_STATES = 48
NUM_EDGES = 107
SPLITS = ("E->W", "N->S")


def _file(name: str) -> Path:
    return package_file("libpysal", "examples", "us_income", name,
                        sha256=SHA256[name], install_hint=INSTALL_HINT)


def load_income() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(state names, FIPS codes (48,), years (81,), income (48, 81) dollars per capita)."""
    import pandas as pd

    table = pd.read_csv(_file("usjoin.csv"))
    years = np.array([int(c) for c in table.columns[2:]])
    income = table.iloc[:, 2:].to_numpy(dtype=np.float64)
    return list(table["Name"]), table["STATE_FIPS"].to_numpy(), years, income


def load_adjacency() -> np.ndarray:
    """(48, 48) 0/1 rook contiguity from ``states48.gal`` (rows = CSV rows), symmetric."""
    lines = _file("states48.gal").read_text().strip().split("\n")[1:]
    adjacency = np.zeros((NUM_STATES, NUM_STATES), dtype=np.int64)
    for head, neighbours in zip(lines[0::2], lines[1::2], strict=True):
        adjacency[int(head.split()[0]), [int(j) for j in neighbours.split()]] = 1
    return np.maximum(adjacency, adjacency.T)


def load_centroids(fips: np.ndarray) -> np.ndarray:
    """(48, 2) polygon centroids (longitude, latitude) in the CSV's row order (matched by FIPS)."""
    from libpysal import io as pysal_io

    _file("us48.shp")
    folder = Path(str(resources.files("libpysal").joinpath("examples", "us_income")))
    with warnings.catch_warnings():  # libpysal's Geometry classes warn about their deprecation
        warnings.simplefilter("ignore", FutureWarning)
        shapes = pysal_io.open(str(folder / "us48.shp")).read()
        table = pysal_io.open(str(folder / "us48.dbf"))
        column = table.header.index("STATE_FIPS")
        shape_fips = [int(row[column]) for row in table]
        centre = {f: s.centroid for f, s in zip(shape_fips, shapes, strict=True)}
    return np.array([centre[int(f)] for f in fips], dtype=np.float64)


def make_income_task(split: str = "E->W", history: int = 6, horizon: int = 3) -> DomainGraphData:
    """The U.S.-income regression task as a :class:`DomainGraphData`.

    x: (48 * W, history) relative log income (percent) of the previous ``history`` years,
    y: (48 * W, horizon) its change over the next ``horizon`` years from the last observed
    year (so predicting 0 is the persistence forecast), both divided by the standard deviation
    of all inputs (a label-free scale); W = 81 - history - horizon + 1 windows per state.
    split: "E->W" (source = 24 states with the largest centroid longitude) or "N->S"
    (largest latitude).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    for name, value in (("history", history), ("horizon", horizon)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 20:
            raise ValueError(f"{name} must be an int in [1, 20], got {value!r}")
    names, fips, years, income = load_income()
    log_income = np.log(income)
    relative = 100.0 * (log_income - log_income.mean(0, keepdims=True))  # (48, 81) percent
    length = history + horizon
    windows = np.lib.stride_tricks.sliding_window_view(relative, length, axis=1)  # (48, W, L)
    n_windows = windows.shape[1]
    x = windows[..., :history].reshape(-1, history)
    y = (windows[..., history:] - windows[..., history - 1:history]).reshape(-1, horizon)
    scale = x.std()
    centre = load_centroids(fips)
    order = np.argsort(-centre[:, 0 if split == "E->W" else 1], kind="stable")
    return DomainGraphData(
        name=f"US income {split}",
        x=(x / scale).astype(np.float32),
        y=(y / scale).astype(np.float32),
        domain=np.repeat(np.arange(NUM_STATES), n_windows).astype(np.int64),
        adjacency=load_adjacency(),
        source=np.sort(order[: NUM_STATES // 2]).astype(np.int64),
        names=tuple(names),
        angle=None,
    )
