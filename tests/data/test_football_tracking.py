"""SkillCorner football tracking from the kloppy wheel: checked files, shapes, resampling."""

import numpy as np
import pytest

from iclr22.data import DataFileError
from iclr22.data import football_tracking as ft


@pytest.fixture(scope="module")
def tracks():
    return ft.load_skillcorner()


def test_match_shape(tracks):
    assert tracks.positions.shape == (68101, 39, 2) and tracks.frame_rate_hz == 10.0
    assert tracks.team_names == ("Bayern Munchen", "Dortmund")
    assert (tracks.kind == ft.BALL).sum() == 1
    seen = np.isfinite(tracks.positions[..., 0])
    assert seen[:, tracks.kind != ft.BALL].sum() > 400_000          # player detections
    assert not seen[tracks.period == 0].any()                        # nothing out of play
    in_view = seen[tracks.period > 0][:, tracks.kind != ft.BALL].sum(1)
    assert 8 <= np.median(in_view) <= 16
    # players: metres on a 105 m x 68 m pitch centred on the centre spot (a little margin)
    players = tracks.positions[:, tracks.kind != ft.BALL]
    assert 50 < np.nanmax(np.abs(players[..., 0])) < 60
    assert 30 < np.nanmax(np.abs(players[..., 1])) < 40


def test_resample(tracks):
    slow = ft.resample(tracks, 2.5)
    assert slow.positions.shape[0] == -(-68101 // 4) and slow.frame_rate_hz == 2.5
    np.testing.assert_array_equal(slow.positions[1], tracks.positions[4])
    with pytest.raises(ValueError, match="divide"):
        ft.resample(tracks, 3.0)


def test_corrupt_file_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(ft.SHA256, "skillcorner_match_data.json", "0" * 64)
    with pytest.raises(DataFileError, match="kloppy"):
        ft.load_skillcorner()
