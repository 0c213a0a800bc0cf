"""Argument checks shared by the chapters' configurations, so that every chapter rejects a bad
count the same way and with the same words.

    positive_int("epochs", 0)                  # ValueError: epochs must be a positive int, got 0
    positive_ints(config, ("epochs", "batch_size"))
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def positive_int(name: str, value: object, minimum: int = 1) -> None:
    """Raise ``ValueError`` unless ``value`` is an int (numpy ints too; not a bool) >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")


def positive_ints(config: object, names: Iterable[str], minimum: int = 1) -> None:
    """:func:`positive_int` on each named attribute of ``config`` (a dataclass, usually)."""
    for name in names:
        positive_int(name, getattr(config, name), minimum)
