"""U.S. states income on the contiguity graph (libpysal): files, graph, task shapes."""

import numpy as np
import pytest

from iclr22.data import DataFileError, us_states
from iclr22.data.us_states import load_adjacency, load_income, make_income_task


def test_income_table():
    names, fips, years, income = load_income()
    assert len(names) == 48 and income.shape == (48, 81)
    assert years[0] == 1929 and years[-1] == 2009
    assert names[0] == "Alabama" and income[0, 0] == 323   # first cell of usjoin.csv
    assert (income > 0).all()


def test_adjacency():
    names, *_ = load_income()
    a = load_adjacency()
    assert a.shape == (48, 48) and a.sum() // 2 == 107
    assert (a == a.T).all() and (np.diag(a) == 0).all()
    idx = {n: i for i, n in enumerate(names)}
    assert a[idx["California"], idx["Oregon"]] == 1
    assert a[idx["California"], idx["Maine"]] == 0
    assert a[idx["Maine"]].sum() == 1 and a[idx["Maine"], idx["New Hampshire"]] == 1


@pytest.mark.parametrize("split,east,west", [("E->W", "Maine", "California"),
                                             ("N->S", "Minnesota", "Texas")])
def test_task(split, east, west):
    data = make_income_task(split)
    assert data.x.shape == (48 * 73, 6) and data.y.shape == (48 * 73, 3)
    assert data.x.dtype == np.float32 and data.y.dtype == np.float32
    assert len(data.source) == 24 and len(data.target) == 24
    assert data.names.index(east) in data.source and data.names.index(west) in data.target
    # windows are consecutive years: the target's first year follows the input's last year
    d = data.domain == 0
    np.testing.assert_allclose(data.x[d][1, :5], data.x[d][0, 1:], rtol=1e-6)
    # targets are changes from the last observed year: y[t] = x[t + 6][0] - x[t][5]
    np.testing.assert_allclose(data.y[d][0, 0], data.x[d][6, 0] - data.x[d][0, 5], atol=1e-5)


@pytest.mark.parametrize("kwargs", [{"split": "W->E"}, {"history": 0}, {"horizon": 2.5}])
def test_bad_input(kwargs):
    with pytest.raises(ValueError):
        make_income_task(**kwargs)


def test_corrupt_file_is_reported(monkeypatch):
    monkeypatch.setitem(us_states.SHA256, "usjoin.csv", "0" * 64)
    with pytest.raises(DataFileError, match="pip install"):
        load_income()
